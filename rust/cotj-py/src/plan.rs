//! The planning calls: `plan_row`, `plan_batch` (DNA), `plan_dense`, the cost of a given plan, and
//! `plan_pairs` (a multistep solver's plans over (previous, current) pairs of nodes). Arguments
//! are read with the GIL held, then the work runs with it released ([`detach`]).

use std::sync::OnceLock;

use cotj_core::{check_pair_nodes, check_row_levels, PairCost, PairRequest, DEFAULT_BUDGET};
use cotj_core::{BatchPlans, Budget, CotjError, Current, DenseCost, Ends, Planner, Stop};
use numpy::prelude::*;
use pyo3::prelude::*;

use crate::args::{self, array, dense, dense_cost, int, vector, window, with_floats};
use crate::args::{dna_width, Ints, Obj, LEVELS};
use crate::convert::{batch_plan, matrix, pair_plan, row_plan, Out};
use crate::lever::Lever;
use crate::{plan_error, refuse};

/// Runs `work` without the GIL, re-taking it every `Stop::PERIOD` to run Python's signal handlers
/// (on the main thread only, as Python does): the exception one raises (KeyboardInterrupt on
/// Ctrl-C) stops the work (which then polls no more) and is raised here.
pub(crate) fn detach<T: Send>(
    py: Python<'_>,
    work: impl Send + FnOnce(&Stop) -> Result<T, CotjError>,
) -> PyResult<T> {
    let raised = OnceLock::new();
    let keep = |err| _ = raised.set(err);
    let check = || Python::attach(|py| py.check_signals().map_err(keep).is_err());
    let out = py.detach(|| work(&Stop::new(&check)));
    out.map_err(|e| match (e, raised.into_inner()) {
        (CotjError::Interrupted, Some(raised)) => raised,
        (e, _) => plan_error(e),
    })
}

/// The arguments every planning call ends with, as Python gave them: `budget`, `tau`,
/// `max_steps`, `first`, `last`, `current`.
struct Request<'a, 'py>([Option<&'a Obj<'py>>; 6]);

impl Request<'_, '_> {
    /// The start and end windows on `n` levels.
    fn ends(&self, n: usize) -> PyResult<Ends> {
        let [.., first, last, _] = self.0;
        let first = window("first", first, "top", n)?;
        let last = window("last", last, "bottom", n)?;
        Ok(Ends { first, last })
    }

    /// Runs `plan` on the length and start levels of one row or a `batch` without the GIL.
    fn plan(
        &self,
        py: Python<'_>,
        batch: bool,
        plan: impl Send + FnOnce(Budget<'_>, Current<'_>, &Stop) -> Result<BatchPlans, CotjError>,
    ) -> PyResult<BatchPlans> {
        const BOTH: &str = "give either budget (fixed length) or tau (adaptive length), not both";
        const ALONE: &str =
            "max_steps goes with tau (adaptive length); give budget alone for a fixed length";
        let [budget, tau, max_steps, .., current] = self.0;
        let adaptive = match (budget, tau, max_steps) {
            (Some(_), Some(_), _) => return refuse(BOTH),
            (_, None, Some(_)) => return refuse(ALONE),
            (_, None, None) => None,
            (None, Some(t), k) => Some((
                args::tau(t)?,
                k.map(|k| int("max_steps", k, "")).transpose()?,
            )),
        };
        let budget = budget.map(|k| Ints::new("budget", k, batch, " for one row"));
        let budget = budget.transpose()?;
        let current = current.map(|c| Ints::new("current", c, batch, ""));
        let current = current.transpose()?;
        let budget = match (adaptive, &budget) {
            (Some((tau, max_steps)), _) => Budget::Adaptive { tau, max_steps },
            (None, None) => Budget::Fixed(DEFAULT_BUDGET),
            (None, Some(Ints::One([k]))) => Budget::Fixed(*k),
            (None, Some(Ints::Many(ks))) => Budget::PerRow(ks.as_slice()?),
        };
        let current = match &current {
            None => Current::Free,
            Some(Ints::One([c])) => Current::All(*c),
            Some(Ints::Many(cs)) => Current::PerRow(cs.as_slice()?),
        };
        detach(py, |stop| plan(budget, current, stop))
    }
}

/// The planning calls `$name`: their own arguments `$arg`, then those every one ends with (None
/// by default), gathered as the [`Request`] `$request`.
macro_rules! planning_calls {
    ($($(#[$attr:meta])* fn $name:ident($py:ident, $($arg:ident: $ty:ty $(= $default:tt)?),+; $request:ident) $body:block)+) => {$(
        $(#[$attr])*
        #[pyfunction]
        #[pyo3(signature = ($($arg $(= $default)?,)+ budget=None, tau=None, max_steps=None, first=None, last=None, current=None))]
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name<'py>(
            $py: Python<'py>,
            $($arg: $ty,)+
            budget: Option<&Obj<'py>>,
            tau: Option<&Obj<'py>>,
            max_steps: Option<&Obj<'py>>,
            first: Option<&Obj<'py>>,
            last: Option<&Obj<'py>>,
            current: Option<&Obj<'py>>,
        ) -> Out<'py> {
            let $request = Request([budget, tau, max_steps, first, last, current]);
            $body
        }
    )+};
}

