//! `_core.plan_pairs`: the plans of a multistep solver over (previous, current) pairs of nodes
//! (`cotj_core::PairCost`). Converts and validates the arguments, plans with the GIL released,
//! maps errors as every other call does (`PlanError`).

use cotj_core::{CotjError, PairCost, PairRequest, MAX_PAIR_NODES};
use numpy::prelude::*;
use numpy::{PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::{dense_array, detach, int_or_array, numpy_array, plan_error};

/// The plans of a batch: `(nodes (B, W) int64 padded with -1, lengths (B,) int64, cost (B,)
/// float64)`.
type PairPlans<'py> = (
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f64>>,
);

/// The unit of [`dense_array`] for the pair DP's costs.
const NODES: (&str, &str) = ("M", "entries (nodes)");

/// Values of a per-row int argument: the int, or the array's values.
enum Ints<'py> {
    One([i64; 1]),
    Many(PyReadonlyArray1<'py, i64>),
}

impl<'py> Ints<'py> {
    fn new(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        Ok(match int_or_array(name, obj)? {
            Ok(v) => Self::One([v]),
            Err(arr) => Self::Many(arr),
        })
    }

    fn values(&self) -> PyResult<&[i64]> {
        match self {
            Self::One(v) => Ok(v),
            Self::Many(a) => Ok(a.as_slice()?),
        }
    }
}

/// Plans of a multistep solver on nodes `0..M` (node 0 is t = 0, node n the grid level n - 1):
/// `first` (M, M), `pairs` (M, M, M) and `end` (M,) float64, their local errors (see
/// `cotj.multistep.SolverCost`). `budget` (evaluations K), `current` (the first node) and
/// `previous` (the node evaluated before, negative or None for none) are ints or (B,) int64
/// arrays, one per row; `scale` is None (all ones) or (M,) / (B, M) float64, factors of the steps
/// from each node. Returns `(nodes (B, W) int64 padded with -1, lengths (B,), cost (B,))`.
#[pyfunction]
#[pyo3(signature = (first, pairs, end, budget, current, *, previous=None, scale=None))]
#[allow(clippy::too_many_arguments)]
fn plan_pairs<'py>(
    py: Python<'py>,
    first: &Bound<'py, PyAny>,
    pairs: &Bound<'py, PyAny>,
    end: &Bound<'py, PyAny>,
    budget: &Bound<'py, PyAny>,
    current: &Bound<'py, PyAny>,
    previous: Option<&Bound<'py, PyAny>>,
    scale: Option<&Bound<'py, PyAny>>,
) -> PyResult<PairPlans<'py>> {
    let m = numpy_array("first", first, [2, 2])?.shape()[0];
    if !(2..=MAX_PAIR_NODES).contains(&m) {
        return Err(plan_error(CotjError::PairNodes { got: m }));
    }
    let first = dense_array("first", first, [2, 2], m, NODES)?;
    let pairs = dense_array("pairs", pairs, [3, 3], m, NODES)?;
    let end = dense_array("end", end, [1, 1], m, NODES)?;
    let scale = scale
        .map(|w| dense_array("scale", w, [1, 2], m, NODES))
        .transpose()?;
    let budget = Ints::new("budget", budget)?;
    let current = Ints::new("current", current)?;
    let previous = previous.map(|p| Ints::new("previous", p)).transpose()?;
    let (f, p, e) = (first.as_slice()?, pairs.as_slice()?, end.as_slice()?);
    let request = PairRequest {
        budget: budget.values()?,
        current: current.values()?,
        previous: previous.as_ref().map(Ints::values).transpose()?,
        scale: scale.as_ref().map(|w| w.as_slice()).transpose()?,
    };
    let plans = detach(py, |stop| {
        PairCost::new(m, f, p, e)?.plan_batch(&request, stop)
    })?;
    Ok((
        plans
            .nodes
            .into_pyarray(py)
            .reshape([plans.rows, plans.width])?,
        plans.lengths.into_pyarray(py),
        plans.cost.into_pyarray(py),
    ))
}

/// Adds `plan_pairs` and `MAX_PAIR_NODES` to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(plan_pairs, m)?)?;
    m.add("MAX_PAIR_NODES", MAX_PAIR_NODES)?;
    Ok(())
}
