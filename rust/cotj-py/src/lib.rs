//! `cotj._core`, the PyO3 binding of `cotj-core` (documented by `python/cotj/_core.pyi`): arguments
//! in (`args`), the calls (`plan`, `lever`), results out (`convert`); here the module, its
//! exception and the one mapping of the core's errors to Python exceptions.

mod args;
mod convert;
mod lever;
mod plan;

use cotj_core::CotjError;
use pyo3::create_exception;
use pyo3::exceptions::{PyKeyboardInterrupt, PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<lever::Lever>()?;
    m.add("PlanError", m.py().get_type::<PlanError>())?;
    m.add_function(wrap_pyfunction!(plan::plan_row, m)?)?;
    m.add_function(wrap_pyfunction!(plan::plan_batch, m)?)?;
    m.add_function(wrap_pyfunction!(plan::plan_dense, m)?)?;
    m.add_function(wrap_pyfunction!(plan::plan_cost, m)?)?;
    m.add_function(wrap_pyfunction!(plan::plan_cost_dense, m)?)?;
    m.add_function(wrap_pyfunction!(plan::cost_matrix, m)?)?;
    m.add_function(wrap_pyfunction!(lever::check_levels, m)?)?;
    m.add_function(wrap_pyfunction!(lever::lever_cache, m)?)?;
    m.add_function(wrap_pyfunction!(plan::plan_pairs, m)?)?;
    m.add("MAX_PAIR_NODES", cotj_core::MAX_PAIR_NODES)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_LEVELS", cotj_core::MAX_LEVELS)?;
    m.add("DEFAULT_BUDGET", cotj_core::DEFAULT_BUDGET)?;
    m.add("KERNEL", cotj_core::kernel())
}

create_exception!(
    cotj._core,
    PlanError,
    PyValueError,
    "A planning argument out of range or of the wrong shape, or no plan of the asked length \
     (a ValueError: code that catches ValueError keeps working)."
);

/// `MemoryError` for a failed allocation, `KeyboardInterrupt` for an interruption, else PlanError.
pub(crate) fn plan_error(e: CotjError) -> PyErr {
    match e {
        CotjError::OutOfMemory { .. } => PyMemoryError::new_err(e.to_string()),
        CotjError::Interrupted => PyKeyboardInterrupt::new_err(e.to_string()),
        _ => PlanError::new_err(e.to_string()),
    }
}

/// A [`PlanError`] saying `msg`.
pub(crate) fn refuse<T>(msg: impl Into<String>) -> PyResult<T> {
    Err(PlanError::new_err(msg.into()))
}

/// A `TypeError` saying `msg`.
pub(crate) fn type_error(msg: impl Into<String>) -> PyErr {
    PyTypeError::new_err(msg.into())
}
