//! `cotj._core`: the PyO3 binding of `cotj-core`. It only converts and validates: numpy arrays in
//! (dtype, ndim and contiguity checked), the GIL released around the planning (and re-taken now
//! and then to let Ctrl-C stop it), planning errors out as [`PlanError`] (a `ValueError`;
//! `MemoryError` when an allocation fails), wrong types as `TypeError`. One call per result
//! shape: `plan_row` (one plan), `plan_batch` and `plan_dense` (a padded batch). The ergonomic
//! layer is the Python package `cotj`.

use std::sync::{Arc, Mutex, OnceLock};

use cotj_core::{
    BatchPlans, Budget, CotjError, Current, DenseCost, Ends, LeverCache, Planner, Stop,
    DEFAULT_BUDGET, MAX_LEVELS,
};
use numpy::prelude::*;
use numpy::{PyArray1, PyArray2, PyArrayDyn, PyReadonlyArray1, PyReadonlyArrayDyn, PyUntypedArray};
use pyo3::create_exception;
use pyo3::exceptions::{
    PyKeyboardInterrupt, PyMemoryError, PyOverflowError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString};

create_exception!(
    cotj._core,
    PlanError,
    PyValueError,
    "A planning argument out of range or of the wrong shape, or no plan of the asked length \
     (a ValueError: code that catches ValueError keeps working)."
);

/// A core error as a Python exception, the one place where they are mapped: `MemoryError` for a
/// failed allocation, `KeyboardInterrupt` for an interruption, else [`PlanError`].
fn plan_error(e: CotjError) -> PyErr {
    match e {
        CotjError::OutOfMemory { .. } => PyMemoryError::new_err(e.to_string()),
        CotjError::Interrupted => PyKeyboardInterrupt::new_err(e.to_string()),
        _ => PlanError::new_err(e.to_string()),
    }
}

/// Runs `work` with the GIL released. Every `Stop::PERIOD` of long work on the main thread the
/// GIL is re-taken to run Python's signal handlers: the exception one raises (KeyboardInterrupt
/// on Ctrl-C) stops the work and is raised here. A signal that arrived before the first check
/// (while the input was converted, or a default grid built) is not lost: finding out whether
/// this is the main thread runs Python code, which may run the pending handler, and the
/// exception it raises stops the work too.
fn detach<T: Send>(
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

/// A grid of noise levels with its temporal lever (immutable, shareable across threads).
#[pyclass(frozen, module = "cotj._core")]
struct Lever(Arc<cotj_core::Lever>);

fn f64_vector<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArray1<'py, f64>> {
    let arr = obj
        .cast::<PyArray1<f64>>()
        .map_err(|_| PyTypeError::new_err(format!("{name} must be a 1-D float64 numpy array")))?;
    if !arr.is_c_contiguous() {
        return Err(PlanError::new_err(format!("{name} must be C-contiguous")));
    }
    Ok(arr.readonly())
}

#[pymethods]
impl Lever {
    /// Lever of the linear flow on `grid`, or of the Gaussian path `a(t) x0 + s(t) eps` when
    /// `a` and `s` (one value per level) are given.
    #[new]
    #[pyo3(signature = (grid, a=None, s=None))]
    fn new(
        py: Python<'_>,
        grid: &Bound<'_, PyAny>,
        a: Option<&Bound<'_, PyAny>>,
        s: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let grid = f64_vector("grid", grid)?;
        let grid = grid.as_slice()?;
        let lever = match (a, s) {
            (None, None) => py.detach(|| cotj_core::Lever::linear_flow(grid)),
            (Some(a), Some(s)) => {
                let (a, s) = (f64_vector("schedule a", a)?, f64_vector("schedule s", s)?);
                let (a, s) = (a.as_slice()?, s.as_slice()?);
                py.detach(|| cotj_core::Lever::gaussian(grid, a, s))
            }
            _ => return Err(PlanError::new_err("schedule needs both a and s")),
        };
        Ok(Self(Arc::new(lever.map_err(plan_error)?)))
    }

