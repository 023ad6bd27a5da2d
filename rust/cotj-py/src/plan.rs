//! The planning calls: `plan_row` (one plan) and `plan_batch` (a padded batch) on DNA rows,
//! `plan_dense` on a dense cost, and the cost of a given plan. Arguments are read with the GIL
//! held, then the work runs with it released (see [`detach`]).

use std::sync::{Mutex, OnceLock};

use cotj_core::{BatchPlans, Budget, CotjError, Current, DenseCost, Ends, Stop, DEFAULT_BUDGET};
use numpy::prelude::*;
use pyo3::prelude::*;

use crate::args::{
    self, array, dense, dense_cost, int, tau, vector, window, Floats, Ints, Rows, Values, LEVELS,
};
use crate::convert::{batch_plan, matrix, row_plan, Array2, BatchPlan, RowPlan};
use crate::error::{plan_error, PlanError};
use crate::lever::{levels_of, planner, Lever};

/// Runs `work` with the GIL released. Every `Stop::PERIOD` of long work on the main thread the
/// GIL is re-taken to run Python's signal handlers: the exception one raises (KeyboardInterrupt
/// on Ctrl-C) stops the work and is raised here. A signal that arrived before the first check
/// (while the input was converted, or a default grid built) is not lost: finding out whether
/// this is the main thread runs Python code, which may run the pending handler, and the
/// exception it raises stops the work too.
pub(crate) fn detach<T: Send>(
    py: Python<'_>,
    work: impl Send + FnOnce(&Stop) -> Result<T, CotjError>,
) -> PyResult<T> {
    let raised = Mutex::new(None);
    let main_thread = OnceLock::new();
    let check = || {
        Python::attach(|py| {
            let keep = |err: PyErr| {
                *raised.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
                true
            };
            // Python runs signal handlers on its main thread only: elsewhere there is nothing to do.
            let main = match main_thread.get() {
                Some(&main) => main,
                None => match is_main_thread(py) {
                    Ok(main) => *main_thread.get_or_init(|| main),
                    Err(err) => return keep(err),
                },
            };
            if !main {
                return false;
            }
            py.check_signals().err().is_some_and(keep)
        })
    };
    match py.detach(|| work(&Stop::new(&check))) {
        Err(CotjError::Interrupted) => Err(raised
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or_else(|| plan_error(CotjError::Interrupted))),
        out => out.map_err(plan_error),
    }
}

/// Whether this is Python's main thread (where signal handlers run). It calls into `threading`,
/// so a pending signal's handler may run here: its exception is returned, not dropped.
fn is_main_thread(py: Python<'_>) -> PyResult<bool> {
    let threading = py.import("threading")?;
    let main = threading.call_method0("main_thread")?;
    Ok(main.is(&threading.call_method0("current_thread")?))
}

/// The arguments every planning call ends with, as Python gave them: the length (`budget`, or
/// `tau` with `max_steps`), the windows `first` and `last`, the start level `current`.
struct Request<'a, 'py> {
    budget: Option<&'a Bound<'py, PyAny>>,
    tau: Option<&'a Bound<'py, PyAny>>,
    max_steps: Option<&'a Bound<'py, PyAny>>,
    first: Option<&'a Bound<'py, PyAny>>,
    last: Option<&'a Bound<'py, PyAny>>,
    current: Option<&'a Bound<'py, PyAny>>,
}

impl Request<'_, '_> {
    /// The start and end windows of a call on `n` levels.
    fn ends(&self, n: usize) -> PyResult<Ends> {
        Ok(Ends {
            first: window("first", self.first, "top", n)?,
            last: window("last", self.last, "bottom", n)?,
        })
    }

    /// The adaptive length, if `tau` is given: `(tau, max_steps)`.
    fn adaptive(&self) -> PyResult<Option<(f64, Option<i64>)>> {
        match (self.budget, self.tau) {
            (Some(_), Some(_)) => Err(PlanError::new_err(
                "give either budget (fixed length) or tau (adaptive length), not both",
            )),
            (_, None) if self.max_steps.is_some() => Err(PlanError::new_err(
                "max_steps goes with tau (adaptive length); give budget alone for a fixed length",
            )),
            (_, None) => Ok(None),
            (None, Some(t)) => Ok(Some((
                tau(t)?,
                self.max_steps
                    .map(|k| int("max_steps", k, ""))
                    .transpose()?,
            ))),
        }
    }

