//! The layered dynamic programme over the plan graph (SPEC 4).
//!
//! Layer `m` (0-based) holds `D_{m+1}[i]`: the cheapest cost of a plan prefix of `m + 1` levels
//! whose last level is `i`. Only the layers are kept (K·N floats); the arg-min is recovered along
//! the final path by re-evaluating one column with the very same expression in the very same
//! order, so ties break identically: among equal predecessors the noisiest (highest index) wins,
//! among equal final levels the lowest index wins.

use crate::lever::Lever;

/// Which levels may start and end a plan: the `first` highest levels may be its first (noisiest)
/// level and the `last` lowest levels its last. `first = 1` pins the first level to the grid's top,
/// `last = 1` pins the last to the grid's bottom; `first = last = N` leaves both free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ends {
    /// How many of the highest levels may start a plan (1..=N).
    pub first: usize,
    /// How many of the lowest levels may end a plan (1..=N).
    pub last: usize,
}

impl Ends {
    /// Both ends free on a grid of `n` levels.
    pub fn free(n: usize) -> Self {
        Self { first: n, last: n }
    }

    /// Smallest feasible budget on `n` levels: 1 when some level may both start and end a plan,
    /// otherwise 2.
    pub fn min_budget(&self, n: usize) -> usize {
        if self.first + self.last > n {
            1
        } else {
            2
        }
    }
}

/// Branch-free relaxation `e[i] = min(e[i], c + dj * row[i])`; it vectorises.
#[inline(always)]
fn relax_generic(e: &mut [f64], row: &[f64], c: f64, dj: f64) {
    for (e, &l) in e.iter_mut().zip(row) {
        let v = c + dj * l;
        *e = if v < *e { v } else { *e };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn relax_avx2(e: &mut [f64], row: &[f64], c: f64, dj: f64) {
    relax_generic(e, row, c, dj)
}

/// Fills `layers[m * n .. (m + 1) * n]` with `D_{m+1}` for `m = 0..kmax`.
///
/// `d` must be validated (finite, non-negative) and have `lever.n()` entries;
/// `layers` must hold at least `kmax * n` floats.
pub fn forward(lever: &Lever, ends: Ends, d: &[f64], kmax: usize, layers: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return forward_with(lever, ends, d, kmax, layers, |e, r, c, dj| unsafe { relax_avx2(e, r, c, dj) });
    }
    forward_with(lever, ends, d, kmax, layers, relax_generic)
}

#[inline(always)]
fn forward_with(
    lever: &Lever,
    ends: Ends,
    d: &[f64],
    kmax: usize,
    layers: &mut [f64],
    relax: impl Fn(&mut [f64], &[f64], f64, f64),
) {
    let n = lever.n();
    let first_start = n - ends.first;
    for (j, slot) in layers[..n].iter_mut().enumerate() {
        *slot = if j >= first_start { -d[j] } else { f64::INFINITY };
    }
    for m in 1..kmax {
        let (done, rest) = layers.split_at_mut(m * n);
        let prev = &done[(m - 1) * n..];
        let cur = &mut rest[..n];
        cur.fill(f64::INFINITY);
        // A prefix of m + 1 levels ends at index <= n - 1 - m; its predecessor at <= n - m.
        for j in (1..=n - m).rev() {
            let c = prev[j];
            if c == f64::INFINITY {
                continue;
            }
            relax(&mut cur[..j], lever.row(j), c, d[j]);
        }
    }
}

/// `C*_K = min_i (D_K[i] + d_i)` over the allowed ends, with the arg-min (lowest index on ties).
/// Returns `(INFINITY, usize::MAX)` when no plan of `k` levels exists.
pub fn best_end(ends: Ends, d: &[f64], layers: &[f64], k: usize) -> (f64, usize) {
    let n = d.len();
    let layer = &layers[(k - 1) * n..k * n];
    let mut best = (f64::INFINITY, usize::MAX);
    for i in 0..ends.last {
        let v = layer[i] + d[i];
        if v < best.0 {
            best = (v, i);
        }
    }
    best
}

/// Follows the optimal `k`-level plan back from its last level `end`; writes its indices into
/// `steps` in sampling order (noisiest first). `steps` must hold `k` entries.
pub fn backtrack(lever: &Lever, d: &[f64], layers: &[f64], k: usize, end: usize, steps: &mut [usize]) {
    let n = d.len();
    let mut i = end;
    steps[k - 1] = i;
    for m in (1..k).rev() {
        let target = layers[m * n + i];
        let prev = &layers[(m - 1) * n..m * n];
        // Same expression, same scan order as `forward`: the first exact match is the arg-min.
        let j = (i + 1..=n - m)
            .rev()
            .find(|&j| prev[j] != f64::INFINITY && prev[j] + d[j] * lever.get(j, i) == target)
            .expect("a finite layer entry has a predecessor that attains it");
        steps[m - 1] = j;
        i = j;
    }
}
