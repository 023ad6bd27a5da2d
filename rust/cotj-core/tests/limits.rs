//! Limits: too many levels refused before allocating, and long plans stopped by a `Stop`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cotj_core::{
    default_grid, Budget, CotjError, Current, DenseCost, Ends, Lever, Planner, Stop, MAX_LEVELS,
};

#[test]
fn too_many_levels_are_refused_by_name() {
    let wide = default_grid(MAX_LEVELS + 1);
    assert!(matches!(
        Lever::linear_flow(&wide),
        Err(CotjError::TooManyLevels { ref name, got }) if name == "grid" && got == MAX_LEVELS + 1
    ));
    assert!(matches!(
        DenseCost::<f64>::new(MAX_LEVELS + 1, &[], &[], &[], None),
        Err(CotjError::TooManyLevels { ref name, .. }) if name == "edges"
    ));
    assert!(matches!(
        DenseCost::<f64>::new(1, &[0.0], &[0.0], &[0.0], None),
        Err(CotjError::TooFewLevels { ref name, got: 1 }) if name == "edges"
    ));
}

/// A plan of several seconds, stopped by a check that turns true after 100 ms: it ends within
/// a fraction of a second with `Interrupted`, on one row (calling thread) and on a batch (pool).
#[test]
fn a_stop_ends_long_plans_early() {
    for (n, rows) in [(3000, 1), (1500, 64)] {
        let planner = Planner::new(
            Arc::new(Lever::linear_flow(&default_grid(n)).unwrap()),
            Ends::free(n),
        )
        .unwrap();
        let dna: Vec<f64> = default_grid(n).repeat(rows);
        let t0 = Instant::now();
        let check = || t0.elapsed() > Duration::from_millis(100);
        let out = planner.plan_batch(
            &dna,
            n,
            Budget::Adaptive {
                tau: 0.99,
                max_steps: None,
            },
            Current::Free,
            &Stop::new(&check),
        );
        assert_eq!(out.unwrap_err(), CotjError::Interrupted, "{n} x {rows}");
        let took = t0.elapsed();
        assert!(took < Duration::from_millis(600), "{n} x {rows}: {took:?}");
    }
}
