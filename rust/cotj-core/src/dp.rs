//! The layered dynamic programme over the plan graph (docs/method.md §5).
//!
//! Layer `m` (0-based) holds `D_{m+1}[i]`: the cheapest cost of a plan prefix of `m + 1` levels
//! whose last level is `i`. Only the layers are kept (K·N floats); the arg-min is recovered along
//! the final path by re-evaluating one column with the very same expression in the very same
//! order, so ties break identically: among equal predecessors the noisiest (highest index) wins,
//! among equal final levels the lowest index wins.
//!
//! The programme runs on any explicit cost (docs/method.md §4): a plan `j_1 > … > j_K` costs
//! `start[j_1] + sum_m w[j_m]·M[j_m, j_{m+1}] + end[j_K]`. The DNA form is `M = L`, `w = d`,
//! `start = -d`, `end = d`.

use std::ops::Range;
use std::sync::OnceLock;

use crate::error::Result;
use crate::stop::Stop;

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

/// The rows of an edge matrix `M`: row `j` holds `M[j, i]` for `i = 0..j` (the jumps from level
/// `j` down to every lower level).
pub(crate) trait Edges: Sync {
    /// `M[j, i]` for `i = 0..j` (length `j`).
    fn row(&self, j: usize) -> &[f64];
}

/// The costs of one row as the programme sees them: the edge `j -> i` costs `w[j]·M[j, i]`,
/// entering at `j` costs `start[j]`, leaving from `i` costs `end[i]`. `+inf` in `M`, `start` or
/// `end` is a missing edge (`0·inf = NaN` candidates never win either); `w` is finite.
pub(crate) struct Costs<'a, E: ?Sized> {
    pub edges: &'a E,
    pub w: &'a [f64],
    pub start: &'a [f64],
    pub end: &'a [f64],
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

/// One layer: `cur[i] = min_{j > i} prev[j] + w[j] M[j, i]` for `i >= lo`, over predecessors
/// `j in lo + 1..=top`; entries below `lo` are left infinite.
#[inline(always)]
fn layer<const FUSED: bool, E: Edges + ?Sized>(
    edges: &E,
    w: &[f64],
    prev: &[f64],
    cur: &mut [f64],
    lo: usize,
    top: usize,
) {
    cur.fill(f64::INFINITY);
    let mut j = top;
    // Blocks of four consecutive predecessors; an infinite prev[j] or M entry yields infinite
    // or NaN candidates, which never win, so no row needs skipping.
    while j >= lo + 4 {
        let js = [j, j - 1, j - 2, j - 3];
        let low = j - 3;
        relax::<FUSED, 4>(
            &mut cur[lo..low],
            js.map(|j| &edges.row(j)[lo..]),
            js.map(|j| prev[j]),
            js.map(|j| w[j]),
        );
        for &jj in &js[..3] {
            relax::<FUSED, 1>(
                &mut cur[low..jj],
                [&edges.row(jj)[low..]],
                [prev[jj]],
                [w[jj]],
            );
        }
        j -= 4;
    }
    while j > lo {
        relax::<FUSED, 1>(&mut cur[lo..j], [&edges.row(j)[lo..]], [prev[j]], [w[j]]);
        j -= 1;
    }
}

/// Fills `layers[m * n .. (m + 1) * n]` with `D_{m+1}` for `m = 0..kmax`; only the levels in
/// `starts` may start a plan. Polls `stop` before each layer.
///
/// With `exact = true` only plans of exactly `kmax` levels are wanted, so layer `m` skips the
/// levels too low to leave room for the `kmax - 1 - m` levels still to come (left infinite);
/// with `exact = false` every layer is complete and gives `C*_K` for every `K <= kmax`.
#[inline(always)]
fn forward_impl<const FUSED: bool, E: Edges + ?Sized>(
    costs: &Costs<'_, E>,
    starts: Range<usize>,
    kmax: usize,
    exact: bool,
    layers: &mut [f64],
    stop: &Stop,
) -> Result<()> {
    let n = costs.w.len();
    for (j, slot) in layers[..n].iter_mut().enumerate() {
        *slot = if starts.contains(&j) {
            costs.start[j]
        } else {
            f64::INFINITY
        };
    }
    for m in 1..kmax {
        stop.poll()?;
        let (done, rest) = layers.split_at_mut(m * n);
        let prev = &done[(m - 1) * n..];
        // A prefix of m + 1 levels ends at index <= starts.end - 1 - m; its predecessor at
        // <= starts.end - m. Past the top start no prefix is that long: the layer stays infinite.
        let lo = if exact { kmax - 1 - m } else { 0 };
        let top = starts.end.saturating_sub(m).max(lo);
        layer::<FUSED, E>(costs.edges, costs.w, prev, &mut rest[..n], lo, top);
    }
    Ok(())
}

