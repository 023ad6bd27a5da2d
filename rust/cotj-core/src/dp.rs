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

/// The edge candidate `c + dj·l`, either fused (one rounding, `FUSED = true`, used where the CPU
/// has FMA) or as a multiply then an add. Forward pass and backtrack use the same form, so the
/// backtrack finds the arg-min by exact comparison.
#[inline(always)]
fn candidate<const FUSED: bool>(c: f64, dj: f64, l: f64) -> f64 {
    if FUSED {
        dj.mul_add(l, c)
    } else {
        c + dj * l
    }
}

/// `e[i] = min(e[i], min_r candidate(c[r], dj[r], rows[r][i]))` for every `i < e.len()`.
///
/// The minimum of exactly computed candidates does not depend on the order they are taken in,
/// so relaxing by several rows at once (one load and store of `e` for `R` candidates) gives the
/// same values as relaxing row by row.
#[inline(always)]
fn relax<const FUSED: bool, const R: usize>(
    e: &mut [f64],
    rows: [&[f64]; R],
    c: [f64; R],
    dj: [f64; R],
) {
    let len = e.len();
    let rows = rows.map(|r| &r[..len]);
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if FUSED {
        // SAFETY: fused kernels run only inside `forward_fma`, on CPUs with AVX2 and FMA, and
        // `simd::relax` reads and writes below `len`, which bounds `e` and every row.
        done = unsafe { simd::relax(e, rows, c, dj) };
    }
    for i in done..len {
        let mut v = e[i];
        for r in 0..R {
            let a = candidate::<FUSED>(c[r], dj[r], rows[r][i]);
            v = if a < v { a } else { v };
        }
        e[i] = v;
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::{
        _mm256_fmadd_pd, _mm256_loadu_pd, _mm256_min_pd, _mm256_set1_pd, _mm256_storeu_pd,
    };

    /// The vector part of `super::relax`, four lanes at a time; returns how many leading
    /// entries it relaxed. `_mm256_min_pd(a, v)` is `a < v ? a : v` lane by lane, the very
    /// selection of the scalar code, and `_mm256_fmadd_pd` rounds once like `f64::mul_add`.
    ///
    /// Safety: the CPU must have AVX2 and FMA, and every row must hold `e.len()` entries.
    #[inline(always)]
    pub(super) unsafe fn relax<const R: usize>(
        e: &mut [f64],
        rows: [&[f64]; R],
        c: [f64; R],
        dj: [f64; R],
    ) -> usize {
        let cv = c.map(|x| _mm256_set1_pd(x));
        let dv = dj.map(|x| _mm256_set1_pd(x));
        let end = e.len() / 4 * 4;
        let mut i = 0;
        while i < end {
            let p = e.as_mut_ptr().add(i);
            let mut v = _mm256_loadu_pd(p);
            for r in 0..R {
                let a = _mm256_fmadd_pd(dv[r], _mm256_loadu_pd(rows[r].as_ptr().add(i)), cv[r]);
                v = _mm256_min_pd(a, v);
            }
            _mm256_storeu_pd(p, v);
            i += 4;
        }
        end
    }
}

/// One layer: `cur[i] = min_{j > i} prev[j] + d[j] L(j, i)` for `i >= lo`, over predecessors
/// `j in lo + 1..=top`; entries below `lo` are left infinite.
#[inline(always)]
fn layer<const FUSED: bool>(
    lever: &Lever,
    d: &[f64],
    prev: &[f64],
    cur: &mut [f64],
    lo: usize,
    top: usize,
) {
    cur.fill(f64::INFINITY);
    let mut j = top;
    // Blocks of four consecutive predecessors; an infinite prev[j] yields infinite candidates,
    // which never win, so no row needs skipping.
    while j >= lo + 4 {
        let js = [j, j - 1, j - 2, j - 3];
        let low = j - 3;
        relax::<FUSED, 4>(
            &mut cur[lo..low],
            js.map(|j| &lever.row(j)[lo..]),
            js.map(|j| prev[j]),
            js.map(|j| d[j]),
        );
        for &jj in &js[..3] {
            relax::<FUSED, 1>(
                &mut cur[low..jj],
                [&lever.row(jj)[low..]],
                [prev[jj]],
                [d[jj]],
            );
        }
        j -= 4;
    }
    while j > lo {
        relax::<FUSED, 1>(&mut cur[lo..j], [&lever.row(j)[lo..]], [prev[j]], [d[j]]);
        j -= 1;
    }
}

/// Fills `layers[m * n .. (m + 1) * n]` with `D_{m+1}` for `m = 0..kmax`.
///
/// With `exact = true` only plans of exactly `kmax` levels are wanted, so layer `m` skips the
/// levels too low to leave room for the `kmax - 1 - m` levels still to come (left infinite);
/// with `exact = false` every layer is complete and gives `C*_K` for every `K <= kmax`.
#[inline(always)]
fn forward_impl<const FUSED: bool>(
    lever: &Lever,
    ends: Ends,
    d: &[f64],
    kmax: usize,
    exact: bool,
    layers: &mut [f64],
) {
    let n = lever.n();
    let first_start = n - ends.first;
    for (j, slot) in layers[..n].iter_mut().enumerate() {
        *slot = if j >= first_start {
            -d[j]
        } else {
            f64::INFINITY
        };
    }
    for m in 1..kmax {
        let (done, rest) = layers.split_at_mut(m * n);
        let prev = &done[(m - 1) * n..];
        // A prefix of m + 1 levels ends at index <= n - 1 - m; its predecessor at <= n - m.
        let lo = if exact { kmax - 1 - m } else { 0 };
        layer::<FUSED>(lever, d, prev, &mut rest[..n], lo, n - m);
    }
}

/// Follows the optimal `k`-level plan back from its last level `end`; writes its indices into
/// `steps` in sampling order (noisiest first).
#[inline(always)]
fn backtrack_impl<const FUSED: bool>(
    lever: &Lever,
    d: &[f64],
    layers: &[f64],
    k: usize,
    end: usize,
    steps: &mut [usize],
) {
    let n = d.len();
    let mut i = end;
    steps[k - 1] = i;
    for m in (1..k).rev() {
        let target = layers[m * n + i];
        let prev = &layers[(m - 1) * n..m * n];
        // Same candidate, same scan order as the forward pass: the first exact match is the
        // arg-min (the noisiest predecessor among equals). It exists because `target` is finite
        // and was computed as one of these candidates.
        let mut j = n - m;
        while j > i + 1 && candidate::<FUSED>(prev[j], d[j], lever.get(j, i)) != target {
            j -= 1;
        }
        steps[m - 1] = j;
        i = j;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_fma(
    lever: &Lever,
    ends: Ends,
    d: &[f64],
    kmax: usize,
    exact: bool,
    layers: &mut [f64],
) {
    forward_impl::<true>(lever, ends, d, kmax, exact, layers)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backtrack_fma(
    lever: &Lever,
    d: &[f64],
    layers: &[f64],
    k: usize,
    end: usize,
    steps: &mut [usize],
) {
    backtrack_impl::<true>(lever, d, layers, k, end, steps)
}

/// True where the fused kernel runs (x86-64 with AVX2 and FMA).
fn fused() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Fills `layers[m * n .. (m + 1) * n]` with `D_{m+1}` for `m = 0..kmax` (see `forward_impl`).
///
/// `d` must be validated (finite, non-negative) and have `lever.n()` entries;
/// `layers` must hold at least `kmax * n` floats.
pub fn forward(lever: &Lever, ends: Ends, d: &[f64], kmax: usize, exact: bool, layers: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if fused() {
        // SAFETY: the CPU has AVX2 and FMA, checked by `fused`.
        return unsafe { forward_fma(lever, ends, d, kmax, exact, layers) };
    }
    forward_impl::<false>(lever, ends, d, kmax, exact, layers)
}

/// Follows the optimal `k`-level plan back from its last level `end` (as computed by `forward`
/// on the same machine); writes its indices into `steps[..k]` in sampling order.
pub fn backtrack(
    lever: &Lever,
    d: &[f64],
    layers: &[f64],
    k: usize,
    end: usize,
    steps: &mut [usize],
) {
    #[cfg(target_arch = "x86_64")]
    if fused() {
        // SAFETY: the CPU has AVX2 and FMA, checked by `fused`.
        return unsafe { backtrack_fma(lever, d, layers, k, end, steps) };
    }
    backtrack_impl::<false>(lever, d, layers, k, end, steps)
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