    /// Runs `plan` on the budgets and start levels of `rows` (ints, or for a batch also one per
    /// row), with the GIL released (see [`detach`]).
    fn plan(
        &self,
        py: Python<'_>,
        rows: Rows,
        plan: impl Send + FnOnce(Budget<'_>, Current<'_>, &Stop) -> Result<BatchPlans, CotjError>,
    ) -> PyResult<BatchPlans> {
        let adaptive = self.adaptive()?;
        let ints = |name, obj, hint| match rows {
            Rows::One => int(name, obj, hint).map(|v| Ints::One([v])),
            Rows::Many => Ints::new(name, obj),
        };
        // Given with `tau`, `budget` is refused by `adaptive`.
        let budget = self
            .budget
            .map(|b| ints("budget", b, " for one row"))
            .transpose()?;
        let current = self.current.map(|c| ints("current", c, "")).transpose()?;
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

/// `$plan` with `$values` bound to the values of `$floats` (a [`Values`]) as `Option<&[T]>`, `T`
/// their float type (f64 when there are none): the one f32/f64 dispatch.
macro_rules! with_values {
    ($floats:expr, |$values:ident| $plan:expr) => {
        match $floats {
            Values::None => {
                let $values: Option<&[f64]> = None;
                $plan
            }
            Values::F32(v) => {
                let $values = Some(v);
                $plan
            }
            Values::F64(v) => {
                let $values = Some(v);
                $plan
            }
        }
    };
}

/// Defines a planning call `$name`: its own arguments `$arg` (with their Python defaults), then
/// those every planning call ends with, `budget`, `tau`, `max_steps`, `first`, `last` and
/// `current` (None by default), gathered as the [`Request`] `$request`.
macro_rules! planning_call {
    (
        $(#[$attr:meta])*
        fn $name:ident($py:ident, $($arg:ident: $ty:ty $(= $default:tt)?),+; $request:ident)
            -> $out:ty $body:block
    ) => {
        $(#[$attr])*
        #[pyfunction]
        #[pyo3(signature = (
            $($arg $(= $default)?,)+
            budget=None, tau=None, max_steps=None, first=None, last=None, current=None
        ))]
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name<'py>(
            $py: Python<'py>,
            $($arg: $ty,)+
            budget: Option<&Bound<'py, PyAny>>,
            tau: Option<&Bound<'py, PyAny>>,
            max_steps: Option<&Bound<'py, PyAny>>,
            first: Option<&Bound<'py, PyAny>>,
            last: Option<&Bound<'py, PyAny>>,
            current: Option<&Bound<'py, PyAny>>,
        ) -> PyResult<$out> {
            let $request = Request { budget, tau, max_steps, first, last, current };
            $body
        }
    };
}

/// The plans of `dna`, one row or a batch (`plan_row`, `plan_batch`).
fn plan_dna(
    py: Python<'_>,
    rows: Rows,
    dna: &Bound<'_, PyAny>,
    lever: Option<&Lever>,
    request: &Request,
) -> PyResult<BatchPlans> {
    let (dna, cols) = Floats::dna(dna, rows)?;
    let ends = request.ends(levels_of(lever, cols))?;
    let values = Floats::values(Some(&dna))?;
    request.plan(py, rows, |budget, current, stop| {
        let planner = planner(lever, "dna", cols, ends)?;
        with_values!(values, |dna| {
            planner.plan_batch(dna.unwrap_or_default(), cols, budget, current, stop)
        })
    })
}

