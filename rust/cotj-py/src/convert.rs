//! Results out as numpy arrays: the plan of one row, the padded plans of a batch.

use cotj_core::{BatchPlans, PairPlans};
use numpy::prelude::*;
use numpy::{Element, PyArray1, PyArray2};
use pyo3::prelude::*;

pub(crate) type Array1<'py, T> = Bound<'py, PyArray1<T>>;
pub(crate) type Array2<'py, T> = Bound<'py, PyArray2<T>>;

/// `(steps, levels, cost, curve, ratio)` of one plan.
pub(crate) type RowPlan<'py> = (
    Array1<'py, i64>,
    Array1<'py, f64>,
    f64,
    Curve1<'py>,
    Curve1<'py>,
);
type Curve1<'py> = Option<Array1<'py, f64>>;

/// `(steps, levels, lengths, cost, curve, ratio)` of a batch.
pub(crate) type BatchPlan<'py> = (
    Array2<'py, i64>,
    Array2<'py, f64>,
    Array1<'py, i64>,
    Array1<'py, f64>,
    Option<Array2<'py, f64>>,
    Option<Array2<'py, f64>>,
);

/// `(nodes, lengths, cost)` of a multistep solver's batch.
pub(crate) type PairPlan<'py> = (Array2<'py, i64>, Array1<'py, i64>, Array1<'py, f64>);

/// `values` (row-major) as a (rows, cols) array, without a copy.
pub(crate) fn matrix<T: Element>(
    py: Python<'_>,
    values: Vec<T>,
    rows: usize,
    cols: usize,
) -> PyResult<Array2<'_, T>> {
    values.into_pyarray(py).reshape([rows, cols])
}

/// The plan of a one-row batch (copied: cheaper than handing a few values over).
pub(crate) fn row_plan(py: Python<'_>, p: BatchPlans) -> RowPlan<'_> {
    let curve = |v: &[f64]| (!v.is_empty()).then(|| PyArray1::from_slice(py, v));
    let (steps, cost) = (PyArray1::from_slice(py, &p.plans.steps), p.plans.cost[0]);
    (
        steps,
        PyArray1::from_slice(py, &p.levels),
        cost,
        curve(&p.curve),
        curve(&p.ratio),
    )
}

/// The plans of a batch, as (B, ..) arrays.
pub(crate) fn batch_plan(py: Python<'_>, p: BatchPlans) -> PyResult<BatchPlan<'_>> {
    let (rows, width) = (p.plans.rows, p.plans.width);
    let curve = |v: Vec<f64>| match v.len() {
        0 => Ok(None),
        len => matrix(py, v, rows, len / rows).map(Some),
    };
    Ok((
        matrix(py, p.plans.steps, rows, width)?,
        matrix(py, p.levels, rows, width)?,
        p.plans.lengths.into_pyarray(py),
        p.plans.cost.into_pyarray(py),
        curve(p.curve)?,
        curve(p.ratio)?,
    ))
}

/// The plans of a multistep solver, as (B, ..) arrays.
pub(crate) fn pair_plan(py: Python<'_>, p: PairPlans) -> PyResult<PairPlan<'_>> {
    let nodes = matrix(py, p.steps, p.rows, p.width)?;
    Ok((nodes, p.lengths.into_pyarray(py), p.cost.into_pyarray(py)))
}
