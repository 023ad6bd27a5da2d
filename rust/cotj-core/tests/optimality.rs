//! The DP against exhaustive search on small random instances, on the DNA form and on dense
//! costs.

use std::sync::Arc;

use cotj_core::{
    default_grid, BatchPlans, Budget, CotjError, Current, DenseCost, Ends, Lever, Planner, Stop,
};
use proptest::prelude::*;

/// Every plan on `n` levels allowed by `ends` (and starting at `current` if given) whose `cost`
/// is finite, with that cost, grouped by length: entry `k - 1` holds the plans of `k` levels.
/// Each of the 2^n subsets is scored once, so n up to ~14 stays cheap.
fn brute(
    n: usize,
    ends: Ends,
    current: Option<usize>,
    cost: impl Fn(&[usize]) -> f64,
) -> Vec<Vec<(f64, Vec<usize>)>> {
    let Ends { first, last } = ends;
    let mut out = vec![Vec::new(); n];
    for mask in 1u32..(1 << n) {
        let steps: Vec<usize> = (0..n).rev().filter(|i| mask >> i & 1 == 1).collect();
        if steps[0] < n - first
            || *steps.last().unwrap() >= last
            || current.is_some_and(|c| c != steps[0])
        {
            continue;
        }
        let c = cost(&steps);
        if c < f64::INFINITY {
            out[steps.len() - 1].push((c, steps));
        }
    }
    out
}

/// The cheapest cost among `plans` (`INFINITY` when there is none).
fn best(plans: &[(f64, Vec<usize>)]) -> f64 {
    plans.iter().map(|p| p.0).fold(f64::INFINITY, f64::min)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + b.abs())
}

/// Steps of row `b` of a batch, without the padding.
fn row_steps(plans: &BatchPlans, b: usize) -> Vec<usize> {
    let len = plans.plans.lengths[b] as usize;
    plans.plans.steps[b * plans.plans.width..b * plans.plans.width + len]
        .iter()
        .map(|&s| s as usize)
        .collect()
}

fn instance() -> impl Strategy<Value = (Vec<f64>, Vec<f64>, usize, usize)> {
    (2usize..=14).prop_flat_map(|n| {
        (
            prop::collection::vec(0.0f64..1.0, n),
            prop::collection::vec(0.01f64..1.0, n),
            1..=n,
            1..=n,
        )
    })
}

fn sorted_grid(raw: &[f64]) -> Option<Vec<f64>> {
    let mut g = raw.to_vec();
    g.sort_by(f64::total_cmp);
    let top = *g.last().unwrap();
    g.iter_mut().for_each(|t| *t /= top);
    g.windows(2).all(|w| w[1] > w[0]).then_some(g)
}

