//! Planning one DNA row: fixed budget (SPEC 4), adaptive length (SPEC 5), and the cost of any plan.

use std::sync::Arc;

use crate::dp::{backtrack, best_end, forward, Ends};
use crate::error::{CotjError, Result};
use crate::lever::Lever;

/// A plan: grid indices in sampling order (noisiest first) and its cost `C` (SPEC 3).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Grid indices, strictly decreasing.
    pub steps: Vec<usize>,
    /// `C = -d_{j_1} + sum_m d_{j_m} L(j_m, j_{m+1}) + d_{j_K}`.
    pub cost: f64,
}

/// An adaptive plan with the curves it was chosen from.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptivePlan {
    /// The plan of the chosen length.
    pub plan: Plan,
    /// `C*_K` for `K = 1..=max_steps` (`INFINITY` where no plan of that length exists).
    pub curve: Vec<f64>,
    /// Explained-gain ratio `R(K)` for `K = 1..=max_steps` (`NaN` where infeasible).
    pub ratio: Vec<f64>,
}

/// Scratch memory of one planning thread: the DP layers (K·N floats), reused across rows.
#[derive(Debug, Default, Clone)]
pub struct Workspace {
    layers: Vec<f64>,
}

/// A lever (grid and path) with start/end windows: everything a plan depends on but the DNA.
#[derive(Debug, Clone)]
pub struct Planner {
    lever: Arc<Lever>,
    ends: Ends,
}

impl Planner {
    /// A planner over `lever` with the given start/end windows (each in 1..=N).
    pub fn new(lever: Arc<Lever>, ends: Ends) -> Result<Self> {
        let n = lever.n();
        for (name, value) in [("first", ends.first), ("last", ends.last)] {
            if value < 1 || value > n {
                return Err(CotjError::Window {
                    name,
                    value: value as i64,
                    n,
                });
            }
        }
        Ok(Self { lever, ends })
    }

    /// The lever this planner uses.
    pub fn lever(&self) -> &Lever {
        &self.lever
    }

    /// Number of grid levels N.
    pub fn n(&self) -> usize {
        self.lever.n()
    }

    /// The start/end windows.
    pub fn ends(&self) -> Ends {
        self.ends
    }

    /// Checks that a DNA row has N finite, non-negative entries (`row` only labels the error).
    pub fn check_dna<T: Copy + Into<f64>>(&self, row: usize, d: &[T]) -> Result<()> {
        if d.len() != self.n() {
            return Err(CotjError::DnaLength {
                expected: self.n(),
                got: d.len(),
            });
        }
        for (index, &v) in d.iter().enumerate() {
            let value: f64 = v.into();
            if !value.is_finite() {
                return Err(CotjError::NonFiniteDna { row, index, value });
            }
            if value < 0.0 {
                return Err(CotjError::NegativeDna { row, index, value });
            }
        }
        Ok(())
    }

    /// Checks that a budget (`name` labels the error: `budget` or `max_steps`) lies in 1..=N and
    /// that a plan of that length exists under the windows.
    pub fn check_budget(&self, name: &str, k: i64) -> Result<usize> {
        let n = self.n();
        if k < 1 || k > n as i64 {
            return Err(CotjError::BudgetOutOfRange {
                name: name.into(),
                value: k,
                n,
            });
        }
        let k = k as usize;
        if k < self.ends.min_budget(n) {
            let Ends { first, last } = self.ends;
            return Err(CotjError::Infeasible {
                name: name.into(),
                value: k,
                first,
                last,
                n,
            });
        }
        Ok(k)
    }

    /// Checks `tau` in (0, 1].
    pub fn check_tau(tau: f64) -> Result<f64> {
        if tau > 0.0 && tau <= 1.0 {
            Ok(tau)
        } else {
            Err(CotjError::Tau(tau))
        }
    }

    fn run(&self, d: &[f64], kmax: usize, exact: bool, ws: &mut Workspace) {
        let need = kmax * self.n();
        if ws.layers.len() < need {
            ws.layers.resize(need, 0.0);
        }
        forward(
            &self.lever,
            self.ends,
            d,
            kmax,
            exact,
            &mut ws.layers[..need],
        );
    }

    /// The best `k`-level plan from the layers. Budgets are validated as feasible, so a
    /// non-finite optimum means the costs overflowed `f64` (absurdly large DNA or lever values).
    fn extract(&self, d: &[f64], k: usize, ws: &Workspace, steps: &mut [usize]) -> Result<f64> {
        let (cost, end) = best_end(self.ends, d, &ws.layers, k);
        if !cost.is_finite() {
            return Err(CotjError::Overflow);
        }
        backtrack(&self.lever, d, &ws.layers, k, end, steps);
        Ok(cost)
    }

