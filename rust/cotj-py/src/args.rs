//! The arguments of the calls, converted and checked with the GIL held: numpy arrays (dtype,
//! dimensions, C order), ints or int64 arrays, `tau`, the windows `first` and `last`, grid
//! indices. Every error names its argument. The calls read their arguments in their body, in a
//! fixed order, rather than through `FromPyObject` parameters: PyO3 extracts those before the
//! body runs, which would change which of two bad arguments is reported.

use cotj_core::{CotjError, MAX_LEVELS};
use numpy::prelude::*;
use numpy::{PyArray1, PyArrayDyn, PyReadonlyArray1, PyReadonlyArrayDyn, PyUntypedArray};
use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString};

use crate::error::{plan_error, PlanError};

/// What a call plans: one plan (a (N,) DNA row, int lengths) or a batch (a (B, N) DNA batch,
/// lengths also one per row).
#[derive(Clone, Copy)]
pub(crate) enum Rows {
    One,
    Many,
}

/// The unit of [`dense`] for dense costs.
pub(crate) const LEVELS: (&str, &str) = ("N", "levels");

/// The `TypeError` of an argument `name` that is not `what`, naming the type it is.
fn must_be(name: &str, what: &str, obj: &Bound<'_, PyAny>) -> PyErr {
    let got = obj.get_type().name().map(|n| n.to_string());
    PyTypeError::new_err(format!(
        "{name} must be {what}, got {}",
        got.unwrap_or_default()
    ))
}

/// A shape as Python prints it: `(3, 20)`, `(20,)`.
fn shape_text(shape: &[usize]) -> String {
    let dims: Vec<_> = shape.iter().map(usize::to_string).collect();
    let comma = if dims.len() == 1 { "," } else { "" };
    format!("({}{comma})", dims.join(", "))
}

/// How to make an array C-contiguous, for errors.
const ASCONTIGUOUS: &str = " (use numpy.ascontiguousarray)";

/// The one contiguity check: `array` (the argument `name`) must be C-contiguous; `hint` ends
/// the error.
fn contiguous<'py>(
    name: &str,
    array: &impl PyUntypedArrayMethods<'py>,
    hint: &str,
) -> PyResult<()> {
    if array.is_c_contiguous() {
        return Ok(());
    }
    Err(PlanError::new_err(format!(
        "{name} must be C-contiguous{hint}"
    )))
}

/// `obj` as a numpy array (errors name `name`), not yet checked.
fn untyped<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyUntypedArray>> {
    let array = obj.cast::<PyUntypedArray>();
    Ok(array
        .map_err(|_| must_be(name, "a numpy array", obj))?
        .clone())
}

/// `obj` as a C-contiguous numpy array whose dimensions are one of `ndims` (errors name `name`).
pub(crate) fn array<'py>(
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
    contiguous(name, &array, ASCONTIGUOUS)?;
    Ok(array)
}

/// A float64 array `name` of `ndims` dimensions (one of two: a row or a batch of rows) whose row
/// holds `n` entries per axis, `unit` naming them: a dense cost (`LEVELS`: `edges` (.., N, N),
/// `start`/`end` (.., N)) or the pair DP's node costs (`"M", "entries (nodes)"`).
pub(crate) fn dense<'py>(
    name: &str,
    obj: &Bound<'py, PyAny>,
    ndims: [usize; 2],
    n: usize,
    unit: (&str, &str),
) -> PyResult<PyReadonlyArrayDyn<'py, f64>> {
    let untyped = array(name, obj, ndims)?;
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

/// A dense cost of `n` levels: `edges` (N, N), `start` and `end` (N,) float64, for a batch
/// (`Rows::Many`) also one per row, (B, N, N) and (B, N).
pub(crate) fn dense_cost<'py>(
    edges: &Bound<'py, PyAny>,
    start: &Bound<'py, PyAny>,
    end: &Bound<'py, PyAny>,
    n: usize,
    rows: Rows,
) -> PyResult<[PyReadonlyArrayDyn<'py, f64>; 3]> {
    let b = usize::from(matches!(rows, Rows::Many));
    Ok([
        dense("edges", edges, [2, 2 + b], n, LEVELS)?,
        dense("start", start, [1, 1 + b], n, LEVELS)?,
        dense("end", end, [1, 1 + b], n, LEVELS)?,
    ])
}

/// A 1-D float64 array `name` (a grid, a schedule, one DNA row).
pub(crate) fn vector<'py>(
    name: &str,
    obj: &Bound<'py, PyAny>,
) -> PyResult<PyReadonlyArray1<'py, f64>> {
    let arr = obj
        .cast::<PyArray1<f64>>()
        .map_err(|_| PyTypeError::new_err(format!("{name} must be a 1-D float64 numpy array")))?;
    contiguous(name, arr, "")?;
    Ok(arr.readonly())
}

