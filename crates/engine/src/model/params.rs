//! Building a model through candle-nn's VarBuilder with the checkpoint's own
//! tensor names, which then live in one place: the model's constructor.
//! The list of names and shapes an architecture expects (for checking a
//! checkpoint, `variants.json` and parameter counts) is read by running that
//! constructor on a [`Recorder`], which hands out zeros that cost no memory.
//! Also the layers the torchvision models share: BatchNorm in eval mode,
//! LayerNorm and softmax that stay differentiable when a gradient is asked
//! for and use candle's fused kernels when none is.

use crate::error::Result;
use crate::rng::{derive, Pcg32};
use crate::weights::{self, Checkpoint};
use candle_core::{DType, Device, Shape, Tensor, D};
use candle_nn::init::NormalOrUniform;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use std::sync::{Arc, Mutex};

/// Every (name, shape) a constructor asked for, in order.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(String, Vec<usize>)>>,
}

impl SimpleBackend for Recorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.seen
            .lock()
            .expect("recorder lock")
            .push((name.to_string(), s.dims().to_vec()));
        // A broadcast scalar: the right shape with one element of storage.
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("the recorder cannot tell the shape of {name}")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// The tensors (names and shapes, in construction order) that `build` asks
/// its VarBuilder for.
pub fn tensor_shapes<M>(
    build: impl FnOnce(VarBuilder) -> Result<M>,
) -> Result<Vec<(String, Vec<usize>)>> {
    let rec = std::sync::Arc::new(Recorder::default());
    let vb = VarBuilder::from_backend(Box::new(ArcBackend(rec.clone())), DType::F32, Device::Cpu);
    build(vb)?;
    let seen = std::mem::take(&mut *rec.seen.lock().expect("recorder lock"));
    Ok(seen)
}

/// Lets [`tensor_shapes`] keep the recorder after the VarBuilder is gone.
struct ArcBackend(std::sync::Arc<Recorder>);

impl SimpleBackend for ArcBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0.get(s, name, h, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.get_unchecked(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains_tensor(name)
    }
}

/// Learned parameters in a tensor list, as PyTorch's `parameters()` counts
/// them: BatchNorm's running statistics are buffers, not parameters.
pub fn count_parameters(shapes: &[(String, Vec<usize>)]) -> usize {
    shapes
        .iter()
        .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum()
}

/// Builds a model from a checkpoint: checks every name and shape the
/// constructor asks for (errors name the tensor and both shapes, or the
/// tensor the architecture has no place for), then builds it for real.
pub fn from_checkpoint<M>(
    ckpt: Checkpoint,
    arch: &str,
    device: &Device,
    dtype: DType,
    build: impl Fn(VarBuilder) -> Result<M>,
) -> Result<M> {
    let expected = tensor_shapes(&build)?;
    weights::check_tensors(&ckpt, &expected, arch)?;
    build(VarBuilder::from_tensors(ckpt.tensors, dtype, device))
}

/// The error for checkpoint `ckpt`, whose architecture (`found`) is not the
/// `requested` one.
pub fn mismatch(ckpt: &Checkpoint, requested: &str, found: String) -> crate::error::Error {
    crate::error::Error::ModelMismatch {
        path: ckpt.path.clone(),
        requested: requested.to_string(),
        found,
    }
}

/// The seed of every random-weight model that is not given one (`bench`):
/// the same weights on every run and machine.
pub const RANDOM_SEED: u64 = 0;

/// Builds a model with random weights drawn from `seed` (for `bench` and
/// tests): each tensor from its own stream of our PCG32, keyed by its name,
/// so the weights depend on neither the build order nor a crate's RNG, and
/// a test that draws them is the same test on every run.
pub fn random<M>(
    seed: u64,
    device: &Device,
    dtype: DType,
    build: impl Fn(VarBuilder) -> Result<M>,
) -> Result<M> {
    build(VarBuilder::from_backend(
        Box::new(Seeded(seed)),
        dtype,
        device.clone(),
    ))
}

/// Hands out each tensor its init (Const, Randn, Uniform, Kaiming) drawn
/// from the stream (seed, name).
struct Seeded(u64);

impl SimpleBackend for Seeded {
    fn get(
        &self,
        s: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let n = s.elem_count();
        let mut rng = Pcg32::new(derive(self.0, name, 0));
        let mut normal = |mean: f64, std: f64| -> Vec<f32> {
            (0..n)
                .map(|_| (mean + std * rng.normal() as f64) as f32)
                .collect()
        };
        let data: Vec<f32> = match init {
            Init::Const(c) => vec![c as f32; n],
            Init::Randn { mean, stdev } => normal(mean, stdev),
            Init::Uniform { lo, up } => (0..n).map(|_| rng.range(lo as f32, up as f32)).collect(),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let std = non_linearity.gain() / (fan.for_shape(&s) as f64).sqrt();
                match dist {
                    NormalOrUniform::Normal => normal(0.0, std),
                    NormalOrUniform::Uniform => {
                        let bound = (3f64.sqrt() * std) as f32;
                        (0..n).map(|_| rng.range(-bound, bound)).collect()
                    }
                }
            }
        };
        Tensor::from_vec(data, s, &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights cannot tell the shape of {name}")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        false
    }
}