proptest! {
    #[test]
    fn fixed_k_matches_exhaustive_search((d, raw, first, last) in instance(), vp in any::<bool>()) {
        let Some(grid) = sorted_grid(&raw) else { return Ok(()) };
        let n = d.len();
        let lever = if vp {
            // A VP-like path: a^2 + s^2 = 1 with alpha_bar = exp(-8 t^2).
            let a: Vec<f64> = grid.iter().map(|t| (-4.0 * t * t).exp()).collect();
            let s: Vec<f64> = a.iter().map(|a| (1.0 - a * a).sqrt()).collect();
            Lever::gaussian(&grid, &a, &s).unwrap()
        } else {
            Lever::linear_flow(&grid).unwrap()
        };
        let planner = Planner::new(Arc::new(lever), Ends { first, last }).unwrap();
        let plans = brute(n, planner.ends(), None, |s| planner.plan_cost(&d, s).unwrap());
        for (k, all) in (1..=n).zip(&plans) {
            match planner.plan_fixed(&d, k) {
                Err(CotjError::Infeasible { .. }) => prop_assert!(all.is_empty()),
                Err(e) => prop_assert!(false, "unexpected error {e}"),
                Ok(plan) => {
                    prop_assert!(close(plan.cost, best(all)));
                    let own = planner.plan_cost(&d, &plan.steps).unwrap();
                    prop_assert!((own - plan.cost).abs() <= 1e-12 * (1.0 + own.abs()));
                    prop_assert_eq!(plan.steps.len(), k);
                    prop_assert!(plan.steps[0] >= n - first && plan.steps[k - 1] < last);
                }
            }
        }
    }

    #[test]
    fn adaptive_picks_the_smallest_k_reaching_tau((d, _raw, first, last) in instance(), tau in 0.05f64..=1.0) {
        let n = d.len();
        let planner = linear_planner(n, Ends { first, last });
        let k0 = planner.ends().min_budget(n);
        let kmax = n;
        let out = planner.plan_adaptive(&d, tau, kmax).unwrap();
        let curve: Vec<f64> = brute(n, planner.ends(), None, |s| planner.plan_cost(&d, s).unwrap())
            .iter()
            .map(|plans| best(plans))
            .collect();
        for k in 1..=kmax {
            prop_assert!((out.curve[k - 1] - curve[k - 1]).abs() <= 1e-12 || (curve[k - 1].is_infinite() && out.curve[k - 1].is_infinite()));
        }
        let k = out.plan.steps.len();
        prop_assert!(k >= k0 && k <= kmax);
        prop_assert!(out.ratio[k - 1] >= tau);
        prop_assert!(out.ratio[k0 - 1..k - 1].iter().all(|&r| r < tau));
        prop_assert_eq!(out.plan.cost, out.curve[k - 1]);
    }

    #[test]
    fn batch_equals_row_by_row(rows in prop::collection::vec(prop::collection::vec(0.0f32..2.0, 12), 1..20), k in 1i64..=12) {
        let planner = linear_planner(12, Ends::free(12));
        let flat: Vec<f32> = rows.concat();
        let batch = planner.plan_batch(&flat, 12, Budget::Fixed(k), Current::Free, &Stop::never()).unwrap();
        for (b, row) in rows.iter().enumerate() {
            let d: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            let one = planner.plan_fixed(&d, k as usize).unwrap();
            let got: Vec<usize> = batch.plans.steps[b * batch.plans.width..(b + 1) * batch.plans.width].iter().map(|&s| s as usize).collect();
            prop_assert_eq!(got, one.steps);
            prop_assert_eq!(batch.plans.cost[b], one.cost);
        }
    }
}

/// Entries of either sign, with a missing edge / start / end (`+inf`) now and then.
fn entry() -> impl Strategy<Value = f64> {
    prop_oneof![4 => -5.0f64..5.0, 1 => Just(f64::INFINITY)]
}

/// A dense instance on n levels: `(n, cost (N, N), start, end, scale, first, last, current)`.
#[allow(clippy::type_complexity)]
fn dense_instance() -> impl Strategy<
    Value = (
        usize,
        Vec<f64>,
        Vec<f64>,
        Vec<f64>,
        Option<Vec<f64>>,
        usize,
        usize,
        Option<usize>,
    ),
> {
    (2usize..=12).prop_flat_map(|n| {
        (
            Just(n),
            prop::collection::vec(entry(), n * n),
            prop::collection::vec(entry(), n),
            prop::collection::vec(entry(), n),
            prop::option::of(prop::collection::vec(
                prop_oneof![0.0f64..3.0, Just(0.0)],
                n,
            )),
            1..=n,
            1..=n,
            prop::option::of(0..n),
        )
    })
}

fn linear_planner(n: usize, ends: Ends) -> Planner {
    Planner::new(
        Arc::new(Lever::linear_flow(&default_grid(n)).unwrap()),
        ends,
    )
    .unwrap()
}