/// The plans of `dna`, one row or a `batch`.
fn plan_dna(
    py: Python<'_>,
    batch: bool,
    dna: &Obj,
    lever: Option<&Lever>,
    request: &Request,
) -> PyResult<BatchPlans> {
    let cols = dna_width(dna, batch)?;
    with_floats!("dna", Some(dna), |dna| {
        let ends = request.ends(lever.map_or(cols, Lever::n))?;
        request.plan(py, batch, |budget, current, stop| {
            let planner = Planner::on(lever.map(|l| &l.0), "dna", cols, ends)?;
            planner.plan_batch(dna.unwrap_or_default(), cols, budget, current, stop)
        })
    })
}

planning_calls! {
    /// The plan of one DNA row (N,); see `python/cotj/_core.pyi`.
    fn plan_row(py, dna: &Obj<'py>, lever: Option<&Lever> = None; request) {
        row_plan(py, plan_dna(py, false, dna, lever, &request)?)
    }

    /// The plans of every row of a DNA batch (B, N); see `python/cotj/_core.pyi`.
    fn plan_batch(py, dna: &Obj<'py>, lever: Option<&Lever> = None; request) {
        batch_plan(py, plan_dna(py, true, dna, lever, &request)?)
    }

    /// The plans on a dense cost, one row or one per plan; see `python/cotj/_core.pyi`.
    fn plan_dense(
        py,
        edges: &Obj<'py>,
        start: &Obj<'py>,
        end: &Obj<'py>,
        lever: Option<&Lever> = None,
        scale: Option<&Obj<'py>> = None;
        request
    ) {
        let cols = *array("edges", edges, [2, 3])?.shape().last().unwrap_or(&0);
        let n = lever.map_or(cols, Lever::n);
        let ends = request.ends(n)?;
        let [edges, start, end] = dense_cost([edges, start, end], n, true)?;
        let (m, s, e) = (edges.as_slice()?, start.as_slice()?, end.as_slice()?);
        let width = scale.map(|w| array("scale", w, [1, 2])).transpose()?;
        let plans = with_floats!("scale", scale, |scale| {
            let got = width.as_ref().map_or(n, |w| w.shape()[w.ndim() - 1]);
            check_row_levels("scale", n, got).map_err(plan_error)?;
            request.plan(py, true, |budget, current, stop| {
                let cost = DenseCost::new(n, m, s, e, scale)?;
                let planner = Planner::on(lever.map(|l| &l.0), "edges", n, ends)?;
                planner.plan_dense_batch(&cost, budget, current, stop)
            })
        })?;
        batch_plan(py, plans)
    }
}

/// The cost C of a plan (grid indices, strictly decreasing) for one DNA row.
#[pyfunction]
pub(crate) fn plan_cost(py: Python<'_>, dna: &Obj, steps: &Obj, lever: &Lever) -> PyResult<f64> {
    let dna = vector("dna", dna)?;
    let steps = args::steps(steps, lever.n())?;
    let (d, planner) = (dna.as_slice()?, lever.free_planner()?);
    py.detach(|| planner.plan_cost(d, &steps))
        .map_err(plan_error)
}

/// The cost of a plan (grid indices) on one dense cost; `inf` when it uses a missing edge.
#[pyfunction]
#[pyo3(signature = (edges, start, end, steps, *, scale=None))]
pub(crate) fn plan_cost_dense(
    py: Python<'_>,
    edges: &Obj,
    start: &Obj,
    end: &Obj,
    steps: &Obj,
    scale: Option<&Obj>,
) -> PyResult<f64> {
    let n = array("edges", edges, [2, 2])?.shape()[1];
    let [edges, start, end] = dense_cost([edges, start, end], n, false)?;
    let scale = scale.map(|w| dense("scale", w, [1, 1], n, LEVELS));
    let scale = scale.transpose()?;
    let steps = args::steps(steps, n)?;
    let (m, s, e) = (edges.as_slice()?, start.as_slice()?, end.as_slice()?);
    let w = scale.as_ref().map(|w| w.as_slice()).transpose()?;
    py.detach(|| DenseCost::new(n, m, s, e, w)?.plan_cost(0, &steps))
        .map_err(plan_error)
}

/// Dense edge costs (N, N) of one DNA row: `[j, i] = d_j L(j, i)` for `i < j`, inf elsewhere.
#[pyfunction]
pub(crate) fn cost_matrix<'py>(py: Python<'py>, dna: &Obj<'py>, lever: &Lever) -> Out<'py> {
    let dna = vector("dna", dna)?;
    let (d, planner) = (dna.as_slice()?, lever.free_planner()?);
    let m = py.detach(|| planner.cost_matrix(d)).map_err(plan_error)?;
    matrix(py, m, lever.n(), lever.n())
}

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
    check_pair_nodes(m).map_err(plan_error)?;
    let read = |name, obj, ndim| dense(name, obj, [ndim, ndim], m, NODES);
    let (first, pairs) = (read("first", first, 2)?, read("pairs", pairs, 3)?);
    let end = read("end", end, 1)?;
    let scale = scale.map(|w| dense("scale", w, [1, 2], m, NODES));
    let scale = scale.transpose()?;
    let budget = Ints::new("budget", budget, true, "")?;
    let current = Ints::new("current", current, true, "")?;
    let previous = previous.map(|p| Ints::new("previous", p, true, ""));
    let previous = previous.transpose()?;
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