/// A torchvision architecture, as the shared loaders need it: read from a
/// state dict (and the `--model` name), compared, described, counted and
/// built.
pub trait TorchvisionArch: Sized {
    type Model;
    /// Why a state dict is not one of this family's (its telltale tensors).
    const NOT_FOUND: &'static str;
    /// The architecture of `tensors`, given the `--model` name. Err(None):
    /// not this family's tensors (`NOT_FOUND`); Err(Some(why)): this
    /// family's, but the name must say what the tensors do not hold.
    fn infer(
        tensors: &std::collections::HashMap<String, Tensor>,
        name: Option<&str>,
    ) -> std::result::Result<Self, Option<String>>;
    /// The fixed variant a name stands for.
    fn variant(name: &str) -> Option<Self>;
    /// Whether a checkpoint of this architecture is the named variant `want`.
    fn is_variant(&self, want: &Self) -> bool;
    fn describe(&self) -> String;
    fn build(&self, vb: VarBuilder) -> Result<Self::Model>;
    fn meta_mut(model: &mut Self::Model) -> &mut super::Meta;

    /// The tensors the model reads, in construction order.
    fn tensor_shapes(&self) -> Result<Vec<(String, Vec<usize>)>> {
        tensor_shapes(|vb| self.build(vb))
    }

    /// Parameters, as torchvision counts them.
    fn num_params(&self) -> Result<usize> {
        Ok(count_parameters(&self.tensor_shapes()?))
    }
}

/// Loads a torchvision state dict, the architecture read from it and
/// checked against `name` when that names a variant.
pub fn load_torchvision<A: TorchvisionArch>(
    ckpt: Checkpoint,
    name: Option<&str>,
    device: &Device,
    dtype: DType,
) -> Result<A::Model> {
    let cfg = A::infer(&ckpt.tensors, name).map_err(|why| match why {
        None => crate::error::Error::NotACheckpoint {
            path: ckpt.path.clone(),
            reason: A::NOT_FOUND.into(),
        },
        Some(why) => crate::error::Error::Invalid(format!("{}: {why}", ckpt.path.display())),
    })?;
    if let Some((requested, want)) = name.and_then(|n| Some((n, A::variant(n)?))) {
        if !cfg.is_variant(&want) {
            return Err(mismatch(&ckpt, requested, cfg.describe()));
        }
    }
    let mut model = from_checkpoint(ckpt, &cfg.describe(), device, dtype, |vb| cfg.build(vb))?;
    A::meta_mut(&mut model).info.num_params = cfg.num_params()?;
    Ok(model)
}

/// A torchvision architecture with random weights (for `bench`).
pub fn random_torchvision<A: TorchvisionArch>(
    cfg: &A,
    device: &Device,
    dtype: DType,
) -> Result<A::Model> {
    let mut model = random(RANDOM_SEED, device, dtype, |vb| cfg.build(vb))?;
    let meta = A::meta_mut(&mut model);
    meta.info.num_params = cfg.num_params()?;
    meta.mark_random();
    Ok(model)
}

/// A tensor as f32 (heads and statistics are kept in f32).
pub fn f32(t: Tensor) -> Result<Tensor> {
    Ok(t.to_dtype(DType::F32)?)
}

/// BatchNorm2d in eval mode as a per-channel affine map over NCHW:
/// `x * scale + shift`, with `scale = weight / sqrt(running_var + eps)`.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    scale: Tensor,
    shift: Tensor,
}

