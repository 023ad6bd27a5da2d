//! Arguments in, read in the calls' bodies in a fixed order (PyO3 would extract typed parameters
//! before the body runs, changing which of two bad arguments is reported); errors name them.

use cotj_core::{CotjError, MAX_LEVELS};
use numpy::prelude::*;
use numpy::{PyArray1, PyArrayDyn, PyReadonlyArray1, PyReadonlyArrayDyn, PyUntypedArray};
use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString, PyTuple};

use crate::{plan_error, refuse, type_error};

/// An argument as Python gave it.
pub(crate) type Obj<'py> = Bound<'py, PyAny>;
/// A checked float64 array.
pub(crate) type F64s<'py> = PyReadonlyArrayDyn<'py, f64>;
type Untyped<'py> = Bound<'py, PyUntypedArray>;

/// The unit of [`dense`] for dense costs.
pub(crate) const LEVELS: (&str, &str) = ("N", "levels");
const ASCONTIGUOUS: &str = " (use numpy.ascontiguousarray)";

/// The `TypeError` of `name`, which is not `what`, naming the type of `obj`.
fn must_be(name: &str, what: &str, obj: &Obj) -> PyErr {
    let got = obj.get_type().name().map(|n| n.to_string());
    let got = got.unwrap_or_default();
    type_error(format!("{name} must be {what}, got {got}"))
}

/// `array` (the argument `name`) must be C-contiguous; `hint` ends the error.
fn contiguous(name: &str, array: &Untyped, hint: &str) -> PyResult<()> {
    match array.is_c_contiguous() {
        true => Ok(()),
        false => refuse(format!("{name} must be C-contiguous{hint}")),
    }
}

/// `obj` as a numpy array, not yet checked.
fn untyped<'py>(name: &str, obj: &Obj<'py>) -> PyResult<Untyped<'py>> {
    let wrong = |_| must_be(name, "a numpy array", obj);
    Ok(obj.cast::<PyUntypedArray>().map_err(wrong)?.clone())
}

/// `obj` as a C-contiguous numpy array of one of `ndims` dimensions.
pub(crate) fn array<'py>(name: &str, obj: &Obj<'py>, [a, b]: [usize; 2]) -> PyResult<Untyped<'py>> {
    let array = untyped(name, obj)?;
    let (ndim, shape) = (array.ndim(), array.shape());
    if ndim != a && ndim != b {
        let got = format!("{ndim}-D with shape {shape:?}");
        return refuse(format!("{name} must be {a}-D or {b}-D, got {got}"));
    }
    contiguous(name, &array, ASCONTIGUOUS)?;
    Ok(array)
}

/// A float64 array of `ndims` dimensions (a row or a batch of rows) whose rows hold `n` entries
/// per axis, `(symbol, what)` naming them: a dense cost ([`LEVELS`]) or the pair DP's costs.
pub(crate) fn dense<'py>(
    name: &str,
    obj: &Obj<'py>,
    ndims: [usize; 2],
    n: usize,
    (symbol, what): (&str, &str),
) -> PyResult<F64s<'py>> {
    let array = array(name, obj, ndims)?;
    let shape = array.shape();
    if shape[shape.len() - ndims[0]..].iter().any(|&d| d != n) {
        let want = format!("{symbol} = {n} {what} per axis of a row");
        return refuse(format!("{name} must have {want}, got shape {shape:?}"));
    }
    let dtype = array.dtype();
    let wrong = |_| type_error(format!("{name} must have dtype float64, got {dtype}"));
    Ok(obj.cast::<PyArrayDyn<f64>>().map_err(wrong)?.readonly())
}

/// A dense cost of `n` levels: `edges` (N, N), `start` and `end` (N,), in a batch also (B, ..).
pub(crate) fn dense_cost<'py>(
    [edges, start, end]: [&Obj<'py>; 3],
    n: usize,
    batch: bool,
) -> PyResult<[F64s<'py>; 3]> {
    let read = |name, obj, ndim| dense(name, obj, [ndim, ndim + batch as usize], n, LEVELS);
    let (edges, start) = (read("edges", edges, 2)?, read("start", start, 1)?);
    Ok([edges, start, read("end", end, 1)?])
}