/// Follows the optimal `k`-level plan back from its last level `end`; writes its indices into
/// `steps` in sampling order (noisiest first).
#[inline(always)]
fn backtrack_impl<const FUSED: bool, E: Edges + ?Sized>(
    costs: &Costs<'_, E>,
    layers: &[f64],
    k: usize,
    end: usize,
    steps: &mut [usize],
) {
    let (edges, w) = (costs.edges, costs.w);
    let n = w.len();
    let mut i = end;
    steps[k - 1] = i;
    for m in (1..k).rev() {
        let target = layers[m * n + i];
        let prev = &layers[(m - 1) * n..m * n];
        // Same candidate, same scan order as the forward pass: the first exact match is the
        // arg-min (the noisiest predecessor among equals). It exists because `target` is finite
        // and was computed as one of these candidates.
        let mut j = n - m;
        while j > i + 1 && candidate::<FUSED>(prev[j], w[j], edges.row(j)[i]) != target {
            j -= 1;
        }
        steps[m - 1] = j;
        i = j;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_fma<E: Edges + ?Sized>(
    costs: &Costs<'_, E>,
    starts: Range<usize>,
    kmax: usize,
    exact: bool,
    layers: &mut [f64],
    stop: &Stop,
) -> Result<()> {
    forward_impl::<true, E>(costs, starts, kmax, exact, layers, stop)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backtrack_fma<E: Edges + ?Sized>(
    costs: &Costs<'_, E>,
    layers: &[f64],
    k: usize,
    end: usize,
    steps: &mut [usize],
) {
    backtrack_impl::<true, E>(costs, layers, k, end, steps)
}

/// True where the fused kernel runs: x86-64 with AVX2 and FMA, unless the environment variable
/// `COTJ_PORTABLE=1` forces the portable kernel (read once, at the first plan of the process).
fn fused() -> bool {
    static FUSED: OnceLock<bool> = OnceLock::new();
    *FUSED.get_or_init(|| {
        if std::env::var_os("COTJ_PORTABLE").is_some_and(|v| v == "1") {
            return false;
        }
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// The DP kernel this process plans with: `"fused"` (AVX2 + FMA, one rounding per candidate) or
/// `"portable"` (a multiply then an add; forced by `COTJ_PORTABLE=1`). Both find optimal plans;
/// their costs may differ in the last bits.
pub fn kernel() -> &'static str {
    if fused() {
        "fused"
    } else {
        "portable"
    }
}

/// Fills `layers[m * n .. (m + 1) * n]` with `D_{m+1}` for `m = 0..kmax` (see `forward_impl`).
///
/// `costs` must be validated (no NaN or -inf, `w` finite) with N entries per array, `starts`
/// within 0..N, and `layers` must hold at least `kmax * n` floats. `Err(Interrupted)` when
/// `stop` says so (the layers are then incomplete).
pub(crate) fn forward<E: Edges + ?Sized>(
    costs: &Costs<'_, E>,
    starts: Range<usize>,
    kmax: usize,
    exact: bool,
    layers: &mut [f64],
    stop: &Stop,
) -> Result<()> {
    #[cfg(target_arch = "x86_64")]
    if fused() {
        // SAFETY: the CPU has AVX2 and FMA, checked by `fused`.
        return unsafe { forward_fma(costs, starts, kmax, exact, layers, stop) };
    }
    forward_impl::<false, E>(costs, starts, kmax, exact, layers, stop)
}

/// Follows the optimal `k`-level plan back from its last level `end` (as computed by `forward`
/// on the same machine); writes its indices into `steps[..k]` in sampling order.
pub(crate) fn backtrack<E: Edges + ?Sized>(
    costs: &Costs<'_, E>,
    layers: &[f64],
    k: usize,
    end: usize,
    steps: &mut [usize],
) {
    #[cfg(target_arch = "x86_64")]
    if fused() {
        // SAFETY: the CPU has AVX2 and FMA, checked by `fused`.
        return unsafe { backtrack_fma(costs, layers, k, end, steps) };
    }
    backtrack_impl::<false, E>(costs, layers, k, end, steps)
}

/// `C*_K = min_i (D_K[i] + end[i])` over the `last` lowest levels, with the arg-min (lowest
/// index on ties). Returns `(INFINITY, usize::MAX)` when no plan of `k` levels has a finite cost.
pub(crate) fn best_end(last: usize, end: &[f64], layers: &[f64], k: usize) -> (f64, usize) {
    let n = end.len();
    let layer = &layers[(k - 1) * n..k * n];
    let mut best = (f64::INFINITY, usize::MAX);
    for i in 0..last {
        let v = layer[i] + end[i];
        if v < best.0 {
            best = (v, i);
        }
    }
    best
}