impl BatchNorm {
    pub fn new(vb: VarBuilder, channels: usize) -> Result<Self> {
        const EPS: f64 = 1e-5;
        // Statistics in f32 whatever the model's dtype.
        let get = |name: &str, init: f64| -> Result<Tensor> {
            f32(vb.get_with_hints(channels, name, Init::Const(init))?)
        };
        let weight = get("weight", 1.0)?;
        let bias = get("bias", 0.0)?;
        let mean = get("running_mean", 0.0)?;
        let var = get("running_var", 1.0)?;
        let scale = weight.div(&(var + EPS)?.sqrt()?)?;
        let shift = bias.sub(&mean.mul(&scale)?)?;
        let dtype = vb.dtype();
        Ok(BatchNorm {
            scale: scale.to_dtype(dtype)?.reshape((1, channels, 1, 1))?,
            shift: shift.to_dtype(dtype)?.reshape((1, channels, 1, 1))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.broadcast_mul(&self.scale)?.broadcast_add(&self.shift)
    }

    /// The convolution `w` (OIHW) followed by this BatchNorm as one
    /// convolution for the CPU kernels: weights [kh, kw, cin, cout] scaled
    /// per output channel, and the shift as its bias, f32.
    pub fn fold_into(&self, w: &Tensor) -> Result<FoldedConv> {
        let scale = self.scale.to_dtype(DType::F32)?.reshape(((), 1, 1, 1))?;
        let w = w.to_dtype(DType::F32)?.broadcast_mul(&scale)?;
        let w = w.permute((2, 3, 1, 0))?.flatten_all()?.to_vec1::<f32>()?;
        let b = self
            .shift
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(FoldedConv {
            w: w.into(),
            b: b.into(),
        })
    }
}

/// A convolution and its BatchNorm as one convolution for the CPU kernels:
/// weights [k, k, cin, cout] (packed on first use) and bias, f32.
#[derive(Clone)]
pub struct FoldedConv {
    pub w: gradnorm_kernels::Weights,
    pub b: Arc<[f32]>,
}

impl std::fmt::Debug for FoldedConv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FoldedConv({:?})", self.w)
    }
}

/// A convolution weight OIHW (Kaiming-normal when random).
pub fn conv_weight(
    vb: &VarBuilder,
    cout: usize,
    cin: usize,
    k: usize,
    name: &str,
) -> Result<Tensor> {
    Ok(vb.get_with_hints(
        (cout, cin, k, k),
        name,
        candle_nn::init::DEFAULT_KAIMING_NORMAL,
    )?)
}

/// A convolution (groups 1, dilation 1) as im2col and one matmul on the CPU
/// ([`super::ops::conv2d_im2col`]; candle's `conv2d` elsewhere): its
/// backward pass (col2im and matmuls) is many times faster than candle's
/// conv backward, which ODIN and Mahalanobis need.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    padding: usize,
    stride: usize,
) -> candle_core::Result<Tensor> {
    super::ops::conv2d_im2col(x, w, padding, stride)
}

/// LayerNorm over the last dimension. candle's fused layer norm has no
/// backward pass, so with a gradient to carry it is spelt out.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(LayerNorm {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if !x.track_op() {
            return candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps as f32);
        }
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        centred
            .broadcast_div(&(var + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// Softmax over the last dimension: the fused kernel, or the composed one
/// (which has a backward pass) when a gradient is asked for.
pub fn softmax_last(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.track_op() {
        candle_nn::ops::softmax(x, D::Minus1)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

/// A classifier head (a linear layer) as f32 weight [dout, din] and bias.
pub fn head(vb: VarBuilder, din: usize, dout: usize) -> Result<(Tensor, Tensor)> {
    let fc = linear(vb, din, dout)?;
    let b = fc.bias().expect("linear builds a bias").clone();
    Ok((f32(fc.weight().clone())?, f32(b)?))
}

/// A linear layer `x W^T + b` (weights Kaiming-uniform when random).
pub fn linear(vb: VarBuilder, din: usize, dout: usize) -> Result<candle_nn::Linear> {
    let w = vb.get_with_hints(
        (dout, din),
        "weight",
        candle_nn::init::DEFAULT_KAIMING_UNIFORM,
    )?;
    let b = vb.get_with_hints(dout, "bias", Init::Const(0.0))?;
    Ok(candle_nn::Linear::new(w, Some(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorder_lists_what_a_constructor_asks_for() {
        let shapes = tensor_shapes(|vb| {
            let _ = BatchNorm::new(vb.pp("bn"), 4)?;
            linear(vb.pp("fc"), 4, 2)
        })
        .unwrap();
        let names: Vec<&str> = shapes.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "bn.weight",
                "bn.bias",
                "bn.running_mean",
                "bn.running_var",
                "fc.weight",
                "fc.bias"
            ]
        );
        // BatchNorm's running statistics are buffers, not parameters.
        assert_eq!(count_parameters(&shapes), 2 * 4 + 2 * 4 + 2);
    }

    #[test]
    fn composed_layer_norm_and_softmax_match_the_fused_ones() {
        let dev = Device::Cpu;
        let x = Tensor::arange(0f32, 24., &dev)
            .unwrap()
            .reshape((2, 3, 4))
            .unwrap();
        let x = (x.sin().unwrap() * 3.0).unwrap();
        let ln = LayerNorm {
            weight: Tensor::new(&[1f32, 2., 0.5, -1.], &dev).unwrap(),
            bias: Tensor::new(&[0f32, 0.1, 0.2, 0.3], &dev).unwrap(),
            eps: 1e-6,
        };
        let fused = ln.forward(&x).unwrap();
        let var = candle_core::Var::from_tensor(&x).unwrap();
        let composed = ln.forward(var.as_tensor()).unwrap();
        let diff = (fused - &composed)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        let a = softmax_last(&x).unwrap();
        let b = softmax_last(var.as_tensor()).unwrap();
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    }
}
