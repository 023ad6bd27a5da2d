//! The grid of noise levels and the *temporal lever* over it (docs/method.md §3).
//!
//! `L(j, i)` is the squared factor by which an error of the clean estimate at the noisier level
//! `t_j` displaces the state reached at `t_i < t_j` by one first-order (DDIM / Euler) step.
//! Linear flow (`x_t = (1 - t) x0 + t eps`): `L(j, i) = ((t_j - t_i) / t_j)^2`.
//! General Gaussian path (`x_t = a(t) x0 + s(t) eps`): `L(j, i) = (a_i - s_i a_j / s_j)^2`.
//! The lever depends on the grid only, so it is computed once and reused for every DNA row.

use std::sync::{Arc, Mutex};

use crate::error::{CotjError, Result};
use crate::limits::MAX_LEVELS;
use crate::memory;
use crate::triangle::Triangle;

/// Checks that `n` levels (of the argument `name`: grid, dna, cost...) lie in 2..=[`MAX_LEVELS`].
pub fn check_levels(name: &str, n: usize) -> Result<()> {
    if n < 2 {
        return Err(CotjError::TooFewLevels {
            name: name.into(),
            got: n,
        });
    }
    if n > MAX_LEVELS {
        return Err(CotjError::TooManyLevels {
            name: name.into(),
            got: n,
        });
    }
    Ok(())
}

/// The default grid `t_i = (i + 1) / n`, i = 0..n (ascending, top level 1).
pub fn default_grid(n: usize) -> Vec<f64> {
    (1..=n).map(|i| i as f64 / n as f64).collect()
}

/// Checks that `grid` has 2..=[`MAX_LEVELS`] levels, strictly ascending, all in (0, 1].
pub fn check_grid(grid: &[f64]) -> Result<()> {
    check_levels("grid", grid.len())?;
    for (index, &value) in grid.iter().enumerate() {
        if !(value > 0.0 && value <= 1.0) {
            return Err(CotjError::GridOutOfRange { index, value });
        }
        if index > 0 && value <= grid[index - 1] {
            return Err(CotjError::GridNotAscending {
                index,
                value,
                prev_value: grid[index - 1],
            });
        }
    }
    Ok(())
}

/// Grid levels with the lower triangle of the lever, row by row: row `j` holds `L(j, i)` for
/// `i = 0..j` (only the triangle `i < j` carries edges), laid out for the DP kernels.
#[derive(Debug, Clone, PartialEq)]
pub struct Lever {
    levels: Vec<f64>,
    tri: Triangle,
}

impl Lever {
    /// The linear-flow lever on `grid` (ascending, in (0, 1]).
    pub fn linear_flow(grid: &[f64]) -> Result<Self> {
        check_grid(grid)?;
        Self::build(grid, |j, i| {
            let r = (grid[j] - grid[i]) / grid[j];
            r * r
        })
    }

    /// The linear-flow lever on the default grid of `n` levels (`name` labels a bad `n`).
    pub fn default_linear_flow(name: &str, n: usize) -> Result<Self> {
        check_levels(name, n)?;
        Self::linear_flow(&default_grid(n))
    }

