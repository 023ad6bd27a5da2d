//! The multistep pair DP ([`PairCost`]) against exhaustive search: the cheapest cost bit for bit,
//! and on exact (small-integer) costs the tie rule of the dense numpy programme; bad input,
//! limits and interruption.

use std::time::{Duration, Instant};

use cotj_core::{CotjError, PairCost, PairRequest, Stop, MAX_PAIR_NODES};
use proptest::prelude::*;

/// Costs of `m` nodes with a solver's structure: `+inf` wherever a plan may not step, `values`
/// (with some `+inf`) where it may.
fn structured(m: usize, values: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut next = values.iter().cycle().copied();
    let mut first = vec![f64::INFINITY; m * m];
    let mut pairs = vec![f64::INFINITY; m * m * m];
    for j in 1..m {
        for i in 0..j {
            first[j * m + i] = next.next().unwrap();
            for k in j + 1..m {
                if i >= 1 {
                    pairs[(k * m + j) * m + i] = next.next().unwrap();
                }
            }
        }
    }
    let mut end: Vec<f64> = (0..m).map(|_| next.next().unwrap()).collect();
    end[0] = f64::INFINITY;
    (first, pairs, end)
}

/// Every plan of `k` evaluations from `current` with its cost, summed left to right as the DP
/// sums (so the cheapest is the DP's value bit for bit).
fn all_plans(
    m: usize,
    (first, pairs, end): (&[f64], &[f64], &[f64]),
    k: usize,
    current: usize,
    previous: Option<usize>,
    w: &[f64],
) -> Vec<(f64, Vec<usize>)> {
    let mut out = Vec::new();
    for mask in 0u32..(1 << (current - 1)) {
        if mask.count_ones() as usize != k - 1 {
            continue;
        }
        let mut plan = vec![current];
        plan.extend((1..current).rev().filter(|i| mask >> (i - 1) & 1 == 1));
        let mut total = if k == 1 {
            0.0
        } else {
            let s = match previous {
                None => first[current * m + plan[1]],
                Some(p) => pairs[(p * m + current) * m + plan[1]],
            };
            s * w[current]
        };
        for n in 1..k - 1 {
            let (a, j, i) = (plan[n - 1], plan[n], plan[n + 1]);
            total += pairs[(a * m + j) * m + i] * w[j];
        }
        let last = plan[k - 1];
        total = if k == 1 {
            end[last] * w[last]
        } else {
            total + end[last] * w[last]
        };
        out.push((total, plan));
    }
    out
}

/// The numpy programme's choice among plans of equal cost: the lowest final pair
/// `(e_{K-1}, e_K)`, then the lowest `e_{K-2}`, `e_{K-3}`, ... (back-pointers to the lowest
/// predecessor).
fn tie_key(plan: &[usize]) -> Vec<usize> {
    let k = plan.len();
    if k < 2 {
        return plan.to_vec();
    }
    let mut key = vec![plan[k - 2], plan[k - 1]];
    key.extend(plan[..k - 2].iter().rev());
    key
}

fn request() -> impl Strategy<Value = (usize, usize, Option<usize>, usize, bool, u64)> {
    (3usize..=10, any::<bool>(), any::<u64>()).prop_flat_map(|(m, exact, seed)| {
        (1..m).prop_flat_map(move |current| {
            let previous = if current + 1 < m {
                prop::option::of(current + 1..m).boxed()
            } else {
                Just(None).boxed()
            };
            (
                Just(m),
                Just(current),
                previous,
                1..=current,
                Just(exact),
                Just(seed),
            )
        })
    })
}

