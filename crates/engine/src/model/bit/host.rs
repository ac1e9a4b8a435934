//! BiT's inference weights laid out for the CPU kernels (`kernels`):
//! standardized convolutions as [kh, kw, cin, cout] f32, GroupNorm's affine
//! parameters as f32, and the channels-last forward pass over them (GroupNorm
//! fused with its ReLU, 1x1 convolutions as one matrix product over every
//! pixel of the batch with the residual added inside it, 3x3 and strided
//! convolutions as im2col blocks on gemm).

use super::{GN_EPS, GROUPS};
use crate::error::{Error, Result};
use candle_core::{DType, Tensor};
use gradnorm_kernels::{self as kernels, Act, Geometry, Weights};
use std::sync::Arc;

/// A GroupNorm's affine parameters as f32 (values of the model's dtype).
#[derive(Clone)]
pub(super) struct HostNorm {
    pub(super) gamma: Arc<[f32]>,
    pub(super) beta: Arc<[f32]>,
}

#[derive(Clone)]
pub(super) struct HostUnit {
    pub(super) gn1: HostNorm,
    /// Standardized convolution weights [kh, kw, cin, cout] as f32.
    pub(super) conv1: Weights,
    pub(super) gn2: HostNorm,
    pub(super) conv2: Weights,
    pub(super) gn3: HostNorm,
    pub(super) conv3: Weights,
    pub(super) downsample: Option<Weights>,
    pub(super) stride: usize,
}

/// The inference weights laid out for the CPU kernels (`kernels`).
#[derive(Clone)]
pub(super) struct HostWeights {
    pub(super) root: Weights,
    pub(super) stages: Vec<Vec<HostUnit>>,
    pub(super) gn_head: HostNorm,
}

impl std::fmt::Debug for HostWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostWeights { .. }")
    }
}

/// OIHW weight (standardized, in the model's dtype) -> [kh, kw, cin, cout]
/// f32 values.
pub(super) fn host_conv(weight: &Tensor) -> Result<Weights> {
    let w = weight.permute((2, 3, 1, 0))?.to_dtype(DType::F32)?;
    Ok(w.flatten_all()?.to_vec1::<f32>()?.into())
}

pub(super) fn host_norm(gn: &(Tensor, Tensor)) -> Result<HostNorm> {
    let v =
        |t: &Tensor| -> Result<Arc<[f32]>> { Ok(t.to_dtype(DType::F32)?.to_vec1::<f32>()?.into()) };
    Ok(HostNorm {
        gamma: v(&gn.0)?,
        beta: v(&gn.1)?,
    })
}

pub(super) fn gn_relu(x: &Tensor, n: &HostNorm) -> candle_core::Result<Tensor> {
    kernels::group_norm_relu(x, GROUPS, GN_EPS, &n.gamma, &n.beta)
}

impl HostWeights {
    /// Root convolution and padded pool: NCHW input (already in the model's
    /// dtype), NHWC output.
    pub(super) fn root(&self, x: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = x.dims4()?;
        if c != 3 {
            return Err(Error::Invalid(format!(
                "BiT takes 3-channel input, not {c}"
            )));
        }
        let x = x.permute((0, 2, 3, 1))?;
        let y = kernels::conv(
            &x,
            Geometry::symmetric(h, w, 7, 2, 3)?,
            &self.root,
            None,
            Act::Linear,
        )?;
        Ok(kernels::max_pool_padded(&y, 3, 2, 1)?)
    }

