//! Results out as numpy arrays: the plan of one row, the padded plans of a batch.

use cotj_core::{BatchPlans, PairPlans};
use numpy::prelude::*;
use numpy::{Element, PyArray1};
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

/// What a call returns: an array, or a tuple of arrays and floats.
pub(crate) type Out<'py> = PyResult<Bound<'py, PyAny>>;

/// `values` (row-major) as a (rows, cols) array, without a copy.
pub(crate) fn matrix<T: Element>(
    py: Python<'_>,
    values: Vec<T>,
    rows: usize,
    cols: usize,
) -> Out<'_> {
    Ok(values.into_pyarray(py).reshape([rows, cols])?.into_any())
}

/// `(steps, levels, cost, curve, ratio)` of a one-row batch (copied: cheaper than handing a few
/// values over).
pub(crate) fn row_plan(py: Python<'_>, p: BatchPlans) -> Out<'_> {
    let curve = |v: &[f64]| (!v.is_empty()).then(|| PyArray1::from_slice(py, v));
    let steps = PyArray1::from_slice(py, &p.plans.steps);
    let levels = PyArray1::from_slice(py, &p.levels);
    let curves = (curve(&p.curve), curve(&p.ratio));
    (steps, levels, p.plans.cost[0], curves.0, curves.1).into_bound_py_any(py)
}

/// `(steps, levels, lengths, cost, curve, ratio)` of a batch, as (B, ..) arrays.
pub(crate) fn batch_plan(py: Python<'_>, p: BatchPlans) -> Out<'_> {
    let (rows, width) = (p.plans.rows, p.plans.width);
    let optional = |v: Vec<f64>| match v.len() {
        0 => Ok(None),
        len => matrix(py, v, rows, len / rows).map(Some),
    };
    let steps = matrix(py, p.plans.steps, rows, width)?;
    let levels = matrix(py, p.levels, rows, width)?;
    let lengths = p.plans.lengths.into_pyarray(py);
    let (cost, curve) = (p.plans.cost.into_pyarray(py), optional(p.curve)?);
    (steps, levels, lengths, cost, curve, optional(p.ratio)?).into_bound_py_any(py)
}

/// `(nodes, lengths, cost)` of a multistep solver's plans, as (B, ..) arrays.
pub(crate) fn pair_plan(py: Python<'_>, p: PairPlans) -> Out<'_> {
    let nodes = matrix(py, p.steps, p.rows, p.width)?;
    (nodes, p.lengths.into_pyarray(py), p.cost.into_pyarray(py)).into_bound_py_any(py)
}
