//! Channels-last ([B, H, W, C]) CPU kernels, each a candle custom op with
//! its input-gradient backward pass (weights are constants at inference, so
//! no weight gradient is produced), one module per operation:
//!
//! - `attention`: multi-head self-attention's core (ViT), fused;
//! - `depthwise`: EfficientNet-Lite's depthwise convolution + bias + ReLU6
//!   (or none: a probe point);
//! - `conv`: dense k x k convolutions (EfficientNet-Lite's stem, BiT's im2col);
//! - `pointwise`: 1x1 convolutions with bias, ReLU6 or residual folded in;
//! - `groupnorm`: BiT's GroupNorm + ReLU;
//! - `gelu`: the exact GELU of ViT's MLPs;
//! - `pooling`: BiT's zero-padded stem max-pool;
//! - `winograd`: 3x3 stride-1 convolutions as Winograd F(2x2, 3x3);
//! - `packed`: our matrix product on packed weight panels (AVX2 6 x 16,
//!   AVX-512 12 x 32);
//! - `weights`: a layer's weights with their packing made once;
//! - `gemm`: the other matrix products; `simd`: the AVX2 code all of them use;
//! - `op`: the candle custom-op side of all of them, once; `output`: their
//!   outputs, set chunk by chunk in parallel rather than zeroed first.
//!
//! The kernels are f32 and parallel (rayon).

mod attention;
mod conv;
mod depthwise;
mod gelu;
mod gemm;
mod groupnorm;
mod op;
mod output;
mod packed;
mod pointwise;
mod pooling;
mod simd;
#[cfg(test)]
mod testing;
mod weights;
mod winograd;

pub use attention::{attention, attention_fits};
pub use conv::{conv, stem_relu6};
pub use depthwise::{depthwise, depthwise_composed, depthwise_linear, depthwise_relu6};
pub use gelu::gelu_erf;
pub use groupnorm::group_norm_relu;
pub use pointwise::{pointwise, pointwise_gelu};

pub use pooling::max_pool_padded;
pub use weights::Weights;

use candle_core::{Layout, Result, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// Where a k x k convolution of stride s reads: input h x w, padding before
/// (pt, pl), output ho x wo. Padding after is whatever makes ho x wo fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub s: usize,
    pub pt: usize,
    pub pl: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Geometry {
    /// The input row read by output row `oy` at kernel row `dy`, if inside.
    fn in_row(&self, oy: usize, dy: usize) -> Option<usize> {
        (oy * self.s + dy)
            .checked_sub(self.pt)
            .filter(|&r| r < self.h)
    }

    /// The output columns [lo, hi) whose kernel column `dx` falls inside the
    /// input (input column ox * s + dx - pl).
    fn cols(&self, dx: usize) -> (usize, usize) {
        let lo = (self.pl.saturating_sub(dx)).div_ceil(self.s);
        let hi = match (self.w - 1 + self.pl).checked_sub(dx) {
            Some(m) => (m / self.s + 1).min(self.wo),
            None => 0,
        };
        (lo, hi.max(lo))
    }

    /// The output row reading input row `iy` at kernel row `dy`, if any.
    fn out_row(&self, iy: usize, dy: usize) -> Option<usize> {
        let t = (iy + self.pt).checked_sub(dy)?;
        (t % self.s == 0 && t / self.s < self.ho).then_some(t / self.s)
    }
}

impl Geometry {
    /// A k x k convolution or pool of stride s with `p` zeros on every side
    /// (PyTorch's `padding=p`).
    pub fn symmetric(h: usize, w: usize, k: usize, s: usize, p: usize) -> Result<Self> {
        if s == 0 || h + 2 * p < k || w + 2 * p < k {
            candle_core::bail!("{h}x{w} input too small for a {k}x{k} window with padding {p}")
        }
        Ok(Geometry {
            h,
            w,
            k,
            s,
            pt: p,
            pl: p,
            ho: (h + 2 * p - k) / s + 1,
            wo: (w + 2 * p - k) / s + 1,
        })
    }
}

/// The constants of a k x k convolution + bias + ReLU6 (EfficientNet-Lite's
/// stem and depthwise convolutions): geometry, weights [k, k, cin, cout]
/// (depthwise: [k, k, c]) and bias [cout].
#[derive(Clone)]
pub struct ConvRelu6 {
    pub g: Geometry,
    pub w: Arc<[f32]>,
    pub b: Arc<[f32]>,
}

impl ConvRelu6 {
    pub fn new(g: Geometry, w: &Arc<[f32]>, b: &Arc<[f32]>) -> Self {
        let (w, b) = (w.clone(), b.clone());
        ConvRelu6 { g, w, b }
    }
}

/// The activation a kernel applies to its output in the same pass (after
/// the bias and any residual).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Linear,
    Relu,
    Relu6,
}

