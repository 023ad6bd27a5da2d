//! The DP against exhaustive search on small random instances.

use std::sync::Arc;

use cotj_core::{default_grid, Budget, CotjError, Current, Ends, Lever, Planner};
use proptest::prelude::*;

/// All strictly decreasing k-subsets of 0..n allowed by `ends`, with their cost.
fn brute(planner: &Planner, d: &[f64], k: usize) -> Vec<(f64, Vec<usize>)> {
    let n = d.len();
    let Ends { first, last } = planner.ends();
    let mut out = Vec::new();
    for mask in 0u32..(1 << n) {
        if mask.count_ones() as usize != k {
            continue;
        }
        let steps: Vec<usize> = (0..n).rev().filter(|i| mask >> i & 1 == 1).collect();
        if steps[0] < n - first || *steps.last().unwrap() >= last {
            continue;
        }
        out.push((planner.plan_cost(d, &steps).unwrap(), steps));
    }
    out
}

fn instance() -> impl Strategy<Value = (Vec<f64>, Vec<f64>, usize, usize)> {
    (2usize..=9).prop_flat_map(|n| {
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
        for k in 1..=n {
            let all = brute(&planner, &d, k);
            match planner.plan_fixed(&d, k) {
                Err(CotjError::Infeasible { .. }) => prop_assert!(all.is_empty()),
                Err(e) => prop_assert!(false, "unexpected error {e}"),
                Ok(plan) => {
                    let best = all.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
                    prop_assert!((plan.cost - best).abs() <= 1e-12 * (1.0 + best.abs()));
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
        let planner = Planner::new(Arc::new(Lever::linear_flow(&default_grid(n)).unwrap()), Ends { first, last }).unwrap();
        let k0 = planner.ends().min_budget(n);
        let kmax = n;
        let out = planner.plan_adaptive(&d, tau, kmax).unwrap();
        let curve: Vec<f64> = (1..=kmax)
            .map(|k| brute(&planner, &d, k).iter().map(|p| p.0).fold(f64::INFINITY, f64::min))
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
        let planner = Planner::new(Arc::new(Lever::linear_flow(&default_grid(12)).unwrap()), Ends::free(12)).unwrap();
        let flat: Vec<f32> = rows.concat();
        let batch = planner.plan_batch(&flat, 12, Budget::Fixed(k), Current::Free).unwrap();
        for (b, row) in rows.iter().enumerate() {
            let d: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            let one = planner.plan_fixed(&d, k as usize).unwrap();
            let got: Vec<usize> = batch.steps[b * batch.width..(b + 1) * batch.width].iter().map(|&s| s as usize).collect();
            prop_assert_eq!(got, one.steps);
            prop_assert_eq!(batch.cost[b], one.cost);
        }
    }
}

#[test]
fn ties_break_the_same_way_every_time() {
    let planner = Planner::new(
        Arc::new(Lever::linear_flow(&default_grid(30)).unwrap()),
        Ends::free(30),
    )
    .unwrap();
    let flat = vec![0.25f64; 30 * 64];
    let a = planner
        .plan_batch(&flat, 30, Budget::Fixed(6), Current::Free)
        .unwrap();
    let b = planner
        .plan_batch(&flat, 30, Budget::Fixed(6), Current::Free)
        .unwrap();
    assert_eq!(a, b);
    // Every row is the same input, so every row must be the same plan.
    for r in 1..64 {
        assert_eq!(a.steps[r * 6..(r + 1) * 6], a.steps[..6]);
    }
}

#[test]
fn bad_input_names_the_argument() {
    let planner = Planner::new(
        Arc::new(Lever::linear_flow(&default_grid(5)).unwrap()),
        Ends::free(5),
    )
    .unwrap();
    let mut d = vec![0.1f64; 10];
    d[7] = f64::NAN;
    let e = planner
        .plan_batch(&d, 5, Budget::Fixed(2), Current::Free)
        .unwrap_err();
    assert!(
        matches!(e, CotjError::NonFiniteDna { row: 1, index: 2, value } if value.is_nan()),
        "{e}"
    );
    d[7] = -1.0;
    assert!(planner
        .plan_batch(&d, 5, Budget::Fixed(2), Current::Free)
        .unwrap_err()
        .to_string()
        .starts_with("dna[1, 2] = -1"));
    d[7] = 0.1;
    assert!(planner
        .plan_batch(&d, 5, Budget::Fixed(0), Current::Free)
        .unwrap_err()
        .to_string()
        .starts_with("budget must lie in 1..=5"));
    let e = planner
        .plan_batch(&d, 5, Budget::PerRow(&[2, 6]), Current::Free)
        .unwrap_err();
    assert!(
        e.to_string().starts_with("budget[1] must lie in 1..=5"),
        "{e}"
    );
    assert_eq!(
        planner
            .plan_batch(&d, 5, Budget::PerRow(&[2]), Current::Free)
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
                    max_steps: 3
                },
                Current::Free
            )
            .unwrap_err(),
        CotjError::Tau(0.0)
    );
    assert_eq!(
        planner
            .plan_batch(&d[..0], 5, Budget::Fixed(2), Current::Free)
            .unwrap_err(),
        CotjError::EmptyBatch
    );
    assert_eq!(
        planner
            .plan_batch(&d, 4, Budget::Fixed(2), Current::Free)
            .unwrap_err(),
        CotjError::DnaLength {
            expected: 5,
            got: 4
        }
    );
    let pinned = Planner::new(
        Arc::new(Lever::linear_flow(&default_grid(5)).unwrap()),
        Ends { first: 1, last: 1 },
    )
    .unwrap();
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
