//! The binding's exception and the one mapping of the core's errors to Python exceptions.

use cotj_core::CotjError;
use pyo3::create_exception;
use pyo3::exceptions::{PyKeyboardInterrupt, PyMemoryError, PyValueError};
use pyo3::PyErr;

create_exception!(
    cotj._core,
    PlanError,
    PyValueError,
    "A planning argument out of range or of the wrong shape, or no plan of the asked length \
     (a ValueError: code that catches ValueError keeps working)."
);

/// A core error as a Python exception, the one place where they are mapped: `MemoryError` for a
/// failed allocation, `KeyboardInterrupt` for an interruption, else [`PlanError`].
pub(crate) fn plan_error(e: CotjError) -> PyErr {
    match e {
        CotjError::OutOfMemory { .. } => PyMemoryError::new_err(e.to_string()),
        CotjError::Interrupted => PyKeyboardInterrupt::new_err(e.to_string()),
        _ => PlanError::new_err(e.to_string()),
    }
}
