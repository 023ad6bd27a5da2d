//! Explicit dense plan costs (docs/method.md §4): a plan `j_1 > … > j_K` costs
//! `start[j_1] + sum_m w[j_m]·M[j_m, j_{m+1}] + end[j_K]`, with `M` (`edges`) an (N, N) matrix whose entry
//! `[j, i]` is the jump from level `j` down to `i < j` (entries with `i >= j` are ignored),
//! `w` a per-level scaling of the source level and `+inf` marking a missing edge, start or end.
//! The DNA form is `M = L`, `w = d`, `start = -d`, `end = d`.

use crate::batch::batch_rows;
use crate::dp::Costs;
use crate::error::{CotjError, Result};
use crate::lever::check_levels;
use crate::memory;
use crate::planner::{check_steps, path_cost};
use crate::scan::first_bad;
use crate::triangle::Triangle;

/// Dense costs of a batch of plans over N levels, borrowed and validated.
///
/// Every array holds one row shared by the whole batch or one row per plan (row-major):
/// `edges` (N, N) or (B, N, N); `start`, `end` and `scale` (N,) or (B, N). B is the largest row
/// count. `edges`, `start` and `end` may hold `+inf` (no edge, may not start, may not end) but no
/// NaN or `-inf`; `scale` (the weights `w`, all ones when absent) must be finite and
/// non-negative.
#[derive(Debug, Clone, Copy)]
pub struct DenseCost<'a, T = f64> {
    n: usize,
    rows: usize,
    cost: &'a [f64],
    start: &'a [f64],
    end: &'a [f64],
    scale: Option<&'a [T]>,
}

/// Rule of `edges`, `start` and `end` entries: anything but NaN and `-inf`.
fn not_nan_or_neg_inf(v: f64) -> bool {
    v > f64::NEG_INFINITY
}

/// Rule of `scale` entries.
fn finite_non_negative(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}