/// A 1-D float64 array (a grid, a schedule, one DNA row).
pub(crate) fn vector<'py>(name: &str, obj: &Obj<'py>) -> PyResult<PyReadonlyArray1<'py, f64>> {
    let wrong = |_| type_error(format!("{name} must be a 1-D float64 numpy array"));
    let array = obj.cast::<PyArray1<f64>>().map_err(wrong)?;
    contiguous(name, array.as_untyped(), "")?;
    Ok(array.readonly())
}

/// The width N of `dna`, one row (N,) or a `batch` (B, N), checked but for its dtype
/// ([`with_floats`]).
pub(crate) fn dna_width(obj: &Obj, batch: bool) -> PyResult<usize> {
    let array = untyped("dna", obj)?;
    let (ndim, want) = match batch {
        false => (1, "1-D (N,); use cotj.plan_batch for a (B, N) batch"),
        true => (2, "2-D (B, N); use cotj.plan for one (N,) row"),
    };
    if array.ndim() != ndim {
        let shape = PyTuple::new(obj.py(), array.shape())?;
        return refuse(format!("dna must be {want}, got shape {shape}"));
    }
    contiguous("dna", &array, ASCONTIGUOUS)?;
    Ok(array.shape()[ndim - 1])
}

/// `$body` with `$values: Option<&[T]>` the values of `$obj`, an `Option<&Obj>` (the checked
/// array `$name`, float32 or float64; f64 when None): the one f32/f64 dispatch.
macro_rules! with_floats {
    ($name:expr, $obj:expr, |$values:ident| $body:expr) => {
        match $obj {
            None => {
                let $values: Option<&[f64]> = None;
                $body
            }
            Some(obj) => {
                if let Ok(a) = obj.cast::<numpy::PyArrayDyn<f64>>() {
                    let a = a.readonly();
                    let $values = Some(a.as_slice()?);
                    $body
                } else if let Ok(a) = obj.cast::<numpy::PyArrayDyn<f32>>() {
                    let a = a.readonly();
                    let $values = Some(a.as_slice()?);
                    $body
                } else {
                    let what = format!("{} must have dtype float32 or float64", $name);
                    let got = format!("{what}, got {}", obj.getattr("dtype")?);
                    return Err(crate::type_error(got));
                }
            }
        }
    };
}
pub(crate) use with_floats;

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
    /// `obj` as an int, or for a `batch` also a 1-D int64 array; `hint` ends the first clause of
    /// the type error of one row.
    pub(crate) fn new(name: &str, obj: &Obj<'py>, batch: bool, hint: &str) -> PyResult<Self> {
        if !batch {
            return Ok(Self::One([int(name, obj, hint)?]));
        } else if let Some(k) = int_value(name, obj)? {
            return Ok(Self::One([k]));
        } else if obj.is_instance_of::<PyBool>() {
            return Err(must_be(name, "an int or an int64 array", obj));
        }
        let what = "an int or a 1-D int64 array (one per row)";
        let wrong = |_| type_error(format!("{name} must be {what}"));
        let array = obj.cast::<PyArray1<i64>>().map_err(wrong)?;
        contiguous(name, array.as_untyped(), "")?;
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
    let value = (!obj.is_instance_of::<PyBool>()).then(|| obj.extract::<f64>().ok());
    value.flatten().ok_or_else(bad)
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
    if let Ok(word) = obj.cast::<PyString>() {
        match word.to_str()? {
            "any" => return Ok(n),
            w if w == pinned => return Ok(1),
            _ => {}
        }
    } else if let Some(value) = int_value(name, obj)? {
        let wrong = |_| plan_error(CotjError::Window { name, value, n });
        return usize::try_from(value).map_err(wrong);
    }
    let what = format!("'any', '{pinned}' or an int number of levels");
    refuse(format!("{name} must be {what}, got {}", obj.repr()?))
}

/// `steps` (1-D int64 grid indices) as indices of an `n`-level grid.
pub(crate) fn steps(steps: &Obj, n: usize) -> PyResult<Vec<usize>> {
    let wrong = |_| type_error("steps must be a 1-D int64 array of grid indices");
    let steps = steps.cast::<PyArray1<i64>>().map_err(wrong)?.readonly();
    let outside = |s| CotjError::Steps(format!("index {s} is outside the grid (0..{n})"));
    let index = |&s: &i64| usize::try_from(s).map_err(|_| plan_error(outside(s)));
    steps.as_array().iter().map(index).collect()
}