    /// The cheapest plan with exactly `k` levels, reusing `ws`. `d` and `k` must have passed
    /// `check_dna` and `check_budget`.
    pub fn plan_fixed_with(&self, d: &[f64], k: usize, ws: &mut Workspace) -> Result<Plan> {
        self.run(d, k, true, ws);
        let mut steps = vec![0; k];
        let cost = self.extract(d, k, ws, &mut steps)?;
        Ok(Plan { steps, cost })
    }

    /// The cheapest plan with exactly `k` levels (validated).
    pub fn plan_fixed(&self, d: &[f64], k: usize) -> Result<Plan> {
        self.check_dna(0, d)?;
        let k = self.check_budget("budget", k as i64)?;
        self.plan_fixed_with(d, k, &mut Workspace::default())
    }

    /// Adaptive length (SPEC 5), reusing `ws`: runs the programme to `kmax`, computes
    /// `C*_K` and `R(K)` for every `K <= kmax`, and returns the plan of the smallest K with
    /// `R(K) >= tau`. Inputs must be validated.
    ///
    /// `R(K) = (C*_{k0} - C*_K) / (C*_{k0} - C*_{kmax})`, where `k0` is the shortest feasible
    /// length (1 with free ends, where `C*_1 = 0`). When longer plans explain no gain
    /// (denominator <= 0), `R = 1` for every feasible K and the shortest plan is chosen.
    pub fn plan_adaptive_with(
        &self,
        d: &[f64],
        tau: f64,
        kmax: usize,
        ws: &mut Workspace,
    ) -> Result<AdaptivePlan> {
        self.run(d, kmax, false, ws);
        let curve: Vec<f64> = (1..=kmax)
            .map(|k| best_end(self.ends, d, &ws.layers, k).0)
            .collect();
        let k0 = self.ends.min_budget(self.n());
        let base = curve[k0 - 1];
        let total = base - curve[kmax - 1];
        let ratio: Vec<f64> = (1..=kmax)
            .map(|k| match k {
                k if k < k0 => f64::NAN,
                _ if total > 0.0 => (base - curve[k - 1]) / total,
                _ => 1.0,
            })
            .collect();
        let chosen = (k0..=kmax).find(|&k| ratio[k - 1] >= tau).unwrap_or(kmax);
        let mut steps = vec![0; chosen];
        let cost = self.extract(d, chosen, ws, &mut steps)?;
        Ok(AdaptivePlan {
            plan: Plan { steps, cost },
            curve,
            ratio,
        })
    }

    /// Adaptive-length plan (validated); see [`Planner::plan_adaptive_with`].
    pub fn plan_adaptive(&self, d: &[f64], tau: f64, max_steps: usize) -> Result<AdaptivePlan> {
        self.check_dna(0, d)?;
        let tau = Self::check_tau(tau)?;
        let kmax = self.check_budget("max_steps", max_steps as i64)?;
        self.plan_adaptive_with(d, tau, kmax, &mut Workspace::default())
    }

    /// The cost `C` of any plan (grid indices, strictly decreasing), whatever the windows.
    pub fn plan_cost(&self, d: &[f64], steps: &[usize]) -> Result<f64> {
        self.check_dna(0, d)?;
        let n = self.n();
        let (Some(&first), Some(&last)) = (steps.first(), steps.last()) else {
            return Err(CotjError::Steps("must hold at least one grid index".into()));
        };
        if let Some(bad) = steps.iter().find(|&&s| s >= n) {
            return Err(CotjError::Steps(format!(
                "index {bad} is outside the grid (0..{n})"
            )));
        }
        if let Some(w) = steps.windows(2).find(|w| w[1] >= w[0]) {
            return Err(CotjError::Steps(format!(
                "must be strictly decreasing (noisiest first), but {} is followed by {}",
                w[0], w[1]
            )));
        }
        let inner: f64 = steps
            .windows(2)
            .map(|w| d[w[0]] * self.lever.get(w[0], w[1]))
            .sum();
        let cost = -d[first] + inner + d[last];
        if cost.is_finite() {
            Ok(cost)
        } else {
            Err(CotjError::Overflow)
        }
    }

    /// Dense edge costs, row-major (N, N): entry `[j, i] = d_j L(j, i)` for `i < j`, `INFINITY`
    /// elsewhere (no edge). START -> j costs `-d_j` and i -> END costs `+d_i`.
    pub fn cost_matrix(&self, d: &[f64]) -> Result<Vec<f64>> {
        self.check_dna(0, d)?;
        let n = self.n();
        let mut out = vec![f64::INFINITY; n * n];
        for j in 1..n {
            for (i, &l) in self.lever.row(j).iter().enumerate() {
                out[j * n + i] = d[j] * l;
            }
        }
        Ok(out)
    }
}
