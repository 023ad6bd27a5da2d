//! The binding's exception and the one mapping of the core's errors to Python exceptions.

use cotj_core::CotjError;
use pyo3::exceptions::{PyKeyboardInterrupt, PyMemoryError, PyTypeError, PyValueError};
use pyo3::{create_exception, PyErr, PyResult};

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
