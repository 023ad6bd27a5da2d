//! Arguments in, read in the calls' bodies in a fixed order (PyO3 would extract typed parameters
//! before the body runs, changing which of two bad arguments is reported); errors name them.

use cotj_core::{CotjError, MAX_LEVELS};
use numpy::prelude::*;
use numpy::{PyArray1, PyArrayDyn, PyReadonlyArray1, PyReadonlyArrayDyn, PyUntypedArray};
use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString};

use crate::error::{plan_error, refuse, type_error};

/// An argument as Python gave it.
pub(crate) type Obj<'py> = Bound<'py, PyAny>;
/// A checked float64 array.
pub(crate) type F64s<'py> = PyReadonlyArrayDyn<'py, f64>;

/// One plan ((N,) DNA, int lengths) or a batch ((B, N), lengths also one per row).
#[derive(Clone, Copy)]
pub(crate) enum Rows {
    One,
    Many,
}

/// The unit of [`dense`] for dense costs.
pub(crate) const LEVELS: (&str, &str) = ("N", "levels");
const ASCONTIGUOUS: &str = " (use numpy.ascontiguousarray)";

/// The `TypeError` of `name`, which is not `what`, naming the type of `obj`.
fn must_be(name: &str, what: &str, obj: &Obj) -> PyErr {
    let got = obj.get_type().name().map(|n| n.to_string());
    type_error(format!(
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

/// `array` (the argument `name`) must be C-contiguous; `hint` ends the error.
fn contiguous<'py>(
    name: &str,
    array: &impl PyUntypedArrayMethods<'py>,
    hint: &str,
) -> PyResult<()> {
    match array.is_c_contiguous() {
        true => Ok(()),
        false => refuse(format!("{name} must be C-contiguous{hint}")),
    }
}

/// `obj` as a numpy array, not yet checked.
fn untyped<'py>(name: &str, obj: &Obj<'py>) -> PyResult<Bound<'py, PyUntypedArray>> {
    let array = obj
        .cast::<PyUntypedArray>()
        .map_err(|_| must_be(name, "a numpy array", obj))?;
    Ok(array.clone())
}

/// `obj` as a C-contiguous numpy array of one of `ndims` dimensions.
pub(crate) fn array<'py>(
    name: &str,
    obj: &Obj<'py>,
    ndims: [usize; 2],
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let (array, [a, b]) = (untyped(name, obj)?, ndims);
    if !ndims.contains(&array.ndim()) {
        let (ndim, shape) = (array.ndim(), array.shape());
        return refuse(format!(
            "{name} must be {a}-D or {b}-D, got {ndim}-D with shape {shape:?}"
        ));
    }
    contiguous(name, &array, ASCONTIGUOUS)?;
    Ok(array)
}

/// A float64 array of `ndims` dimensions (a row or a batch of rows) whose rows hold `n` entries
/// per axis, `unit` naming them: a dense cost ([`LEVELS`]) or the pair DP's costs.
pub(crate) fn dense<'py>(
    name: &str,
    obj: &Obj<'py>,
    ndims: [usize; 2],
    n: usize,
    unit: (&str, &str),
) -> PyResult<F64s<'py>> {
    let (untyped, (symbol, what)) = (array(name, obj, ndims)?, unit);
    let shape = untyped.shape();
    if shape[shape.len() - ndims[0]..].iter().any(|&d| d != n) {
        return refuse(format!(
            "{name} must have {symbol} = {n} {what} per axis of a row, got shape {shape:?}"
        ));
    }
    let dtype = untyped.dtype();
    let wrong = |_| type_error(format!("{name} must have dtype float64, got {dtype}"));
    Ok(obj.cast::<PyArrayDyn<f64>>().map_err(wrong)?.readonly())
}

/// A dense cost of `n` levels: `edges` (N, N), `start` and `end` (N,), for a batch also (B, ..).
pub(crate) fn dense_cost<'py>(
    edges: &Obj<'py>,
    start: &Obj<'py>,
    end: &Obj<'py>,
    n: usize,
    rows: Rows,
) -> PyResult<[F64s<'py>; 3]> {
    let b = matches!(rows, Rows::Many) as usize;
    let edges = dense("edges", edges, [2, 2 + b], n, LEVELS)?;
    Ok([
        edges,
        dense("start", start, [1, 1 + b], n, LEVELS)?,
        dense("end", end, [1, 1 + b], n, LEVELS)?,
    ])
}

/// A 1-D float64 array (a grid, a schedule, one DNA row).
pub(crate) fn vector<'py>(name: &str, obj: &Obj<'py>) -> PyResult<PyReadonlyArray1<'py, f64>> {
    let wrong = |_| type_error(format!("{name} must be a 1-D float64 numpy array"));
    let array = obj.cast::<PyArray1<f64>>().map_err(wrong)?;
    contiguous(name, array, "")?;
    Ok(array.readonly())
}

/// A per-level array (DNA or scale), (N,) or (B, N), float32 or float64, C-contiguous.
pub(crate) enum Floats<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(F64s<'py>),
}

