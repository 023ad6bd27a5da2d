//! The grid of noise levels and the *temporal lever* over it (SPEC 3).
//!
//! `L(j, i)` is the squared factor by which an error of the clean estimate at the noisier level
//! `t_j` displaces the state reached at `t_i < t_j` by one first-order (DDIM / Euler) step.
//! Linear flow (`x_t = (1 - t) x0 + t eps`): `L(j, i) = ((t_j - t_i) / t_j)^2`.
//! General Gaussian path (`x_t = a(t) x0 + s(t) eps`): `L(j, i) = (a_i - s_i a_j / s_j)^2`.
//! The lever depends on the grid only, so it is computed once and reused for every DNA row.

use crate::dp::Edges;
use crate::error::{CotjError, Result};

/// The default grid `t_i = (i + 1) / n`, i = 0..n (ascending, top level 1).
pub fn default_grid(n: usize) -> Vec<f64> {
    (1..=n).map(|i| i as f64 / n as f64).collect()
}

/// Checks that `grid` has at least two levels, strictly ascending, all in (0, 1].
pub fn check_grid(grid: &[f64]) -> Result<()> {
    if grid.len() < 2 {
        return Err(CotjError::GridTooShort(grid.len()));
    }
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

/// Grid levels with the lower triangle of the lever, packed row by row.
///
/// Row `j` holds `L(j, i)` for `i = 0..j` at offset `j (j - 1) / 2`; only the triangle
/// `i < j` carries edges.
#[derive(Debug, Clone, PartialEq)]
pub struct Lever {
    levels: Vec<f64>,
    tri: Vec<f64>,
}

impl Lever {
    /// The linear-flow lever on `grid` (ascending, in (0, 1]).
    pub fn linear_flow(grid: &[f64]) -> Result<Self> {
        check_grid(grid)?;
        Ok(Self::build(grid, |j, i| {
            let r = (grid[j] - grid[i]) / grid[j];
            r * r
        }))
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
        });
        match lever.tri.iter().position(|l| !l.is_finite()) {
            None => Ok(lever),
            Some(p) => {
                // Row j starts at j (j - 1) / 2: find the noisier level of the offending pair.
                let index = (1..grid.len())
                    .take_while(|j| j * (j - 1) / 2 <= p)
                    .last()
                    .unwrap_or(1);
                Err(CotjError::ScheduleValue {
                    name: "s",
                    index,
                    value: s[index],
                    rule: "large enough that the lever (a_i - s_i a_j / s_j)^2 stays finite",
                })
            }
        }
    }

    fn build(grid: &[f64], lever: impl Fn(usize, usize) -> f64) -> Self {
        let n = grid.len();
        let mut tri = Vec::with_capacity(n * (n - 1) / 2);
        for j in 0..n {
            tri.extend((0..j).map(|i| lever(j, i)));
        }
        Self {
            levels: grid.to_vec(),
            tri,
        }
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
        let start = j * j.saturating_sub(1) / 2;
        &self.tri[start..start + j]
    }

    /// `L(j, i)` for one pair `i < j`.
    #[inline]
    pub fn get(&self, j: usize, i: usize) -> f64 {
        debug_assert!(i < j);
        self.row(j)[i]
    }
}

impl Edges for Lever {
    #[inline]
    fn row(&self, j: usize) -> &[f64] {
        Lever::row(self, j)
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
        assert_eq!(Lever::linear_flow(&[0.5]), Err(CotjError::GridTooShort(1)));
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
}
