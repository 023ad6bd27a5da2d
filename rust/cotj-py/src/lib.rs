//! `cotj._core`: the PyO3 binding of `cotj-core`. It only converts and validates: numpy arrays in
//! (dtype, ndim and contiguity checked), the GIL released around the planning (and re-taken now
//! and then to let Ctrl-C stop it), core errors out as `ValueError` (`MemoryError` when an
//! allocation fails), wrong types as `TypeError`. The ergonomic layer is the Python package `cotj`.

use std::sync::{Arc, Mutex, OnceLock};

use cotj_core::{
    BatchPlans, Budget, CotjError, Current, DenseCost, Ends, LeverCache, Planner, Stop, MAX_LEVELS,
};
use numpy::prelude::*;
use numpy::{PyArray1, PyArray2, PyArrayDyn, PyReadonlyArray1, PyReadonlyArrayDyn, PyUntypedArray};
use pyo3::exceptions::{PyKeyboardInterrupt, PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyTuple};

/// A core error as a Python exception: `MemoryError` for a failed allocation, else `ValueError`.
fn value_error(e: CotjError) -> PyErr {
    match e {
        CotjError::OutOfMemory { .. } => PyMemoryError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// Runs `work` with the GIL released. Every `Stop::PERIOD` of long work on the main thread the
/// GIL is re-taken to run Python's signal handlers: the exception one raises (KeyboardInterrupt
/// on Ctrl-C) stops the work and is raised here.
fn detach<T: Send>(
    py: Python<'_>,
    work: impl Send + FnOnce(&Stop) -> Result<T, CotjError>,
) -> PyResult<T> {
    let raised = Mutex::new(None);
    let main_thread = OnceLock::new();
    let check = || {
        Python::attach(|py| {
            // Python runs signal handlers on its main thread only: elsewhere there is nothing to do.
            if !*main_thread.get_or_init(|| is_main_thread(py)) {
                return false;
            }
            let err = py.check_signals().err();
            let stop = err.is_some();
            *raised.lock().unwrap_or_else(|p| p.into_inner()) = err;
            stop
        })
    };
    match py.detach(|| work(&Stop::new(&check))) {
        Err(CotjError::Interrupted) => Err(raised
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or_else(|| PyKeyboardInterrupt::new_err("planning was interrupted"))),
        out => out.map_err(value_error),
    }
}

fn is_main_thread(py: Python<'_>) -> bool {
    let threading = || -> PyResult<bool> {
        let threading = py.import("threading")?;
        let main = threading.call_method0("main_thread")?;
        Ok(main.is(&threading.call_method0("current_thread")?))
    };
    threading().unwrap_or(true)
}

/// A grid of noise levels with its temporal lever (immutable, shareable across threads).
#[pyclass(frozen, module = "cotj._core")]
struct Lever(Arc<cotj_core::Lever>);

fn f64_vector<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArray1<'py, f64>> {
    let arr = obj
        .cast::<PyArray1<f64>>()
        .map_err(|_| PyTypeError::new_err(format!("{name} must be a 1-D float64 numpy array")))?;
    if !arr.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{name} must be C-contiguous"
        )));
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
            _ => return Err(PyValueError::new_err("schedule needs both a and s")),
        };
        Ok(Self(Arc::new(lever.map_err(value_error)?)))
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
            .map_err(value_error)?;
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
        let m = py.detach(|| self.0.matrix()).map_err(value_error)?;
        m.into_pyarray(py).reshape([n, n])
    }

    fn __repr__(&self) -> String {
        format!("Lever(n={})", self.0.n())
    }
}

fn planner(lever: &Lever, first: i64, last: i64) -> PyResult<Planner> {
    let n = lever.0.n();
    let window = |name: &'static str, value: i64| -> PyResult<usize> {
        usize::try_from(value).map_err(|_| value_error(CotjError::Window { name, value, n }))
    };
    let ends = Ends {
        first: window("first", first)?,
        last: window("last", last)?,
    };
    Planner::new(Arc::clone(&lever.0), ends).map_err(value_error)
}

/// A per-level array (DNA or scale), 1-D (one row) or 2-D, float32 or float64, C-contiguous.
enum Levels<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
}

