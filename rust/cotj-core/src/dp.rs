//! The layered dynamic programme over the plan graph (docs/method.md §5).
//!
//! Layer `m` (0-based) holds `D_{m+1}[i]`: the cheapest cost of a plan prefix of `m + 1` levels
//! whose last level is `i`. Only the layers are kept (K·N floats); the arg-min is recovered along
//! the final path by re-evaluating one column with the very same expression (the same rounding),
//! scanning from the noisiest predecessor, so ties break identically: among equal predecessors
//! the noisiest (highest index) wins, among equal final levels the lowest index wins.
//!
//! The forward pass relaxes a layer by blocks of predecessor rows, a chunk of [`LANES`] levels
//! at a time, over the padded, aligned rows of a [`Triangle`]: the same candidates, so the same
//! minima, in whatever order and width the CPU allows (portable code, AVX2 or AVX-512).
//!
//! The programme runs on any explicit cost (docs/method.md §4): a plan `j_1 > … > j_K` costs
//! `start[j_1] + sum_m w[j_m]·M[j_m, j_{m+1}] + end[j_K]`. The DNA form is `M = L`, `w = d`,
//! `start = -d`, `end = d`.

use std::ops::Range;
use std::sync::OnceLock;

use crate::error::Result;
use crate::stop::Stop;
#[cfg(test)]
use crate::triangle::Aligned;
use crate::triangle::{chunked, Triangle, BLOCK, LANES};

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

/// The costs of one row as the programme sees them: the edge `j -> i` costs `w[j]·M[j, i]`,
/// entering at `j` costs `start[j]`, leaving from `i` costs `end[i]`. `+inf` in `M`, `start` or
/// `end` is a missing edge (`0·inf = NaN` candidates never win either); `w` is finite.
pub(crate) struct Costs<'a> {
    pub edges: &'a Triangle,
    pub w: &'a [f64],
    pub start: &'a [f64],
    pub end: &'a [f64],
}

/// One forward pass: the layers `D_1..D_kmax` of `costs` for plans that start in `starts`; with
/// `exact`, only plans of exactly `kmax` levels are wanted (see `forward_impl`).
pub(crate) struct Pass<'a> {
    pub costs: &'a Costs<'a>,
    pub starts: Range<usize>,
    pub kmax: usize,
    pub exact: bool,
}

/// Defines each `$name`, all of the one signature given, as `$body` compiled with the x86-64
/// features `$features`: the entry points of the vectorised kernels (the caller checks the CPU).
macro_rules! compiled_for {
    (fn $args:tt -> $out:ty { $($features:literal => fn $name:ident = $body:expr;)+ }) => {
        $(
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = $features)]
            unsafe fn $name $args -> $out {
                $body
            }
        )+
    };
}
pub(crate) use compiled_for;

