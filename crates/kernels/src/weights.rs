//! A layer's weights as the kernels read them, prepared once: the values
//! ([k, k, cin, cout] or [cin, cout]) and, made on first use and kept for
//! every later call, their packed panels and, for 3x3 convolutions, their
//! Winograd transform. A model holds a [`Weights`] per layer, so neither is
//! redone per batch.

use super::packed::PackedB;
use super::winograd::Transformed;
use std::sync::{Arc, OnceLock};

#[derive(Clone)]
pub struct Weights(Arc<Inner>);

struct Inner {
    values: Arc<[f32]>,
    packed: OnceLock<Option<PackedB>>,
    /// The transpose of the [k, n] matrix, packed: the input gradient's
    /// product.
    packed_t: OnceLock<Option<PackedB>>,
    winograd: OnceLock<Option<Transformed>>,
}

impl Weights {
    /// A model that holds weights for the kernels runs on them, so malloc
    /// is told here to keep freed memory ([`crate::keep_freed_memory`]):
    /// every model gets it, none has to remember it.
    pub fn new(values: Arc<[f32]>) -> Self {
        crate::keep_freed_memory();
        Weights(Arc::new(Inner {
            values,
            packed: OnceLock::new(),
            packed_t: OnceLock::new(),
            winograd: OnceLock::new(),
        }))
    }

    pub fn values(&self) -> &Arc<[f32]> {
        &self.0.values
    }

    /// The values as a [k, n] matrix packed for our product, when it takes
    /// that shape (one weight tensor is only ever read as one shape).
    pub(crate) fn packed(&self, k: usize, n: usize) -> Option<&PackedB> {
        let p = self
            .0
            .packed
            .get_or_init(|| PackedB::new(&self.0.values, k, n));
        p.as_ref().filter(|p| p.dims() == (k, n))
    }

    /// The values as a [k, n] matrix, transposed to [n, k] and packed, when
    /// our product takes that shape.
    pub(crate) fn packed_transposed(&self, k: usize, n: usize) -> Option<&PackedB> {
        let p = self.0.packed_t.get_or_init(|| {
            if self.0.values.len() != k * n {
                return None;
            }
            let mut t = vec![0f32; k * n];
            for (i, row) in self.0.values.chunks_exact(n).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    t[j * k + i] = v;
                }
            }
            PackedB::new(&t, n, k)
        });
        p.as_ref().filter(|p| p.dims() == (n, k))
    }

    /// The values [3, 3, cin, cout] in Winograd's domain, packed.
    pub(crate) fn winograd(&self, cin: usize, cout: usize) -> Option<&Transformed> {
        let t = self
            .0
            .winograd
            .get_or_init(|| Transformed::new(&self.0.values, cin, cout));
        t.as_ref().filter(|t| t.dims() == (cin, cout))
    }
}

impl std::ops::Deref for Weights {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.0.values
    }
}

impl From<Arc<[f32]>> for Weights {
    fn from(values: Arc<[f32]>) -> Self {
        Weights::new(values)
    }
}

impl From<Vec<f32>> for Weights {
    fn from(values: Vec<f32>) -> Self {
        Weights::new(values.into())
    }
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Weights({} values)", self.0.values.len())
    }
}
