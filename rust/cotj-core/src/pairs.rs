//! Plans for a multistep solver (docs/method.md §11): the layered programme over (previous,
//! current) pairs of nodes.
//!
//! A multistep solver's step from node `j` to `i` also uses its evaluation at the previous node
//! `k`, so its cost is a function of the triple: `pairs[k, j, i]`. On nodes `0..M` (node 0 is
//! t = 0, node `n` the grid level `n - 1`) a plan of `K` evaluations `e_1 = current > e_2 > … >
//! e_K >= 1` costs
//!
//! ```text
//! w[e_1]·step(e_1 -> e_2) + sum_{n=2}^{K-1} w[e_n]·pairs[e_{n-1}, e_n, e_{n+1}] + w[e_K]·end[e_K]
//! ```
//!
//! where the first step is `first[e_1, e_2]` (no evaluation before) or `pairs[previous, e_1, e_2]`
//! (after one at node `previous`), `end[j]` is the last step, from `j` to t = 0, and `w` (all ones
//! by default) scales every step by a factor of its source node (closed-loop row scales).
//!
//! Layer `t` holds `L_t[a, b]`, the cheapest cost of a prefix whose last two evaluations are `a`
//! then `b` (the steps so far, not yet the one from `b`): `L_{t+1}[j, i] = min_k L_t[k, j] +
//! pairs[k, j, i]·w[j]`, `O(K·M³/6)` candidates in all. Only the layers are kept (`8·(K-1)·M²`
//! bytes); the arg-min is recovered along the final path by re-evaluating its candidates with the
//! very same expression, so ties break exactly as a dense numpy programme with `argmin` breaks
//! them (`tests/reference.py`): among equal predecessors the lowest node wins, and among equal
//! final pairs the first in row-major order `(e_{K-1}, e_K)`.
//!
//! Only the entries a plan can use are read: `first[current, i]` for `i < current`,
//! `pairs[k, j, i]` for `k > j > i >= 1` and `end[j]` for `j >= 1`; the others are ignored
//! (missing). `+inf` is a missing step; NaN and `-inf` are refused: those of `first`, `end` and
//! the first step's row of `pairs` before planning, those of the other rows of `pairs` as the
//! programme reads them (at no extra pass over the array; a row it never reaches is not checked).

use std::cell::Cell;

use rayon::prelude::*;

use crate::batch::{batch_rows, Padded};
use crate::dp::{compiled_for, kernel_in_use, Kernel};
use crate::error::{CotjError, Result};
use crate::limits::MAX_PAIR_NODES;
use crate::memory;
use crate::scan::first_bad;
use crate::stop::Stop;

/// The local errors of a multistep solver's steps on `M` nodes, borrowed, row-major: `first`
/// (M, M) `[j, i]` the step `j -> i` without a previous evaluation, `pairs` (M, M, M) `[k, j, i]`
/// the step `j -> i` after an evaluation at `k`, `end` (M,) `[j]` the last step, from `j` to
/// t = 0. Entries are numbers or `+inf` (a missing step); see the module for those read.
#[derive(Debug, Clone, Copy)]
pub struct PairCost<'a> {
    m: usize,
    first: &'a [f64],
    pairs: &'a [f64],
    end: &'a [f64],
}

/// What to plan: one value per row, or one shared by every row (B is the largest row count).
#[derive(Debug, Clone, Copy, Default)]
pub struct PairRequest<'a> {
    /// Evaluations per plan, K (1..=current): (1,) or (B,).
    pub budget: &'a [i64],
    /// The node evaluated next, the plan's first (1..M): (1,) or (B,).
    pub current: &'a [i64],
    /// The node evaluated before `current` (current+1..M), negative for none: (1,) or (B,);
    /// `None`: no previous evaluation in any row.
    pub previous: Option<&'a [i64]>,
    /// Per-node factors of every step from a node, finite and `> 0`: (M,) or (B, M) row-major;
    /// `None`: all ones.
    pub scale: Option<&'a [f64]>,
}