impl<'py> Floats<'py> {
    /// `dna` as one row (N,) or a batch (B, N): `(values, N)`.
    pub(crate) fn dna(obj: &Obj<'py>, rows: Rows) -> PyResult<(Self, usize)> {
        let array = untyped("dna", obj)?;
        let (ndim, want) = match rows {
            Rows::One => (1, "1-D (N,); use cotj.plan_batch for a (B, N) batch"),
            Rows::Many => (2, "2-D (B, N); use cotj.plan for one (N,) row"),
        };
        if array.ndim() != ndim {
            return refuse(format!(
                "dna must be {want}, got shape {}",
                shape_text(array.shape())
            ));
        }
        contiguous("dna", &array, ASCONTIGUOUS)?;
        Self::typed("dna", obj, &array)
    }

    /// `scale` as (N,) or (B, N) of `n` levels per row.
    pub(crate) fn scale(obj: &Obj<'py>, n: usize) -> PyResult<Self> {
        let (scale, got) = Self::typed("scale", obj, &array("scale", obj, [1, 2])?)?;
        match got == n {
            true => Ok(scale),
            false => Err(plan_error(CotjError::Levels {
                name: "scale",
                expected: n,
                got,
            })),
        }
    }

    /// The values of `obj`, the checked array `name`: `(values, columns)`.
    fn typed(
        name: &str,
        obj: &Obj<'py>,
        array: &Bound<'py, PyUntypedArray>,
    ) -> PyResult<(Self, usize)> {
        let values = if let Ok(a) = obj.cast::<PyArrayDyn<f64>>() {
            Self::F64(a.readonly())
        } else if let Ok(a) = obj.cast::<PyArrayDyn<f32>>() {
            Self::F32(a.readonly())
        } else {
            return Err(type_error(format!(
                "{name} must have dtype float32 or float64, got {}",
                array.dtype()
            )));
        };
        Ok((values, array.shape()[array.ndim() - 1]))
    }
}

/// `obj` as an int (Python or numpy, not a bool), None when it is none; beyond int64 it is out of
/// range for every argument.
fn int_value(name: &str, obj: &Obj) -> PyResult<Option<i64>> {
    match obj.extract::<i64>() {
        _ if obj.is_instance_of::<PyBool>() => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => refuse(format!(
            "{name} = {obj} is out of range (no grid has more than MAX_LEVELS = {MAX_LEVELS} levels)"
        )),
        Err(_) => Ok(None),
    }
}

/// An int argument of one plan; `hint` ends the first clause of its type error.
pub(crate) fn int(name: &str, obj: &Obj, hint: &str) -> PyResult<i64> {
    int_value(name, obj)?.ok_or_else(|| must_be(name, &format!("an int{hint}"), obj))
}

/// A per-row int argument: one int for every row, or a 1-D int64 array, one per row.
pub(crate) enum Ints<'py> {
    One([i64; 1]),
    Many(PyReadonlyArray1<'py, i64>),
}

impl<'py> Ints<'py> {
    /// `obj` as an int or a 1-D int64 array.
    pub(crate) fn new(name: &str, obj: &Obj<'py>) -> PyResult<Self> {
        if let Some(k) = int_value(name, obj)? {
            return Ok(Self::One([k]));
        } else if obj.is_instance_of::<PyBool>() {
            let what = "an int or an int64 array";
            return Err(type_error(format!("{name} must be {what}, got bool")));
        }
        let what = "an int or a 1-D int64 array (one per row)";
        let wrong = |_| type_error(format!("{name} must be {what}"));
        let array = obj.cast::<PyArray1<i64>>().map_err(wrong)?;
        contiguous(name, array, "")?;
        Ok(Self::Many(array.readonly()))
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
pub(crate) fn tau(obj: &Obj) -> PyResult<f64> {
    let bad = || must_be("tau", "a float in (0, 1]", obj);
    match obj.is_instance_of::<PyBool>() {
        true => Err(bad()),
        false => obj.extract::<f64>().map_err(|_| bad()),
    }
}

/// How many levels of `n` may start (`first`, pinned word `"top"`) or end (`last`, `"bottom"`) a
/// plan: `"any"` (also None), the pinned word, or an int (checked by the planner).
pub(crate) fn window(
    name: &'static str,
    obj: Option<&Obj>,
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
    refuse(format!(
        "{name} must be 'any', '{pinned}' or an int number of levels, got {}",
        obj.repr()?
    ))
}

/// `steps` (1-D int64 grid indices) as indices of an `n`-level grid.
pub(crate) fn steps(steps: &Obj, n: usize) -> PyResult<Vec<usize>> {
    let wrong = |_| type_error("steps must be a 1-D int64 array of grid indices");
    let steps = steps.cast::<PyArray1<i64>>().map_err(wrong)?.readonly();
    let outside = |s| CotjError::Steps(format!("index {s} is outside the grid (0..{n})"));
    let index = |&s: &i64| usize::try_from(s).map_err(|_| plan_error(outside(s)));
    steps.as_array().iter().map(index).collect()
}
