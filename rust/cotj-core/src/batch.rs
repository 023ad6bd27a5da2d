//! Planning many rows (DNA or dense costs) at once, in parallel over rows (rayon), with padded outputs.

use rayon::prelude::*;

use crate::dense::DenseCost;
use crate::error::{CotjError, Result};
use crate::memory;
use crate::planner::{AdaptivePlan, Plan, Planner, Workspace};
use crate::stop::Stop;
use crate::triangle::Triangle;

/// Below this many rows a batch is planned on the calling thread: handing work to the rayon
/// pool costs more than planning a few rows.
const PARALLEL_MIN_ROWS: usize = 16;

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

/// Plans of a batch, row-major, padded to `width` columns.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPlans {
    /// Number of rows B.
    pub rows: usize,
    /// Columns of `steps` and `levels`: the longest plan of the batch.
    pub width: usize,
    /// Grid indices in sampling order (noisiest first), `-1` past each row's length. (B, width)
    pub steps: Vec<i64>,
    /// Noise levels of `steps`, `NaN` past each row's length. (B, width)
    pub levels: Vec<f64>,
    /// Number of steps of each row. (B,)
    pub lengths: Vec<i64>,
    /// Plan cost of each row. (B,)
    pub cost: Vec<f64>,
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

impl From<Plan> for Row {
    fn from(p: Plan) -> Self {
        Row {
            steps: p.steps,
            cost: p.cost,
            curve: Vec::new(),
            ratio: Vec::new(),
        }
    }
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

/// What the per-row budgets and start levels are called in an out-of-memory error.
const REQUEST: &str = "the per-row budgets and start levels";

/// A validated batch request: per row, the budget (`max_steps` when adaptive) and start level.
struct Request<'a> {
    budget: Budget<'a>,
    budgets: Vec<usize>,
    adaptive: Option<f64>,
    current: Vec<Option<usize>>,
    per_row_current: bool,
}

impl Request<'_> {
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
        if self.per_row_current {
            format!("current[{b}]")
        } else {
            "current".into()
        }
    }
}

