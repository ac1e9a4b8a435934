//! The exact (erf) GELU of torchvision's ViT MLPs, `x Φ(x)`, in parallel
//! and vectorized (candle's runs one thread through a scalar erf, a fifth
//! of ViT-B/16's forward pass), with its input-gradient backward pass
//! `Φ(x) + x φ(x)`.

use super::op::{apply_f32, gradient, Bwd, Grads, In, Kernel};
use super::output::Output;
use super::simd;
use candle_core::{Result, Shape, Tensor};
use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 8192;

/// GELU (erf form) of `x`, in `x`'s dtype (computed in f32).
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    apply_f32(x, Gelu)
}

struct Gelu;

impl Kernel<1> for Gelu {
    const NAME: &'static str = "gelu-erf";

    fn forward(&self, [x]: [In<'_>; 1]) -> Result<(Vec<f32>, Shape)> {
        let mut out = Output::new(x.x.len());
        out.par_chunks(CHUNK)
            .zip(x.x.par_chunks(CHUNK))
            .for_each(|(o, x)| simd::gelu(x, o.zeros()));
        Ok((out.finish(), x.l.shape().clone()))
    }

    fn backward(&self, t: Bwd<'_, 1>) -> Grads<1> {
        Ok([gradient(GeluGrad, [t.grad, t.args[0]])?])
    }
}

/// d input from (d output, input).
struct GeluGrad;

impl Kernel<2> for GeluGrad {
    const NAME: &'static str = "gelu-erf-grad";

    fn forward(&self, [g, x]: [In<'_>; 2]) -> Result<(Vec<f32>, Shape)> {
        let mut out = vec![0f32; x.x.len()];
        let density = 1.0 / (2.0 * std::f32::consts::PI).sqrt();
        out.par_chunks_mut(CHUNK)
            .zip(g.x.par_chunks(CHUNK).zip(x.x.par_chunks(CHUNK)))
            .for_each(|(o, (g, x))| {
                for ((o, &g), &v) in o.iter_mut().zip(g).zip(x) {
                    let cdf = 0.5 * (1.0 + simd::erf(v * std::f32::consts::FRAC_1_SQRT_2));
                    *o = g * (cdf + v * density * (-0.5 * v * v).exp());
                }
            });
        Ok((out, x.l.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Against candle's gelu_erf (f64 erf) in value and gradient, over the
    /// range where both saturate and past it.
    #[test]
    fn matches_candles_gelu_and_its_gradient() {
        let x = Tensor::arange(-60_000i64, 60_001, &Device::Cpu)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .affine(1e-4, 0.0)
            .unwrap();
        let x = Var::from_tensor(&x).unwrap();
        let ours = gelu_erf(&x).unwrap();
        let theirs = x
            .as_tensor()
            .to_dtype(candle_core::DType::F64)
            .unwrap()
            .gelu_erf()
            .unwrap();
        let diff = |a: &Tensor, b: &Tensor| {
            let a = a.to_dtype(candle_core::DType::F64).unwrap();
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        assert!(
            diff(&ours, &theirs) < 2e-6,
            "value: {}",
            diff(&ours, &theirs)
        );
        let g = ours.sum_all().unwrap().backward().unwrap();
        let ga = g.get(x.as_tensor()).unwrap();
        let xd =
            Var::from_tensor(&x.as_tensor().to_dtype(candle_core::DType::F64).unwrap()).unwrap();
        let gb = xd
            .as_tensor()
            .gelu_erf()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gb = gb.get(xd.as_tensor()).unwrap();
        assert!(diff(ga, gb) < 2e-6, "gradient: {}", diff(ga, gb));
    }
}
