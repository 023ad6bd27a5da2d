//! Planning many rows (DNA or dense costs) at once, in parallel over rows (rayon), with padded outputs.

use std::cell::Cell;

use rayon::prelude::*;

use crate::dense::DenseCost;
use crate::error::{CotjError, Result};
use crate::memory;
use crate::planner::{AdaptivePlan, Planner, Workspace};
use crate::stop::Stop;
use crate::triangle::Triangle;

/// Below this many rows a batch is planned on the calling thread: handing work to the rayon
/// pool costs more than planning a few rows.
const PARALLEL_MIN_ROWS: usize = 16;

/// Steps per plan when the caller sets no length (neither a budget nor `tau`): the one default
/// of the bindings.
pub const DEFAULT_BUDGET: i64 = 8;

/// The values a batch may hold (f32 or f64 in the bindings), read as f64 by the planning threads.
pub trait Real: Copy + Into<f64> + Send + Sync {}

impl<T: Copy + Into<f64> + Send + Sync> Real for T {}

/// How long each plan is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget<'a> {
    /// Exactly `K` steps for every row.
    Fixed(i64),
    /// One budget per row.
    PerRow(&'a [i64]),
    /// Adaptive length per row: the smallest K with `R(K) >= tau`, up to `max_steps` (default
    /// [`Planner::default_max_steps`]).
    Adaptive { tau: f64, max_steps: Option<i64> },
}

/// Plans of a batch, row-major, padded to `width` columns: of grid indices ([`BatchPlans`]) or
/// of a multistep solver's nodes ([`crate::PairCost`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Padded {
    /// Number of rows B.
    pub rows: usize,
    /// Columns of `steps`: the longest plan of the batch.
    pub width: usize,
    /// Each plan in sampling order (grid indices noisiest first, or nodes `current` first), `-1`
    /// past its length. (B, width)
    pub steps: Vec<i64>,
    /// Length of each plan: its steps, or its evaluations. (B,)
    pub lengths: Vec<i64>,
    /// Cost of each plan. (B,)
    pub cost: Vec<f64>,
}

impl Padded {
    /// The plans `plan(p)` (indices and cost) of `plans`, padded (`what` names them in errors).
    pub(crate) fn new<P>(
        what: &'static str,
        plans: &[P],
        plan: impl Fn(&P) -> (&[usize], f64),
    ) -> Result<Self> {
        let rows = plans.len();
        let width = plans.iter().map(|p| plan(p).0.len()).max().unwrap_or(0);
        let mut out = Self {
            rows,
            width,
            steps: memory::filled(what, rows * width, -1)?,
            lengths: memory::with_capacity(what, rows)?,
            cost: memory::with_capacity(what, rows)?,
        };
        for (b, p) in plans.iter().enumerate() {
            let (steps, cost) = plan(p);
            for (c, &s) in steps.iter().enumerate() {
                out.steps[b * width + c] = s as i64;
            }
            out.lengths.push(steps.len() as i64);
            out.cost.push(cost);
        }
        Ok(out)
    }
}

/// Plans of a batch of grid rows, with their noise levels and, for adaptive runs, curves.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPlans {
    /// The plans: grid indices in sampling order (noisiest first), padded.
    pub plans: Padded,
    /// Noise levels of `plans.steps`, `NaN` past each row's length. (B, width)
    pub levels: Vec<f64>,
    /// Adaptive runs only: `C*_K` for `K = 1..=max_steps`. (B, max_steps), else empty.
    pub curve: Vec<f64>,
    /// Adaptive runs only: `R(K)` for `K = 1..=max_steps`. (B, max_steps), else empty.
    pub ratio: Vec<f64>,
}

struct Row {
    steps: Vec<usize>,
    cost: f64,
    curve: Vec<f64>,
    ratio: Vec<f64>,
}

impl From<AdaptivePlan> for Row {
    fn from(a: AdaptivePlan) -> Self {
        Row {
            steps: a.plan.steps,
            cost: a.plan.cost,
            curve: a.curve,
            ratio: a.ratio,
        }
    }
}