/// Distance between two layers in the layer buffer: N rounded up to whole chunks, so that every
/// layer starts aligned and a chunk read at any level below N stays inside its layer.
pub(crate) fn stride(n: usize) -> usize {
    chunked(n)
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

/// A chunk of [`LANES`] candidates as one kernel holds it: scalars, two AVX2 registers or one
/// AVX-512 register.
trait Lanes: Copy {
    /// `x` in every lane.
    unsafe fn splat(x: f64) -> Self;
    /// The chunk at `p`, which must be 64-byte aligned with [`LANES`] readable floats.
    unsafe fn load(p: *const f64) -> Self;
    /// Writes the chunk at `p` (aligned, [`LANES`] writable floats).
    unsafe fn store(self, p: *mut f64);
    /// `min(v, c + w·l)` lane by lane: the candidate as `candidate` computes it, kept when
    /// `candidate < v` (so a `NaN` candidate never wins).
    unsafe fn relax(v: Self, c: Self, w: Self, l: Self) -> Self;
}

/// The portable kernel: a multiply then an add, in plain code the compiler vectorises.
#[derive(Clone, Copy)]
struct Portable([f64; LANES]);

impl Lanes for Portable {
    #[inline(always)]
    unsafe fn splat(x: f64) -> Self {
        Self([x; LANES])
    }

    #[inline(always)]
    unsafe fn load(p: *const f64) -> Self {
        Self(p.cast::<[f64; LANES]>().read())
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f64) {
        p.cast::<[f64; LANES]>().write(self.0)
    }

    #[inline(always)]
    unsafe fn relax(v: Self, c: Self, w: Self, l: Self) -> Self {
        Self(std::array::from_fn(|k| {
            let a = candidate::<false>(c.0[k], w.0[k], l.0[k]);
            if a < v.0[k] {
                a
            } else {
                v.0[k]
            }
        }))
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::{
        __m256d, __m512d, _mm256_fmadd_pd, _mm256_load_pd, _mm256_min_pd, _mm256_set1_pd,
        _mm256_store_pd, _mm512_fmadd_pd, _mm512_load_pd, _mm512_min_pd, _mm512_set1_pd,
        _mm512_store_pd,
    };

    use super::Lanes;

    /// AVX2 + FMA: two registers of four lanes. `_mm256_min_pd(a, v)` is `a < v ? a : v` lane
    /// by lane, the very selection of the scalar code, and `_mm256_fmadd_pd` rounds once like
    /// `f64::mul_add`. Only inside functions compiled for AVX2 and FMA.
    #[derive(Clone, Copy)]
    pub(super) struct Avx2([__m256d; 2]);

    impl Lanes for Avx2 {
        #[inline(always)]
        unsafe fn splat(x: f64) -> Self {
            Self([_mm256_set1_pd(x); 2])
        }

        #[inline(always)]
        unsafe fn load(p: *const f64) -> Self {
            Self([_mm256_load_pd(p), _mm256_load_pd(p.add(4))])
        }

        #[inline(always)]
        unsafe fn store(self, p: *mut f64) {
            _mm256_store_pd(p, self.0[0]);
            _mm256_store_pd(p.add(4), self.0[1]);
        }

        #[inline(always)]
        unsafe fn relax(v: Self, c: Self, w: Self, l: Self) -> Self {
            Self(std::array::from_fn(|h| {
                _mm256_min_pd(_mm256_fmadd_pd(w.0[h], l.0[h], c.0[h]), v.0[h])
            }))
        }
    }

    /// AVX-512: one register of eight lanes, with the selection and rounding of [`Avx2`]. Only
    /// inside functions compiled for AVX-512F.
    #[derive(Clone, Copy)]
    pub(super) struct Avx512(__m512d);

    impl Lanes for Avx512 {
        #[inline(always)]
        unsafe fn splat(x: f64) -> Self {
            Self(_mm512_set1_pd(x))
        }

        #[inline(always)]
        unsafe fn load(p: *const f64) -> Self {
            Self(_mm512_load_pd(p))
        }

        #[inline(always)]
        unsafe fn store(self, p: *mut f64) {
            _mm512_store_pd(p, self.0)
        }

        #[inline(always)]
        unsafe fn relax(v: Self, c: Self, w: Self, l: Self) -> Self {
            Self(_mm512_min_pd(_mm512_fmadd_pd(w.0, l.0, c.0), v.0))
        }
    }
}

/// `cur[i] = min(cur[i], min_r c[r] + w[r]·rows[r][i])` for `i` in `from..to`, a whole number of
/// chunks starting on a chunk boundary. The minimum of exactly computed candidates does not
/// depend on the order they are taken in, so relaxing by several rows at once gives the values
/// of relaxing row by row.
///
/// Safety: the instructions of `V` must be available, and every row must be 64-byte aligned and
/// readable up to `to` (as [`Triangle::block`] gives them); `cur` is checked here.
#[inline(always)]
unsafe fn relax_rows<V: Lanes, const R: usize>(
    cur: &mut [f64],
    from: usize,
    to: usize,
    rows: [*const f64; R],
    c: [f64; R],
    w: [f64; R],
) {
    assert!(from.is_multiple_of(LANES) && to.is_multiple_of(LANES) && to <= cur.len());
    assert_eq!(cur.as_ptr() as usize % 64, 0);
    let (cv, wv) = (c.map(|x| V::splat(x)), w.map(|x| V::splat(x)));
    let mut i = from;
    while i < to {
        let p = cur.as_mut_ptr().add(i);
        let mut v = V::load(p);
        for r in 0..R {
            v = V::relax(v, cv[r], wv[r], V::load(rows[r].add(i)));
        }
        v.store(p);
        i += LANES;
    }
}

/// One layer: `cur[i] = min_{j > i} prev[j] + w[j] M[j, i]` for `i >= lo`, over predecessors
/// `j in lo + 1..=top`. Whole chunks are relaxed, so some entries below `lo` get (unused)
/// values too; a row's padding yields infinite or NaN candidates, which never win, and so does
/// an infinite `prev[j]`: no row needs skipping and no chunk is cut short.
///
/// Safety: the instructions of `V` must be available.
#[inline(always)]
unsafe fn layer<V: Lanes>(
    edges: &Triangle,
    w: &[f64],
    prev: &[f64],
    cur: &mut [f64],
    lo: usize,
    top: usize,
) {
    cur.fill(f64::INFINITY);
    let from = lo / LANES * LANES;
    let mut j = top;
    // Blocks of BLOCK predecessors: one load and store of `cur` per BLOCK candidates.
    while j >= lo + BLOCK {
        let (c, wj) = (&prev[j + 1 - BLOCK..=j], &w[j + 1 - BLOCK..=j]);
        relax_rows::<V, BLOCK>(
            cur,
            from,
            chunked(j),
            edges.block(j),
            std::array::from_fn(|r| c[BLOCK - 1 - r]),
            std::array::from_fn(|r| wj[BLOCK - 1 - r]),
        );
        j -= BLOCK;
    }
    while j > lo {
        relax_rows::<V, 1>(cur, from, chunked(j), edges.block(j), [prev[j]], [w[j]]);
        j -= 1;
    }
}

/// Fills layer `m` (`layers[m * stride(n)..][..n]`) with `D_{m+1}` for `m = 0..kmax`; only the
/// levels in `starts` may start a plan. Polls `stop` before each layer.
///
/// With `exact = true` only plans of exactly `kmax` levels are wanted, so layer `m` skips the
/// levels too low to leave room for the `kmax - 1 - m` levels still to come (never read after);
/// with `exact = false` every layer is complete and gives `C*_K` for every `K <= kmax`.
///
/// Safety: the instructions of `V` must be available.
#[inline(always)]
unsafe fn forward_impl<V: Lanes>(pass: &Pass<'_>, layers: &mut [f64], stop: &Stop) -> Result<()> {
    let (costs, starts, kmax, exact) = (pass.costs, pass.starts.clone(), pass.kmax, pass.exact);
    let n = costs.w.len();
    let s = stride(n);
    for (j, slot) in layers[..n].iter_mut().enumerate() {
        *slot = if starts.contains(&j) {
            costs.start[j]
        } else {
            f64::INFINITY
        };
    }
    for m in 1..kmax {
        stop.poll(n * n / 2)?;
        let (done, rest) = layers.split_at_mut(m * s);
        let prev = &done[(m - 1) * s..];
        // A prefix of m + 1 levels ends at index <= starts.end - 1 - m; its predecessor at
        // <= starts.end - m. Past the top start no prefix is that long: the layer stays infinite.
        let lo = if exact { kmax - 1 - m } else { 0 };
        let top = starts.end.saturating_sub(m).max(lo);
        layer::<V>(costs.edges, costs.w, prev, &mut rest[..s], lo, top);
    }
    Ok(())
}

/// Follows the optimal plan of `k = steps.len()` levels back from its last level `end`; writes
/// its indices into `steps` in sampling order (noisiest first).
#[inline(always)]
fn backtrack_impl<const FUSED: bool>(
    costs: &Costs<'_>,
    layers: &[f64],
    end: usize,
    steps: &mut [usize],
) {
    let (edges, w, k) = (costs.edges, costs.w, steps.len());
    let n = w.len();
    let s = stride(n);
    let mut i = end;
    steps[k - 1] = i;
    for m in (1..k).rev() {
        let target = layers[m * s + i];
        let prev = &layers[(m - 1) * s..(m - 1) * s + n];
        // Same candidate as the forward pass, scanned from the noisiest predecessor: the first
        // exact match is the arg-min (the noisiest among equals). It exists because `target`
        // is finite and was computed as one of these candidates; when none above `i + 1`
        // matches, `i + 1` is the one.
        let j = edges
            .column(i, n - m)
            .take_while(|&(j, _)| j > i + 1)
            .find(|&(j, l)| candidate::<FUSED>(prev[j], w[j], l) == target)
            .map_or(i + 1, |(j, _)| j);
        steps[m - 1] = j;
        i = j;
    }
}

compiled_for! {
    fn(pass: &Pass<'_>, layers: &mut [f64], stop: &Stop) -> Result<()> {
        "avx2,fma" => fn forward_avx2 = forward_impl::<simd::Avx2>(pass, layers, stop);
        "avx512f,avx2,fma" => fn forward_avx512 = forward_impl::<simd::Avx512>(pass, layers, stop);
    }
}

compiled_for! {
    fn(costs: &Costs<'_>, layers: &[f64], end: usize, steps: &mut [usize]) -> () {
        "fma" => fn backtrack_fma = backtrack_impl::<true>(costs, layers, end, steps);
    }
}

/// The kernels, by the instructions they need (each CPU that runs one runs those before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kernel {
    /// A multiply then an add, in plain code.
    Portable,
    /// Fused multiply-add, four lanes per register (x86-64 with AVX2 and FMA).
    Avx2,
    /// Fused multiply-add, eight lanes per register (x86-64 with AVX-512F and FMA).
    Avx512,
}

/// The widest kernel the CPU runs, unless the environment variable `COTJ_PORTABLE=1` forces the
/// portable kernel (read once, at the first plan of the process).
pub(crate) fn kernel_in_use() -> Kernel {
    static KERNEL: OnceLock<Kernel> = OnceLock::new();
    *KERNEL.get_or_init(|| {
        if std::env::var_os("COTJ_PORTABLE").is_some_and(|v| v == "1") {
            return Kernel::Portable;
        }
        widest_kernel()
    })
}

/// The widest kernel this CPU runs.
fn widest_kernel() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx2") && has!("fma") {
            return Kernel::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return Kernel::Avx2;
        }
    }
    Kernel::Portable
}

