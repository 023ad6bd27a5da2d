//! `cotj._core`: the PyO3 binding of `cotj-core`. It only converts and validates: numpy arrays in
//! (dtype, ndim and contiguity checked), the GIL released around the planning (and re-taken now
//! and then to let Ctrl-C stop it), planning errors out as [`PlanError`] (a `ValueError`;
//! `MemoryError` when an allocation fails), wrong types as `TypeError`. One call per result
//! shape: `plan_row` (one plan), `plan_batch` and `plan_dense` (a padded batch). The ergonomic
//! layer is the Python package `cotj`.
//!
//! Modules: `args` (arguments in), `plan` and `pairs` (the planning calls), `lever` (the `Lever`
//! class), `convert` (results out), `error` (the one exception and the mapping of core errors).

mod args;
mod convert;
mod error;
mod lever;
mod pairs;
mod plan;

use cotj_core::{DEFAULT_BUDGET, MAX_LEVELS, MAX_PAIR_NODES};
use pyo3::prelude::*;

use crate::error::PlanError;
use crate::lever::Lever;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Lever>()?;
    m.add("PlanError", m.py().get_type::<PlanError>())?;
    for function in [
        wrap_pyfunction!(plan::plan_row, m)?,
        wrap_pyfunction!(plan::plan_batch, m)?,
        wrap_pyfunction!(plan::plan_dense, m)?,
        wrap_pyfunction!(plan::plan_cost, m)?,
        wrap_pyfunction!(plan::plan_cost_dense, m)?,
        wrap_pyfunction!(plan::cost_matrix, m)?,
        wrap_pyfunction!(lever::check_levels, m)?,
        wrap_pyfunction!(lever::lever_cache, m)?,
        wrap_pyfunction!(pairs::plan_pairs, m)?,
    ] {
        m.add_function(function)?;
    }
    m.add("MAX_PAIR_NODES", MAX_PAIR_NODES)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_LEVELS", MAX_LEVELS)?;
    m.add("DEFAULT_BUDGET", DEFAULT_BUDGET)?;
    m.add("KERNEL", cotj_core::kernel())?;
    Ok(())
}
