//! The error type of the core. Every variant names the argument at fault, using the names of the
//! Python API (`dna`, `grid`, `budget`, ...), so the binding can pass the message on unchanged.

use crate::limits::{MAX_LEVELS, MAX_PAIR_NODES};

/// What can be wrong with a planning request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CotjError {
    /// A grid, DNA row or cost (`name`) with fewer than two levels.
    #[error("{name} must have at least 2 levels, got {got}")]
    TooFewLevels { name: String, got: usize },
    /// A grid, DNA row or cost (`name`) with more than [`MAX_LEVELS`] levels.
    #[error("{name} has {got} levels, more than MAX_LEVELS = {max} (planning memory grows as N^2: the lever of N levels takes 4 N^2 bytes)", max = MAX_LEVELS)]
    TooManyLevels { name: String, got: usize },
    /// A fallible allocation failed: `bytes` for `what` are not available.
    #[error("out of memory: {what} needs {mib:.1} MiB", mib = *.bytes as f64 / 1048576.0)]
    OutOfMemory { what: &'static str, bytes: usize },
    /// The caller's [`crate::Stop`] check asked to stop (Ctrl-C).
    #[error("planning was interrupted")]
    Interrupted,
    /// A grid level outside (0, 1] (or not finite).
    #[error("grid must lie in (0, 1]: grid[{index}] = {value:?}")]
    GridOutOfRange { index: usize, value: f64 },
    /// The grid does not strictly ascend.
    #[error("grid must be strictly ascending: grid[{index}] = {value:?} does not exceed grid[{prev}] = {prev_value:?}", prev = .index - 1)]
    GridNotAscending {
        index: usize,
        value: f64,
        prev_value: f64,
    },
    /// A schedule array whose length differs from the grid's.
    #[error("schedule {name} must have one value per grid level ({expected}), got {got}")]
    ScheduleLength {
        name: &'static str,
        expected: usize,
        got: usize,
    },
    /// A schedule value that is not allowed.
    #[error("schedule {name}[{index}] = {value:?}: {name} must be {rule}")]
    ScheduleValue {
        name: &'static str,
        index: usize,
        value: f64,
        rule: &'static str,
    },
    /// A DNA row whose length differs from the grid's.
    #[error("dna has {got} levels per row but the grid has {expected}")]
    DnaLength { expected: usize, got: usize },
    /// The batch has no rows.
    #[error("dna is empty: the batch has no rows")]
    EmptyBatch,
    /// NaN or infinity in the DNA.
    #[error("dna[{row}, {index}] = {value:?}: dna must be finite")]
    NonFiniteDna {
        row: usize,
        index: usize,
        value: f64,
    },
    /// A negative DNA entry (the DNA is a mean squared error).
    #[error(
        "dna[{row}, {index}] = {value:?}: dna must be non-negative (it is a mean squared error)"
    )]
    NegativeDna {
        row: usize,
        index: usize,
        value: f64,
    },
    /// A budget outside 1..=N.
    #[error("{name} must lie in 1..={n} (the grid has {n} levels), got {value:?}")]
    BudgetOutOfRange { name: String, value: i64, n: usize },
    /// A budget no plan can meet under the start/end windows.
    #[error("{name} = {value:?} is infeasible: a one-step plan needs a level that may both start (first = {first}) and end (last = {last}) a plan, and the windows do not overlap on {n} levels; use a budget of at least 2 or widen the windows")]
    Infeasible {
        name: String,
        value: usize,
        first: usize,
        last: usize,
        n: usize,
    },
    /// The per-row budget array has the wrong length.
    #[error("budget has {got} entries but the batch has {expected} rows")]
    BudgetLength { expected: usize, got: usize },
    /// tau outside (0, 1].
    #[error("tau must lie in (0, 1], got {0:?}")]
    Tau(f64),
    /// A start or end window outside 1..=N.
    #[error("{name} must allow between 1 and {n} levels, got {value:?}")]
    Window {
        name: &'static str,
        value: i64,
        n: usize,
    },
    /// Plan costs overflowed `f64`: DNA or lever values too large to add up.
    #[error("dna values are too large: plan costs overflow float64 (rescale the dna; only its shape matters)")]
    Overflow,
    /// A dense plan cost overflowed `f64` (`at`: "" or " of row b"): edges, start, end or scale
    /// too large in magnitude to add up.
    #[error("the plan cost{at} overflows float64: the values of edges, start and end (times scale) are too large in magnitude to add up; divide edges, start and end by a common factor (the plans do not change)")]
    DenseOverflow { at: String },
    /// A dense cost array that is not a whole number of rows (`unit` values each).
    #[error("{name} has {got} values: it must hold one or more rows of {unit}")]
    DenseLength {
        name: &'static str,
        got: usize,
        unit: usize,
    },
    /// A cost array whose rows have a different number of levels than the grid.
    #[error("{name} has {got} levels per row but the grid has {expected}")]
    Levels {
        name: &'static str,
        expected: usize,
        got: usize,
    },
    /// A per-row array whose row count is neither 1 (shared) nor the batch's.
    #[error(
        "{name} has {got} rows but the batch has {expected}: give one row (shared) or one per row"
    )]
    Rows {
        name: &'static str,
        got: usize,
        expected: usize,
    },
    /// A value not allowed in a dense cost array (`name`: edges, start, end or scale).
    #[error("{name}[{at}] = {value:?}: {name} must be {rule}")]
    Value {
        name: &'static str,
        at: String,
        value: f64,
        rule: &'static str,
    },
    /// A current level outside the grid or outside the `first` window.
    #[error("{name} = {value:?} must be a grid index that may start a plan: {lo}..{n} (first = {first})", first = .n - .lo)]
    Current {
        name: String,
        value: i64,
        lo: usize,
        n: usize,
    },
    /// A budget that no plan starting at the current level can meet.
    #[error("{name} = {value:?} is infeasible with {current_name} = {current}: {why}")]
    InfeasibleFrom {
        name: String,
        value: usize,
        current_name: String,
        current: usize,
        why: String,
    },
    /// A dense cost under which no plan of the asked length has a finite cost.
    #[error("{name} = {value:?} is infeasible for row {row}: every plan of {lengths} uses an infinite entry of edges, start or end, or its cost overflows float64 (then divide edges, start and end by a common factor)")]
    NoFinitePlan {
        name: String,
        value: usize,
        row: usize,
        lengths: String,
    },
    /// A plan given to `plan_cost` that is not a strictly decreasing list of grid indices.
    #[error("steps {0}")]
    Steps(String),
    /// Pair costs (`crate::PairCost`) with fewer than 2 or more than [`MAX_PAIR_NODES`] nodes.
    #[error("the pair costs must have 2..={max} nodes (t = 0 and the grid levels; MAX_PAIR_NODES bounds their 8 M^3 bytes), got M = {got} ({gib:.2} GiB)", max = MAX_PAIR_NODES, gib = (*.got as f64).powi(3) * 8.0 / 1073741824.0)]
    PairNodes { got: usize },
    /// A pair-cost array (`name`: first, pairs, end) whose length is not that of M nodes.
    #[error("{name} has {got} values, expected {expected} ({shape} for M = {nodes} nodes)")]
    PairShape {
        name: &'static str,
        got: usize,
        expected: usize,
        shape: &'static str,
        nodes: usize,
    },
    /// A node index (`name`: current or previous) outside the nodes it may be.
    #[error("{name} = {value:?} must be a node index in {lo}..{hi} (node 0 is t = 0, node n the grid level n - 1{above})", above = if *.lo > 1 { ", and previous lies above current" } else { "" })]
    PairNode {
        name: String,
        value: i64,
        lo: usize,
        hi: usize,
    },
    /// A budget outside 1..=current: a plan makes one evaluation per node at or below its first.
    #[error("{name} = {value:?} must lie in 1..={current}: a plan from node {current} makes at most {current} evaluations (one per node at or below it, above t = 0)")]
    PairBudget {
        name: String,
        value: i64,
        current: usize,
    },
    /// Pair costs under which no plan of the asked length has a finite cost.
    #[error("no plan of {budget} evaluations from node {current} has a finite cost (row {row}): each uses an infinite entry of first, pairs or end, or its cost overflows float64")]
    NoFinitePairPlan {
        row: usize,
        budget: usize,
        current: usize,
    },
}

/// Result alias of the core.
pub type Result<T> = std::result::Result<T, CotjError>;
