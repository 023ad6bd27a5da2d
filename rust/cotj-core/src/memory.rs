//! Fallible allocation of the buffers whose size comes from the caller (the lever, the DP
//! layers, the outputs): a failed allocation is an error ([`CotjError::OutOfMemory`] naming the
//! buffer), never an abort of the host process.

use crate::error::{CotjError, Result};

fn out_of_memory<T>(what: &'static str, len: usize) -> CotjError {
    CotjError::OutOfMemory {
        what,
        bytes: len.saturating_mul(std::mem::size_of::<T>()),
    }
}

/// Room for `extra` more values in `v` (`what` names the buffer in the error).
pub(crate) fn reserve<T>(what: &'static str, v: &mut Vec<T>, extra: usize) -> Result<()> {
    v.try_reserve_exact(extra)
        .map_err(|_| out_of_memory::<T>(what, v.len().saturating_add(extra)))
}

/// An empty vector with room for `len` values.
pub(crate) fn with_capacity<T>(what: &'static str, len: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    reserve(what, &mut v, len)?;
    Ok(v)
}

/// `len` copies of `value`.
pub(crate) fn filled<T: Clone>(what: &'static str, len: usize, value: T) -> Result<Vec<T>> {
    let mut v = with_capacity(what, len)?;
    v.resize(len, value);
    Ok(v)
}

/// The `len` items of `items` in a new vector.
pub(crate) fn collect<T>(
    what: &'static str,
    len: usize,
    items: impl IntoIterator<Item = T>,
) -> Result<Vec<T>> {
    let mut v = with_capacity(what, len)?;
    v.extend(items);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_sizes_are_errors_not_aborts() {
        let e = filled("the test buffer", usize::MAX / 4, 0.0f64).unwrap_err();
        assert_eq!(
            e,
            CotjError::OutOfMemory {
                what: "the test buffer",
                bytes: usize::MAX
            }
        );
        assert!(e
            .to_string()
            .starts_with("out of memory: the test buffer needs"));
        let mut v = vec![1u8; 3];
        assert!(reserve("v", &mut v, usize::MAX).is_err());
    }
}