/// The DP arithmetic of this process: `"fused"` (AVX2 or AVX-512 with FMA, one rounding per
/// candidate) or `"portable"` (a multiply then an add; forced by `COTJ_PORTABLE=1`). Both find
/// optimal plans; their costs may differ in the last bits.
pub fn kernel() -> &'static str {
    match kernel_in_use() {
        Kernel::Portable => "portable",
        Kernel::Avx2 | Kernel::Avx512 => "fused",
    }
}

/// Fills layer `m` of `layers` with `D_{m+1}` for `m = 0..kmax` (see `forward_impl`) with
/// `kernel`, which the CPU must run.
fn forward_with(kernel: Kernel, pass: &Pass<'_>, layers: &mut [f64], stop: &Stop) -> Result<()> {
    // SAFETY (each arm): the CPU has the kernel's instructions, checked by `widest_kernel`.
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { forward_avx512(pass, layers, stop) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { forward_avx2(pass, layers, stop) },
        _ => unsafe { forward_impl::<Portable>(pass, layers, stop) },
    }
}

/// Fills layer `m` of `layers` (`layers[m * stride(n)..][..n]`) with `D_{m+1}` for
/// `m = 0..kmax` (see `forward_impl`).
///
/// `costs` must be validated (no NaN or -inf, `w` finite) with N entries per array, `starts`
/// within 0..N, and `layers` must hold at least `kmax * stride(n)` floats, 64-byte aligned.
/// `Err(Interrupted)` when `stop` says so (the layers are then incomplete).
pub(crate) fn forward(pass: &Pass<'_>, layers: &mut [f64], stop: &Stop) -> Result<()> {
    assert!(layers.len() >= pass.kmax * stride(pass.costs.w.len()));
    assert_eq!(
        layers.as_ptr() as usize % 64,
        0,
        "the layers must be aligned"
    );
    forward_with(kernel_in_use(), pass, layers, stop)
}

