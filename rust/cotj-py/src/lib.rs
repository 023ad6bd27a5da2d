//! `cotj._core`, the PyO3 binding of `cotj-core` (documented by `python/cotj/_core.pyi`): arguments
//! in (`args`), the calls (`plan`, `pairs`, `lever`), results out (`convert`), errors (`error`).

mod args;
mod convert;
mod error;
mod lever;
mod pairs;
mod plan;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<lever::Lever>()?;
    m.add("PlanError", m.py().get_type::<error::PlanError>())?;
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
    m.add("MAX_PAIR_NODES", cotj_core::MAX_PAIR_NODES)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_LEVELS", cotj_core::MAX_LEVELS)?;
    m.add("DEFAULT_BUDGET", cotj_core::DEFAULT_BUDGET)?;
    m.add("KERNEL", cotj_core::kernel())
}