/// The plans of a batch: `steps` holds each plan's nodes in sampling order (descending,
/// `current` first), `lengths` its evaluations.
pub type PairPlans = Padded;

/// One checked row of a request.
#[derive(Debug, Clone, Copy)]
struct Row<'a> {
    budget: usize,
    current: usize,
    previous: Option<usize>,
    scale: Option<&'a [f64]>,
}

/// Below this many rows a batch is planned on the calling thread. A plan at M = 101 takes about
/// a tenth of a millisecond: two are worth handing to the pool.
const PARALLEL_MIN_ROWS: usize = 2;

/// The most bytes of DP layers a thread keeps between calls (K = 100 on M = 101 nodes needs
/// 8 MB); larger layers are freed after their call.
const KEEP_BYTES: usize = 8 << 20;

/// What the layers are called in an out-of-memory error.
const LAYERS: &str = "the pair planning layers ((budget - 1) x M^2 floats)";

/// Rule of cost entries: anything but NaN and `-inf`.
fn not_nan_or_neg_inf(v: f64) -> bool {
    v > f64::NEG_INFINITY
}

/// `Err` naming the first entry of `v` (of the array `name`, at the index `at` gives) that is NaN
/// or `-inf`.
fn check_entries(name: &'static str, v: &[f64], at: impl Fn(usize) -> String) -> Result<()> {
    match first_bad(v, not_nan_or_neg_inf) {
        None => Ok(()),
        Some(p) => Err(CotjError::Value {
            name,
            at: at(p),
            value: v[p],
            rule: "a number or +inf (no NaN, no -inf)",
        }),
    }
}