planning_call! {
    /// Plans one DNA row `dna` (N,) float32/float64 on `lever` (default: the linear flow on the
    /// default grid of N levels). At most one of `budget` (int, default `DEFAULT_BUDGET`) and `tau`
    /// is given; `max_steps` goes with `tau`; `first` and `last` are `"any"` (None), `"top"` /
    /// `"bottom"` or an int; `current` (int) pins the plan's first level.
    fn plan_row(py, dna: &Bound<'py, PyAny>, lever: Option<&Lever> = None; request)
        -> RowPlan<'py>
    {
        Ok(row_plan(py, plan_dna(py, Rows::One, dna, lever, &request)?))
    }
}

planning_call! {
    /// Plans every row of `dna` (B, N) float32/float64. Arguments as in `plan_row`, but `budget`
    /// and `current` may also be (B,) int64 arrays, one value per row.
    fn plan_batch(py, dna: &Bound<'py, PyAny>, lever: Option<&Lever> = None; request)
        -> BatchPlan<'py>
    {
        batch_plan(py, plan_dna(py, Rows::Many, dna, lever, &request)?)
    }
}

planning_call! {
    /// Plans on a dense cost: `edges` (N, N) or (B, N, N) float64, `start` and `end` (N,) or (B, N)
    /// float64, `scale` (N,) or (B, N) float32/float64 or None (all ones); N is the lever's (default:
    /// the edges', on the default grid). One row, shared by the batch, or one per plan; B is the
    /// largest row count. Length, windows and `current` as in `plan_batch`.
    fn plan_dense(
        py,
        edges: &Bound<'py, PyAny>,
        start: &Bound<'py, PyAny>,
        end: &Bound<'py, PyAny>,
        lever: Option<&Lever> = None,
        scale: Option<&Bound<'py, PyAny>> = None;
        request
    ) -> BatchPlan<'py> {
        let cols = *array("edges", edges, [2, 3])?.shape().last().unwrap_or(&0);
        let n = levels_of(lever, cols);
        let ends = request.ends(n)?;
        let [edges, start, end] = dense_cost(edges, start, end, n, Rows::Many)?;
        let (m, s, e) = (edges.as_slice()?, start.as_slice()?, end.as_slice()?);
        let scale = scale.map(|w| Floats::scale(w, n)).transpose()?;
        let values = Floats::values(scale.as_ref())?;
        let plans = request.plan(py, Rows::Many, |budget, current, stop| {
            let planner = planner(lever, "edges", n, ends)?;
            with_values!(values, |scale| {
                let dense = DenseCost::new(n, m, s, e, scale)?;
                planner.plan_dense_batch(&dense, budget, current, stop)
            })
        })?;
        batch_plan(py, plans)
    }
}

/// The cost C of a plan given as grid indices (int64, strictly decreasing) for one DNA row.
#[pyfunction]
pub(crate) fn plan_cost(
    py: Python<'_>,
    dna: &Bound<'_, PyAny>,
    steps: &Bound<'_, PyAny>,
    lever: &Lever,
) -> PyResult<f64> {
    let dna = vector("dna", dna)?;
    let steps = args::steps(steps, lever.n())?;
    let (d, planner) = (dna.as_slice()?, lever.free_planner()?);
    py.detach(|| planner.plan_cost(d, &steps))
        .map_err(plan_error)
}

/// The cost of a plan (grid indices) on one dense cost: `edges` (N, N), `start`, `end` and
/// `scale` (N,) float64 (`scale` None: all ones). `inf` when the plan uses a missing edge.
#[pyfunction]
#[pyo3(signature = (edges, start, end, steps, *, scale=None))]
pub(crate) fn plan_cost_dense(
    py: Python<'_>,
    edges: &Bound<'_, PyAny>,
    start: &Bound<'_, PyAny>,
    end: &Bound<'_, PyAny>,
    steps: &Bound<'_, PyAny>,
    scale: Option<&Bound<'_, PyAny>>,
) -> PyResult<f64> {
    let n = array("edges", edges, [2, 2])?.shape()[1];
    let [edges, start, end] = dense_cost(edges, start, end, n, Rows::One)?;
    let scale = scale
        .map(|w| dense("scale", w, [1, 1], n, LEVELS))
        .transpose()?;
    let steps = args::steps(steps, n)?;
    let (m, s, e) = (edges.as_slice()?, start.as_slice()?, end.as_slice()?);
    let w = scale.as_ref().map(|w| w.as_slice()).transpose()?;
    py.detach(|| DenseCost::new(n, m, s, e, w)?.plan_cost(0, &steps))
        .map_err(plan_error)
}

/// Dense edge costs (N, N) of one DNA row: `[j, i] = d_j L(j, i)` for `i < j`, inf elsewhere.
#[pyfunction]
pub(crate) fn cost_matrix<'py>(
    py: Python<'py>,
    dna: &Bound<'py, PyAny>,
    lever: &Lever,
) -> PyResult<Array2<'py, f64>> {
    let dna = vector("dna", dna)?;
    let (d, planner) = (dna.as_slice()?, lever.free_planner()?);
    let m = py.detach(|| planner.cost_matrix(d)).map_err(plan_error)?;
    matrix(py, m, lever.n(), lever.n())
}
