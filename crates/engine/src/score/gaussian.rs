//! Class-conditional Gaussians with one shared covariance per layer, fitted
//! in one streaming pass (the seed's `sample_estimator`, without holding
//! every feature in memory), and the pseudo-inverse that turns the
//! covariance into a precision as scikit-learn's `EmpiricalCovariance` does.
//!
//! Per layer the device accumulates, in f64, the per-class sums of the
//! features and the sum of their outer products, both taken relative to a
//! shift (the first batch's mean) so that the algebraic centering at the
//! end does not cancel away the within-class spread:
//!   Sigma = (sum_i g_i g_i^T - sum_c n_c m_c m_c^T) / N,  g = f - shift,
//! with m_c the shifted class means. That is the maximum-likelihood
//! covariance of the class-centred features, which the seed computes from
//! the stacked features.

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// The running sums of one layer, on the device.
struct LayerSums {
    dim: usize,
    /// [d] f64, subtracted from every feature.
    shift: Option<Tensor>,
    /// [C, d] f64: per-class sums of shifted features.
    sums: Tensor,
    /// [d, d] f64: sum of outer products of shifted features.
    scatter: Tensor,
}

/// Streaming estimate of class means and a shared covariance for every tap.
pub struct GaussianFit {
    layers: Vec<LayerSums>,
    counts: Vec<u64>,
    device: Device,
}

/// One layer's fit, in f64 on the CPU: the classes that had samples, their
/// means ([K, d] row-major) and the shared covariance ([d, d]).
#[derive(Debug, Clone)]
pub struct LayerGaussian {
    pub dim: usize,
    pub classes: Vec<usize>,
    pub means: Vec<f64>,
    pub covariance: Vec<f64>,
}