/// `obj` as a C-contiguous numpy array whose dimensions are one of `ndims` (errors name `name`).
fn numpy_array<'py>(
    name: &str,
    obj: &Bound<'py, PyAny>,
    ndims: [usize; 2],
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let untyped = obj.cast::<PyUntypedArray>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be a numpy array, got {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    let ndim = untyped.ndim();
    if !ndims.contains(&ndim) {
        let [a, b] = ndims;
        return Err(PyValueError::new_err(format!(
            "{name} must be {a}-D or {b}-D, got {ndim}-D with shape {:?}",
            untyped.shape()
        )));
    }
    if !untyped.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{name} must be C-contiguous (use numpy.ascontiguousarray)"
        )));
    }
    Ok(untyped.clone())
}

/// A per-level array: `(values, columns, one row?)`.
fn levels_array<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<(Levels<'py>, usize, bool)> {
    let untyped = numpy_array(name, obj, [1, 2])?;
    let ndim = untyped.ndim();
    let cols = untyped.shape()[ndim - 1];
    let values = if let Ok(a) = obj.cast::<PyArrayDyn<f64>>() {
        Levels::F64(a.readonly())
    } else if let Ok(a) = obj.cast::<PyArrayDyn<f32>>() {
        Levels::F32(a.readonly())
    } else {
        return Err(PyTypeError::new_err(format!(
            "{name} must have dtype float32 or float64, got {}",
            untyped.dtype()
        )));
    };
    Ok((values, cols, ndim == 1))
}

/// A float64 dense-cost array with `n` levels per row: `cost` (.., N, N), `start`/`end` (.., N).
fn dense_array<'py>(
    name: &str,
    obj: &Bound<'py, PyAny>,
    ndims: [usize; 2],
    n: usize,
) -> PyResult<PyReadonlyArrayDyn<'py, f64>> {
    let untyped = numpy_array(name, obj, ndims)?;
    let shape = untyped.shape();
    let row = &shape[shape.len() - ndims[0]..];
    if row.iter().any(|&d| d != n) {
        return Err(PyValueError::new_err(format!(
            "{name} must have N = {n} levels per axis of a row, got shape {shape:?}"
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

/// The linear-flow levers of the default grids (`Lever.default`).
static DEFAULT_LEVERS: LeverCache = LeverCache::new();

/// A Python int for `name`; an int beyond int64 is out of range for every argument.
fn int_arg(name: &str, obj: &Bound<'_, PyInt>) -> PyResult<i64> {
    obj.extract::<i64>().map_err(|_| {
        PyValueError::new_err(format!(
            "{name} = {obj} is out of range (no grid has more than MAX_LEVELS = {MAX_LEVELS} levels)"
        ))
    })
}

/// An int or a 1-D int64 array (one value per row) for `name` (`budget`, `current`).
fn int_or_array<'py>(
    name: &str,
    obj: &Bound<'py, PyAny>,
) -> PyResult<Result<i64, PyReadonlyArray1<'py, i64>>> {
    if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an int or an int64 array, got bool"
        )));
    }
    if let Ok(int) = obj.cast::<PyInt>() {
        return int_arg(name, int).map(Ok);
    }
    if let Ok(k) = obj.extract::<i64>() {
        return Ok(Ok(k));
    }
    let arr = obj.cast::<PyArray1<i64>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be an int or a 1-D int64 array (one per row)"
        ))
    })?;
    if !arr.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{name} must be C-contiguous"
        )));
    }
    Ok(Err(arr.readonly()))
}

/// Runs `plan` with the budget (`budget`, or `tau` with `max_steps`) and start levels
/// (`current`) read from Python, with the GIL released (see `detach`).
fn plan_with<'py>(
    py: Python<'py>,
    budget: Option<&Bound<'py, PyAny>>,
    tau: Option<f64>,
    max_steps: Option<&Bound<'py, PyInt>>,
    current: Option<&Bound<'py, PyAny>>,
    plan: impl Send + FnOnce(Budget<'_>, Current<'_>, &Stop) -> Result<BatchPlans, CotjError>,
) -> PyResult<BatchPlans> {
    let per_row;
    let budget = match (budget, tau) {
        (Some(b), None) => match int_or_array("budget", b)? {
            Ok(k) => Budget::Fixed(k),
            Err(arr) => {
                per_row = arr;
                Budget::PerRow(per_row.as_slice()?)
            }
        },
        (None, Some(tau)) => Budget::Adaptive {
            tau,
            max_steps: max_steps.map(|k| int_arg("max_steps", k)).transpose()?,
        },
        (Some(_), Some(_)) => {
            return Err(PyValueError::new_err("give either budget or tau, not both"))
        }
        (None, None) => {
            return Err(PyValueError::new_err(
                "give budget (fixed length) or tau (adaptive length)",
            ))
        }
    };
    let per_row_current;
    let current = match current.map(|c| int_or_array("current", c)).transpose()? {
        None => Current::Free,
        Some(Ok(c)) => Current::All(c),
        Some(Err(arr)) => {
            per_row_current = arr;
            Current::PerRow(per_row_current.as_slice()?)
        }
    };
    detach(py, |stop| plan(budget, current, stop))
}

