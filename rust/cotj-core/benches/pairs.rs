//! Criterion benchmarks of the multistep pair DP ([`PairCost`]) on N = 100 grid levels (M = 101
//! nodes), costs shaped like a solver's local errors.

use std::hint::black_box;

use cotj_core::{PairCost, PairRequest, Stop};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const M: usize = 101;

/// `(first, pairs, end)` on `M` nodes: a step's error grows with its length, a bit with the gap to
/// the previous node; `+inf` wherever a plan may not step.
fn costs() -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let t = |n: usize| n as f64 / (M - 1) as f64;
    let mut first = vec![f64::INFINITY; M * M];
    let mut pairs = vec![f64::INFINITY; M * M * M];
    for j in 1..M {
        for i in 0..j {
            let h = t(j) - t(i);
            first[j * M + i] = h * h;
            for k in j + 1..M {
                if i >= 1 {
                    pairs[(k * M + j) * M + i] = h * h * h * (1.0 + (t(k) - t(j)) * 3.0);
                }
            }
        }
    }
    let end = (0..M).map(|j| t(j) * t(j)).collect();
    (first, pairs, end)
}

fn bench(c: &mut Criterion) {
    let (first, pairs, end) = costs();
    let cost = PairCost::new(M, &first, &pairs, &end).unwrap();
    let scale: Vec<f64> = (0..M).map(|j| 1.0 + 0.3 * ((j * 7) % 5) as f64).collect();
    let top = (M - 1) as i64;
    let plan = |request| cost.plan_batch(black_box(request), &Stop::never()).unwrap();
    let requests = [
        (
            "pairs/plan/M=101/K=10",
            PairRequest {
                budget: &[10],
                current: &[top],
                ..Default::default()
            },
        ),
        // The first replanning step of a closed loop: K = 10 from the top, row scales.
        (
            "pairs/replan/M=101/K=10/scale",
            PairRequest {
                budget: &[10],
                current: &[top],
                previous: None,
                scale: Some(&scale),
            },
        ),
        // The second: K = 9 after an evaluation at the top.
        (
            "pairs/replan/M=101/K=9/previous",
            PairRequest {
                budget: &[9],
                current: &[top - 8],
                previous: Some(&[top]),
                scale: Some(&scale),
            },
        ),
    ];
    for (name, request) in &requests {
        c.bench_function(name, |b| b.iter(|| plan(request)));
    }
    let rows: Vec<i64> = (0..16).map(|r| top - r % 4).collect();
    let batch = PairRequest {
        budget: &[10],
        current: &rows,
        ..Default::default()
    };
    let mut group = c.benchmark_group("pairs/batch");
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.bench_function("16 rows/M=101/K=10", |b| b.iter(|| plan(&batch)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