/// Rule of scale entries.
fn finite_positive(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

/// Value `b` of a per-row array (its only value when shared).
fn pick<T: Copy>(v: &[T], b: usize) -> T {
    if v.len() == 1 {
        v[0]
    } else {
        v[b]
    }
}

/// The name of value `b` of a per-row array in errors.
fn name_of(name: &str, len: usize, b: usize) -> String {
    if len == 1 {
        name.into()
    } else {
        format!("{name}[{b}]")
    }
}

/// The nodes a layer's rows may be (inclusive): prefix `t` (1-based) of a `k`-evaluation plan
/// from `current` ends with `e_t`, which has `t - 1` nodes above it and `k - t` below it (down to
/// node 1). The first layer holds the one row `current`.
#[inline(always)]
fn rows_of(t: usize, k: usize, current: usize) -> (usize, usize) {
    if t == 1 {
        (current, current)
    } else {
        (k - t + 1, current + 1 - t)
    }
}

/// `dst[s..s + W] = min_(c, o) in preds c + pairs[o + s + l]·w` lane by lane, the candidate computed
/// as a multiply then an add (no fused rounding: the very expression of a numpy programme) and
/// kept when strictly smaller. The chunk stays in registers while the predecessors stream by, in
/// `R` interleaved accumulators (independent chains of minima) merged at the end: the minimum of
/// exactly computed candidates does not depend on the order they are taken in.
#[inline(always)]
fn chunk<const W: usize, const R: usize>(
    dst: &mut [f64],
    s: usize,
    preds: &[(f64, usize)],
    pairs: &[f64],
    w: f64,
) -> bool {
    #[inline(always)]
    fn relax<const W: usize>(acc: &mut [f64; W], bad: &mut [bool; W], c: f64, p: &[f64], w: f64) {
        let p: &[f64; W] = p.try_into().expect("a chunk of W values");
        for l in 0..W {
            let x = c + p[l] * w;
            acc[l] = if x < acc[l] { x } else { acc[l] };
            bad[l] |= !not_nan_or_neg_inf(p[l]);
        }
    }
    let mut acc = [[f64::INFINITY; W]; R];
    let mut bad = [false; W];
    let mut groups = preds.chunks_exact(R);
    for group in &mut groups {
        for (a, &(c, o)) in acc.iter_mut().zip(group) {
            relax(a, &mut bad, c, &pairs[o + s..o + s + W], w);
        }
    }
    for &(c, o) in groups.remainder() {
        relax(&mut acc[0], &mut bad, c, &pairs[o + s..o + s + W], w);
    }
    let (first, rest) = acc.split_at_mut(1);
    for a in rest {
        for l in 0..W {
            first[0][l] = if a[l] < first[0][l] {
                a[l]
            } else {
                first[0][l]
            };
        }
    }
    dst[s..s + W].copy_from_slice(&first[0]);
    bad.iter().any(|&b| b)
}

/// [`chunk`] over the whole of `dst` (at least `W` long), the last chunk shifted back to end at
/// the row's end: its lanes that overlap the chunk before get the same minima again. True when a
/// value read is NaN or `-inf`.
#[inline(always)]
fn chunks<const W: usize, const R: usize>(
    dst: &mut [f64],
    preds: &[(f64, usize)],
    pairs: &[f64],
    w: f64,
) -> bool {
    let len = dst.len();
    let (mut s, mut bad) = (0, false);
    while s + W <= len {
        bad |= chunk::<W, R>(dst, s, preds, pairs, w);
        s += W;
    }
    if s < len {
        bad |= chunk::<W, R>(dst, len - W, preds, pairs, w);
    }
    bad
}

/// `dst[i] = min_(c, o) in preds c + pairs[o + i]·w` (`+inf` when `preds` is empty), in the
/// widest chunks that fit the row, with enough accumulators to hide the latency of a minimum.
/// True when a value read is NaN or `-inf`.
#[inline(always)]
fn relax_row(dst: &mut [f64], preds: &[(f64, usize)], pairs: &[f64], w: f64) -> bool {
    match dst.len() {
        32.. => chunks::<16, 2>(dst, preds, pairs, w),
        16.. => chunks::<16, 2>(dst, preds, pairs, w),
        8.. => chunks::<8, 4>(dst, preds, pairs, w),
        4.. => chunks::<4, 4>(dst, preds, pairs, w),
        _ => chunks::<1, 4>(dst, preds, pairs, w),
    }
}

/// An error unless pair costs of `m` nodes lie within 2..=[`MAX_PAIR_NODES`] (checked before
/// anything of size M³ is read or allocated).
pub fn check_pair_nodes(m: usize) -> Result<()> {
    match (2..=MAX_PAIR_NODES).contains(&m) {
        true => Ok(()),
        false => Err(CotjError::PairNodes { got: m }),
    }
}

impl<'a> PairCost<'a> {
    /// Borrows the costs of `m` nodes (2..=[`MAX_PAIR_NODES`]), checking the array lengths; the
    /// values are checked where a plan reads them ([`PairCost::plan_batch`]).
    pub fn new(m: usize, first: &'a [f64], pairs: &'a [f64], end: &'a [f64]) -> Result<Self> {
        check_pair_nodes(m)?;
        for (name, got, expected, shape) in [
            ("first", first.len(), m * m, "(M, M)"),
            ("pairs", pairs.len(), m * m * m, "(M, M, M)"),
            ("end", end.len(), m, "(M,)"),
        ] {
            if got != expected {
                return Err(CotjError::PairShape {
                    name,
                    got,
                    expected,
                    shape,
                    nodes: m,
                });
            }
        }
        Ok(Self {
            m,
            first,
            pairs,
            end,
        })
    }

    /// Number of nodes M.
    pub fn nodes(&self) -> usize {
        self.m
    }

    /// The cheapest plan of `budget` evaluations from node `current` (after one at `previous`),
    /// steps scaled by `scale` (M,): `(nodes, cost)`. Validated as [`PairCost::plan_batch`].
    pub fn plan(
        &self,
        budget: usize,
        current: usize,
        previous: Option<usize>,
        scale: Option<&[f64]>,
    ) -> Result<(Vec<usize>, f64)> {
        let int = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        let previous = previous.map(|p| [int(p)]);
        let plans = self.plan_batch(
            &PairRequest {
                budget: &[int(budget)],
                current: &[int(current)],
                previous: previous.as_ref().map(|p| &p[..]),
                scale,
            },
            &Stop::never(),
        )?;
        let nodes = plans.steps.iter().map(|&n| n as usize).collect();
        Ok((nodes, plans.cost[0]))
    }

    /// The cheapest plan of every row of `request`, in parallel over rows, until `stop` says
    /// otherwise. The request (row counts, nodes, budgets, scales) and the cost entries of the
    /// first and last steps are validated before any planning, the entries of `pairs` as the
    /// programme reads them (a NaN or `-inf` read: the error names the first such entry of the
    /// region `current >= k > j > i >= 1`). The error reported is that of the first failing row,
    /// whatever the threads. A row with no plan of finite cost is an error
    /// ([`CotjError::NoFinitePairPlan`]).
    pub fn plan_batch(&self, request: &PairRequest<'_>, stop: &Stop) -> Result<PairPlans> {
        let rows = self.rows(request)?;
        let n = rows.len();
        let top = rows.iter().map(|r| r.current).max().unwrap_or(0);
        self.check_values(&rows, top)?;
        let plan = |b: usize, layers: &mut Vec<f64>| {
            stop.poll(1)?;
            self.plan_row(b, &rows[b], layers, stop)
        };
        const PLANS: &str = "the pair plans of the batch";
        // Every row's outcome in row order (a sequential run stops at the first error); the first
        // error by row is reported, whatever the threads.
        let mut each: Vec<Result<(Vec<usize>, f64)>> = memory::with_capacity(PLANS, n)?;
        if n >= PARALLEL_MIN_ROWS {
            stop.parallel(|| {
                each.par_extend(
                    (0..n)
                        .into_par_iter()
                        .map_init(Vec::new, |layers, b| plan(b, layers)),
                );
                Ok(())
            })?;
        } else {
            with_kept_layers(|layers| {
                for b in 0..n {
                    let row = plan(b, layers);
                    let failed = row.is_err();
                    each.push(row);
                    if failed {
                        break;
                    }
                }
            });
        }
        let each = each.into_iter().collect::<Result<Vec<_>>>()?;
        Padded::new(PLANS, &each, |(nodes, cost)| (nodes, *cost))
    }

    /// The checked rows of `request`.
    fn rows<'r>(&self, request: &PairRequest<'r>) -> Result<Vec<Row<'r>>> {
        let m = self.m;
        let scale_rows = match request.scale {
            Some(s) if s.is_empty() || !s.len().is_multiple_of(m) => {
                return Err(CotjError::DenseLength {
                    name: "scale",
                    got: s.len(),
                    unit: m,
                })
            }
            Some(s) => s.len() / m,
            None => 1,
        };
        let counts = [
            ("budget", request.budget.len()),
            ("current", request.current.len()),
            ("previous", request.previous.map_or(1, <[i64]>::len)),
            ("scale", scale_rows),
        ];
        let n = batch_rows(&counts)?;
        let mut rows = memory::with_capacity("the rows of the request", n)?;
        for b in 0..n {
            let name = |name: &str, len: usize| name_of(name, len, b);
            let c = pick(request.current, b);
            let current = match usize::try_from(c) {
                Ok(c) if (1..m).contains(&c) => c,
                _ => {
                    return Err(CotjError::PairNode {
                        name: name("current", request.current.len()),
                        value: c,
                        lo: 1,
                        hi: m,
                    })
                }
            };
            let previous = match request.previous.map(|p| (pick(p, b), p.len())) {
                None => None,
                Some((p, _)) if p < 0 => None,
                Some((p, len)) => match usize::try_from(p) {
                    Ok(p) if (current + 1..m).contains(&p) => Some(p),
                    _ => {
                        return Err(CotjError::PairNode {
                            name: name("previous", len),
                            value: p,
                            lo: current + 1,
                            hi: m,
                        })
                    }
                },
            };
            let k = pick(request.budget, b);
            let budget = match usize::try_from(k) {
                Ok(k) if (1..=current).contains(&k) => k,
                _ => {
                    return Err(CotjError::PairBudget {
                        name: name("budget", request.budget.len()),
                        value: k,
                        current,
                    })
                }
            };
            let scale = request.scale.map(|s| {
                if s.len() == m {
                    s
                } else {
                    &s[b * m..(b + 1) * m]
                }
            });
            if let Some(s) = scale {
                if let Some(i) = first_bad(s, finite_positive) {
                    return Err(CotjError::Value {
                        name: "scale",
                        at: if scale_rows == 1 {
                            format!("{i}")
                        } else {
                            format!("{b}, {i}")
                        },
                        value: s[i],
                        rule: "finite and > 0",
                    });
                }
            }
            rows.push(Row {
                budget,
                current,
                previous,
                scale,
            });
        }
        Ok(rows)
    }

    /// Checks the cost entries of the first and last steps of the plans of `rows` (`top`: their
    /// highest current node): `end[1..=top]` and every row's first step. The entries of `pairs`
    /// of the later steps are checked as the programme reads them (see [`PairCost::region_error`]).
    fn check_values(&self, rows: &[Row<'_>], top: usize) -> Result<()> {
        let m = self.m;
        check_entries("end", &self.end[1..=top], |p| format!("{}", p + 1))?;
        for r in rows.iter().filter(|r| r.budget > 1) {
            let c = r.current;
            match r.previous {
                None => check_entries("first", &self.first[c * m + 1..c * m + c], |p| {
                    format!("{c}, {}", p + 1)
                })?,
                Some(k) => {
                    check_entries("pairs", &self.pairs[(k * m + c) * m + 1..][..c - 1], |p| {
                        format!("{k}, {c}, {}", p + 1)
                    })?
                }
            }
        }
        Ok(())
    }

    /// The first NaN or `-inf` entry `pairs[k, j, i]` with `top >= k > j > i >= 1`, in that order,
    /// as an error; `None` when there is none.
    fn region_error(&self, top: usize) -> Option<CotjError> {
        let m = self.m;
        (3..=top)
            .flat_map(|k| (2..k).map(move |j| (k, j)))
            .find_map(|(k, j)| {
                check_entries("pairs", &self.pairs[(k * m + j) * m + 1..][..j - 1], |p| {
                    format!("{k}, {j}, {}", p + 1)
                })
                .err()
            })
    }

    /// The plan of one checked row (`b` labels its errors), reusing `layers`.
    fn plan_row(
        &self,
        b: usize,
        row: &Row<'_>,
        layers: &mut Vec<f64>,
        stop: &Stop,
    ) -> Result<(Vec<usize>, f64)> {
        let Row {
            budget: k,
            current,
            previous,
            scale,
        } = *row;
        let ones;
        let w = match scale {
            Some(w) => w,
            None => {
                ones = memory::filled("the scale", current + 1, 1.0)?;
                &ones[..]
            }
        };
        let mut nodes = memory::with_capacity("a pair plan", k)?;
        if k == 1 {
            nodes.push(current);
            return Ok((nodes, self.end[current] * w[current]));
        }
        let sub = current + 1;
        let need = (k - 1) * sub * sub;
        if layers.len() < need {
            memory::reserve(LAYERS, layers, need - layers.len())?;
            layers.resize(need, f64::INFINITY);
        }
        let plan = Plan {
            cost: self,
            k,
            current,
            previous,
            w,
        };
        if !forward(&plan, &mut layers[..need], stop)? {
            // A value read is NaN or -inf: name the first in the region the plan reads from.
            return Err(self
                .region_error(current)
                .unwrap_or(CotjError::NoFinitePairPlan {
                    row: b,
                    budget: k,
                    current,
                }));
        }
        let Some((cost, a, last)) = plan.best_end(layers) else {
            return Err(CotjError::NoFinitePairPlan {
                row: b,
                budget: k,
                current,
            });
        };
        nodes.resize(k, 0);
        plan.backtrack(layers, a, last, &mut nodes);
        Ok((nodes, cost))
    }
}