/// Plans every row of `dna`. Exactly one of `budget` (int or (B,) int64) and `tau` is given;
/// `max_steps` goes with `tau`; `current` (int or (B,) int64) pins each plan's first level.
/// Returns `(steps, levels, lengths, cost, curve, ratio)`: (B, W) int64 padded with -1, (B, W)
/// float64 padded with NaN, (B,) int64, (B,) float64, and for adaptive runs (B, max_steps)
/// float64 twice, else None. A 1-D `dna` is one row and gives
/// `(steps (K,), levels (K,), K, cost, curve (max_steps,) | None, ratio | None)`.
#[pyfunction]
#[pyo3(signature = (dna, lever, *, budget=None, tau=None, max_steps=None, first, last, current=None))]
#[allow(clippy::too_many_arguments)]
fn plan_batch<'py>(
    py: Python<'py>,
    dna: &Bound<'py, PyAny>,
    lever: &Lever,
    budget: Option<&Bound<'py, PyAny>>,
    tau: Option<f64>,
    max_steps: Option<&Bound<'py, PyInt>>,
    first: i64,
    last: i64,
    current: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let planner = planner(lever, first, last)?;
    let (dna, cols, one_row) = levels_array("dna", dna)?;
    let plans = match &dna {
        Levels::F64(a) => {
            let s = a.as_slice()?;
            plan_with(py, budget, tau, max_steps, current, |b, c, stop| {
                planner.plan_batch(s, cols, b, c, stop)
            })
        }
        Levels::F32(a) => {
            let s = a.as_slice()?;
            plan_with(py, budget, tau, max_steps, current, |b, c, stop| {
                planner.plan_batch(s, cols, b, c, stop)
            })
        }
    }?;
    if one_row {
        row_tuple(py, plans)
    } else {
        batch_tuple(py, plans)
    }
}

/// Plans on a dense cost: `cost` (N, N) or (B, N, N) float64, `start` and `end` (N,) or (B, N)
/// float64, `scale` (N,) or (B, N) float32/float64 or None (all ones); N is the lever's. One
/// row, shared by the batch, or one per plan; B is the largest row count. Budget, windows and
/// `current` as in `plan_batch`. Returns the batch tuple of `plan_batch`.
#[pyfunction]
#[pyo3(signature = (cost, start, end, lever, *, scale=None, budget=None, tau=None, max_steps=None, first, last, current=None))]
#[allow(clippy::too_many_arguments)]
fn plan_dense<'py>(
    py: Python<'py>,
    cost: &Bound<'py, PyAny>,
    start: &Bound<'py, PyAny>,
    end: &Bound<'py, PyAny>,
    lever: &Lever,
    scale: Option<&Bound<'py, PyAny>>,
    budget: Option<&Bound<'py, PyAny>>,
    tau: Option<f64>,
    max_steps: Option<&Bound<'py, PyInt>>,
    first: i64,
    last: i64,
    current: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let planner = planner(lever, first, last)?;
    let n = planner.n();
    let cost = dense_array("cost", cost, [2, 3], n)?;
    let start = dense_array("start", start, [1, 2], n)?;
    let end = dense_array("end", end, [1, 2], n)?;
    let (m, s, e) = (cost.as_slice()?, start.as_slice()?, end.as_slice()?);
    let scale = scale.map(|w| scale_array(w, n)).transpose()?;
    let plans = match &scale {
        None => plan_with(py, budget, tau, max_steps, current, |b, c, stop| {
            planner.plan_dense_batch(&DenseCost::<f64>::new(n, m, s, e, None)?, b, c, stop)
        }),
        Some(Levels::F64(w)) => {
            let w = w.as_slice()?;
            plan_with(py, budget, tau, max_steps, current, |b, c, stop| {
                planner.plan_dense_batch(&DenseCost::new(n, m, s, e, Some(w))?, b, c, stop)
            })
        }
        Some(Levels::F32(w)) => {
            let w = w.as_slice()?;
            plan_with(py, budget, tau, max_steps, current, |b, c, stop| {
                planner.plan_dense_batch(&DenseCost::new(n, m, s, e, Some(w))?, b, c, stop)
            })
        }
    }?;
    batch_tuple(py, plans)
}