    /// The first-order lever of the Gaussian path `x_t = a(t) x0 + s(t) eps`, given `a` and `s`
    /// on `grid` (one value per level; `a` finite, `s` finite and positive).
    pub fn gaussian(grid: &[f64], a: &[f64], s: &[f64]) -> Result<Self> {
        check_grid(grid)?;
        for (name, v) in [("a", a), ("s", s)] {
            if v.len() != grid.len() {
                return Err(CotjError::ScheduleLength {
                    name,
                    expected: grid.len(),
                    got: v.len(),
                });
            }
        }
        if let Some((index, &value)) = a.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(CotjError::ScheduleValue {
                name: "a",
                index,
                value,
                rule: "finite",
            });
        }
        if let Some((index, &value)) = s
            .iter()
            .enumerate()
            .find(|(_, v)| !(v.is_finite() && **v > 0.0))
        {
            return Err(CotjError::ScheduleValue {
                name: "s",
                index,
                value,
                rule: "finite and positive",
            });
        }
        let lever = Self::build(grid, |j, i| {
            let r = a[i] - s[i] * a[j] / s[j];
            r * r
        })?;
        // The noisier level of the first pair whose lever is not finite.
        match (1..grid.len()).find(|&j| lever.row(j).iter().any(|l| !l.is_finite())) {
            None => Ok(lever),
            Some(index) => Err(CotjError::ScheduleValue {
                name: "s",
                index,
                value: s[index],
                rule: "large enough that the lever (a_i - s_i a_j / s_j)^2 stays finite",
            }),
        }
    }

    /// The triangle of `lever(j, i)` over a checked grid.
    fn build(grid: &[f64], lever: impl Fn(usize, usize) -> f64) -> Result<Self> {
        let n = grid.len();
        let tri = Triangle::new(n, |j, row| {
            for (i, l) in row.iter_mut().enumerate() {
                *l = lever(j, i);
            }
        })?;
        Ok(Self {
            levels: memory::collect("the grid", n, grid.iter().copied())?,
            tri,
        })
    }

    /// The dense lever, row-major (N, N): `[j, i] = L(j, i)` for `i < j`, 0 elsewhere.
    pub fn matrix(&self) -> Result<Vec<f64>> {
        let n = self.n();
        let mut out = memory::filled("the lever matrix (N^2 floats)", n * n, 0.0)?;
        for j in 1..n {
            out[j * n..j * n + j].copy_from_slice(self.row(j));
        }
        Ok(out)
    }

    /// Bytes held by this lever (its grid and triangle).
    pub fn bytes(&self) -> usize {
        self.levels.len() * std::mem::size_of::<f64>() + self.tri.bytes()
    }

    /// Number of grid levels N.
    pub fn n(&self) -> usize {
        self.levels.len()
    }

    /// The grid levels, ascending.
    pub fn levels(&self) -> &[f64] {
        &self.levels
    }

    /// `L(j, i)` for `i = 0..j` (length `j`).
    #[inline]
    pub fn row(&self, j: usize) -> &[f64] {
        self.tri.row(j)
    }

    /// The rows as the DP kernels read them.
    pub(crate) fn triangle(&self) -> &Triangle {
        &self.tri
    }

    /// `L(j, i)` for one pair `i < j`.
    #[inline]
    pub fn get(&self, j: usize, i: usize) -> f64 {
        debug_assert!(i < j);
        self.row(j)[i]
    }
}

/// The linear-flow levers of the default grids in use, shared, the most recently used kept:
/// at most [`LeverCache::MAX_ENTRIES`] levers and [`LeverCache::MAX_BYTES`] bytes in all (a
/// lever larger than that is built on each call and not kept). Planning many widths therefore
/// keeps memory bounded.
#[derive(Debug, Default)]
pub struct LeverCache {
    /// Least recently used first.
    entries: Mutex<Vec<Arc<Lever>>>,
}

impl LeverCache {
    /// Most levers kept.
    pub const MAX_ENTRIES: usize = 8;
    /// Most bytes of levers kept (a lever of N levels takes about 4·N² + 136·N bytes: N <= 2883
    /// fits).
    pub const MAX_BYTES: usize = 32 << 20;

    /// An empty cache (usable in a `static`).
    pub const fn new() -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Lever>>> {
        // The entries stay consistent whatever panicked while the lock was held.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The linear-flow lever on the default grid of `n` levels (`name` labels a bad `n`), from
    /// the cache or built (outside the lock) and kept.
    pub fn default_linear_flow(&self, name: &str, n: usize) -> Result<Arc<Lever>> {
        {
            let mut entries = self.lock();
            if let Some(p) = entries.iter().rposition(|l| l.n() == n) {
                // The most recent last (already there in a serving loop on one grid).
                let lever = entries.remove(p);
                entries.push(Arc::clone(&lever));
                return Ok(lever);
            }
        }
        let lever = Arc::new(Lever::default_linear_flow(name, n)?);
        if lever.bytes() <= Self::MAX_BYTES {
            let mut entries = self.lock();
            if !entries.iter().any(|l| l.n() == n) {
                entries.push(Arc::clone(&lever));
            }
            while entries.len() > Self::MAX_ENTRIES
                || entries.iter().map(|l| l.bytes()).sum::<usize>() > Self::MAX_BYTES
            {
                entries.remove(0);
            }
        }
        Ok(lever)
    }

    /// The cache of the process (the Python binding's `Lever.default`, and its calls without a
    /// lever).
    pub fn global() -> &'static Self {
        static GLOBAL: LeverCache = LeverCache::new();
        &GLOBAL
    }

