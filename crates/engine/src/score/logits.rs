//! Scores computed from logits and the penultimate feature alone, batched on
//! the device. Each returns an f32 tensor [B].

use candle_core::{Result, Tensor, D};

/// max_c softmax(logits)_c.
pub fn msp(logits: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax(logits, D::Minus1)?.max(D::Minus1)
}

/// max_c softmax(logits / T)_c: ODIN without input perturbation.
pub fn msp_at(logits: &Tensor, temperature: f64) -> Result<Tensor> {
    msp(&(logits / temperature)?)
}

/// T * logsumexp(logits / T).
pub fn energy(logits: &Tensor, temperature: f64) -> Result<Tensor> {
    (logits / temperature)?.log_sum_exp(D::Minus1)? * temperature
}

/// max_c logits_c.
pub fn max_logit(logits: &Tensor) -> Result<Tensor> {
    logits.max(D::Minus1)
}

/// GradNorm's two factors: sum_k |C softmax(logits / T)_k - 1| and ||h||_1.
pub fn gradnorm_factors(
    logits: &Tensor,
    feature: &Tensor,
    temperature: f64,
) -> Result<(Tensor, Tensor)> {
    let c = logits.dim(D::Minus1)? as f64;
    let p = candle_nn::ops::softmax(&(logits / temperature)?, D::Minus1)?;
    let term = p.affine(c, -1.0)?.abs()?.sum(D::Minus1)?;
    let l1 = feature.abs()?.sum(D::Minus1)?;
    Ok((term, l1))
}

/// GradNorm: the L1 norm of d/dW of sum_c -log softmax(W h + b)_c / T over
/// the head weight W. Since dL/dW_kj = (C p_k - 1) h_j / T, the norm is
/// (1/T) * sum_k |C p_k - 1| * sum_j |h_j|, for a whole batch at once.
pub fn gradnorm(logits: &Tensor, feature: &Tensor, temperature: f64) -> Result<Tensor> {
    let (term, l1) = gradnorm_factors(logits, feature, temperature)?;
    (term * l1)? / temperature
}

/// A score of the logits (and feature) alone, ready to run.
struct LogitScore<F>(F);

impl<F> super::Score for LogitScore<F>
where
    F: Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync,
{
    fn score(&self, f: &super::Forward) -> crate::error::Result<Tensor> {
        Ok((self.0)(f.logits, f.feature)?)
    }
}

type Prepared = crate::error::Result<Box<dyn super::Score>>;

fn temperature(m: &super::Method) -> crate::error::Result<f64> {
    super::number(m, "temperature")
}

pub(crate) fn prepare_msp(_: &super::Method, _: &super::Prepare) -> Prepared {
    Ok(Box::new(LogitScore(|z: &Tensor, _: &Tensor| msp(z))))
}

pub(crate) fn prepare_max_logit(_: &super::Method, _: &super::Prepare) -> Prepared {
    Ok(Box::new(LogitScore(|z: &Tensor, _: &Tensor| max_logit(z))))
}

pub(crate) fn prepare_energy(m: &super::Method, _: &super::Prepare) -> Prepared {
    let t = temperature(m)?;
    Ok(Box::new(LogitScore(move |z: &Tensor, _: &Tensor| {
        energy(z, t)
    })))
}