/// `scale` as a per-level array of `n` levels per row.
fn scale_array<'py>(obj: &Bound<'py, PyAny>, n: usize) -> PyResult<Levels<'py>> {
    let (w, cols, _) = levels_array("scale", obj)?;
    if cols != n {
        return Err(value_error(CotjError::Levels {
            name: "scale",
            expected: n,
            got: cols,
        }));
    }
    Ok(w)
}

/// The plan of a 1-D DNA: `(steps (K,), levels (K,), K, cost, curve, ratio)`.
fn row_tuple(py: Python<'_>, p: BatchPlans) -> PyResult<Bound<'_, PyTuple>> {
    let opt = |v: Vec<f64>| {
        if v.is_empty() {
            py.None()
        } else {
            v.into_pyarray(py).into_any().unbind()
        }
    };
    PyTuple::new(
        py,
        [
            p.steps.into_pyarray(py).into_any().unbind(),
            p.levels.into_pyarray(py).into_any().unbind(),
            p.lengths[0].into_pyobject(py)?.into_any().unbind(),
            p.cost[0].into_pyobject(py)?.into_any().unbind(),
            opt(p.curve),
            opt(p.ratio),
        ],
    )
}

fn batch_tuple(py: Python<'_>, p: BatchPlans) -> PyResult<Bound<'_, PyTuple>> {
    let (rows, width) = (p.rows, p.width);
    let steps = p.steps.into_pyarray(py).reshape([rows, width])?;
    let levels = p.levels.into_pyarray(py).reshape([rows, width])?;
    let lengths = p.lengths.into_pyarray(py);
    let cost = p.cost.into_pyarray(py);
    let (curve, ratio) = if p.curve.is_empty() {
        (py.None(), py.None())
    } else {
        let w = p.curve.len() / rows;
        (
            p.curve
                .into_pyarray(py)
                .reshape([rows, w])?
                .into_any()
                .unbind(),
            p.ratio
                .into_pyarray(py)
                .reshape([rows, w])?
                .into_any()
                .unbind(),
        )
    };
    PyTuple::new(
        py,
        [
            steps.into_any().unbind(),
            levels.into_any().unbind(),
            lengths.into_any().unbind(),
            cost.into_any().unbind(),
            curve,
            ratio,
        ],
    )
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
                value_error(CotjError::Steps(format!(
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
        Planner::new(Arc::clone(&lever.0), Ends::free(lever.0.n())).map_err(value_error)?;
    py.detach(|| planner.plan_cost(d, &steps))
        .map_err(value_error)
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
    let cost = dense_array("cost", cost, [2, 2], n)?;
    let start = dense_array("start", start, [1, 1], n)?;
    let end = dense_array("end", end, [1, 1], n)?;
    let scale = scale
        .map(|w| dense_array("scale", w, [1, 1], n))
        .transpose()?;
    let steps = steps_arg(steps, n)?;
    let (m, s, e) = (cost.as_slice()?, start.as_slice()?, end.as_slice()?);
    let w = scale.as_ref().map(|w| w.as_slice()).transpose()?;
    py.detach(|| DenseCost::new(n, m, s, e, w)?.plan_cost(0, &steps))
        .map_err(value_error)
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
        Planner::new(Arc::clone(&lever.0), Ends::free(lever.0.n())).map_err(value_error)?;
    let n = lever.0.n();
    let m = py.detach(|| planner.cost_matrix(d)).map_err(value_error)?;
    m.into_pyarray(py).reshape([n, n])
}

/// Checks that `n` levels (of the argument `name`) lie in 2..=MAX_LEVELS.
#[pyfunction]
fn check_levels(name: &str, n: usize) -> PyResult<()> {
    cotj_core::check_levels(name, n).map_err(value_error)
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

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Lever>()?;
    m.add_function(wrap_pyfunction!(plan_batch, m)?)?;
    m.add_function(wrap_pyfunction!(plan_dense, m)?)?;
    m.add_function(wrap_pyfunction!(plan_cost, m)?)?;
    m.add_function(wrap_pyfunction!(plan_cost_dense, m)?)?;
    m.add_function(wrap_pyfunction!(cost_matrix, m)?)?;
    m.add_function(wrap_pyfunction!(check_levels, m)?)?;
    m.add_function(wrap_pyfunction!(lever_cache, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_LEVELS", MAX_LEVELS)?;
    m.add("KERNEL", cotj_core::kernel())?;
    Ok(())
}