/// A per-level array (DNA or scale), 1-D (one row) or 2-D, float32 or float64, C-contiguous.
pub(crate) enum Floats<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
}

/// The values of a [`Floats`] (or of none): sendable to work without the GIL.
#[derive(Clone, Copy)]
pub(crate) enum Values<'a> {
    None,
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl<'py> Floats<'py> {
    /// `dna` as one row (N,) or a batch (B, N): `(values, N)`.
    pub(crate) fn dna(obj: &Bound<'py, PyAny>, rows: Rows) -> PyResult<(Self, usize)> {
        let array = untyped("dna", obj)?;
        let (ndim, want) = match rows {
            Rows::One => (1, "1-D (N,); use cotj.plan_batch for a (B, N) batch"),
            Rows::Many => (2, "2-D (B, N); use cotj.plan for one (N,) row"),
        };
        if array.ndim() != ndim {
            return Err(PlanError::new_err(format!(
                "dna must be {want}, got shape {}",
                shape_text(array.shape())
            )));
        }
        contiguous("dna", &array, ASCONTIGUOUS)?;
        Self::typed("dna", obj, &array)
    }

    /// `scale` as a per-level array (N,) or (B, N) of `n` levels per row.
    pub(crate) fn scale(obj: &Bound<'py, PyAny>, n: usize) -> PyResult<Self> {
        let (scale, cols) = Self::typed("scale", obj, &array("scale", obj, [1, 2])?)?;
        if cols != n {
            return Err(plan_error(CotjError::Levels {
                name: "scale",
                expected: n,
                got: cols,
            }));
        }
        Ok(scale)
    }

    /// The values of `obj`, a checked array `name` (float32 or float64): `(values, columns)`.
    fn typed(
        name: &str,
        obj: &Bound<'py, PyAny>,
        array: &Bound<'py, PyUntypedArray>,
    ) -> PyResult<(Self, usize)> {
        let values = if let Ok(a) = obj.cast::<PyArrayDyn<f64>>() {
            Self::F64(a.readonly())
        } else if let Ok(a) = obj.cast::<PyArrayDyn<f32>>() {
            Self::F32(a.readonly())
        } else {
            return Err(PyTypeError::new_err(format!(
                "{name} must have dtype float32 or float64, got {}",
                array.dtype()
            )));
        };
        Ok((values, array.shape()[array.ndim() - 1]))
    }

    /// The values of `floats`, [`Values::None`] for none.
    pub(crate) fn values<'a>(floats: Option<&'a Self>) -> PyResult<Values<'a>> {
        Ok(match floats {
            None => Values::None,
            Some(Self::F32(a)) => Values::F32(a.as_slice()?),
            Some(Self::F64(a)) => Values::F64(a.as_slice()?),
        })
    }
}

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

/// An int argument of one plan (`budget`, `max_steps`, `current`); `hint` ends the first clause
/// of its type error.
pub(crate) fn int(name: &str, obj: &Bound<'_, PyAny>, hint: &str) -> PyResult<i64> {
    int_value(name, obj)?.ok_or_else(|| must_be(name, &format!("an int{hint}"), obj))
}

/// A per-row int argument: one int for every row, or one value per row.
pub(crate) enum Ints<'py> {
    One([i64; 1]),
    Many(PyReadonlyArray1<'py, i64>),
}

impl<'py> Ints<'py> {
    /// `obj` as an int or a 1-D int64 array (one value per row) for `name` (`budget`, `current`,
    /// `previous` of a batch).
    pub(crate) fn new(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Some(k) = int_value(name, obj)? {
            return Ok(Self::One([k]));
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
        contiguous(name, arr, "")?;
        Ok(Self::Many(arr.readonly()))
    }

    /// The values: one, or one per row.
    pub(crate) fn values(&self) -> PyResult<&[i64]> {
        match self {
            Self::One(v) => Ok(v),
            Self::Many(a) => Ok(a.as_slice()?),
        }
    }
}

/// `tau` as a float.
pub(crate) fn tau(obj: &Bound<'_, PyAny>) -> PyResult<f64> {
    let bad = || must_be("tau", "a float in (0, 1]", obj);
    if obj.is_instance_of::<PyBool>() {
        return Err(bad());
    }
    obj.extract::<f64>().map_err(|_| bad())
}

/// How many levels may start (`first`, pinned word `"top"`) or end (`last`, `"bottom"`) a plan
/// on `n` levels: `"any"` (also None), the pinned word, or an int count (the planner checks it
/// against N).
pub(crate) fn window(
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

/// `steps` (1-D int64 grid indices) as indices of an `n`-level grid.
pub(crate) fn steps(steps: &Bound<'_, PyAny>, n: usize) -> PyResult<Vec<usize>> {
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