    /// The linear-flow lever on the default grid `t_i = (i+1)/n`, the recent ones cached
    /// (bounded). `name` is the argument `n` came from, for errors (`n` must lie in
    /// 2..=MAX_LEVELS).
    #[staticmethod]
    #[pyo3(signature = (n, name="n"))]
    fn default(py: Python<'_>, n: i64, name: &str) -> PyResult<Self> {
        let n = usize::try_from(n).unwrap_or(0);
        let lever = py
            .detach(|| DEFAULT_LEVERS.default_linear_flow(name, n))
            .map_err(plan_error)?;
        Ok(Self(lever))
    }

    /// Number of grid levels N.
    #[getter]
    fn n(&self) -> usize {
        self.0.n()
    }

    /// The grid levels, ascending. (N,)
    #[getter]
    fn levels<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        PyArray1::from_slice(py, self.0.levels())
    }

    /// The dense lever, (N, N): `[j, i] = L(j, i)` for `i < j`, 0 elsewhere.
    fn matrix<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let n = self.0.n();
        let m = py.detach(|| self.0.matrix()).map_err(plan_error)?;
        m.into_pyarray(py).reshape([n, n])
    }

    fn __repr__(&self) -> String {
        format!("Lever(n={})", self.0.n())
    }
}

/// How many levels may start (`first`, pinned word `"top"`) or end (`last`, `"bottom"`) a plan
/// on `n` levels: `"any"` (also None), the pinned word, or an int count (the planner checks it
/// against N).
fn window(
    name: &'static str,
    obj: Option<&Bound<'_, PyAny>>,
    pinned: &str,
    n: usize,
) -> PyResult<usize> {
    let Some(obj) = obj else { return Ok(n) };
    let word = obj.cast::<PyString>().ok();
    match word.as_ref().map(|w| w.to_str()).transpose()? {
        Some("any") => return Ok(n),
        Some(w) if w == pinned => return Ok(1),
        Some(_) => {}
        None => {
            if let Some(value) = int_value(name, obj)? {
                return usize::try_from(value)
                    .map_err(|_| plan_error(CotjError::Window { name, value, n }));
            }
        }
    }
    Err(PlanError::new_err(format!(
        "{name} must be 'any', '{pinned}' or an int number of levels, got {}",
        obj.repr()?
    )))
}

/// The start and end windows of a call on `n` levels.
fn ends(
    first: Option<&Bound<'_, PyAny>>,
    last: Option<&Bound<'_, PyAny>>,
    n: usize,
) -> PyResult<Ends> {
    Ok(Ends {
        first: window("first", first, "top", n)?,
        last: window("last", last, "bottom", n)?,
    })
}

/// The planner of a call: `lever`, else the linear-flow lever of the default grid of `n` levels
/// (`name`: the argument `n` comes from), with the windows `ends`. Run with the GIL released: a
/// default lever not cached yet is built here.
fn planner(lever: Option<&Lever>, name: &str, n: usize, ends: Ends) -> Result<Planner, CotjError> {
    let lever = match lever {
        Some(lever) => Arc::clone(&lever.0),
        None => DEFAULT_LEVERS.default_linear_flow(name, n)?,
    };
    Planner::new(lever, ends)
}

/// N of a call: the lever's, else the width `cols` of its rows (the default grid).
fn levels_of(lever: Option<&Lever>, cols: usize) -> usize {
    lever.map_or(cols, |l| l.0.n())
}

/// A per-level array (DNA or scale), 1-D (one row) or 2-D, float32 or float64, C-contiguous.
enum Levels<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
}