impl Act {
    /// In place, on this thread.
    pub(crate) fn apply_seq(self, out: &mut [f32]) {
        match self {
            Act::Linear => {}
            Act::Relu => simd::relu(out),
            Act::Relu6 => simd::relu6(out),
        }
    }

    /// The gradient before the activation, from its output.
    pub(crate) fn grad(self, grad: &[f32], out: &[f32]) -> Vec<f32> {
        match self {
            Act::Linear => grad.to_vec(),
            Act::Relu6 => relu6_grad(grad, out),
            // Passed where the output is positive, as PyTorch's
            // threshold_backward does.
            Act::Relu => grad_where(grad, out, |r| r > 0.0),
        }
    }
}

/// The gradient before `act` as a tensor, from (d output, output).
pub(crate) struct ActGrad(pub Act);

impl op::Kernel<2> for ActGrad {
    const NAME: &'static str = "act-grad";

    fn forward(&self, [grad, res]: [op::In<'_>; 2]) -> Result<(Vec<f32>, candle_core::Shape)> {
        Ok((self.0.grad(grad.x, res.x), grad.l.shape().clone()))
    }
}

/// The gradient before a ReLU6, from its output: passed where the output is
/// strictly inside (0, 6), as PyTorch's hardtanh backward does.
pub(crate) fn relu6_grad(grad: &[f32], out: &[f32]) -> Vec<f32> {
    grad_where(grad, out, |r| r > 0.0 && r < 6.0)
}

/// `grad` where `pass(output)`, else 0: an activation's backward pass from
/// its output, in parallel.
fn grad_where(grad: &[f32], out: &[f32], pass: impl Fn(f32) -> bool + Sync) -> Vec<f32> {
    let mut g = output::Output::new(grad.len());
    g.par_chunks(4096)
        .zip(grad.par_chunks(4096).zip(out.par_chunks(4096)))
        .for_each(|(g, (gr, r))| {
            for ((g, &gr), &r) in g.zeros().iter_mut().zip(gr).zip(r) {
                *g = if pass(r) { gr } else { 0.0 };
            }
        });
    g.finish()
}

/// The batch size of NHWC input `l` to `what`, checked against the
/// geometry `g` and `c` channels.
pub(crate) fn nhwc_batch(what: &str, l: &Layout, g: &Geometry, c: usize) -> Result<usize> {
    let &[n, h, w, xc] = l.dims() else {
        candle_core::bail!("{what}: expected [B, H, W, C], got {:?}", l.dims())
    };
    if (h, w, xc) != (g.h, g.w, c) {
        candle_core::bail!(
            "{what}: input {:?} does not fit {g:?}, {c} channels",
            l.dims()
        )
    }
    Ok(n)
}

/// `n` images of `rows` rows of `row` values each, computed in parallel a
/// row per task by `f(image, row, out, scratch)`; `scratch` is the worker's
/// own (kept across its rows).
pub(crate) fn par_rows(
    (n, rows, row): (usize, usize, usize),
    f: impl Fn(usize, usize, &mut [f32], &mut Vec<f32>) + Sync,
) -> Vec<f32> {
    let mut out = output::Output::new(n * rows * row);
    out.par_chunks(row)
        .enumerate()
        .for_each_init(Vec::new, |scratch, (r, o)| {
            f(r / rows, r % rows, o.zeros(), scratch)
        });
    out.finish()
}

/// Rows of whole pixels, big enough to amortise scheduling.
pub(crate) fn chunk(c: usize) -> usize {
    c * (8192 / c).max(1)
}

/// Asks glibc's malloc to keep freed memory for reuse instead of handing
/// large blocks back to the kernel: every activation of BiT @480 is larger
/// than malloc's mmap threshold (32 MB at most), so each op's output would
/// otherwise be fresh pages, zeroed by the kernel on first touch (about 5%
/// of a forward pass on the CPU). Process-wide and once; peak memory is
/// unchanged, but it is not returned to the system until exit.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes malloc's parameters.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        });
    }
}

/// Spatial mean of [B, H, W, C] as f32 [B, C].
pub fn mean(x: &Tensor) -> Result<Tensor> {
    x.to_dtype(candle_core::DType::F32)?.flatten(1, 2)?.mean(1)
}