proptest! {
    #[test]
    fn dense_fixed_k_matches_exhaustive_search(
        (n, m, start, end, scale, first, last, current) in dense_instance()
    ) {
        let planner = linear_planner(n, Ends { first, last });
        let current = current.filter(|&c| c >= n - first);
        let cost = DenseCost::new(n, &m, &start, &end, scale.as_deref()).unwrap();
        let at = current.map_or(Current::Free, |c| Current::All(c as i64));
        let plans = brute(n, planner.ends(), current, |s| cost.plan_cost(0, s).unwrap());
        for (k, all) in (1..=n).zip(&plans) {
            match planner.plan_dense_batch(&cost, Budget::Fixed(k as i64), at, &Stop::never()) {
                Err(
                    CotjError::Infeasible { .. }
                    | CotjError::InfeasibleFrom { .. }
                    | CotjError::NoFinitePlan { .. },
                ) => prop_assert!(all.is_empty()),
                Err(e) => prop_assert!(false, "unexpected error {e}"),
                Ok(plans) => {
                    prop_assert!(close(plans.plans.cost[0], best(all)));
                    let steps = row_steps(&plans, 0);
                    prop_assert!(all.iter().any(|p| p.1 == steps && close(p.0, plans.plans.cost[0])));
                    prop_assert!(current.is_none_or(|c| steps[0] == c));
                }
            }
        }
    }

    #[test]
    fn dense_adaptive_follows_the_exhaustive_curve(
        (n, m, start, end, scale, _first, _last, _current) in dense_instance(),
        tau in 0.05f64..=1.0,
    ) {
        let planner = linear_planner(n, Ends::free(n));
        let cost = DenseCost::new(n, &m, &start, &end, scale.as_deref()).unwrap();
        let curve: Vec<f64> = brute(n, Ends::free(n), None, |s| cost.plan_cost(0, s).unwrap())
            .iter()
            .map(|plans| best(plans))
            .collect();
        let out = planner.plan_dense_batch(&cost, Budget::Adaptive { tau, max_steps: Some(n as i64) }, Current::Free, &Stop::never());
        let Some(k0) = curve.iter().position(|c| c.is_finite()) else {
            let refused = matches!(out, Err(CotjError::NoFinitePlan { .. }));
            prop_assert!(refused);
            return Ok(());
        };
        let plans = out.unwrap();
        for (got, want) in plans.curve.iter().zip(&curve) {
            prop_assert!(close(*got, *want) || (got.is_infinite() && want.is_infinite()));
        }
        let k = plans.plans.lengths[0] as usize;
        prop_assert!(plans.ratio[k - 1] >= tau || k - 1 == curve.iter().rposition(|c| c.is_finite()).unwrap());
        prop_assert!(plans.ratio[k0..k - 1].iter().all(|r| r.is_nan() || *r < tau));
        prop_assert_eq!(plans.plans.cost[0], plans.curve[k - 1]);
    }

    #[test]
    fn dna_form_is_the_dense_form_with_the_lever(
        rows in prop::collection::vec(prop::collection::vec(0.0f64..2.0, 16), 1..24),
        k in 1i64..=16,
        current in prop::option::of(8i64..16),
        first in 1usize..=16,
    ) {
        let n = 16;
        let planner = linear_planner(n, Ends { first, last: n });
        let mut lever = vec![0.0; n * n];
        for j in 1..n {
            lever[j * n..j * n + j].copy_from_slice(planner.lever().row(j));
        }
        let dna: Vec<f64> = rows.concat();
        let neg: Vec<f64> = dna.iter().map(|v| -v).collect();
        let dense = DenseCost::new(n, &lever, &neg, &dna, Some(dna.as_slice())).unwrap();
        let current = current.filter(|&c| c as usize >= n - first);
        let at = current.map_or(Current::Free, Current::All);
        for budget in [Budget::Fixed(k), Budget::Adaptive { tau: 0.9, max_steps: Some(k) }] {
            let a = planner.plan_batch(&dna, n, budget, at, &Stop::never());
            let b = planner.plan_dense_batch(&dense, budget, at, &Stop::never());
            match (a, b) {
                // Debug prints every float exactly (NaN padding included, which `==` refuses).
                (Ok(a), Ok(b)) => prop_assert_eq!(format!("{a:?}"), format!("{b:?}")),
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                (a, b) => prop_assert!(false, "{a:?} vs {b:?}"),
            }
        }
    }
}

#[test]
fn dense_batches_share_or_split_each_array() {
    let n = 6;
    let planner = linear_planner(n, Ends::free(n));
    let m: Vec<f64> = (0..n * n).map(|p| ((p * 7) % 11) as f64 - 5.0).collect();
    let zeros = vec![0.0; n];
    let scale: Vec<f64> = (0..3 * n).map(|p| (p % 4) as f64).collect();
    let shared = DenseCost::new(n, &m, &zeros, &zeros, Some(scale.as_slice())).unwrap();
    assert_eq!(shared.rows(), 3);
    let batch = planner
        .plan_dense_batch(
            &shared,
            Budget::PerRow(&[2, 3, 4]),
            Current::PerRow(&[5, 4, 5]),
            &Stop::never(),
        )
        .unwrap();
    for b in 0..3 {
        let one = DenseCost::new(n, &m, &zeros, &zeros, Some(&scale[b * n..(b + 1) * n])).unwrap();
        let k = [2, 3, 4][b];
        let alone = planner
            .plan_dense_batch(
                &one,
                Budget::Fixed(k),
                Current::All([5, 4, 5][b]),
                &Stop::never(),
            )
            .unwrap();
        assert_eq!(row_steps(&batch, b), row_steps(&alone, 0));
        assert_eq!(batch.plans.cost[b], alone.plans.cost[0]);
    }
}