/// One plan being made: the costs, K, the first node, the previous one and the scale.
struct Plan<'c, 'a> {
    cost: &'c PairCost<'a>,
    k: usize,
    current: usize,
    previous: Option<usize>,
    w: &'c [f64],
}

impl Plan<'_, '_> {
    /// Entries per layer: `(current + 1)²`.
    fn layer_len(&self) -> usize {
        (self.current + 1) * (self.current + 1)
    }

    /// The `M` entries `pairs[k, j, ..]`.
    #[inline(always)]
    fn pairs_row(&self, k: usize, j: usize) -> &[f64] {
        let m = self.cost.m;
        &self.cost.pairs[(k * m + j) * m..][..m]
    }

    /// The last pair `(e_{K-1}, e_K)` of the cheapest plan and its cost (end step included): the
    /// first minimum in row-major order; `None` when no plan has a finite cost.
    fn best_end(&self, layers: &[f64]) -> Option<(f64, usize, usize)> {
        let (k, sub, w, end) = (self.k, self.current + 1, self.w, self.cost.end);
        let layer = &layers[(k - 2) * self.layer_len()..][..self.layer_len()];
        let (lo, hi) = rows_of(k - 1, k, self.current);
        let mut best = (f64::INFINITY, 0, 0);
        for a in lo..=hi {
            for (b, &v) in layer[a * sub + 1..a * sub + a].iter().enumerate() {
                let b = b + 1;
                let total = v + end[b] * w[b];
                if total < best.0 {
                    best = (total, a, b);
                }
            }
        }
        best.0.is_finite().then_some(best)
    }

