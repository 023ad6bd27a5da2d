//! Planning many DNA rows at once, in parallel over rows (rayon), with padded outputs.

use rayon::prelude::*;

use crate::error::{CotjError, Result};
use crate::planner::{AdaptivePlan, Plan, Planner, Workspace};

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
    /// Adaptive length per row: the smallest K with `R(K) >= tau`, up to `max_steps`.
    Adaptive { tau: f64, max_steps: i64 },
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

impl Planner {
    /// Plans every row of `dna` (row-major, `cols` entries per row, f32 or f64).
    ///
    /// All input is validated before any planning, and the error reported is the one of the
    /// first offending row, so results and errors do not depend on the thread count.
    pub fn plan_batch<T>(&self, dna: &[T], cols: usize, budget: Budget<'_>) -> Result<BatchPlans>
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
        let parallel = rows >= PARALLEL_MIN_ROWS;
        let bad_row = |(b, d): (usize, &[T])| self.check_dna(b, d).err();
        let first_error = if parallel {
            dna.par_chunks(n).enumerate().find_map_first(bad_row)
        } else {
            dna.chunks(n).enumerate().find_map(bad_row)
        };
        if let Some(err) = first_error {
            return Err(err);
        }
        let (budgets, adaptive) = self.resolve_budgets(rows, budget)?;

        let plan_row = |(ws, row): &mut (Workspace, Vec<f64>), b: usize| -> Result<Row> {
            row.clear();
            row.extend(dna[b * n..(b + 1) * n].iter().map(|&v| v.into()));
            let k = budgets[b];
            match adaptive {
                None => self.plan_fixed_with(row, k, ws).map(Row::from),
                Some(tau) => self.plan_adaptive_with(row, tau, k, ws).map(Row::from),
            }
        };
        let init = || (Workspace::default(), Vec::with_capacity(n));
        // Collecting into a Result keeps the error of the first failing row, whatever the threads.
        let out: Vec<Row> = if parallel {
            (0..rows)
                .into_par_iter()
                .with_min_len(4)
                .map_init(init, plan_row)
                .collect::<Result<_>>()?
        } else {
            let mut state = init();
            (0..rows)
                .map(|b| plan_row(&mut state, b))
                .collect::<Result<_>>()?
        };
        Ok(self.pack(out))
    }

    fn resolve_budgets(
        &self,
        rows: usize,
        budget: Budget<'_>,
    ) -> Result<(Vec<usize>, Option<f64>)> {
        match budget {
            Budget::Fixed(k) => Ok((vec![self.check_budget("budget", k)?; rows], None)),
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
                Ok((
                    vec![self.check_budget("max_steps", max_steps)?; rows],
                    Some(tau),
                ))
            }
        }
    }

    fn pack(&self, out: Vec<Row>) -> BatchPlans {
        let rows = out.len();
        let width = out.iter().map(|r| r.steps.len()).max().unwrap_or(0);
        let curve_width = out.first().map_or(0, |r| r.curve.len());
        let levels_of = self.lever().levels();
        let mut plans = BatchPlans {
            rows,
            width,
            steps: vec![-1; rows * width],
            levels: vec![f64::NAN; rows * width],
            lengths: Vec::with_capacity(rows),
            cost: Vec::with_capacity(rows),
            curve: Vec::with_capacity(rows * curve_width),
            ratio: Vec::with_capacity(rows * curve_width),
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
        plans
    }
}