/// A shape as Python prints it: `(3, 20)`, `(20,)`.
fn shape_text(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `obj` as a numpy array (errors name `name`), not yet checked.
fn untyped<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyUntypedArray>> {
    Ok(obj
        .cast::<PyUntypedArray>()
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "{name} must be a numpy array, got {}",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?
        .clone())
}

/// `obj` as a C-contiguous numpy array whose dimensions are one of `ndims` (errors name `name`).
fn numpy_array<'py>(
    name: &str,
    obj: &Bound<'py, PyAny>,
    ndims: [usize; 2],
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let array = untyped(name, obj)?;
    let ndim = array.ndim();
    if !ndims.contains(&ndim) {
        let [a, b] = ndims;
        return Err(PlanError::new_err(format!(
            "{name} must be {a}-D or {b}-D, got {ndim}-D with shape {:?}",
            array.shape()
        )));
    }
    contiguous(name, array)
}

/// `array` if it is C-contiguous.
fn contiguous<'py>(
    name: &str,
    array: Bound<'py, PyUntypedArray>,
) -> PyResult<Bound<'py, PyUntypedArray>> {
    if !array.is_c_contiguous() {
        return Err(PlanError::new_err(format!(
            "{name} must be C-contiguous (use numpy.ascontiguousarray)"
        )));
    }
    Ok(array)
}

/// The values of a checked per-level array: float32 or float64.
fn levels_values<'py>(
    name: &str,
    obj: &Bound<'py, PyAny>,
    array: &Bound<'py, PyUntypedArray>,
) -> PyResult<Levels<'py>> {
    if let Ok(a) = obj.cast::<PyArrayDyn<f64>>() {
        Ok(Levels::F64(a.readonly()))
    } else if let Ok(a) = obj.cast::<PyArrayDyn<f32>>() {
        Ok(Levels::F32(a.readonly()))
    } else {
        Err(PyTypeError::new_err(format!(
            "{name} must have dtype float32 or float64, got {}",
            array.dtype()
        )))
    }
}

/// A per-level array (`scale`) of 1 or 2 dimensions: `(values, columns)`.
fn levels_array<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<(Levels<'py>, usize)> {
    let array = numpy_array(name, obj, [1, 2])?;
    let cols = array.shape()[array.ndim() - 1];
    Ok((levels_values(name, obj, &array)?, cols))
}

/// `dna` as one row (`ndim` 1) or a batch (`ndim` 2): `(values, columns)`.
fn dna_array<'py>(obj: &Bound<'py, PyAny>, ndim: usize) -> PyResult<(Levels<'py>, usize)> {
    let array = untyped("dna", obj)?;
    if array.ndim() != ndim {
        let want = if ndim == 1 {
            "1-D (N,); use cotj.plan_batch for a (B, N) batch"
        } else {
            "2-D (B, N); use cotj.plan for one (N,) row"
        };
        return Err(PlanError::new_err(format!(
            "dna must be {want}, got shape {}",
            shape_text(array.shape())
        )));
    }
    let array = contiguous("dna", array)?;
    let cols = array.shape()[ndim - 1];
    Ok((levels_values("dna", obj, &array)?, cols))
}

/// A float64 array `name` of `ndims` dimensions (one of two: a row or a batch of rows) whose row
/// holds `n` entries per axis, `unit` naming them: a dense cost (`"N", "levels"`: `cost`
/// (.., N, N), `start`/`end` (.., N)) or the pair DP's node costs (`"M", "entries (nodes)"`).
fn dense_array<'py>(
    name: &str,
    obj: &Bound<'py, PyAny>,
    ndims: [usize; 2],
    n: usize,
    unit: (&str, &str),
) -> PyResult<PyReadonlyArrayDyn<'py, f64>> {
    let untyped = numpy_array(name, obj, ndims)?;
    let shape = untyped.shape();
    let row = &shape[shape.len() - ndims[0]..];
    if row.iter().any(|&d| d != n) {
        let (symbol, what) = unit;
        return Err(PlanError::new_err(format!(
            "{name} must have {symbol} = {n} {what} per axis of a row, got shape {shape:?}"
        )));
    }
    let arr = obj.cast::<PyArrayDyn<f64>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must have dtype float64, got {}",
            untyped.dtype()
        ))
    })?;
    Ok(arr.readonly())
}