/// Where each plan starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Current<'a> {
    /// Anywhere the `first` window allows.
    Free,
    /// Exactly at this grid index, for every row (the level a sampler is at now).
    All(i64),
    /// At one grid index per row.
    PerRow(&'a [i64]),
}

/// A validated batch request: per row, the budget (`max_steps` when adaptive) and start level.
struct Request<'a> {
    budget: Budget<'a>,
    /// The budget of every row (`max_steps` when adaptive), unless they are per row.
    kmax: usize,
    adaptive: Option<f64>,
    current: Current<'a>,
}

impl Request<'_> {
    /// Row `b`'s budget (`max_steps` when adaptive).
    fn budget(&self, b: usize) -> usize {
        match self.budget {
            // Checked by `Planner::request`: in 1..=N.
            Budget::PerRow(ks) => ks[b] as usize,
            _ => self.kmax,
        }
    }

    /// Row `b`'s start level, if pinned.
    fn current(&self, b: usize) -> Option<usize> {
        // Checked by `Planner::request`: grid indices.
        match self.current {
            Current::Free => None,
            Current::All(c) => Some(c as usize),
            Current::PerRow(cs) => Some(cs[b] as usize),
        }
    }

    /// The name of row `b`'s budget in errors.
    fn budget_name(&self, b: usize) -> String {
        match self.budget {
            Budget::Fixed(_) => "budget".into(),
            Budget::PerRow(_) => format!("budget[{b}]"),
            Budget::Adaptive {
                max_steps: Some(_), ..
            } => "max_steps".into(),
            Budget::Adaptive {
                max_steps: None, ..
            } => "the default max_steps".into(),
        }
    }

    /// The name of row `b`'s current level in errors.
    fn current_name(&self, b: usize) -> String {
        match self.current {
            Current::PerRow(_) => format!("current[{b}]"),
            _ => "current".into(),
        }
    }
}

