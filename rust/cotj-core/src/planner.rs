//! Planning one row: fixed budget and adaptive length (docs/method.md §5), and the cost of any plan,
//! on the DNA form or any dense cost (`crate::dense`).

use std::ops::Range;
use std::sync::Arc;

use crate::dp::{backtrack, best_end, forward, stride, Costs, Ends, Pass};
use crate::error::{CotjError, Result};
use crate::lever::{Lever, LeverCache};
use crate::memory;
use crate::scan::first_bad;
use crate::stop::Stop;
use crate::triangle::Aligned;

/// A plan: grid indices in sampling order (noisiest first) and its cost `C` (docs/method.md §3–4).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Grid indices, strictly decreasing.
    pub steps: Vec<usize>,
    /// `C = -d_{j_1} + sum_m d_{j_m} L(j_m, j_{m+1}) + d_{j_K}`, or on a dense cost
    /// `start[j_1] + sum_m w[j_m] M[j_m, j_{m+1}] + end[j_K]`.
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

/// Scratch memory of one planning thread, reused across rows: the DP layers (K·N floats) and
/// the start costs of a DNA row (N floats).
#[derive(Debug, Default, Clone)]
pub struct Workspace {
    pub(crate) layers: Aligned,
    start: Vec<f64>,
}

impl Workspace {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.layers.bytes() + self.start.capacity() * std::mem::size_of::<f64>()
    }
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

    /// A planner over `lever`, else over the linear-flow lever of the default grid of `n` levels
    /// (from [`LeverCache::global`]; `name` labels a bad `n`), with the given windows.
    pub fn on(lever: Option<&Arc<Lever>>, name: &str, n: usize, ends: Ends) -> Result<Self> {
        let lever = match lever {
            Some(lever) => Arc::clone(lever),
            None => LeverCache::global().default_linear_flow(name, n)?,
        };
        Self::new(lever, ends)
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
        let Some(index) = first_bad(d, |v| (0.0..f64::INFINITY).contains(&v)) else {
            return Ok(());
        };
        let value: f64 = d[index].into();
        if value.is_finite() {
            Err(CotjError::NegativeDna { row, index, value })
        } else {
            Err(CotjError::NonFiniteDna { row, index, value })
        }
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

    /// Checks that `current` (`name` labels the error) is a grid index the `first` window allows
    /// to start a plan.
    pub fn check_current(&self, name: &str, current: i64) -> Result<usize> {
        let n = self.n();
        let lo = n - self.ends.first;
        match usize::try_from(current) {
            Ok(c) if (lo..n).contains(&c) => Ok(c),
            _ => Err(CotjError::Current {
                name: name.into(),
                value: current,
                lo,
                n,
            }),
        }
    }

    /// Checks that a plan of `k` levels (already checked by `check_budget`) can start at
    /// `current`: it needs `k - 1` lower levels, and a one-level plan must end where it starts.
    pub fn check_budget_from(
        &self,
        name: &str,
        k: usize,
        current_name: &str,
        current: usize,
    ) -> Result<()> {
        let why = if k > current + 1 {
            format!(
                "a plan that starts at grid index {current} has at most {} levels",
                current + 1
            )
        } else if k == 1 && current >= self.ends.last {
            format!(
                "a one-level plan ends where it starts, and last = {} allows only indices below it",
                self.ends.last
            )
        } else {
            return Ok(());
        };
        Err(CotjError::InfeasibleFrom {
            name: name.into(),
            value: k,
            current_name: current_name.into(),
            current,
            why,
        })
    }

    /// Checks `tau` in (0, 1].
    pub fn check_tau(tau: f64) -> Result<f64> {
        if tau > 0.0 && tau <= 1.0 {
            Ok(tau)
        } else {
            Err(CotjError::Tau(tau))
        }
    }

    /// The levels that may start a plan: exactly `current`, or the `first` window.
    fn starts(&self, current: Option<usize>) -> Range<usize> {
        match current {
            Some(c) => c..c + 1,
            None => self.n() - self.ends.first..self.n(),
        }
    }

    /// The best plan of `costs` starting at `current` (else in the `first` window): of exactly
    /// `k` levels (its curves empty), or with `tau` of the adaptive length up to `k` levels (see
    /// [`Planner::plan_adaptive_with`]). `None` when no plan of those lengths has a finite cost,
    /// [`CotjError::Overflow`] when a best cost overflowed to `-inf`. Inputs must be validated.
    pub(crate) fn best(
        &self,
        costs: &Costs<'_>,
        current: Option<usize>,
        (k, tau): (usize, Option<f64>),
        layers: &mut Aligned,
        stop: &Stop,
    ) -> Result<Option<AdaptivePlan>> {
        let layers = layers.grown(LAYERS, k * stride(self.n()), 0.0)?;
        let pass = Pass {
            costs,
            starts: self.starts(current),
            kmax: k,
            exact: tau.is_none(),
        };
        forward(&pass, layers, stop)?;
        let Some(tau) = tau else {
            let (curve, ratio) = (Vec::new(), Vec::new());
            let plan = self.extract(costs, k, layers)?;
            return Ok(plan.map(|plan| AdaptivePlan { plan, curve, ratio }));
        };
        let curve = memory::collect(
            "the adaptive curve",
            k,
            (1..=k).map(|k| best_end(self.ends.last, costs.end, layers, k).0),
        )?;
        if curve.contains(&f64::NEG_INFINITY) {
            return Err(CotjError::Overflow);
        }
        let (Some(k0), Some(k1)) = (
            curve.iter().position(|c| c.is_finite()),
            curve.iter().rposition(|c| c.is_finite()),
        ) else {
            return Ok(None);
        };
        let (k0, k1) = (k0 + 1, k1 + 1);
        let base = curve[k0 - 1];
        let total = base - curve[k1 - 1];
        let ratio = memory::collect(
            "the adaptive curve",
            k,
            curve.iter().map(|&c| match c {
                c if !c.is_finite() => f64::NAN,
                c if total > 0.0 => (base - c) / total,
                _ => 1.0,
            }),
        )?;
        let chosen = (k0..=k1).find(|&k| ratio[k - 1] >= tau).unwrap_or(k1);
        Ok(self
            .extract(costs, chosen, layers)?
            .map(|plan| AdaptivePlan { plan, curve, ratio }))
    }

    /// The best `k`-level plan from the layers, if its cost is finite; [`CotjError::Overflow`]
    /// if it is `-inf` (the inputs hold no `-inf`, so the sum overflowed).
    fn extract(&self, costs: &Costs<'_>, k: usize, layers: &[f64]) -> Result<Option<Plan>> {
        let (cost, end) = best_end(self.ends.last, costs.end, layers, k);
        if cost == f64::NEG_INFINITY {
            return Err(CotjError::Overflow);
        }
        if !cost.is_finite() {
            return Ok(None);
        }
        let mut steps = vec![0; k];
        backtrack(costs, layers, end, &mut steps);
        Ok(Some(Plan { steps, cost }))
    }

    /// The DNA form of one row: `w = d`, `start = -d` (kept in `start`), `end = d`.
    fn dna_costs<'a>(&'a self, d: &'a [f64], start: &'a mut Vec<f64>) -> Result<Costs<'a>> {
        start.clear();
        memory::reserve("the start costs", start, d.len())?;
        start.extend(d.iter().map(|v| -v));
        Ok(Costs {
            edges: self.lever.triangle(),
            w: d,
            start,
            end: d,
        })
    }

    /// The best plan of the DNA row `d` (see [`Planner::best`] for `length`), starting at
    /// `current` when given, reusing `ws`, until `stop` says otherwise. Inputs must be validated.
    pub(crate) fn plan_dna(
        &self,
        d: &[f64],
        length: (usize, Option<f64>),
        current: Option<usize>,
        ws: &mut Workspace,
        stop: &Stop,
    ) -> Result<AdaptivePlan> {
        let costs = self.dna_costs(d, &mut ws.start)?;
        self.best(&costs, current, length, &mut ws.layers, stop)?
            .ok_or(CotjError::Overflow)
    }

    /// The cheapest plan with exactly `k` levels for the DNA row `d`, starting at `current` when
    /// given, reusing `ws`, until `stop` says otherwise. `d`, `k` and `current` must have passed
    /// `check_dna`, `check_budget`, `check_current` and `check_budget_from`.
    pub fn plan_fixed_with(
        &self,
        d: &[f64],
        k: usize,
        current: Option<usize>,
        ws: &mut Workspace,
        stop: &Stop,
    ) -> Result<Plan> {
        Ok(self.plan_dna(d, (k, None), current, ws, stop)?.plan)
    }

    /// The cheapest plan with exactly `k` levels (validated).
    pub fn plan_fixed(&self, d: &[f64], k: usize) -> Result<Plan> {
        self.check_dna(0, d)?;
        let k = self.check_budget("budget", budget_arg(k))?;
        self.plan_fixed_with(d, k, None, &mut Workspace::default(), &Stop::never())
    }

    /// Adaptive length (docs/method.md §5) for the DNA row `d`, starting at `current` when given,
    /// reusing `ws`, until `stop` says otherwise. Inputs must be validated.
    ///
    /// The programme runs to `kmax` and gives `C*_K` and `R(K)` for every `K <= kmax`; the plan
    /// is that of the smallest K with `R(K) >= tau`. `R(K) = (C*_{k0} - C*_K) / (C*_{k0} -
    /// C*_{k1})`, where `k0` and `k1` are the shortest and longest lengths with a finite `C*` (on
    /// the DNA form: the shortest feasible length, 1 with free ends where `C*_1 = 0`, and
    /// `kmax`); `R` is `NaN` where `C*_K` is infinite. When longer plans explain no gain
    /// (denominator <= 0), `R = 1` for every finite K and the shortest plan is chosen.
    pub fn plan_adaptive_with(
        &self,
        d: &[f64],
        tau: f64,
        kmax: usize,
        current: Option<usize>,
        ws: &mut Workspace,
        stop: &Stop,
    ) -> Result<AdaptivePlan> {
        self.plan_dna(d, (kmax, Some(tau)), current, ws, stop)
    }

    /// Adaptive-length plan (validated); see [`Planner::plan_adaptive_with`].
    pub fn plan_adaptive(&self, d: &[f64], tau: f64, max_steps: usize) -> Result<AdaptivePlan> {
        self.check_dna(0, d)?;
        let tau = Self::check_tau(tau)?;
        let kmax = self.check_budget("max_steps", budget_arg(max_steps))?;
        self.plan_adaptive_with(
            d,
            tau,
            kmax,
            None,
            &mut Workspace::default(),
            &Stop::never(),
        )
    }

    /// The default `max_steps` of adaptive plans: N / 2, or the smallest feasible budget if
    /// that is more (so the default is always feasible under the windows).
    pub fn default_max_steps(&self) -> usize {
        (self.n() / 2).max(self.ends.min_budget(self.n()))
    }

    /// The cost `C` of any plan (grid indices, strictly decreasing), whatever the windows.
    pub fn plan_cost(&self, d: &[f64], steps: &[usize]) -> Result<f64> {
        self.check_dna(0, d)?;
        check_steps(self.n(), steps)?;
        let cost = path_cost(&self.dna_costs(d, &mut Vec::new())?, steps);
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
        let mut out = memory::filled("the cost matrix (N^2 floats)", n * n, f64::INFINITY)?;
        for j in 1..n {
            for (i, &l) in self.lever.row(j).iter().enumerate() {
                out[j * n + i] = d[j] * l;
            }
        }
        Ok(out)
    }
}

/// What the DP layers are called in an out-of-memory error.
const LAYERS: &str = "the planning layers (budget x N floats)";

/// A `usize` budget as the `i64` the checks take (saturated: too large either way).
fn budget_arg(k: usize) -> i64 {
    i64::try_from(k).unwrap_or(i64::MAX)
}

/// Checks that `steps` is a non-empty, strictly decreasing list of indices of an `n`-level grid.
pub(crate) fn check_steps(n: usize, steps: &[usize]) -> Result<()> {
    if steps.is_empty() {
        return Err(CotjError::Steps("must hold at least one grid index".into()));
    }
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
    Ok(())
}

/// `start[j_1] + sum_m w[j_m] M[j_m, j_{m+1}] + end[j_K]` of checked `steps`; a jump with
/// `M = +inf` is missing and costs `+inf` whatever its weight.
pub(crate) fn path_cost(costs: &Costs<'_>, steps: &[usize]) -> f64 {
    let inner: f64 = steps
        .windows(2)
        .map(|p| match costs.edges.row(p[0])[p[1]] {
            m if m == f64::INFINITY => m,
            m => costs.w[p[0]] * m,
        })
        .sum();
    costs.start[steps[0]] + inner + costs.end[steps[steps.len() - 1]]
}