/// The unit of [`dense_array`] for dense costs.
const LEVELS: (&str, &str) = ("N", "levels");

/// The linear-flow levers of the default grids (`Lever.default`, and calls without a lever).
static DEFAULT_LEVERS: LeverCache = LeverCache::new();

/// `obj` as an int (a Python int or a numpy integer, not a bool) for `name`; None when it is
/// no int. An int beyond int64 is out of range for every argument.
fn int_value(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    if obj.is_instance_of::<PyBool>() {
        return Ok(None);
    }
    match obj.extract::<i64>() {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => Err(PlanError::new_err(format!(
            "{name} = {obj} is out of range (no grid has more than MAX_LEVELS = {MAX_LEVELS} levels)"
        ))),
        Err(_) => Ok(None),
    }
}

/// The type name of `obj`, for errors.
fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// An int argument of one plan (`budget`, `max_steps`, `current`).
fn int_only(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    int_value(name, obj)?.ok_or_else(|| {
        PyTypeError::new_err(format!("{name} must be an int, got {}", type_name(obj)))
    })
}

/// An int or a 1-D int64 array (one value per row) for `name` (`budget`, `current` of a batch).
fn int_or_array<'py>(
    name: &str,
    obj: &Bound<'py, PyAny>,
) -> PyResult<Result<i64, PyReadonlyArray1<'py, i64>>> {
    if let Some(k) = int_value(name, obj)? {
        return Ok(Ok(k));
    }
    if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an int or an int64 array, got bool"
        )));
    }
    let arr = obj.cast::<PyArray1<i64>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be an int or a 1-D int64 array (one per row)"
        ))
    })?;
    if !arr.is_c_contiguous() {
        return Err(PlanError::new_err(format!("{name} must be C-contiguous")));
    }
    Ok(Err(arr.readonly()))
}

/// `tau` as a float.
fn tau_arg(obj: &Bound<'_, PyAny>) -> PyResult<f64> {
    let bad = || {
        PyTypeError::new_err(format!(
            "tau must be a float in (0, 1], got {}",
            type_name(obj)
        ))
    };
    if obj.is_instance_of::<PyBool>() {
        return Err(bad());
    }
    obj.extract::<f64>().map_err(|_| bad())
}

/// The length and start arguments of a planning call, as Python gave them.
struct Request<'a, 'py> {
    budget: Option<&'a Bound<'py, PyAny>>,
    tau: Option<&'a Bound<'py, PyAny>>,
    max_steps: Option<&'a Bound<'py, PyAny>>,
    current: Option<&'a Bound<'py, PyAny>>,
}

