//! The size limits of the core, in one place with no dependencies, so that every module (and the
//! error messages) can name them.

/// The most levels a grid (and so a DNA row or a dense cost) may have. Planning memory grows as
/// N²: the lever takes 4·N² bytes (400 MB at this bound), a dense cost 8·N² (and its lower
/// triangle, copied for the DP, 4·N²), the DP layers 8·K·N per thread. Checked before anything of that size is allocated.
pub const MAX_LEVELS: usize = 10_000;

/// The most nodes (t = 0 and N grid levels: M = N + 1) the costs of a multistep solver may have
/// ([`crate::PairCost`]). Their pair costs are an (M, M, M) float64 array, 8·M³ bytes: 8.2 MB at
/// N = 100, 65 MB at N = 200, 1.07 GB at this bound (N = 511), 8.0 GB at N = 1000 (refused). The
/// pair DP adds 8·(K - 1)·M² bytes of layers per plan being made (at most the cost's own size).
/// Checked before anything of that size is allocated.
pub const MAX_PAIR_NODES: usize = 512;
