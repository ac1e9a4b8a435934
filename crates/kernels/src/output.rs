//! An op's output, set chunk by chunk by the parallel workers that compute
//! it, never zeroed whole first. `vec![0f32; n]` over memory malloc hands
//! back (every op's output, since [`crate::keep_freed_memory`]) is a memset
//! of the whole output on one thread before the parallel work starts: on two
//! threads at batch 8 that was 12% of ResNet-50's forward pass. Here each
//! chunk starts as zeros, a copy or a repeated row, written by the worker
//! that then computes it, while the chunk is in its cache.

use rayon::prelude::*;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::sync::atomic::{AtomicUsize, Ordering};

/// `len` values not yet set; [`Output::finish`] checks that all were.
pub(crate) struct Output {
    values: Vec<MaybeUninit<f32>>,
    set: AtomicUsize,
}

/// Disjoint part of an [`Output`], not yet set. Setting it consumes it, so
/// each value is counted once.
pub(crate) struct Chunk<'a> {
    values: &'a mut [MaybeUninit<f32>],
    set: &'a AtomicUsize,
}

impl Output {
    pub(crate) fn new(len: usize) -> Self {
        let mut values = Vec::with_capacity(len);
        // SAFETY: the capacity is `len`, and MaybeUninit needs no value.
        unsafe { values.set_len(len) };
        Output {
            values,
            set: AtomicUsize::new(0),
        }
    }

    /// Chunks of `size` values (the last one may be shorter), in parallel.
    pub(crate) fn par_chunks(
        &mut self,
        size: usize,
    ) -> impl IndexedParallelIterator<Item = Chunk<'_>> {
        let set = &self.set;
        self.values
            .par_chunks_mut(size)
            .map(move |values| Chunk { values, set })
    }

    /// The values. Panics where a chunk was left unset: a kernel's bug, as
    /// an index out of bounds would be.
    pub(crate) fn finish(self) -> Vec<f32> {
        let len = self.values.len();
        assert_eq!(self.set.into_inner(), len, "an op left output values unset");
        let mut values = ManuallyDrop::new(self.values);
        // SAFETY: chunks are disjoint, each is counted once, when it is set
        // whole, and the counts add up to `len`: every value is set.
        // MaybeUninit<f32> has f32's layout; the allocation moves over.
        unsafe { Vec::from_raw_parts(values.as_mut_ptr().cast(), len, values.capacity()) }
    }
}

impl<'a> Chunk<'a> {
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// Parts of `size` values (the last one may be shorter), in parallel.
    pub(crate) fn par_chunks(self, size: usize) -> impl IndexedParallelIterator<Item = Chunk<'a>> {
        let set = self.set;
        self.values
            .par_chunks_mut(size)
            .map(move |values| Chunk { values, set })
    }

    pub(crate) fn zeros(self) -> &'a mut [f32] {
        self.values.fill(MaybeUninit::new(0.0));
        self.done()
    }

    /// A copy of `src`, which is as long.
    pub(crate) fn copy(self, src: &[f32]) -> &'a mut [f32] {
        assert_eq!(src.len(), self.values.len());
        for (d, &s) in self.values.iter_mut().zip(src) {
            d.write(s);
        }
        self.done()
    }

    /// `row` repeated (a bias per pixel); the length is whole rows.
    pub(crate) fn rows(self, row: &[f32]) -> &'a mut [f32] {
        assert!(!row.is_empty() && self.values.len().is_multiple_of(row.len()));
        for px in self.values.chunks_exact_mut(row.len()) {
            for (d, &s) in px.iter_mut().zip(row) {
                d.write(s);
            }
        }
        self.done()
    }

    /// Set by `write`, which gets the values unset.
    ///
    /// # Safety
    /// `write` writes every value of the slice it is given.
    pub(crate) unsafe fn written_by(
        self,
        write: impl FnOnce(&mut [MaybeUninit<f32>]),
    ) -> &'a mut [f32] {
        write(self.values);
        self.done()
    }

    /// Every value is set (each caller's contract): counted, and read as f32.
    fn done(self) -> &'a mut [f32] {
        self.set.fetch_add(self.values.len(), Ordering::Relaxed);
        let len = self.values.len();
        // SAFETY: every value was set; MaybeUninit<f32> has f32's layout.
        unsafe { std::slice::from_raw_parts_mut(self.values.as_mut_ptr().cast(), len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_set_in_parallel_make_the_whole_output() {
        let mut out = Output::new(10);
        let row = [1.0, 2.0];
        let src: Vec<f32> = (0..10).map(|v| v as f32).collect();
        out.par_chunks(4).enumerate().for_each(|(i, c)| match i {
            0 => {
                c.zeros()[3] = 7.0;
            }
            1 => {
                c.rows(&row);
            }
            _ => {
                c.copy(&src[8..]);
            }
        });
        assert_eq!(
            out.finish(),
            [0.0, 0.0, 0.0, 7.0, 1.0, 2.0, 1.0, 2.0, 8.0, 9.0]
        );
    }

    #[test]
    fn parts_of_chunks_count_once_each() {
        let mut out = Output::new(12);
        out.par_chunks(6).for_each(|c| {
            c.par_chunks(4).for_each(|p| {
                // SAFETY: the closure writes every value.
                unsafe { p.written_by(|v| v.fill(MaybeUninit::new(1.0))) };
            })
        });
        assert_eq!(out.finish(), [1.0; 12]);
    }

    #[test]
    #[should_panic(expected = "left output values unset")]
    fn a_chunk_left_unset_is_caught() {
        let mut out = Output::new(8);
        out.par_chunks(4).enumerate().for_each(|(i, c)| {
            if i == 0 {
                c.zeros();
            }
        });
        out.finish();
    }
}
