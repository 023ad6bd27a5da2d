//! Scanning arrays for the first value a rule rejects (input validation).

/// Index of the first entry of `v` breaking `ok`, scanning in blocks the compiler vectorises
/// (`ok` must inline: a function pointer here costs a call per entry).
pub(crate) fn first_bad<T: Copy + Into<f64>>(v: &[T], ok: impl Fn(f64) -> bool) -> Option<usize> {
    const BLOCK: usize = 64;
    v.chunks(BLOCK).enumerate().find_map(|(c, block)| {
        if block.iter().fold(true, |all, &x| all & ok(x.into())) {
            None
        } else {
            block
                .iter()
                .position(|&x| !ok(x.into()))
                .map(|p| c * BLOCK + p)
        }
    })
}