/// The row count B of per-row arrays `(name, rows)` that each hold one row (shared) or B: the
/// largest count; any other is an error naming its array.
pub(crate) fn batch_rows(counts: &[(&'static str, usize)]) -> Result<usize> {
    let rows = counts.iter().map(|c| c.1).max().unwrap_or(1);
    match counts.iter().find(|c| c.1 != 1 && c.1 != rows) {
        Some(&(name, got)) => Err(CotjError::Rows {
            name,
            got,
            expected: rows,
        }),
        None => Ok(rows),
    }
}

/// An error naming the array `name` unless its rows hold the grid's `expected` levels.
pub fn check_row_levels(name: &'static str, expected: usize, got: usize) -> Result<()> {
    match got == expected {
        true => Ok(()),
        false => Err(CotjError::Levels {
            name,
            expected,
            got,
        }),
    }
}

/// The first error of `check` over rows `0..rows` (`work` values each), whatever the threads
/// (`Interrupted` when `stop`, polled before each row, says so first).
fn first_error(
    rows: usize,
    work: usize,
    stop: &Stop,
    check: impl Fn(usize) -> Result<()> + Sync + Send,
) -> Result<()> {
    let bad = |b: usize| stop.poll(work).and_then(|()| check(b)).err();
    let found = if rows >= PARALLEL_MIN_ROWS {
        stop.parallel(|| Ok((0..rows).into_par_iter().find_map_first(bad)))?
    } else {
        (0..rows).find_map(bad)
    };
    found.map_or(Ok(()), Err)
}

/// What one planning thread reuses across the rows of a batch.
#[derive(Default)]
struct Scratch {
    /// The DP layers and start costs.
    ws: Workspace,
    /// A DNA row as f64, or the weights of a dense row.
    row: Vec<f64>,
    /// The edge rows of a dense row's own cost matrix.
    edges: Triangle,
}

impl Scratch {
    /// Bytes held.
    fn bytes(&self) -> usize {
        self.ws.bytes() + self.row.capacity() * std::mem::size_of::<f64>() + self.edges.bytes()
    }
}

/// The most bytes of [`Scratch`] a thread keeps between calls (planning N = 1000 levels with
/// K = 100 needs 0.8 MB); a larger one is freed after its call.
const KEEP_BYTES: usize = 1 << 20;

/// Runs `work` on the [`Scratch`] this thread kept from its last call (taken out meanwhile: a
/// nested call starts a new one), so that small calls allocate no scratch memory.
fn with_kept_scratch<T>(work: impl FnOnce(&mut Scratch) -> T) -> T {
    thread_local!(static KEPT: Cell<Option<Scratch>> = const { Cell::new(None) });
    let mut scratch = KEPT.take().unwrap_or_default();
    let out = work(&mut scratch);
    if scratch.bytes() <= KEEP_BYTES {
        KEPT.set(Some(scratch));
    }
    out
}

/// `plan_row(b, scratch)` for every row, in parallel for large batches; each thread keeps one
/// [`Scratch`]. The error is the first failing row's, whatever the threads; `stop` is polled
/// before each row (and by `plan_row` between layers).
fn run_rows<F>(rows: usize, stop: &Stop, plan_row: F) -> Result<Vec<Row>>
where
    F: Fn(usize, &mut Scratch) -> Result<Row> + Sync + Send,
{
    // The DP polls between layers, announcing its work; here a row's own work is small.
    let row = |state: &mut _, b| stop.poll(1).and_then(|()| plan_row(b, state));
    if rows >= PARALLEL_MIN_ROWS {
        stop.parallel(|| {
            (0..rows)
                .into_par_iter()
                .with_min_len(4)
                .map_init(Scratch::default, row)
                .collect()
        })
    } else {
        with_kept_scratch(|state| (0..rows).map(|b| row(state, b)).collect())
    }
}

impl Planner {
    /// Plans every row of `dna` (row-major, `cols` entries per row, f32 or f64), each starting
    /// at its `current` level when given, until `stop` says otherwise.
    ///
    /// All input is validated before any planning, and the error reported is the one of the
    /// first offending row, so results and errors do not depend on the thread count.
    pub fn plan_batch<T: Real>(
        &self,
        dna: &[T],
        cols: usize,
        budget: Budget<'_>,
        current: Current<'_>,
        stop: &Stop,
    ) -> Result<BatchPlans> {
        let n = self.n();
        if cols != n {
            return Err(CotjError::DnaLength {
                expected: n,
                got: cols,
            });
        }
        let rows = dna.len() / n;
        if rows == 0 {
            return Err(CotjError::EmptyBatch);
        }
        let row = |b: usize| &dna[b * n..(b + 1) * n];
        first_error(rows, n, stop, |b| self.check_dna(b, row(b)))?;
        let req = self.request(rows, budget, current)?;
        let out = run_rows(rows, stop, |b, Scratch { ws, row: d, .. }| {
            d.clear();
            memory::reserve("a dna row", d, n)?;
            d.extend(row(b).iter().map(|&v| v.into()));
            let length = (req.budget(b), req.adaptive);
            self.plan_dna(d, length, req.current(b), ws, stop)
                .map(Row::from)
        })?;
        self.pack(out)
    }

    /// Plans every row of a dense cost (see [`DenseCost`]), each starting at its `current` level
    /// when given. A row with no plan of finite cost at its length is an error
    /// ([`CotjError::NoFinitePlan`]), one whose plan cost overflows to `-inf` another
    /// ([`CotjError::DenseOverflow`]). Validation, errors and `stop` as in [`Planner::plan_batch`].
    pub fn plan_dense_batch<T: Real>(
        &self,
        cost: &DenseCost<'_, T>,
        budget: Budget<'_>,
        current: Current<'_>,
        stop: &Stop,
    ) -> Result<BatchPlans> {
        check_row_levels("edges", self.n(), cost.n())?;
        let rows = cost.rows();
        first_error(rows, cost.n() * cost.n(), stop, |b| cost.check_row(b))?;
        let req = self.request(rows, budget, current)?;
        let mut shared = Triangle::default();
        if cost.shared_matrix() {
            cost.edges(0, &mut shared)?;
        }
        let out = run_rows(rows, stop, |b, Scratch { ws, row: w, edges }| {
            cost.weights(b, w)?;
            let edges = if cost.shared_matrix() {
                &shared
            } else {
                cost.edges(b, edges)?;
                edges
            };
            let costs = cost.costs(b, edges, w);
            let k = req.budget(b);
            let row = self
                .best(
                    &costs,
                    req.current(b),
                    (k, req.adaptive),
                    &mut ws.layers,
                    stop,
                )
                .map_err(|e| match e {
                    CotjError::Overflow => CotjError::DenseOverflow {
                        at: format!(" of row {b}"),
                    },
                    e => e,
                })?;
            row.map(Row::from).ok_or_else(|| CotjError::NoFinitePlan {
                name: req.budget_name(b),
                value: k,
                row: b,
                lengths: match req.adaptive {
                    None => format!("{k} levels"),
                    Some(_) => format!("1..={k} levels"),
                },
            })
        })?;
        self.pack(out)
    }

    /// Checks the budgets and start levels of `rows` plans.
    fn request<'a>(
        &self,
        rows: usize,
        budget: Budget<'a>,
        current: Current<'a>,
    ) -> Result<Request<'a>> {
        let (kmax, adaptive) = self.check_length(rows, budget)?;
        self.check_starts(rows, current)?;
        let req = Request {
            budget,
            kmax,
            adaptive,
            current,
        };
        if req.adaptive.is_none() && current != Current::Free {
            for b in 0..rows {
                let (k, c) = (req.budget(b), req.current(b).unwrap_or_default());
                self.check_budget_from(&req.budget_name(b), k, &req.current_name(b), c)?;
            }
        }
        Ok(req)
    }

    /// Checks the start levels of `rows` plans.
    fn check_starts(&self, rows: usize, current: Current<'_>) -> Result<()> {
        match current {
            Current::Free => Ok(()),
            Current::All(c) => self.check_current("current", c).map(drop),
            Current::PerRow(cs) => {
                if cs.len() != rows {
                    return Err(CotjError::Rows {
                        name: "current",
                        got: cs.len(),
                        expected: rows,
                    });
                }
                cs.iter().enumerate().try_for_each(|(b, &c)| {
                    self.check_current(&format!("current[{b}]"), c).map(drop)
                })
            }
        }
    }

    /// Checks the lengths of `rows` plans: the budget of every row (`max_steps` when adaptive;
    /// unused when per row) and `tau` when adaptive.
    fn check_length(&self, rows: usize, budget: Budget<'_>) -> Result<(usize, Option<f64>)> {
        match budget {
            Budget::Fixed(k) => Ok((self.check_budget("budget", k)?, None)),
            Budget::PerRow(ks) => {
                if ks.len() != rows {
                    return Err(CotjError::BudgetLength {
                        expected: rows,
                        got: ks.len(),
                    });
                }
                for (b, &k) in ks.iter().enumerate() {
                    self.check_budget(&format!("budget[{b}]"), k)?;
                }
                Ok((0, None))
            }
            Budget::Adaptive { tau, max_steps } => {
                let tau = Self::check_tau(tau)?;
                let kmax = match max_steps {
                    Some(k) => self.check_budget("max_steps", k)?,
                    None => self.default_max_steps(),
                };
                Ok((kmax, Some(tau)))
            }
        }
    }

    fn pack(&self, out: Vec<Row>) -> Result<BatchPlans> {
        const PLANS: &str = "the plans of the batch";
        let plans = Padded::new(PLANS, &out, |r| (&r.steps, r.cost))?;
        let levels_of = self.lever().levels();
        let level = |&s: &i64| usize::try_from(s).map_or(f64::NAN, |s| levels_of[s]);
        let levels = memory::collect(PLANS, plans.steps.len(), plans.steps.iter().map(level))?;
        let curve_width = out.len() * out.first().map_or(0, |r| r.curve.len());
        let (mut curve, mut ratio) = (
            memory::with_capacity(PLANS, curve_width)?,
            memory::with_capacity(PLANS, curve_width)?,
        );
        for row in out {
            curve.extend(row.curve);
            ratio.extend(row.ratio);
        }
        Ok(BatchPlans {
            plans,
            levels,
            curve,
            ratio,
        })
    }
}