    /// `(levers kept, their bytes)`: to check the bound.
    pub fn usage(&self) -> (usize, usize) {
        let entries = self.lock();
        (entries.len(), entries.iter().map(|l| l.bytes()).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_with_linear_flow_schedule_is_the_linear_lever() {
        let grid = default_grid(20);
        let a: Vec<f64> = grid.iter().map(|t| 1.0 - t).collect();
        let lin = Lever::linear_flow(&grid).unwrap();
        let gau = Lever::gaussian(&grid, &a, &grid).unwrap();
        for j in 1..20 {
            for i in 0..j {
                assert!((lin.get(j, i) - gau.get(j, i)).abs() < 1e-12, "{j} {i}");
            }
        }
    }

    #[test]
    fn planners_without_a_lever_share_the_global_cache() {
        use crate::{Ends, Planner};
        let own = Arc::new(Lever::linear_flow(&default_grid(5)).unwrap());
        let planner = Planner::on(Some(&own), "n", 7, Ends::free(5)).unwrap();
        assert_eq!(planner.n(), 5);
        let (a, b) = (
            Planner::on(None, "n", 7, Ends::free(7)),
            Planner::on(None, "n", 7, Ends::free(7)),
        );
        assert!(std::ptr::eq(a.unwrap().lever(), b.unwrap().lever()));
        assert_eq!(
            LeverCache::global()
                .default_linear_flow("n", 7)
                .unwrap()
                .levels(),
            default_grid(7)
        );
        let err = Planner::on(None, "width", 1, Ends::free(1)).unwrap_err();
        assert_eq!(
            err,
            CotjError::TooFewLevels {
                name: "width".into(),
                got: 1
            }
        );
    }

    #[test]
    fn packed_rows_index_the_right_pairs() {
        let grid = [0.1, 0.3, 0.6, 1.0];
        let lever = Lever::linear_flow(&grid).unwrap();
        assert_eq!(lever.row(0).len(), 0);
        assert_eq!(lever.row(3).len(), 3);
        let expect = ((0.6f64 - 0.3) / 0.6).powi(2);
        assert_eq!(lever.get(2, 1), expect);
    }

    #[test]
    fn bad_grids_are_refused() {
        assert_eq!(
            Lever::linear_flow(&[0.5]),
            Err(CotjError::TooFewLevels {
                name: "grid".into(),
                got: 1
            })
        );
        let wide = default_grid(MAX_LEVELS + 1);
        assert_eq!(
            Lever::linear_flow(&wide).unwrap_err().to_string(),
            "grid has 10001 levels, more than MAX_LEVELS = 10000 (planning memory grows as N^2: \
             the lever of N levels takes 4 N^2 bytes)"
        );
        assert!(matches!(
            Lever::default_linear_flow("dna", 1 << 40),
            Err(CotjError::TooManyLevels { got, .. }) if got == 1 << 40
        ));
        assert!(matches!(
            Lever::linear_flow(&[0.0, 1.0]),
            Err(CotjError::GridOutOfRange { index: 0, .. })
        ));
        assert!(matches!(
            Lever::linear_flow(&[0.5, 1.5]),
            Err(CotjError::GridOutOfRange { index: 1, .. })
        ));
        assert!(matches!(
            Lever::linear_flow(&[0.5, 0.5, 1.0]),
            Err(CotjError::GridNotAscending { index: 1, .. })
        ));
        assert!(matches!(
            Lever::linear_flow(&[0.5, f64::NAN]),
            Err(CotjError::GridOutOfRange { .. })
        ));
        let g = [0.5, 1.0];
        assert!(matches!(
            Lever::gaussian(&g, &[1.0], &[1.0, 1.0]),
            Err(CotjError::ScheduleLength { name: "a", .. })
        ));
        assert!(matches!(
            Lever::gaussian(&g, &[1.0, 1.0], &[0.0, 1.0]),
            Err(CotjError::ScheduleValue {
                name: "s",
                index: 0,
                ..
            })
        ));
    }

    #[test]
    fn the_cache_keeps_few_recent_levers() {
        let cache = LeverCache::new();
        let first = cache.default_linear_flow("n", 10).unwrap();
        assert!(Arc::ptr_eq(
            &first,
            &cache.default_linear_flow("n", 10).unwrap()
        ));
        for n in 2..200 {
            cache.default_linear_flow("n", n).unwrap();
            let (entries, bytes) = cache.usage();
            assert!(entries <= LeverCache::MAX_ENTRIES && bytes <= LeverCache::MAX_BYTES);
        }
        assert_eq!(cache.usage().0, LeverCache::MAX_ENTRIES);
        // The most recent ones are kept; 10 was evicted long ago.
        let kept = cache.default_linear_flow("n", 199).unwrap();
        assert!(Arc::ptr_eq(
            &kept,
            &cache.default_linear_flow("n", 199).unwrap()
        ));
        assert!(!Arc::ptr_eq(
            &first,
            &cache.default_linear_flow("n", 10).unwrap()
        ));
        // Too big to keep: built, not cached.
        let big = cache.default_linear_flow("n", 3000).unwrap();
        assert!(big.bytes() > LeverCache::MAX_BYTES);
        assert!(cache.usage().1 <= LeverCache::MAX_BYTES);
        assert_eq!(
            cache.default_linear_flow("dna", 1).unwrap_err().to_string(),
            "dna must have at least 2 levels, got 1"
        );
    }
}
