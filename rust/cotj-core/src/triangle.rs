//! Aligned storage for the DP kernels (`crate::dp`): the rows of an edge matrix padded with
//! `+inf` to whole chunks of [`LANES`] floats aligned on 64 bytes, and the aligned DP layers.
//!
//! The kernels relax a whole chunk at a time with aligned loads and no tail: the padding of a row
//! is read as edges to levels at or above it, whose `+inf` (or, with a zero weight, `NaN`)
//! candidates never win.

use crate::error::Result;
use crate::memory;

/// Floats per chunk: one AVX-512 register, two AVX2 ones, one cache line.
pub(crate) const LANES: usize = 8;

/// The most rows a kernel relaxes together (see [`Triangle::block`]).
pub(crate) const BLOCK: usize = LANES;

/// [`LANES`] floats aligned on 64 bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(64))]
struct Chunk([f64; LANES]);

/// `len` rounded up to whole chunks.
pub(crate) fn chunked(len: usize) -> usize {
    len.div_ceil(LANES) * LANES
}

/// A buffer of floats whose start is aligned on 64 bytes, allocated fallibly.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Aligned(Vec<Chunk>);

impl Aligned {
    /// The first `len` floats, the buffer grown with `value` if it is shorter (`what` names the
    /// buffer in an out-of-memory error).
    pub(crate) fn grown(
        &mut self,
        what: &'static str,
        len: usize,
        value: f64,
    ) -> Result<&mut [f64]> {
        let (chunks, have) = (len.div_ceil(LANES), self.0.len());
        if have < chunks {
            memory::reserve(what, &mut self.0, chunks - have)?;
            self.0.resize(chunks, Chunk([value; LANES]));
        }
        Ok(&mut self.as_mut_slice()[..len])
    }

    /// Every float of the buffer.
    pub(crate) fn as_slice(&self) -> &[f64] {
        // SAFETY: `Chunk` is `repr(C)` around `[f64; LANES]`, without padding (64 bytes of floats
        // at an alignment of 64), so the chunks are `len * LANES` contiguous, initialised floats.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast(), self.0.len() * LANES) }
    }

    /// Every float of the buffer, mutable.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [f64] {
        // SAFETY: as in `as_slice`, and the borrow of `self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), self.0.len() * LANES) }
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.0.len() * std::mem::size_of::<Chunk>()
    }
}

/// The lower triangle of an (N, N) edge matrix, row `j` holding `M[j, i]` for `i < j`, each row
/// starting on a chunk boundary and padded with `+inf` up to its [`capacity`].
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Triangle(Aligned);

/// Floats kept for row `j`: its `j` entries and `+inf` up to the end of the chunk holding entry
/// `j + BLOCK - 1`, so that in a block of rows (see [`Triangle::block`]) row `j` can be read
/// as far as the longest row of the block reaches.
fn capacity(j: usize) -> usize {
    (j / LANES + 2) * LANES
}

/// Where row `j` starts: the sum of `capacity` over the rows above it, in closed form.
fn offset(j: usize) -> usize {
    let (q, r) = (j / LANES, j % LANES);
    LANES * (2 * j + LANES / 2 * q * q.saturating_sub(1) + r * q)
}

impl Triangle {
    /// What the edge rows are called in an out-of-memory error.
    const WHAT: &'static str = "the edge rows (about N^2 / 2 floats)";

    /// The rows of `n` levels, row `j` written by `fill(j, row)` into its `j` entries.
    pub(crate) fn new(n: usize, fill: impl FnMut(usize, &mut [f64])) -> Result<Self> {
        let mut out = Self::default();
        out.refill(n, fill)?;
        Ok(out)
    }

    /// Overwrites the rows with those of `n` levels (see [`Triangle::new`]), reusing the buffer.
    pub(crate) fn refill(
        &mut self,
        n: usize,
        mut fill: impl FnMut(usize, &mut [f64]),
    ) -> Result<()> {
        let buf = self.0.grown(Self::WHAT, offset(n), f64::INFINITY)?;
        buf.fill(f64::INFINITY);
        for j in 1..n {
            fill(j, &mut buf[offset(j)..offset(j) + j]);
        }
        Ok(())
    }

    /// `M[j, i]` for `i = 0..j` (length `j`).
    #[inline]
    pub(crate) fn row(&self, j: usize) -> &[f64] {
        &self.0.as_slice()[offset(j)..offset(j) + j]
    }

    /// The rows `j, j - 1, ..., j + 1 - R` (`R <= BLOCK`, `R <= j + 1`, `j < N`) with their
    /// `+inf` padding, as pointers each 64-byte aligned and readable for `chunked(j)` floats.
    #[inline(always)]
    pub(crate) fn block<const R: usize>(&self, j: usize) -> [*const f64; R] {
        let rows = self.0.as_slice();
        assert!(R <= BLOCK && R <= j + 1 && offset(j + 1) <= rows.len());
        // Row j - r starts at offset(j - r) and holds capacity(j - r) >= chunked(j) floats, all
        // below offset(j + 1) <= rows.len().
        let mut at = offset(j);
        std::array::from_fn(|r| {
            if r > 0 {
                at -= capacity(j - r);
            }
            rows.as_ptr().wrapping_add(at)
        })
    }

    /// `(j, M[j, i])` for `j = top, top - 1, ..., i + 1` (`top < N`): column `i` upwards from
    /// the noisiest level.
    #[inline(always)]
    pub(crate) fn column(&self, i: usize, top: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let rows = self.0.as_slice();
        let mut at = offset(top);
        (i + 1..=top).rev().map(move |j| {
            let entry = (j, rows[at + i]);
            at = at.wrapping_sub(capacity(j - 1));
            entry
        })
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.0.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_aligned_padded_and_packed_in_order() {
        let mut sum = 0;
        for j in 0..200 {
            assert_eq!(offset(j), sum, "row {j}");
            assert!(capacity(j) >= chunked(j + BLOCK - 1));
            sum += capacity(j);
        }
        let t = Triangle::new(20, |j, row| {
            for (i, v) in row.iter_mut().enumerate() {
                *v = (j * 100 + i) as f64;
            }
        })
        .unwrap();
        let all = t.0.as_slice();
        for j in 0..20 {
            let start = t.block::<1>(j)[0] as usize - all.as_ptr() as usize;
            assert_eq!(start % 64, 0);
            let padded = &all[start / 8..start / 8 + capacity(j)];
            assert_eq!(
                &padded[..j],
                (0..j).map(|i| (j * 100 + i) as f64).collect::<Vec<_>>()
            );
            assert!(padded[j..].iter().all(|&v| v == f64::INFINITY));
            let column: Vec<_> = t.column(j, 19).collect();
            assert_eq!(
                column,
                (j + 1..20)
                    .rev()
                    .map(|k| (k, (k * 100 + j) as f64))
                    .collect::<Vec<_>>()
            );
        }
        let mut b = Aligned::default();
        assert_eq!(b.grown("b", 3, 1.0).unwrap(), [1.0; 3]);
        assert_eq!(b.as_slice().len(), LANES);
        assert_eq!(
            b.grown("b", 20, 2.0).unwrap()[..10],
            [[1.0; 8].as_slice(), &[2.0; 2]].concat()
        );
        assert!(b.grown("b", 1 << 62, 0.0).is_err());
    }
}