impl GaussianFit {
    pub fn new(tap_dims: &[usize], num_classes: usize, device: &Device) -> Result<Self> {
        let layers = tap_dims
            .iter()
            .map(|&d| {
                Ok(LayerSums {
                    dim: d,
                    shift: None,
                    sums: Tensor::zeros((num_classes, d), DType::F64, device)?,
                    scatter: Tensor::zeros((d, d), DType::F64, device)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GaussianFit {
            layers,
            counts: vec![0; num_classes],
            device: device.clone(),
        })
    }

    pub fn num_classes(&self) -> usize {
        self.counts.len()
    }

    /// Images added so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Images per class so far.
    pub fn class_counts(&self) -> &[u64] {
        &self.counts
    }

    /// Adds one batch: `taps[l]` is [B, d_l] (any float dtype, any device),
    /// `labels[i]` the class of image i.
    pub fn add(&mut self, taps: &[Tensor], labels: &[usize]) -> Result<()> {
        if taps.len() != self.layers.len() {
            return Err(Error::Invalid(format!(
                "Mahalanobis fit: {} taps, expected {}",
                taps.len(),
                self.layers.len()
            )));
        }
        let c = self.counts.len();
        if let Some(&bad) = labels.iter().find(|&&l| l >= c) {
            return Err(Error::Invalid(format!(
                "Mahalanobis fit: label {bad} is out of range for a model with {c} classes"
            )));
        }
        if labels.is_empty() {
            return Ok(());
        }
        let idx = Tensor::from_vec(
            labels.iter().map(|&l| l as u32).collect::<Vec<u32>>(),
            labels.len(),
            &self.device,
        )?;
        for (layer, tap) in self.layers.iter_mut().zip(taps) {
            let f = tap.to_device(&self.device)?.to_dtype(DType::F64)?;
            if f.dims() != [labels.len(), layer.dim] {
                return Err(Error::Invalid(format!(
                    "Mahalanobis fit: tap of shape {:?}, expected [{}, {}]",
                    f.dims(),
                    labels.len(),
                    layer.dim
                )));
            }
            let shift = match &layer.shift {
                Some(s) => s.clone(),
                None => {
                    let s = f.mean(0)?;
                    layer.shift = Some(s.clone());
                    s
                }
            };
            let g = f.broadcast_sub(&shift)?;
            layer.sums = layer.sums.index_add(&idx, &g, 0)?;
            layer.scatter = (&layer.scatter + g.t()?.matmul(&g)?)?;
        }
        for &l in labels {
            self.counts[l] += 1;
        }
        Ok(())
    }

    /// Means of the classes that had images, and the shared covariance.
    pub fn finish(&self) -> Result<Vec<LayerGaussian>> {
        let n = self.count();
        if n == 0 {
            return Err(Error::Invalid(
                "Mahalanobis fit: no training image was read".into(),
            ));
        }
        let classes: Vec<usize> = (0..self.counts.len())
            .filter(|&c| self.counts[c] > 0)
            .collect();
        let idx = Tensor::from_vec(
            classes.iter().map(|&c| c as u32).collect::<Vec<u32>>(),
            classes.len(),
            &self.device,
        )?;
        let counts = Tensor::from_vec(
            classes
                .iter()
                .map(|&c| self.counts[c] as f64)
                .collect::<Vec<f64>>(),
            (classes.len(), 1),
            &self.device,
        )?;
        let mut out = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let shift = layer.shift.as_ref().expect("set by the first batch");
            let sums = layer.sums.index_select(&idx, 0)?;
            let m = sums.broadcast_div(&counts)?;
            // sum_c n_c m_c m_c^T = sum_c s_c m_c^T.
            let between = sums.t()?.matmul(&m)?;
            let cov = ((&layer.scatter - between)? / n as f64)?;
            // Symmetrize: the two products round differently.
            let cov = ((&cov + cov.t()?)? * 0.5)?;
            let means = m.broadcast_add(shift)?;
            out.push(LayerGaussian {
                dim: layer.dim,
                classes: classes.clone(),
                means: means.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?,
                covariance: cov.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?,
            });
        }
        Ok(out)
    }
}

/// The pseudo-inverse of a symmetric matrix ([n, n] row-major) as
/// `scipy.linalg.pinvh` computes it by default: eigenvalues whose magnitude
/// is at most n * eps * max|eigenvalue| count as zero. Returns the inverse
/// and the rank kept.
pub fn pinvh(a: &[f64], n: usize) -> Result<(Vec<f64>, usize)> {
    use faer::{Mat, Side};
    if a.len() != n * n {
        return Err(Error::Invalid(format!(
            "pinvh: {} values for a {n}x{n} matrix",
            a.len()
        )));
    }
    if let Some(bad) = a.iter().find(|v| !v.is_finite()) {
        return Err(Error::Invalid(format!(
            "pinvh: the covariance holds a non-finite value ({bad})"
        )));
    }
    let m = Mat::<f64>::from_fn(n, n, |i, j| a[i * n + j]);
    let eig = m
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::Invalid(format!("eigendecomposition failed: {e:?}")))?;
    let s: Vec<f64> = (0..n).map(|i| eig.S()[i]).collect();
    let u = eig.U();
    let max = s.iter().fold(0f64, |m, v| m.max(v.abs()));
    let cutoff = max * n as f64 * f64::EPSILON;
    let kept: Vec<usize> = (0..n).filter(|&i| s[i].abs() > cutoff).collect();
    let r = kept.len();
    let scaled = Mat::<f64>::from_fn(n, r, |i, k| u[(i, kept[k])] / s[kept[k]]);
    let basis = Mat::<f64>::from_fn(n, r, |i, k| u[(i, kept[k])]);
    let p = &scaled * basis.transpose();
    let mut out = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            // Exactly symmetric, as the product is up to rounding.
            out[i * n + j] = if j >= i { p[(i, j)] } else { p[(j, i)] };
        }
    }
    Ok((out, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinvh_inverts_a_regular_matrix() {
        let a = [4.0, 1.0, 0.5, 1.0, 3.0, 0.25, 0.5, 0.25, 2.0];
        let (p, r) = pinvh(&a, 3).unwrap();
        assert_eq!(r, 3);
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|k| a[i * 3 + k] * p[k * 3 + j]).sum();
                assert!((v - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn pinvh_of_a_rank_one_matrix() {
        // v v^T with |v| = 3 has pseudo-inverse v v^T / 81.
        let v = [1.0, 2.0, 2.0];
        let a: Vec<f64> = (0..9).map(|k| v[k / 3] * v[k % 3]).collect();
        let (p, r) = pinvh(&a, 3).unwrap();
        assert_eq!(r, 1);
        for k in 0..9 {
            assert!((p[k] - a[k] / 81.0).abs() < 1e-14, "{k}: {}", p[k]);
        }
    }
}
