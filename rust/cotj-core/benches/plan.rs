//! Criterion benchmarks of the core on the default grid (N = 100) with a realistic DNA shape.

use std::hint::black_box;
use std::sync::Arc;

use cotj_core::{default_grid, Budget, Current, DenseCost, Ends, Lever, Planner, Stop};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const N: usize = 100;

/// A DNA shaped like a flow model's: small near t = 0, steep near t = 1, with per-row jitter.
fn dna(rows: usize) -> Vec<f64> {
    let grid = default_grid(N);
    (0..rows)
        .flat_map(|r| {
            let p = 1.5 + (r % 7) as f64 * 0.1;
            grid.iter().map(move |t| {
                t.powf(p) * (1.0 + 0.01 * ((r * 31 + (t * 1e3) as usize) % 17) as f64)
            })
        })
        .collect()
}

fn planner() -> Planner {
    Planner::new(
        Arc::new(Lever::linear_flow(&default_grid(N)).unwrap()),
        Ends::free(N),
    )
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let p = planner();
    let one = dna(1);
    c.bench_function("plan_fixed/N=100/K=8", |b| {
        b.iter(|| p.plan_fixed(black_box(&one), 8).unwrap())
    });
    c.bench_function("plan_fixed/N=100/K=25", |b| {
        b.iter(|| p.plan_fixed(black_box(&one), 25).unwrap())
    });
    c.bench_function("plan_adaptive/N=100/max_steps=50", |b| {
        b.iter(|| p.plan_adaptive(black_box(&one), 0.99, 50).unwrap())
    });
    c.bench_function("lever/linear_flow/N=100", |b| {
        b.iter_batched(
            || default_grid(N),
            |g| Lever::linear_flow(&g).unwrap(),
            BatchSize::SmallInput,
        )
    });
    // The dense form: the lever as a shared (N, N) matrix, scale = d, start = -d, end = d.
    let mut matrix = vec![0.0; N * N];
    for j in 1..N {
        matrix[j * N..j * N + j].copy_from_slice(p.lever().row(j));
    }
    let neg: Vec<f64> = one.iter().map(|v| -v).collect();
    c.bench_function("plan_dense_batch/one row/N=100/K=8", |b| {
        b.iter(|| {
            let cost = DenseCost::new(N, &matrix, &neg, &one, Some(black_box(&one[..]))).unwrap();
            p.plan_dense_batch(&cost, Budget::Fixed(8), Current::Free, &Stop::never())
                .unwrap()
        })
    });
    let rows = 4096;
    let many: Vec<f32> = dna(rows).into_iter().map(|v| v as f32).collect();
    let mut g = c.benchmark_group("plan_batch");
    g.throughput(Throughput::Elements(rows as u64));
    g.sample_size(20);
    g.bench_function("B=4096/N=100/K=8", |b| {
        b.iter(|| {
            p.plan_batch(
                black_box(&many),
                N,
                Budget::Fixed(8),
                Current::Free,
                &Stop::never(),
            )
            .unwrap()
        })
    });
    let zeros = vec![0.0; N];
    g.bench_function("dense B=4096/N=100/K=8/shared matrix, per-row scale", |b| {
        b.iter(|| {
            let cost =
                DenseCost::new(N, &matrix, &zeros, &zeros, Some(black_box(&many[..]))).unwrap();
            p.plan_dense_batch(&cost, Budget::Fixed(8), Current::Free, &Stop::never())
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
