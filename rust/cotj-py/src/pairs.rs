//! `plan_pairs`: the plans of a multistep solver over (previous, current) pairs of nodes.

use cotj_core::{CotjError, PairCost, PairRequest, MAX_PAIR_NODES};
use numpy::prelude::*;
use pyo3::prelude::*;

use crate::args::{array, dense, Ints, Obj};
use crate::convert::{pair_plan, Out};
use crate::error::plan_error;
use crate::plan::detach;

/// The unit of [`dense`] for the pair DP's costs.
const NODES: (&str, &str) = ("M", "entries (nodes)");

/// Plans of a multistep solver on nodes 0..M; see `python/cotj/_core.pyi`.
#[pyfunction]
#[pyo3(signature = (first, pairs, end, budget, current, *, previous=None, scale=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan_pairs<'py>(
    py: Python<'py>,
    first: &Obj<'py>,
    pairs: &Obj<'py>,
    end: &Obj<'py>,
    budget: &Obj<'py>,
    current: &Obj<'py>,
    previous: Option<&Obj<'py>>,
    scale: Option<&Obj<'py>>,
) -> Out<'py> {
    let m = array("first", first, [2, 2])?.shape()[0];
    if !(2..=MAX_PAIR_NODES).contains(&m) {
        return Err(plan_error(CotjError::PairNodes { got: m }));
    }
    let read = |name, obj, ndim| dense(name, obj, [ndim, ndim], m, NODES);
    let (first, pairs) = (read("first", first, 2)?, read("pairs", pairs, 3)?);
    let end = read("end", end, 1)?;
    let scale = scale
        .map(|w| dense("scale", w, [1, 2], m, NODES))
        .transpose()?;
    let budget = Ints::new("budget", budget, true, "")?;
    let current = Ints::new("current", current, true, "")?;
    let previous = previous
        .map(|p| Ints::new("previous", p, true, ""))
        .transpose()?;
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
    pair_plan(py, plans)
}