impl Request<'_, '_> {
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
            (None, Some(tau)) => Ok(Some((
                tau_arg(tau)?,
                self.max_steps
                    .map(|k| int_only("max_steps", k))
                    .transpose()?,
            ))),
        }
    }

    /// Runs `plan` on one plan's budget and start level (ints only), with the GIL released
    /// (see `detach`).
    fn plan_one<T: Send>(
        &self,
        py: Python<'_>,
        plan: impl Send + FnOnce(Budget<'_>, Current<'_>, &Stop) -> Result<T, CotjError>,
    ) -> PyResult<T> {
        let budget = match self.adaptive()? {
            Some((tau, max_steps)) => Budget::Adaptive { tau, max_steps },
            None => match self.budget {
                None => Budget::Fixed(DEFAULT_BUDGET),
                Some(k) => Budget::Fixed(int_value("budget", k)?.ok_or_else(|| {
                    PyTypeError::new_err(format!(
                        "budget must be an int for one row, got {}",
                        type_name(k)
                    ))
                })?),
            },
        };
        let current = match self.current {
            None => Current::Free,
            Some(c) => Current::All(int_only("current", c)?),
        };
        detach(py, |stop| plan(budget, current, stop))
    }

    /// Runs `plan` on the budgets and start levels of a batch (ints or one per row), with the
    /// GIL released (see `detach`).
    fn plan_many<T: Send>(
        &self,
        py: Python<'_>,
        plan: impl Send + FnOnce(Budget<'_>, Current<'_>, &Stop) -> Result<T, CotjError>,
    ) -> PyResult<T> {
        let per_row;
        let budget = match (self.adaptive()?, self.budget) {
            (Some((tau, max_steps)), _) => Budget::Adaptive { tau, max_steps },
            (None, None) => Budget::Fixed(DEFAULT_BUDGET),
            (None, Some(b)) => match int_or_array("budget", b)? {
                Ok(k) => Budget::Fixed(k),
                Err(arr) => {
                    per_row = arr;
                    Budget::PerRow(per_row.as_slice()?)
                }
            },
        };
        let per_row_current;
        let current = match self
            .current
            .map(|c| int_or_array("current", c))
            .transpose()?
        {
            None => Current::Free,
            Some(Ok(c)) => Current::All(c),
            Some(Err(arr)) => {
                per_row_current = arr;
                Current::PerRow(per_row_current.as_slice()?)
            }
        };
        detach(py, |stop| plan(budget, current, stop))
    }
}

/// One plan: `(steps (K,) int64, levels (K,) float64, cost, curve, ratio)`, the curves
/// `(max_steps,)` float64 for adaptive runs, else None.
type RowPlan<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f64>>,
    f64,
    Option<Bound<'py, PyArray1<f64>>>,
    Option<Bound<'py, PyArray1<f64>>>,
);

/// Plans of a batch: `(steps (B, W) int64 padded with -1, levels (B, W) float64 padded with
/// NaN, lengths (B,) int64, cost (B,) float64, curve, ratio)`, the curves `(B, max_steps)`
/// float64 for adaptive runs, else None.
type BatchPlan<'py> = (
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray2<f64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f64>>,
    Option<Bound<'py, PyArray2<f64>>>,
    Option<Bound<'py, PyArray2<f64>>>,
);

/// Plans one DNA row `dna` (N,) float32/float64 on `lever` (default: the linear flow on the
/// default grid of N levels). At most one of `budget` (int, default `DEFAULT_BUDGET`) and `tau`
/// is given; `max_steps` goes with `tau`; `first` and `last` are `"any"` (None), `"top"` /
/// `"bottom"` or an int; `current` (int) pins the plan's first level.
#[pyfunction]
#[pyo3(signature = (dna, lever=None, budget=None, tau=None, max_steps=None, first=None, last=None, current=None))]
#[allow(clippy::too_many_arguments)]
fn plan_row<'py>(
    py: Python<'py>,
    dna: &Bound<'py, PyAny>,
    lever: Option<&Lever>,
    budget: Option<&Bound<'py, PyAny>>,
    tau: Option<&Bound<'py, PyAny>>,
    max_steps: Option<&Bound<'py, PyAny>>,
    first: Option<&Bound<'py, PyAny>>,
    last: Option<&Bound<'py, PyAny>>,
    current: Option<&Bound<'py, PyAny>>,
) -> PyResult<RowPlan<'py>> {
    let (dna, cols) = dna_array(dna, 1)?;
    let ends = ends(first, last, levels_of(lever, cols))?;
    let request = Request {
        budget,
        tau,
        max_steps,
        current,
    };
    let plans = match &dna {
        Levels::F64(a) => {
            let s = a.as_slice()?;
            request.plan_one(py, |b, c, stop| {
                planner(lever, "dna", cols, ends)?.plan_batch(s, cols, b, c, stop)
            })
        }
        Levels::F32(a) => {
            let s = a.as_slice()?;
            request.plan_one(py, |b, c, stop| {
                planner(lever, "dna", cols, ends)?.plan_batch(s, cols, b, c, stop)
            })
        }
    }?;
    Ok(row_plan(py, plans))
}