/// The first error of `check` over rows `0..rows`, whatever the threads (`Interrupted` when
/// `stop`, polled before each row, says so first).
fn first_error(
    rows: usize,
    stop: &Stop,
    check: impl Fn(usize) -> Result<()> + Sync + Send,
) -> Result<()> {
    let bad = |b: usize| stop.poll().and_then(|()| check(b)).err();
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

/// `plan_row(b, scratch)` for every row, in parallel for large batches; each thread keeps one
/// [`Scratch`]. The error is the first failing row's, whatever the threads; `stop` is polled
/// before each row (and by `plan_row` between layers).
fn run_rows<F>(rows: usize, stop: &Stop, plan_row: F) -> Result<Vec<Row>>
where
    F: Fn(usize, &mut Scratch) -> Result<Row> + Sync + Send,
{
    let init = Scratch::default;
    let row = |state: &mut _, b| stop.poll().and_then(|()| plan_row(b, state));
    if rows >= PARALLEL_MIN_ROWS {
        stop.parallel(|| {
            (0..rows)
                .into_par_iter()
                .with_min_len(4)
                .map_init(init, row)
                .collect()
        })
    } else {
        let mut state = init();
        (0..rows).map(|b| row(&mut state, b)).collect()
    }
}

impl Planner {
    /// Plans every row of `dna` (row-major, `cols` entries per row, f32 or f64), each starting
    /// at its `current` level when given, until `stop` says otherwise.
    ///
    /// All input is validated before any planning, and the error reported is the one of the
    /// first offending row, so results and errors do not depend on the thread count.
    pub fn plan_batch<T>(
        &self,
        dna: &[T],
        cols: usize,
        budget: Budget<'_>,
        current: Current<'_>,
        stop: &Stop,
    ) -> Result<BatchPlans>
    where
        T: Copy + Into<f64> + Send + Sync,
    {
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
        first_error(rows, stop, |b| self.check_dna(b, row(b)))?;
        let req = self.request(rows, budget, current)?;
        let out = run_rows(rows, stop, |b, Scratch { ws, row: d, .. }| {
            d.clear();
            memory::reserve("a dna row", d, n)?;
            d.extend(row(b).iter().map(|&v| v.into()));
            let (k, current) = (req.budgets[b], req.current[b]);
            match req.adaptive {
                None => self.plan_fixed_with(d, k, current, ws, stop).map(Row::from),
                Some(tau) => self
                    .plan_adaptive_with(d, tau, k, current, ws, stop)
                    .map(Row::from),
            }
        })?;
        self.pack(out)
    }

    /// Plans every row of a dense cost (see [`DenseCost`]), each starting at its `current` level
    /// when given. A row with no plan of finite cost at its length is an error
    /// ([`CotjError::NoFinitePlan`]). Validation, errors and `stop` as in [`Planner::plan_batch`].
    pub fn plan_dense_batch<T>(
        &self,
        cost: &DenseCost<'_, T>,
        budget: Budget<'_>,
        current: Current<'_>,
        stop: &Stop,
    ) -> Result<BatchPlans>
    where
        T: Copy + Into<f64> + Send + Sync,
    {
        if cost.n() != self.n() {
            return Err(CotjError::Levels {
                name: "cost",
                expected: self.n(),
                got: cost.n(),
            });
        }
        let rows = cost.rows();
        first_error(rows, stop, |b| cost.check_row(b))?;
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
            let (k, current) = (req.budgets[b], req.current[b]);
            let row = match req.adaptive {
                None => self
                    .fixed(&costs, current, k, &mut ws.layers, stop)?
                    .map(Row::from),
                Some(tau) => self
                    .adaptive(&costs, current, tau, k, &mut ws.layers, stop)?
                    .map(Row::from),
            };
            row.ok_or_else(|| CotjError::NoFinitePlan {
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
        current: Current<'_>,
    ) -> Result<Request<'a>> {
        let (budgets, adaptive) = self.resolve_budgets(rows, budget)?;
        let req = Request {
            budget,
            budgets,
            adaptive,
            per_row_current: matches!(current, Current::PerRow(_)),
            current: self.resolve_current(rows, current)?,
        };
        if req.adaptive.is_none() {
            for (b, (&k, c)) in req.budgets.iter().zip(&req.current).enumerate() {
                if let &Some(c) = c {
                    self.check_budget_from(&req.budget_name(b), k, &req.current_name(b), c)?;
                }
            }
        }
        Ok(req)
    }

    fn resolve_current(&self, rows: usize, current: Current<'_>) -> Result<Vec<Option<usize>>> {
        match current {
            Current::Free => memory::filled(REQUEST, rows, None),
            Current::All(c) => {
                memory::filled(REQUEST, rows, Some(self.check_current("current", c)?))
            }
            Current::PerRow(cs) => {
                if cs.len() != rows {
                    return Err(CotjError::Rows {
                        name: "current",
                        got: cs.len(),
                        expected: rows,
                    });
                }
                cs.iter()
                    .enumerate()
                    .map(|(b, &c)| Ok(Some(self.check_current(&format!("current[{b}]"), c)?)))
                    .collect()
            }
        }
    }

    fn resolve_budgets(
        &self,
        rows: usize,
        budget: Budget<'_>,
    ) -> Result<(Vec<usize>, Option<f64>)> {
        match budget {
            Budget::Fixed(k) => Ok((
                memory::filled(REQUEST, rows, self.check_budget("budget", k)?)?,
                None,
            )),
            Budget::PerRow(ks) => {
                if ks.len() != rows {
                    return Err(CotjError::BudgetLength {
                        expected: rows,
                        got: ks.len(),
                    });
                }
                let ks = ks
                    .iter()
                    .enumerate()
                    .map(|(b, &k)| self.check_budget(&format!("budget[{b}]"), k))
                    .collect::<Result<Vec<_>>>()?;
                Ok((ks, None))
            }
            Budget::Adaptive { tau, max_steps } => {
                let tau = Self::check_tau(tau)?;
                let kmax = match max_steps {
                    Some(k) => self.check_budget("max_steps", k)?,
                    None => self.default_max_steps(),
                };
                Ok((memory::filled(REQUEST, rows, kmax)?, Some(tau)))
            }
        }
    }

    fn pack(&self, out: Vec<Row>) -> Result<BatchPlans> {
        const PLANS: &str = "the plans of the batch";
        let rows = out.len();
        let width = out.iter().map(|r| r.steps.len()).max().unwrap_or(0);
        let curve_width = out.first().map_or(0, |r| r.curve.len());
        let levels_of = self.lever().levels();
        let mut plans = BatchPlans {
            rows,
            width,
            steps: memory::filled(PLANS, rows * width, -1)?,
            levels: memory::filled(PLANS, rows * width, f64::NAN)?,
            lengths: memory::with_capacity(PLANS, rows)?,
            cost: memory::with_capacity(PLANS, rows)?,
            curve: memory::with_capacity(PLANS, rows * curve_width)?,
            ratio: memory::with_capacity(PLANS, rows * curve_width)?,
        };
        for (b, row) in out.into_iter().enumerate() {
            for (c, &s) in row.steps.iter().enumerate() {
                plans.steps[b * width + c] = s as i64;
                plans.levels[b * width + c] = levels_of[s];
            }
            plans.lengths.push(row.steps.len() as i64);
            plans.cost.push(row.cost);
            plans.curve.extend(row.curve);
            plans.ratio.extend(row.ratio);
        }
        Ok(plans)
    }
}