/// A reproducible stream: small integers (exact sums: ties are real ties) or uniform values,
/// with some `+inf`.
fn values(seed: u64, exact: bool, len: usize) -> Vec<f64> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            match s % 10 {
                0 => f64::INFINITY,
                _ if exact => (s >> 8 & 1) as f64,
                _ => (s >> 11) as f64 / (1u64 << 53) as f64,
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn plans_are_the_cheapest_and_break_ties_as_numpy(
        (m, current, previous, k, exact, seed) in request(),
        scaled in any::<bool>(),
    ) {
        let (first, pairs, end) = structured(m, &values(seed, exact, 997));
        let cost = PairCost::new(m, &first, &pairs, &end).unwrap();
        let w: Vec<f64> = if scaled {
            // powers of two keep integer sums exact
            values(seed ^ 0x5555, true, m).iter().map(|v| if *v == 1.0 { 2.0 } else { 0.5 }).collect()
        } else {
            vec![1.0; m]
        };
        let got = cost.plan(k, current, previous, scaled.then_some(&w[..]));
        let plans = all_plans(m, (&first, &pairs, &end), k, current, previous, &w);
        let best = plans.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        if k == 1 {
            prop_assert_eq!(got.unwrap(), (vec![current], end[current] * w[current]));
            return Ok(());
        }
        if best == f64::INFINITY {
            prop_assert!(
                matches!(got, Err(CotjError::NoFinitePairPlan { .. })),
                "{:?}",
                got
            );
            return Ok(());
        }
        let (plan, total) = got.unwrap();
        prop_assert_eq!(total.to_bits(), best.to_bits(), "cost {} vs exhaustive {}", total, best);
        let own = plans.iter().find(|p| p.1 == plan).map(|p| p.0);
        prop_assert_eq!(own, Some(best), "the plan's own cost");
        if exact {
            let want = plans
                .iter()
                .filter(|p| p.0 == best)
                .min_by_key(|p| tie_key(&p.1))
                .map(|p| p.1.clone());
            prop_assert_eq!(Some(plan), want);
        }
    }

    #[test]
    fn a_batch_plans_each_row_as_alone(
        m in 4usize..=12,
        seed in any::<u64>(),
        rows in 1usize..=24,
    ) {
        let (first, pairs, end) = structured(m, &values(seed, true, 1009));
        let cost = PairCost::new(m, &first, &pairs, &end).unwrap();
        let current: Vec<i64> = (0..rows).map(|b| 2 + (((seed >> 3) as usize).wrapping_add(b * 7919) % (m - 2)) as i64).collect();
        let previous: Vec<i64> = (0..rows)
            .map(|b| if b % 3 == 0 || current[b] + 1 >= m as i64 { -1 } else { current[b] + 1 + (b as i64 % (m as i64 - 1 - current[b])) })
            .collect();
        let budget: Vec<i64> = (0..rows).map(|b| 1 + (b as i64 * 5) % current[b]).collect();
        let scale: Vec<f64> = (0..rows * m).map(|i| 0.5 + (i % 3) as f64 * 0.75).collect();
        let request = PairRequest { budget: &budget, current: &current, previous: Some(&previous), scale: Some(&scale) };
        let alone: Vec<_> = (0..rows)
            .map(|b| {
                let p = (previous[b] >= 0).then_some(previous[b] as usize);
                cost.plan(budget[b] as usize, current[b] as usize, p, Some(&scale[b * m..(b + 1) * m]))
            })
            .collect();
        match cost.plan_batch(&request, &Stop::never()) {
            Ok(batch) => {
                for (b, one) in alone.iter().enumerate() {
                    let (nodes, c) = one.as_ref().unwrap();
                    let row = &batch.steps[b * batch.width..(b + 1) * batch.width];
                    prop_assert_eq!(&row[..nodes.len()], &nodes.iter().map(|&n| n as i64).collect::<Vec<_>>()[..]);
                    prop_assert!(row[nodes.len()..].iter().all(|&n| n == -1));
                    prop_assert_eq!(batch.lengths[b], nodes.len() as i64);
                    prop_assert_eq!(batch.cost[b].to_bits(), c.to_bits());
                }
            }
            Err(e) => {
                // the error of the first failing row, whatever the threads
                let first = alone.iter().position(|r| r.is_err()).unwrap();
                prop_assert_eq!(Err(e), alone[first].clone().map(|_| ()).map_err(|e| match e {
                    CotjError::NoFinitePairPlan { budget, current, .. } => CotjError::NoFinitePairPlan { row: first, budget, current },
                    e => e,
                }));
            }
        }
    }
}