/// The multi-index of `flat` in an array of shape `dims`, as `"a, b, c"`.
fn index(mut flat: usize, dims: &[usize]) -> String {
    let mut parts = vec![0; dims.len()];
    for (part, &dim) in parts.iter_mut().zip(dims).rev() {
        *part = flat % dim;
        flat /= dim;
    }
    parts
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Row `b` of an array of `unit`-sized rows: the only row when it holds one (shared).
fn pick<V>(arr: &[V], unit: usize, b: usize) -> &[V] {
    if arr.len() == unit {
        arr
    } else {
        &arr[b * unit..(b + 1) * unit]
    }
}

impl<'a, T: Copy + Into<f64>> DenseCost<'a, T> {
    /// Checks N (2..=[`crate::MAX_LEVELS`]), the shapes (row counts 1 or B) and the values of the
    /// shared arrays; the rows of the batched arrays are checked by [`DenseCost::check_row`].
    pub fn new(
        n: usize,
        cost: &'a [f64],
        start: &'a [f64],
        end: &'a [f64],
        scale: Option<&'a [T]>,
    ) -> Result<Self> {
        check_levels("edges", n)?;
        let count = |name, got: usize, unit: usize| {
            if got > 0 && got.is_multiple_of(unit) {
                Ok((name, got / unit))
            } else {
                Err(CotjError::DenseLength { name, got, unit })
            }
        };
        let counts = [
            count("edges", cost.len(), n * n)?,
            count("start", start.len(), n)?,
            count("end", end.len(), n)?,
            count("scale", scale.map_or(n, <[T]>::len), n)?,
        ];
        let rows = batch_rows(&counts)?;
        let dense = Self {
            n,
            rows,
            cost,
            start,
            end,
            scale,
        };
        dense.check(0, false)?;
        Ok(dense)
    }

    /// Number of grid levels N.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of plans B.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Checks row `b` of the arrays that hold one row per plan (the error names the first bad
    /// entry, e.g. `edges[b, j, i]`).
    pub fn check_row(&self, b: usize) -> Result<()> {
        self.check(b, true)
    }

    /// Checks row `b` of the arrays that hold one row per plan (`batched`) or of the shared ones.
    fn check(&self, b: usize, batched: bool) -> Result<()> {
        let n = self.n;
        let rule = "a number or +inf (no NaN, no -inf)";
        check_array(
            "edges",
            self.cost,
            &[n, n],
            b,
            batched,
            not_nan_or_neg_inf,
            rule,
        )?;
        check_array(
            "start",
            self.start,
            &[n],
            b,
            batched,
            not_nan_or_neg_inf,
            rule,
        )?;
        check_array("end", self.end, &[n], b, batched, not_nan_or_neg_inf, rule)?;
        match self.scale {
            Some(s) => check_array(
                "scale",
                s,
                &[n],
                b,
                batched,
                finite_non_negative,
                "finite and non-negative",
            ),
            None => Ok(()),
        }
    }

    /// Writes the weights `w` of row `b` into `w`: its scale, or all ones.
    pub(crate) fn weights(&self, b: usize, w: &mut Vec<f64>) -> Result<()> {
        w.clear();
        memory::reserve("the weights", w, self.n)?;
        match self.scale {
            Some(s) => w.extend(pick(s, self.n, b).iter().map(|&v| v.into())),
            None => w.resize(self.n, 1.0),
        }
        Ok(())
    }

    /// True when every plan has the same cost matrix.
    pub(crate) fn shared_matrix(&self) -> bool {
        self.cost.len() == self.n * self.n
    }

    /// Writes the edge rows of row `b`'s cost matrix (its lower triangle) into `edges`.
    pub(crate) fn edges(&self, b: usize, edges: &mut Triangle) -> Result<()> {
        let (n, m) = (self.n, pick(self.cost, self.n * self.n, b));
        edges.refill(n, |j, row| row.copy_from_slice(&m[j * n..j * n + j]))
    }

    /// The costs of row `b` over its edge rows and weights `w`.
    pub(crate) fn costs<'s>(&'s self, b: usize, edges: &'s Triangle, w: &'s [f64]) -> Costs<'s> {
        Costs {
            edges,
            w,
            start: pick(self.start, self.n, b),
            end: pick(self.end, self.n, b),
        }
    }

    /// The cost of a plan (grid indices, strictly decreasing) on row `b`: `+inf` when it uses a
    /// missing edge, start or end; [`CotjError::DenseOverflow`] when it uses none and its cost
    /// is not finite.
    pub fn plan_cost(&self, b: usize, steps: &[usize]) -> Result<f64> {
        self.check_row(b)?;
        check_steps(self.n, steps)?;
        let mut w = Vec::new();
        self.weights(b, &mut w)?;
        let mut edges = Triangle::default();
        self.edges(b, &mut edges)?;
        let costs = self.costs(b, &edges, &w);
        let missing = costs.start[steps[0]] == f64::INFINITY
            || costs.end[steps[steps.len() - 1]] == f64::INFINITY
            || steps
                .windows(2)
                .any(|p| costs.edges.row(p[0])[p[1]] == f64::INFINITY);
        let cost = path_cost(&costs, steps);
        if missing {
            Ok(f64::INFINITY)
        } else if cost.is_finite() {
            Ok(cost)
        } else {
            Err(CotjError::DenseOverflow { at: String::new() })
        }
    }
}

/// Checks row `b` of `arr` (rows of shape `dims`, one shared row or one per plan) against `ok`
/// when the array's batching is `batched`.
fn check_array<V: Copy + Into<f64>>(
    name: &'static str,
    arr: &[V],
    dims: &[usize],
    b: usize,
    batched: bool,
    ok: impl Fn(f64) -> bool,
    rule: &'static str,
) -> Result<()> {
    let unit = dims.iter().product();
    if (arr.len() > unit) != batched {
        return Ok(());
    }
    let row = pick(arr, unit, b);
    match first_bad(row, ok) {
        None => Ok(()),
        Some(p) => {
            let local = index(p, dims);
            Err(CotjError::Value {
                name,
                at: if batched {
                    format!("{b}, {local}")
                } else {
                    local
                },
                value: row[p].into(),
                rule,
            })
        }
    }
}
