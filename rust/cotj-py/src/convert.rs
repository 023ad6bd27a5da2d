//! Results as numpy arrays: the plan of one row, the padded plans of a batch.

use cotj_core::{BatchPlans, PairPlans};
use numpy::prelude::*;
use numpy::{Element, PyArray1, PyArray2};
use pyo3::prelude::*;

/// A numpy vector and matrix.
pub(crate) type Array1<'py, T> = Bound<'py, PyArray1<T>>;
pub(crate) type Array2<'py, T> = Bound<'py, PyArray2<T>>;

/// One plan: `(steps (K,) int64, levels (K,) float64, cost, curve, ratio)`, the curves
/// `(max_steps,)` float64 for adaptive runs, else None.
pub(crate) type RowPlan<'py> = (
    Array1<'py, i64>,
    Array1<'py, f64>,
    f64,
    Option<Array1<'py, f64>>,
    Option<Array1<'py, f64>>,
);

/// Plans of a batch: `(steps (B, W) int64 padded with -1, levels (B, W) float64 padded with
/// NaN, lengths (B,) int64, cost (B,) float64, curve, ratio)`, the curves `(B, max_steps)`
/// float64 for adaptive runs, else None.
pub(crate) type BatchPlan<'py> = (
    Array2<'py, i64>,
    Array2<'py, f64>,
    Array1<'py, i64>,
    Array1<'py, f64>,
    Option<Array2<'py, f64>>,
    Option<Array2<'py, f64>>,
);

/// Plans of a multistep solver: `(nodes (B, W) int64 padded with -1, lengths (B,) int64, cost
/// (B,) float64)`.
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

/// The plan of a one-row batch (its arrays copied: for a few values that is cheaper than
/// handing the vectors over).
pub(crate) fn row_plan(py: Python<'_>, p: BatchPlans) -> RowPlan<'_> {
    let curve = |v: &[f64]| (!v.is_empty()).then(|| PyArray1::from_slice(py, v));
    (
        PyArray1::from_slice(py, &p.plans.steps),
        PyArray1::from_slice(py, &p.levels),
        p.plans.cost[0],
        curve(&p.curve),
        curve(&p.ratio),
    )
}

/// The plans of a batch, as (B, ..) arrays.
pub(crate) fn batch_plan(py: Python<'_>, p: BatchPlans) -> PyResult<BatchPlan<'_>> {
    let (rows, width) = (p.plans.rows, p.plans.width);
    let curve = |v: Vec<f64>| -> PyResult<_> {
        if v.is_empty() {
            return Ok(None);
        }
        let w = v.len() / rows;
        Ok(Some(matrix(py, v, rows, w)?))
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
    Ok((
        matrix(py, p.steps, p.rows, p.width)?,
        p.lengths.into_pyarray(py),
        p.cost.into_pyarray(py),
    ))
}
