//! # cotj-core
//!
//! Chain-of-Trajectories planning in pure Rust. Given the *Diffusion DNA* of a condition, the
//! one-step reconstruction error `d_i` of a diffusion model at every level `t_i` of a noise grid,
//! it finds the cheapest sampling schedule over a dense DAG of the grid: exactly `K` steps by a
//! layered dynamic programme in `O(K·N²)` time and `O(K·N)` memory, or the shortest plan that
//! explains a fraction `tau` of the attainable gain.
//!
//! The same programme plans on any explicit dense cost ([`DenseCost`]: a plan `j_1 > … > j_K`
//! costs `start[j_1] + sum_m w[j_m]·M[j_m, j_{m+1}] + end[j_K]`, of which the DNA form is the
//! case `M = L`, `w = d`, `start = -d`, `end = d`), and from a given first level
//! ([`Current`]: replanning the rest of a trajectory from the level a sampler is at).
//!
//! A multistep solver's step also depends on the level before: [`PairCost`] plans over
//! (previous, current) pairs of nodes, `O(K·M³)` time, exactly as the dense numpy programme of
//! the Python package's tests (ties included).
//!
//! Limits: a grid has at most [`MAX_LEVELS`] levels, checked before anything of size N² is
//! allocated, and pair costs at most [`MAX_PAIR_NODES`] nodes; the buffers whose size comes from the caller are allocated fallibly
//! ([`CotjError::OutOfMemory`], never an abort); long work polls a [`Stop`] between DP layers and
//! rows (Ctrl-C in Python); [`LeverCache`] keeps the levers of the default grids within a bound.
//! The environment variable `COTJ_PORTABLE=1` forces the portable (non-FMA) DP kernel
//! ([`kernel`]), so that its path is tested too. There is no cargo-fuzz target (it needs a nightly
//! toolchain, unavailable here): property tests (proptest here, hypothesis in a child process in
//! `tests/`) feed arbitrary shapes and extreme values instead.
//!
//! ```
//! use std::sync::Arc;
//! use cotj_core::{default_grid, Ends, Lever, Planner};
//!
//! let grid = default_grid(10);
//! let dna: Vec<f64> = grid.iter().map(|t| t * t).collect();
//! let planner = Planner::new(Arc::new(Lever::linear_flow(&grid).unwrap()), Ends::free(10)).unwrap();
//! let plan = planner.plan_fixed(&dna, 3).unwrap();
//! assert_eq!(plan.steps.len(), 3);
//! assert!(plan.steps.windows(2).all(|w| w[0] > w[1]));
//! ```

mod batch;
mod dense;
mod dp;
mod error;
mod lever;
mod limits;
mod memory;
mod pairs;
mod planner;
mod scan;
mod stop;
mod triangle;

pub use batch::{check_row_levels, BatchPlans, Budget, Current, Padded, Real, DEFAULT_BUDGET};
pub use dense::DenseCost;
pub use dp::{kernel, Ends};
pub use error::{CotjError, Result};
pub use lever::{check_grid, check_levels, default_grid, Lever, LeverCache};
pub use limits::{MAX_LEVELS, MAX_PAIR_NODES};
pub use pairs::{check_pair_nodes, PairCost, PairPlans, PairRequest};
pub use planner::{AdaptivePlan, Plan, Planner, Workspace};
pub use stop::Stop;