    pub(super) fn unit(u: &HostUnit, x: &Tensor) -> Result<Tensor> {
        let a = gn_relu(x, &u.gn1)?;
        let residual = match &u.downsample {
            Some(w) if u.stride == 1 => kernels::pointwise(&a, w, None, Act::Linear, None)?,
            Some(w) => {
                let (_, h, wd, _) = a.dims4()?;
                kernels::conv(
                    &a,
                    Geometry::symmetric(h, wd, 1, u.stride, 0)?,
                    w,
                    None,
                    Act::Linear,
                )?
            }
            None => x.clone(),
        };
        let y = kernels::pointwise(&a, &u.conv1, None, Act::Linear, None)?;
        let y = gn_relu(&y, &u.gn2)?;
        let (_, h, w, _) = y.dims4()?;
        let y = kernels::conv(
            &y,
            Geometry::symmetric(h, w, 3, u.stride, 1)?,
            &u.conv2,
            None,
            Act::Linear,
        )?;
        let y = gn_relu(&y, &u.gn3)?;
        Ok(kernels::pointwise(
            &y,
            &u.conv3,
            None,
            Act::Linear,
            Some(&residual),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{variant, Bit};
    use super::*;
    use candle_core::Device;

    /// A profiling tool, not a check of speed: the CPU forward pass of a
    /// random R101x1 @480 layer by layer (CPU time and GMAC per CPU second
    /// per kind of layer
    /// and stage), checked against `HostWeights::unit`. Run by hand:
    /// `cargo test --release --lib profile_r101x1 -- --ignored --nocapture`
    /// (PROFILE_BATCH, default 2; GRADNORM_CPU_GEMM=1 for the gemm crate).
    #[test]
    #[ignore]
    fn profile_r101x1_forward_by_layer() {
        // Process CPU seconds (all threads): steady on a shared machine.
        struct Instant(f64);
        impl Instant {
            fn now() -> Self {
                Instant(crate::model::cpu_seconds())
            }
            fn elapsed(&self) -> Self {
                Instant(Self::now().0 - self.0)
            }
            fn as_secs_f64(&self) -> f64 {
                self.0
            }
        }
        let b: usize = std::env::var("PROFILE_BATCH").map_or(2, |v| v.parse().unwrap());
        let cfg = variant("BiT-S-R101x1").unwrap();
        let m = Bit::random(&cfg, 0, &Device::Cpu, DType::F32).unwrap();
        let host = m.host.as_ref().unwrap();
        let x = Tensor::rand(-1f32, 1., (b, 3, 480, 480), &Device::Cpu).unwrap();
        // (layer kind, stage) -> (seconds, multiply-adds).
        let mut table: Vec<(String, f64, f64)> = Vec::new();
        let mut add = |name: String, t: Instant, macs: usize| {
            let dt = t.elapsed().as_secs_f64();
            match table.iter_mut().find(|r| r.0 == name) {
                Some(r) => {
                    r.1 += dt;
                    r.2 += macs as f64;
                }
                None => table.push((name, dt, macs as f64)),
            }
        };
        let t = Instant::now();
        let xs = x.permute((0, 2, 3, 1)).unwrap();
        let g = Geometry::symmetric(480, 480, 7, 2, 3).unwrap();
        let y = kernels::conv(&xs, g, &host.root, None, Act::Linear).unwrap();
        add("stem 7x7/2".into(), t, b * 240 * 240 * 147 * cfg.width);
        let t = Instant::now();
        let mut x = kernels::max_pool_padded(&y, 3, 2, 1).unwrap();
        add("stem pool".into(), t, 0);
        for (s, units) in host.stages.iter().enumerate() {
            for u in units {
                let want = HostWeights::unit(u, &x).unwrap();
                let (_, h, w, cin) = x.dims4().unwrap();
                let t = Instant::now();
                let a = gn_relu(&x, &u.gn1).unwrap();
                add(format!("s{} GroupNorm+ReLU", s + 1), t, 0);
                let (ho, wo) = (h.div_ceil(u.stride), w.div_ceil(u.stride));
                let cmid = u.conv1.len() / cin;
                let cout = u.conv3.len() / cmid;
                let t = Instant::now();
                let residual = match &u.downsample {
                    Some(wt) if u.stride == 1 => {
                        kernels::pointwise(&a, wt, None, Act::Linear, None).unwrap()
                    }
                    Some(wt) => {
                        let g = Geometry::symmetric(h, w, 1, u.stride, 0).unwrap();
                        kernels::conv(&a, g, wt, None, Act::Linear).unwrap()
                    }
                    None => x.clone(),
                };
                if u.downsample.is_some() {
                    add(
                        format!("s{} 1x1 downsample", s + 1),
                        t,
                        b * ho * wo * cin * cout,
                    );
                }
                let t = Instant::now();
                let y = kernels::pointwise(&a, &u.conv1, None, Act::Linear, None).unwrap();
                add(format!("s{} 1x1 conv1", s + 1), t, b * h * w * cin * cmid);
                let t = Instant::now();
                let y = gn_relu(&y, &u.gn2).unwrap();
                add(format!("s{} GroupNorm+ReLU", s + 1), t, 0);
                let t = Instant::now();
                let g = Geometry::symmetric(h, w, 3, u.stride, 1).unwrap();
                let y = kernels::conv(&y, g, &u.conv2, None, Act::Linear).unwrap();
                let kind = if u.stride == 1 { "3x3" } else { "3x3/2" };
                add(
                    format!("s{} {kind} conv2", s + 1),
                    t,
                    b * ho * wo * 9 * cmid * cmid,
                );
                let t = Instant::now();
                let y = gn_relu(&y, &u.gn3).unwrap();
                add(format!("s{} GroupNorm+ReLU", s + 1), t, 0);
                let t = Instant::now();
                let y =
                    kernels::pointwise(&y, &u.conv3, None, Act::Linear, Some(&residual)).unwrap();
                add(
                    format!("s{} 1x1 conv3 + add", s + 1),
                    t,
                    b * ho * wo * cmid * cout,
                );
                let diff = (&y - &want).unwrap().abs().unwrap().max_all().unwrap();
                assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
                x = y;
            }
        }
        let t = Instant::now();
        let _ = kernels::mean(&gn_relu(&x, &host.gn_head).unwrap()).unwrap();
        add("head GroupNorm+ReLU+mean".into(), t, 0);
        crate::model::print_profile("R101x1 @480", b, &table);
    }
}