/// Follows the optimal plan of `steps.len()` levels back from its last level `end` (as computed
/// by `forward` on the same machine); writes its indices into `steps` in sampling order.
pub(crate) fn backtrack(costs: &Costs<'_>, layers: &[f64], end: usize, steps: &mut [usize]) {
    match kernel_in_use() {
        // SAFETY: the CPU has FMA, checked by `widest_kernel`.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 | Kernel::Avx512 => unsafe { backtrack_fma(costs, layers, end, steps) },
        _ => backtrack_impl::<false>(costs, layers, end, steps),
    }
}

/// `C*_K = min_i (D_K[i] + end[i])` over the `last` lowest levels, with the arg-min (lowest
/// index on ties). Returns `(INFINITY, usize::MAX)` when no plan of `k` levels has a finite cost.
pub(crate) fn best_end(last: usize, end: &[f64], layers: &[f64], k: usize) -> (f64, usize) {
    let (layer, end) = (&layers[(k - 1) * stride(end.len())..][..last], &end[..last]);
    let sum = |i: usize| layer[i] + end[i];
    // No sum is NaN (a layer entry is finite or +inf, `end` has no NaN or -inf): the minimum
    // is taken lane by lane, in code the compiler vectorises, then its first index found.
    let min = |a: f64, b: f64| if b < a { b } else { a };
    let mut lanes = [f64::INFINITY; LANES];
    for (l, e) in layer.chunks_exact(LANES).zip(end.chunks_exact(LANES)) {
        lanes = std::array::from_fn(|i| min(lanes[i], l[i] + e[i]));
    }
    let best = (last / LANES * LANES..last)
        .map(sum)
        .chain(lanes)
        .fold(f64::INFINITY, min);
    match (0..last).find(|&i| best < f64::INFINITY && sum(i) == best) {
        Some(i) => (sum(i), i),
        None => (f64::INFINITY, usize::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reproducible stream of awkward values: ties, zeros, `+inf`.
    struct Values(u64);

    impl Values {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            match self.0 >> 60 {
                0 => f64::INFINITY,
                1 | 2 => 0.0,
                3..=6 => (self.0 >> 58 & 3) as f64,
                _ => (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 3.0 - 1.0,
            }
        }
    }

    /// Layer `m` of the plain programme: `min` taken candidate by candidate, as the backtrack
    /// re-evaluates it.
    fn plain_layer<const FUSED: bool>(
        c: &Costs<'_>,
        prev: &[f64],
        lo: usize,
        top: usize,
    ) -> Vec<f64> {
        (0..c.w.len())
            .map(|i| {
                (i.max(lo) + 1..=top).fold(f64::INFINITY, |v, j| {
                    let a = candidate::<FUSED>(prev[j], c.w[j], c.edges.row(j)[i]);
                    if a < v {
                        a
                    } else {
                        v
                    }
                })
            })
            .collect()
    }

    #[test]
    fn every_kernel_the_cpu_runs_computes_the_plain_layers_bit_for_bit() {
        let kernels = [Kernel::Portable, Kernel::Avx2, Kernel::Avx512];
        let mut values = Values(7);
        for n in [2, 3, 8, 9, 17, 40, 67] {
            let edges =
                Triangle::new(n, |_, row| row.iter_mut().for_each(|l| *l = values.next())).unwrap();
            let w: Vec<f64> = (0..n).map(|_| values.next().abs().min(2.0)).collect();
            let start: Vec<f64> = (0..n).map(|_| values.next()).collect();
            let costs = Costs {
                edges: &edges,
                w: &w,
                start: &start,
                end: &start,
            };
            for (kmax, exact, starts) in [
                (n.min(5), true, 0..n),
                (n, false, n / 2..n),
                (2, true, n - 1..n),
            ] {
                for &kernel in kernels.iter().filter(|&&k| k <= widest_kernel()) {
                    let mut layers = Aligned::default();
                    let layers = layers.grown("test", kmax * stride(n), 0.0).unwrap();
                    let pass = Pass {
                        costs: &costs,
                        starts: starts.clone(),
                        kmax,
                        exact,
                    };
                    forward_with(kernel, &pass, layers, &Stop::never()).unwrap();
                    for m in 1..kmax {
                        let prev = &layers[(m - 1) * stride(n)..][..n];
                        let lo = if exact { kmax - 1 - m } else { 0 };
                        let top = starts.end.saturating_sub(m).max(lo);
                        let plain = if kernel == Kernel::Portable {
                            plain_layer::<false>(&costs, prev, lo, top)
                        } else {
                            plain_layer::<true>(&costs, prev, lo, top)
                        };
                        let got = &layers[m * stride(n)..][..n];
                        for i in lo..n {
                            assert_eq!(
                                got[i].to_bits(),
                                plain[i].to_bits(),
                                "{kernel:?} n={n} m={m} i={i}"
                            );
                        }
                    }
                }
            }
        }
    }
}
