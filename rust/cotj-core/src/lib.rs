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
mod planner;

pub use batch::{BatchPlans, Budget, Current};
pub use dense::DenseCost;
pub use dp::Ends;
pub use error::{CotjError, Result};
pub use lever::{check_grid, default_grid, Lever};
pub use planner::{AdaptivePlan, Plan, Planner, Workspace};