    /// Follows the cheapest plan back from its last pair `(a, b)`; writes its nodes into
    /// `nodes[..K]`. At each layer the predecessor is the lowest node whose candidate, computed
    /// as in the forward pass, equals the value kept.
    fn backtrack(&self, layers: &[f64], mut a: usize, mut b: usize, nodes: &mut [usize]) {
        let (k, sub, len) = (self.k, self.current + 1, self.layer_len());
        nodes[k - 1] = b;
        nodes[k - 2] = a;
        for t in (2..k).rev() {
            let target = layers[(t - 1) * len + a * sub + b];
            let prev = &layers[(t - 2) * len..][..len];
            let (lo, hi) = rows_of(t - 1, k, self.current);
            let w = self.w[a];
            let found = (lo.max(a + 1)..=hi)
                .find(|&c| prev[c * sub + a] + self.pairs_row(c, a)[b] * w == target);
            // The value kept is one of these candidates, computed the same way.
            let c = found.unwrap_or(hi);
            nodes[t - 2] = c;
            (a, b) = (c, a);
        }
    }
}

/// Fills the `K - 1` layers of `plan` with the kernel the CPU runs (see `forward_impl`).
fn forward(plan: &Plan<'_, '_>, layers: &mut [f64], stop: &Stop) -> Result<bool> {
    let mut preds = memory::filled("the predecessors of a node", plan.current + 1, (0.0, 0))?;
    // SAFETY (each arm): the CPU has the kernel's instructions (checked by `kernel_in_use`).
    match kernel_in_use() {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { forward_avx512(plan, layers, &mut preds, stop) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { forward_avx2(plan, layers, &mut preds, stop) },
        _ => forward_impl(plan, layers, &mut preds, stop),
    }
}

compiled_for! {
    fn(plan: &Plan<'_, '_>, layers: &mut [f64], preds: &mut [(f64, usize)], stop: &Stop)
        -> Result<bool>
    {
        "avx2" => fn forward_avx2 = forward_impl(plan, layers, preds, stop);
        "avx512f,avx2" => fn forward_avx512 = forward_impl(plan, layers, preds, stop);
    }
}

/// Layer `t` (1-based, at `layers[(t - 1)·(current + 1)²..]`, entry `[a·(current + 1) + b]`)
/// gets `L_t[a, b]` for the rows `a` of [`rows_of`] and `b` in `K - t..a`: the levels a
/// `K`-evaluation plan can reach there and still end at node 1 or above. Nothing else is written
/// or read, so the buffer needs no clearing. Polls `stop` for every row. `Ok(false)` when a
/// value of `pairs` read is NaN or `-inf` (the layers are then meaningless).
#[inline(always)]
fn forward_impl(
    plan: &Plan<'_, '_>,
    layers: &mut [f64],
    preds: &mut [(f64, usize)],
    stop: &Stop,
) -> Result<bool> {
    let (k, current, w) = (plan.k, plan.current, plan.w);
    let (sub, len) = (current + 1, plan.layer_len());
    let (m, pairs) = (plan.cost.m, plan.cost.pairs);
    // L_1[current, b] = w[current]·step(current -> b), b in K-1..current.
    let base = match plan.previous {
        None => &plan.cost.first[current * m..][..m],
        Some(p) => plan.pairs_row(p, current),
    };
    let wc = w[current];
    for (d, &s) in layers[current * sub..][k - 1..current]
        .iter_mut()
        .zip(&base[k - 1..current])
    {
        *d = s * wc;
    }
    for t in 1..k - 1 {
        let (done, rest) = layers.split_at_mut(t * len);
        let (prev, cur) = (&done[(t - 1) * len..], &mut rest[..len]);
        let (alo, ahi) = rows_of(t, k, current);
        let (jlo, jhi) = rows_of(t + 1, k, current);
        let ilo = k - t - 1;
        for j in jlo..=jhi {
            stop.poll((ahi - j) * (j - ilo))?;
            // The predecessors of row j with a finite value (the others yield only +inf), and
            // where their rows of pairs start.
            let mut n = 0;
            for a in alo.max(j + 1)..=ahi {
                let c = prev[a * sub + j];
                preds[n] = (c, (a * m + j) * m + ilo);
                n += usize::from(c != f64::INFINITY);
            }
            if relax_row(
                &mut cur[j * sub + ilo..j * sub + j],
                &preds[..n],
                pairs,
                w[j],
            ) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Runs `work` on the layers this thread kept from its last call (taken out meanwhile), so that
/// small calls allocate and touch no new memory.
fn with_kept_layers<T>(work: impl FnOnce(&mut Vec<f64>) -> T) -> T {
    thread_local!(static KEPT: Cell<Vec<f64>> = const { Cell::new(Vec::new()) });
    let mut layers = KEPT.take();
    let out = work(&mut layers);
    if layers.capacity() * std::mem::size_of::<f64>() <= KEEP_BYTES {
        KEPT.set(layers);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reproducible stream of awkward values: ties, zeros, `+inf` (small integers only when
    /// the seed is even: plans then tie often).
    struct Values(u64);

    impl Values {
        fn next(&mut self) -> f64 {
            let ints = self.0.is_multiple_of(2);
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407)
                & !1
                | u64::from(!ints);
            match self.0 >> 60 {
                0 => f64::INFINITY,
                1..=6 => (self.0 >> 58 & 3) as f64,
                _ if ints => (self.0 >> 57 & 1) as f64,
                _ => (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 3.0,
            }
        }
    }

    /// Costs of `m` nodes with the structure of a solver's: `+inf` outside the steps a plan may
    /// take, awkward values inside.
    fn costs(m: usize, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut v = Values(seed);
        let mut first = vec![f64::INFINITY; m * m];
        let mut pairs = vec![f64::INFINITY; m * m * m];
        for j in 1..m {
            for i in 0..j {
                first[j * m + i] = v.next();
                for k in j + 1..m {
                    if i >= 1 {
                        pairs[(k * m + j) * m + i] = v.next();
                    }
                }
            }
        }
        let mut end: Vec<f64> = (0..m).map(|_| v.next()).collect();
        end[0] = f64::INFINITY;
        (first, pairs, end)
    }

    /// The dense programme of `cotj.multistep`'s numpy reference: every (k, j, i), `argmin`
    /// back-pointers (lowest index on ties), the final `argmin` in row-major order.
    fn dense(
        c: &PairCost<'_>,
        k: usize,
        current: usize,
        previous: Option<usize>,
        w: &[f64],
    ) -> Option<Vec<usize>> {
        let m = c.m;
        let sub = current + 1;
        let mut value = vec![f64::INFINITY; sub * sub];
        for j in 0..sub {
            let s = match previous {
                None => c.first[current * m + j],
                Some(p) => c.pairs[(p * m + current) * m + j],
            };
            value[current * sub + j] = s * w[current];
        }
        value[current * sub] = f64::INFINITY;
        let mut back = Vec::new();
        for _ in 0..k.saturating_sub(2) {
            let mut next = vec![f64::INFINITY; sub * sub];
            let mut arg = vec![0; sub * sub];
            for j in 0..sub {
                for i in 0..sub {
                    let mut best = (f64::INFINITY, usize::MAX);
                    for a in 0..sub {
                        let x = value[a * sub + j] + c.pairs[(a * m + j) * m + i] * w[j];
                        if best.1 == usize::MAX || x < best.0 {
                            best = (x, a);
                        }
                    }
                    next[j * sub + i] = best.0;
                    arg[j * sub + i] = best.1;
                }
            }
            back.push(arg);
            value = next;
        }
        let mut best = (f64::INFINITY, usize::MAX);
        for a in 0..sub {
            for j in 0..sub {
                let x = value[a * sub + j] + c.end[j] * w[j];
                if best.1 == usize::MAX || x < best.0 {
                    best = (x, a * sub + j);
                }
            }
        }
        if !best.0.is_finite() {
            return None;
        }
        let mut path = vec![best.1 % sub, best.1 / sub];
        for arg in back.iter().rev() {
            let (j, i) = (path[path.len() - 1], path[path.len() - 2]);
            path.push(arg[j * sub + i]);
        }
        path.reverse();
        Some(path)
    }

    #[test]
    fn every_kernel_the_cpu_runs_computes_the_same_layers_bit_for_bit() {
        for (m, seed) in [(9, 1), (23, 2), (40, 3), (67, 5)] {
            let (first, pairs, end) = costs(m, seed);
            let cost = PairCost::new(m, &first, &pairs, &end).unwrap();
            let w: Vec<f64> = (0..m).map(|j| 0.5 + (j % 5) as f64 * 0.37).collect();
            for (k, current, previous) in [
                (3, m - 1, None),
                (7, m - 2, Some(m - 1)),
                (m / 2, m - 1, None),
            ] {
                let plan = Plan {
                    cost: &cost,
                    k,
                    current,
                    previous,
                    w: &w,
                };
                let len = (k - 1) * plan.layer_len();
                let (mut widest, mut portable) = (vec![f64::NAN; len], vec![f64::NAN; len]);
                let never = Stop::never();
                let ok = forward(&plan, &mut widest, &never).unwrap();
                let mut preds = vec![(0.0, 0); current + 1];
                assert_eq!(
                    forward_impl(&plan, &mut portable, &mut preds, &never).unwrap(),
                    ok
                );
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&widest),
                    bits(&portable),
                    "m={m} k={k} {:?}",
                    kernel_in_use()
                );
            }
        }
    }

    #[test]
    fn plans_equal_the_dense_programme_ties_included() {
        for (m, seed) in [(3, 1), (5, 2), (8, 3), (11, 4), (17, 5), (9, 6), (13, 8)] {
            let (first, pairs, end) = costs(m, seed);
            let c = PairCost::new(m, &first, &pairs, &end).unwrap();
            let mut v = Values(seed + 100);
            let scaled: Vec<f64> = (0..m).map(|_| 0.5 + v.next().min(2.0)).collect();
            let ones = vec![1.0; m];
            for (w, scale) in [(&scaled, Some(&scaled[..])), (&ones, None)] {
                for current in 1..m {
                    for previous in [None].into_iter().chain((current + 1..m).map(Some)) {
                        for k in 2..=current {
                            let got = c.plan(k, current, previous, scale);
                            match dense(&c, k, current, previous, w) {
                                Some(want) => {
                                    assert_eq!(
                                        got.unwrap().0,
                                        want,
                                        "m={m} {current} {previous:?} {k}"
                                    )
                                }
                                None => {
                                    assert!(matches!(got, Err(CotjError::NoFinitePairPlan { .. })))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