#[test]
fn bad_dense_input_names_the_argument() {
    let n = 4;
    let planner = linear_planner(n, Ends { first: 2, last: n });
    let mut m = vec![1.0; n * n];
    let z = vec![0.0; n];
    m[2 * n + 1] = f64::NAN;
    let e = DenseCost::<f64>::new(n, &m, &z, &z, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "edges[2, 1] = NaN: edges must be a number or +inf (no NaN, no -inf)"
    );
    m[2 * n + 1] = f64::INFINITY;
    let batched = [m.clone(), m.clone()].concat();
    let mut start = vec![0.0; 2 * n];
    start[n + 3] = f64::NEG_INFINITY;
    let cost = DenseCost::<f64>::new(n, &batched, &start, &z, None).unwrap();
    let e = planner
        .plan_dense_batch(&cost, Budget::Fixed(2), Current::Free, &Stop::never())
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("start[1, 3] = -inf: start must be"),
        "{e}"
    );
    let w = vec![1.0, -1.0, 1.0, 1.0];
    let e = DenseCost::new(n, &m, &z, &z, Some(w.as_slice())).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("scale[1] = -1.0: scale must be finite and non-negative"),
        "{e}"
    );
    let three = vec![0.0; 3 * n];
    assert_eq!(
        DenseCost::<f64>::new(n, &batched, &three, &z, None).unwrap_err(),
        CotjError::Rows {
            name: "edges",
            got: 2,
            expected: 3
        }
    );
    assert!(matches!(
        DenseCost::<f64>::new(n, &m[..10], &z, &z, None).unwrap_err(),
        CotjError::DenseLength {
            name: "edges",
            got: 10,
            unit: 16
        }
    ));
    let cost = DenseCost::<f64>::new(n, &m, &z, &z, None).unwrap();
    let e = planner
        .plan_dense_batch(&cost, Budget::Fixed(2), Current::All(1), &Stop::never())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "current = 1 must be a grid index that may start a plan: 2..4 (first = 2)"
    );
    let e = planner
        .plan_dense_batch(&cost, Budget::Fixed(4), Current::All(2), &Stop::never())
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("budget = 4 is infeasible with current = 2"),
        "{e}"
    );
    let none = vec![f64::INFINITY; n * n];
    let cost = DenseCost::<f64>::new(n, &none, &z, &z, None).unwrap();
    let e = planner
        .plan_dense_batch(&cost, Budget::Fixed(2), Current::Free, &Stop::never())
        .unwrap_err();
    assert!(
        matches!(
            e,
            CotjError::NoFinitePlan {
                row: 0,
                value: 2,
                ..
            }
        ),
        "{e}"
    );
    let other = linear_planner(5, Ends::free(5));
    assert!(matches!(
        other.plan_dense_batch(&cost, Budget::Fixed(2), Current::Free, &Stop::never()),
        Err(CotjError::Levels {
            name: "edges",
            expected: 5,
            got: 4
        })
    ));
}

#[test]
fn a_dense_cost_that_overflows_is_named_as_such() {
    let n = 6;
    let planner = linear_planner(n, Ends::free(n));
    let z = vec![0.0; n];
    let huge = vec![-1e308; n * n]; // any plan of 3 or more levels sums past -f64::MAX
    let cost = DenseCost::<f64>::new(n, &huge, &z, &z, None).unwrap();
    assert_eq!(cost.plan_cost(0, &[4, 2]).unwrap(), -1e308);
    let overflow = CotjError::DenseOverflow { at: String::new() };
    assert_eq!(cost.plan_cost(0, &[4, 2, 0]).unwrap_err(), overflow);
    let up: Vec<f64> = huge.iter().map(|v| -v).collect();
    let cost_up = DenseCost::<f64>::new(n, &up, &z, &z, None).unwrap();
    assert_eq!(cost_up.plan_cost(0, &[4, 2, 0]).unwrap_err(), overflow);
    let mut missing = huge.clone();
    missing[4 * n + 2] = f64::INFINITY; // a missing edge costs inf, overflow or not
    let cost_missing = DenseCost::<f64>::new(n, &missing, &z, &z, None).unwrap();
    assert_eq!(
        cost_missing.plan_cost(0, &[4, 2, 0]).unwrap(),
        f64::INFINITY
    );
    for budget in [
        Budget::Fixed(3),
        Budget::Adaptive {
            tau: 0.9,
            max_steps: None,
        },
    ] {
        let e = planner
            .plan_dense_batch(&cost, budget, Current::Free, &Stop::never())
            .unwrap_err();
        assert_eq!(
            e,
            CotjError::DenseOverflow {
                at: " of row 0".into()
            }
        );
        assert!(e.to_string().starts_with(
            "the plan cost of row 0 overflows float64: the values of edges, start and end"
        ));
    }
    let two = planner
        .plan_dense_batch(&cost, Budget::Fixed(2), Current::Free, &Stop::never())
        .unwrap();
    assert_eq!(two.plans.cost[0], -1e308);
}

