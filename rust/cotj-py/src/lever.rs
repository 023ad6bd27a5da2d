//! `Lever`, a grid with its temporal lever, and the bounded cache of the default grids' levers.

use std::sync::Arc;

use cotj_core::{Ends, LeverCache, Planner};
use numpy::PyArray1;
use pyo3::prelude::*;

use crate::args::{vector, Obj};
use crate::convert::{matrix, Out};
use crate::{plan_error, refuse};

/// A grid of noise levels with its temporal lever (immutable, thread-safe).
#[pyclass(frozen, module = "cotj._core")]
pub(crate) struct Lever(pub(crate) Arc<cotj_core::Lever>);

#[pymethods]
impl Lever {
    /// Linear-flow lever on `grid` (N,), or the Gaussian-path lever with `a`, `s` (N,).
    #[new]
    #[pyo3(signature = (grid, a=None, s=None))]
    fn new(py: Python<'_>, grid: &Obj, a: Option<&Obj>, s: Option<&Obj>) -> PyResult<Self> {
        let grid = vector("grid", grid)?;
        let grid = grid.as_slice()?;
        let lever = match (a, s) {
            (None, None) => py.detach(|| cotj_core::Lever::linear_flow(grid)),
            (Some(a), Some(s)) => {
                let (a, s) = (vector("schedule a", a)?, vector("schedule s", s)?);
                let (a, s) = (a.as_slice()?, s.as_slice()?);
                py.detach(|| cotj_core::Lever::gaussian(grid, a, s))
            }
            _ => return refuse("schedule needs both a and s"),
        };
        Ok(Self(Arc::new(lever.map_err(plan_error)?)))
    }

    /// Linear-flow lever on `t_i = (i+1)/n` (`name`: the argument n came from), cached.
    #[staticmethod]
    #[pyo3(signature = (n, name="n"))]
    fn default(py: Python<'_>, n: i64, name: &str) -> PyResult<Self> {
        let n = usize::try_from(n).unwrap_or(0);
        let lever = py.detach(|| LeverCache::global().default_linear_flow(name, n));
        Ok(Self(lever.map_err(plan_error)?))
    }

    /// Number of grid levels N.
    #[getter]
    pub(crate) fn n(&self) -> usize {
        self.0.n()
    }

    /// The grid levels (N,), ascending.
    #[getter]
    fn levels<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        PyArray1::from_slice(py, self.0.levels())
    }

    /// (N, N) with `[j, i] = L(j, i)` for `i < j`, 0 elsewhere.
    fn matrix<'py>(&self, py: Python<'py>) -> Out<'py> {
        let m = py.detach(|| self.0.matrix()).map_err(plan_error)?;
        matrix(py, m, self.n(), self.n())
    }

    fn __repr__(&self) -> String {
        format!("Lever(n={})", self.0.n())
    }
}

impl Lever {
    /// The planner of this lever with free windows (the cost of a given plan).
    pub(crate) fn free_planner(&self) -> PyResult<Planner> {
        Planner::new(Arc::clone(&self.0), Ends::free(self.n())).map_err(plan_error)
    }
}

/// PlanError naming `name` unless `n` lies in 2..=MAX_LEVELS.
#[pyfunction]
pub(crate) fn check_levels(name: &str, n: usize) -> PyResult<()> {
    cotj_core::check_levels(name, n).map_err(plan_error)
}

/// `((levers kept, their bytes), (max levers, max bytes))` of the `Lever.default` cache.
#[pyfunction]
#[pyo3(name = "_lever_cache")]
pub(crate) fn lever_cache() -> ((usize, usize), (usize, usize)) {
    let bounds = (LeverCache::MAX_ENTRIES, LeverCache::MAX_BYTES);
    (LeverCache::global().usage(), bounds)
}