/// Plans every row of `dna` (B, N) float32/float64. Arguments as in `plan_row`, but `budget`
/// and `current` may also be (B,) int64 arrays, one value per row.
#[pyfunction]
#[pyo3(signature = (dna, lever=None, budget=None, tau=None, max_steps=None, first=None, last=None, current=None))]
#[allow(clippy::too_many_arguments)]
fn plan_batch<'py>(
    py: Python<'py>,
    dna: &Bound<'py, PyAny>,
    lever: Option<&Lever>,
    budget: Option<&Bound<'py, PyAny>>,
    tau: Option<&Bound<'py, PyAny>>,
    max_steps: Option<&Bound<'py, PyAny>>,
    first: Option<&Bound<'py, PyAny>>,
    last: Option<&Bound<'py, PyAny>>,
    current: Option<&Bound<'py, PyAny>>,
) -> PyResult<BatchPlan<'py>> {
    let (dna, cols) = dna_array(dna, 2)?;
    let ends = ends(first, last, levels_of(lever, cols))?;
    let request = Request {
        budget,
        tau,
        max_steps,
        current,
    };
    let plans = match &dna {
        Levels::F64(a) => {
            let s = a.as_slice()?;
            request.plan_many(py, |b, c, stop| {
                planner(lever, "dna", cols, ends)?.plan_batch(s, cols, b, c, stop)
            })
        }
        Levels::F32(a) => {
            let s = a.as_slice()?;
            request.plan_many(py, |b, c, stop| {
                planner(lever, "dna", cols, ends)?.plan_batch(s, cols, b, c, stop)
            })
        }
    }?;
    batch_plan(py, plans)
}

/// Plans on a dense cost: `cost` (N, N) or (B, N, N) float64, `start` and `end` (N,) or (B, N)
/// float64, `scale` (N,) or (B, N) float32/float64 or None (all ones); N is the lever's (default:
/// the cost's, on the default grid). One row, shared by the batch, or one per plan; B is the
/// largest row count. Length, windows and `current` as in `plan_batch`.
#[pyfunction]
#[pyo3(signature = (cost, start, end, lever=None, scale=None, budget=None, tau=None, max_steps=None, first=None, last=None, current=None))]
#[allow(clippy::too_many_arguments)]
fn plan_dense<'py>(
    py: Python<'py>,
    cost: &Bound<'py, PyAny>,
    start: &Bound<'py, PyAny>,
    end: &Bound<'py, PyAny>,
    lever: Option<&Lever>,
    scale: Option<&Bound<'py, PyAny>>,
    budget: Option<&Bound<'py, PyAny>>,
    tau: Option<&Bound<'py, PyAny>>,
    max_steps: Option<&Bound<'py, PyAny>>,
    first: Option<&Bound<'py, PyAny>>,
    last: Option<&Bound<'py, PyAny>>,
    current: Option<&Bound<'py, PyAny>>,
) -> PyResult<BatchPlan<'py>> {
    let cols = *numpy_array("cost", cost, [2, 3])?
        .shape()
        .last()
        .unwrap_or(&0);
    let n = levels_of(lever, cols);
    let ends = ends(first, last, n)?;
    let cost = dense_array("cost", cost, [2, 3], n, LEVELS)?;
    let start = dense_array("start", start, [1, 2], n, LEVELS)?;
    let end = dense_array("end", end, [1, 2], n, LEVELS)?;
    let (m, s, e) = (cost.as_slice()?, start.as_slice()?, end.as_slice()?);
    let scale = scale.map(|w| scale_array(w, n)).transpose()?;
    let request = Request {
        budget,
        tau,
        max_steps,
        current,
    };
    let plans = match &scale {
        None => request.plan_many(py, |b, c, stop| {
            planner(lever, "cost", n, ends)?.plan_dense_batch(
                &DenseCost::<f64>::new(n, m, s, e, None)?,
                b,
                c,
                stop,
            )
        }),
        Some(Levels::F64(w)) => {
            let w = w.as_slice()?;
            request.plan_many(py, |b, c, stop| {
                planner(lever, "cost", n, ends)?.plan_dense_batch(
                    &DenseCost::new(n, m, s, e, Some(w))?,
                    b,
                    c,
                    stop,
                )
            })
        }
        Some(Levels::F32(w)) => {
            let w = w.as_slice()?;
            request.plan_many(py, |b, c, stop| {
                planner(lever, "cost", n, ends)?.plan_dense_batch(
                    &DenseCost::new(n, m, s, e, Some(w))?,
                    b,
                    c,
                    stop,
                )
            })
        }
    }?;
    batch_plan(py, plans)
}