#[test]
fn ties_break_the_same_way_every_time() {
    let planner = linear_planner(30, Ends::free(30));
    let flat = vec![0.25f64; 30 * 64];
    let a = planner
        .plan_batch(&flat, 30, Budget::Fixed(6), Current::Free, &Stop::never())
        .unwrap();
    let b = planner
        .plan_batch(&flat, 30, Budget::Fixed(6), Current::Free, &Stop::never())
        .unwrap();
    assert_eq!(a, b);
    // Every row is the same input, so every row must be the same plan.
    for r in 1..64 {
        assert_eq!(a.plans.steps[r * 6..(r + 1) * 6], a.plans.steps[..6]);
    }
}

#[test]
fn bad_input_names_the_argument() {
    let planner = linear_planner(5, Ends::free(5));
    let mut d = vec![0.1f64; 10];
    d[7] = f64::NAN;
    let e = planner
        .plan_batch(&d, 5, Budget::Fixed(2), Current::Free, &Stop::never())
        .unwrap_err();
    assert!(
        matches!(e, CotjError::NonFiniteDna { row: 1, index: 2, value } if value.is_nan()),
        "{e}"
    );
    d[7] = -1.0;
    assert!(planner
        .plan_batch(&d, 5, Budget::Fixed(2), Current::Free, &Stop::never())
        .unwrap_err()
        .to_string()
        .starts_with("dna[1, 2] = -1"));
    d[7] = 0.1;
    assert!(planner
        .plan_batch(&d, 5, Budget::Fixed(0), Current::Free, &Stop::never())
        .unwrap_err()
        .to_string()
        .starts_with("budget must lie in 1..=5"));
    let e = planner
        .plan_batch(
            &d,
            5,
            Budget::PerRow(&[2, 6]),
            Current::Free,
            &Stop::never(),
        )
        .unwrap_err();
    assert!(
        e.to_string().starts_with("budget[1] must lie in 1..=5"),
        "{e}"
    );
    assert_eq!(
        planner
            .plan_batch(&d, 5, Budget::PerRow(&[2]), Current::Free, &Stop::never())
            .unwrap_err(),
        CotjError::BudgetLength {
            expected: 2,
            got: 1
        }
    );
    assert_eq!(
        planner
            .plan_batch(
                &d,
                5,
                Budget::Adaptive {
                    tau: 0.0,
                    max_steps: Some(3)
                },
                Current::Free,
                &Stop::never(),
            )
            .unwrap_err(),
        CotjError::Tau(0.0)
    );
    assert_eq!(
        planner
            .plan_batch(&d[..0], 5, Budget::Fixed(2), Current::Free, &Stop::never())
            .unwrap_err(),
        CotjError::EmptyBatch
    );
    assert_eq!(
        planner
            .plan_batch(&d, 4, Budget::Fixed(2), Current::Free, &Stop::never())
            .unwrap_err(),
        CotjError::DnaLength {
            expected: 5,
            got: 4
        }
    );
    let pinned = linear_planner(5, Ends { first: 1, last: 1 });
    assert!(matches!(
        pinned.plan_fixed(&d[..5], 1),
        Err(CotjError::Infeasible { .. })
    ));
    assert!(matches!(
        Planner::new(
            Arc::new(Lever::linear_flow(&default_grid(5)).unwrap()),
            Ends { first: 0, last: 1 }
        ),
        Err(CotjError::Window { name: "first", .. })
    ));
}

/// CI runs these tests a second time with `COTJ_PORTABLE=1`: check that it takes effect there.
#[test]
fn cotj_portable_forces_the_portable_kernel() {
    let forced = std::env::var_os("COTJ_PORTABLE").is_some_and(|v| v == "1");
    assert!(!forced || cotj_core::kernel() == "portable");
    assert!(["fused", "portable"].contains(&cotj_core::kernel()));
}