#[test]
fn bad_requests_are_refused_naming_the_argument() {
    let (first, pairs, end) = structured(5, &[1.0, 2.0, 0.5]);
    let cost = PairCost::new(5, &first, &pairs, &end).unwrap();
    let err = |r: PairRequest<'_>| cost.plan_batch(&r, &Stop::never()).unwrap_err().to_string();
    let one = |budget: &'static [i64], current: &'static [i64]| PairRequest {
        budget,
        current,
        ..Default::default()
    };
    assert!(err(one(&[0], &[4])).starts_with("budget = 0 must lie in 1..=4"));
    assert!(err(one(&[5], &[4])).starts_with("budget = 5 must lie in 1..=4"));
    assert!(err(one(&[2], &[5])).starts_with("current = 5 must be a node index in 1..5"));
    assert!(err(one(&[2], &[0])).starts_with("current = 0 must be a node index"));
    assert!(err(one(&[2, 2], &[4, 4, 4])).starts_with("budget has 2 rows but the batch has 3"));
    let prev = PairRequest {
        previous: Some(&[3]),
        ..one(&[2], &[3])
    };
    assert!(err(prev).starts_with("previous = 3 must be a node index in 4..5"));
    for (scale, want) in [
        (&[1.0, 1.0, 0.0, 1.0, 1.0][..], "scale[2] = 0.0"),
        (&[1.0, 1.0, 1.0, f64::NAN, 1.0][..], "scale[3] = NaN"),
        (&[1.0; 4][..], "scale has 4 values"),
    ] {
        let r = PairRequest {
            scale: Some(scale),
            ..one(&[2], &[4])
        };
        assert!(err(r).starts_with(want), "{}", err(r));
    }
    let mut nan = pairs.clone();
    nan[(4 * 5 + 3) * 5 + 2] = f64::NAN;
    let bad = PairCost::new(5, &first, &nan, &end).unwrap();
    let e = bad.plan(3, 4, None, None).unwrap_err().to_string();
    assert!(e.starts_with("pairs[4, 3, 2] = NaN"), "{e}");
    // entries no plan reads are ignored
    nan[(3 * 5 + 4) * 5 + 2] = f64::NEG_INFINITY;
    nan[(4 * 5 + 3) * 5 + 2] = pairs[(4 * 5 + 3) * 5 + 2];
    nan[(4 * 5 + 3) * 5] = f64::NAN;
    let ignored = PairCost::new(5, &first, &nan, &end).unwrap();
    assert_eq!(ignored.plan(3, 4, None, None), cost.plan(3, 4, None, None));
    assert!(PairCost::new(5, &first, &pairs[1..], &end)
        .unwrap_err()
        .to_string()
        .starts_with("pairs has 124 values, expected 125"));
}

#[test]
fn pair_costs_beyond_the_bound_are_refused_before_any_allocation() {
    let m = MAX_PAIR_NODES + 1;
    let e = PairCost::new(m, &[], &[], &[]).unwrap_err();
    assert_eq!(e, CotjError::PairNodes { got: m });
    assert!(e.to_string().contains("2..=512 nodes"), "{e}");
    assert_eq!(
        PairCost::new(1, &[], &[], &[]).unwrap_err(),
        CotjError::PairNodes { got: 1 }
    );
}

/// Costs on 200 nodes (t = 0 and N = 199 levels; 64 MB of pairs).
fn long_work() -> (usize, Vec<f64>, Vec<f64>, Vec<f64>) {
    let m = 200;
    let (first, pairs, end) = structured(m, &values(3, false, 4099));
    (m, first, pairs, end)
}

#[test]
fn a_stop_ends_long_planning_promptly() {
    let (m, first, pairs, end) = long_work();
    let cost = PairCost::new(m, &first, &pairs, &end).unwrap();
    let top = (m - 1) as i64;
    let one = |rows: usize, stop: &Stop| {
        cost.plan_batch(
            &PairRequest {
                budget: &[100],
                current: &vec![top; rows],
                ..Default::default()
            },
            stop,
        )
    };
    let t0 = Instant::now();
    one(1, &Stop::never()).unwrap();
    let per_plan = t0.elapsed();
    // At least a second of work on the rows of a batch, and one long plan if the build is slow.
    let batch = (Duration::from_secs(2).as_secs_f64() / per_plan.as_secs_f64()).ceil() as usize;
    let mut cases = vec![batch.clamp(2, 4096)];
    if per_plan > Duration::from_millis(500) {
        cases.push(1);
    }
    for rows in cases {
        let t0 = Instant::now();
        let asked = Duration::from_millis(50);
        let check = || t0.elapsed() > asked;
        assert_eq!(
            one(rows, &Stop::new(&check)).unwrap_err(),
            CotjError::Interrupted
        );
        let late = t0.elapsed() - asked;
        assert!(
            late < Duration::from_millis(150),
            "{rows} rows stopped {late:?} after the stop (one plan: {per_plan:?})"
        );
    }
}