/// `scale` as a per-level array of `n` levels per row.
fn scale_array<'py>(obj: &Bound<'py, PyAny>, n: usize) -> PyResult<Levels<'py>> {
    let (w, cols) = levels_array("scale", obj)?;
    if cols != n {
        return Err(plan_error(CotjError::Levels {
            name: "scale",
            expected: n,
            got: cols,
        }));
    }
    Ok(w)
}

/// The plan of a one-row batch (its arrays copied: for a few values that is cheaper than
/// handing the vectors over).
fn row_plan(py: Python<'_>, p: BatchPlans) -> RowPlan<'_> {
    let curve = |v: &[f64]| (!v.is_empty()).then(|| PyArray1::from_slice(py, v));
    (
        PyArray1::from_slice(py, &p.steps),
        PyArray1::from_slice(py, &p.levels),
        p.cost[0],
        curve(&p.curve),
        curve(&p.ratio),
    )
}

/// The plans of a batch, as (B, ..) arrays.
fn batch_plan(py: Python<'_>, p: BatchPlans) -> PyResult<BatchPlan<'_>> {
    let (rows, width) = (p.rows, p.width);
    let curve = |v: Vec<f64>| -> PyResult<_> {
        if v.is_empty() {
            return Ok(None);
        }
        let w = v.len() / rows;
        Ok(Some(v.into_pyarray(py).reshape([rows, w])?))
    };
    Ok((
        p.steps.into_pyarray(py).reshape([rows, width])?,
        p.levels.into_pyarray(py).reshape([rows, width])?,
        p.lengths.into_pyarray(py),
        p.cost.into_pyarray(py),
        curve(p.curve)?,
        curve(p.ratio)?,
    ))
}

fn dna_row<'py>(obj: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArray1<'py, f64>> {
    f64_vector("dna", obj)
}

/// `steps` (1-D int64 grid indices) as indices of an `n`-level grid.
fn steps_arg(steps: &Bound<'_, PyAny>, n: usize) -> PyResult<Vec<usize>> {
    let steps = steps
        .cast::<PyArray1<i64>>()
        .map_err(|_| PyTypeError::new_err("steps must be a 1-D int64 array of grid indices"))?
        .readonly();
    steps
        .as_array()
        .iter()
        .map(|&s| {
            usize::try_from(s).map_err(|_| {
                plan_error(CotjError::Steps(format!(
                    "index {s} is outside the grid (0..{n})"
                )))
            })
        })
        .collect()
}

/// The cost C of a plan given as grid indices (int64, strictly decreasing) for one DNA row.
#[pyfunction]
fn plan_cost(
    py: Python<'_>,
    dna: &Bound<'_, PyAny>,
    steps: &Bound<'_, PyAny>,
    lever: &Lever,
) -> PyResult<f64> {
    let dna = dna_row(dna)?;
    let steps = steps_arg(steps, lever.0.n())?;
    let d = dna.as_slice()?;
    let planner =
        Planner::new(Arc::clone(&lever.0), Ends::free(lever.0.n())).map_err(plan_error)?;
    py.detach(|| planner.plan_cost(d, &steps))
        .map_err(plan_error)
}

/// The cost of a plan (grid indices) on one dense cost: `cost` (N, N), `start`, `end` and
/// `scale` (N,) float64 (`scale` None: all ones). `inf` when the plan uses a missing edge.
#[pyfunction]
#[pyo3(signature = (cost, start, end, steps, *, scale=None))]
fn plan_cost_dense(
    py: Python<'_>,
    cost: &Bound<'_, PyAny>,
    start: &Bound<'_, PyAny>,
    end: &Bound<'_, PyAny>,
    steps: &Bound<'_, PyAny>,
    scale: Option<&Bound<'_, PyAny>>,
) -> PyResult<f64> {
    let n = numpy_array("cost", cost, [2, 2])?.shape()[1];
    let cost = dense_array("cost", cost, [2, 2], n, LEVELS)?;
    let start = dense_array("start", start, [1, 1], n, LEVELS)?;
    let end = dense_array("end", end, [1, 1], n, LEVELS)?;
    let scale = scale
        .map(|w| dense_array("scale", w, [1, 1], n, LEVELS))
        .transpose()?;
    let steps = steps_arg(steps, n)?;
    let (m, s, e) = (cost.as_slice()?, start.as_slice()?, end.as_slice()?);
    let w = scale.as_ref().map(|w| w.as_slice()).transpose()?;
    py.detach(|| DenseCost::new(n, m, s, e, w)?.plan_cost(0, &steps))
        .map_err(plan_error)
}

/// Dense edge costs (N, N) of one DNA row: `[j, i] = d_j L(j, i)` for `i < j`, inf elsewhere.
#[pyfunction]
fn cost_matrix<'py>(
    py: Python<'py>,
    dna: &Bound<'py, PyAny>,
    lever: &Lever,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let dna = dna_row(dna)?;
    let d = dna.as_slice()?;
    let planner =
        Planner::new(Arc::clone(&lever.0), Ends::free(lever.0.n())).map_err(plan_error)?;
    let n = lever.0.n();
    let m = py.detach(|| planner.cost_matrix(d)).map_err(plan_error)?;
    m.into_pyarray(py).reshape([n, n])
}

/// Checks that `n` levels (of the argument `name`) lie in 2..=MAX_LEVELS.
#[pyfunction]
fn check_levels(name: &str, n: usize) -> PyResult<()> {
    cotj_core::check_levels(name, n).map_err(plan_error)
}

/// `(levers kept, their bytes)` of the `Lever.default` cache, and its bounds
/// `(max levers, max bytes)`: to check that memory stays bounded.
#[pyfunction]
#[pyo3(name = "_lever_cache")]
fn lever_cache() -> ((usize, usize), (usize, usize)) {
    (
        DEFAULT_LEVERS.usage(),
        (LeverCache::MAX_ENTRIES, LeverCache::MAX_BYTES),
    )
}

mod pairs;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Lever>()?;
    m.add("PlanError", m.py().get_type::<PlanError>())?;
    m.add_function(wrap_pyfunction!(plan_row, m)?)?;
    m.add_function(wrap_pyfunction!(plan_batch, m)?)?;
    m.add_function(wrap_pyfunction!(plan_dense, m)?)?;
    m.add_function(wrap_pyfunction!(plan_cost, m)?)?;
    m.add_function(wrap_pyfunction!(plan_cost_dense, m)?)?;
    m.add_function(wrap_pyfunction!(cost_matrix, m)?)?;
    m.add_function(wrap_pyfunction!(check_levels, m)?)?;
    m.add_function(wrap_pyfunction!(lever_cache, m)?)?;
    pairs::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_LEVELS", MAX_LEVELS)?;
    m.add("DEFAULT_BUDGET", DEFAULT_BUDGET)?;
    m.add("KERNEL", cotj_core::kernel())?;
    Ok(())
}
