//! ODIN with input perturbation (Liang et al. 2018), as the seed runs it.

use crate::error::Result;
use crate::model::Classifier;
use candle_core::{Tensor, Var, D};

/// x' = x - eps * sign(d CE(f(x) / T, argmax f(x)) / dx) (sign 0 counts as
/// +1, as the seed's `torch.ge(grad, 0)`), then max softmax(f(x') / T).
pub fn score(model: &dyn Classifier, x: &Tensor, temperature: f64, epsilon: f64) -> Result<Tensor> {
    let x_var = Var::from_tensor(x)?;
    let out = model.forward(x_var.as_tensor())?;
    score_tracked(model, x, &x_var, &out.logits, temperature, epsilon)
}

/// [`score`] from a forward pass already tracked by autograd: `logits` =
/// f(`x_var`), `x_var` holding `x` (the Scorer shares that pass).
pub fn score_tracked(
    model: &dyn Classifier,
    x: &Tensor,
    x_var: &Var,
    logits: &Tensor,
    temperature: f64,
    epsilon: f64,
) -> Result<Tensor> {
    let pseudo = logits.detach().argmax(D::Minus1)?;
    let loss = candle_nn::loss::cross_entropy(&(logits / temperature)?, &pseudo)?;
    let grads = loss.backward()?;
    let grad = grads
        .get(x_var.as_tensor())
        .ok_or_else(|| crate::Error::Invalid("ODIN: no gradient reached the input".into()))?;
    let perturbed = perturb(x, grad, -epsilon)?;
    let out = model.forward(&perturbed)?;
    Ok(super::logits::msp_at(&out.logits, temperature)?)
}

/// x + step * s where s = +1 where grad >= 0 and -1 elsewhere.
pub fn perturb(x: &Tensor, grad: &Tensor, step: f64) -> candle_core::Result<Tensor> {
    let sign = grad.ge(0.0)?.to_dtype(x.dtype())?.affine(2.0, -1.0)?;
    x + (sign * step)?
}

/// ODIN as a registry method: one pass at epsilon 0, else the tracked pass
/// plus one on the nudged input.
struct Odin {
    temperature: f64,
    epsilon: f64,
}

impl super::Score for Odin {
    fn tracks_input(&self) -> bool {
        self.epsilon != 0.0
    }

    fn score(&self, f: &super::Forward) -> Result<Tensor> {
        match f.x_var {
            Some(xv) if self.epsilon != 0.0 => score_tracked(
                f.model,
                f.x,
                xv,
                f.tracked_logits,
                self.temperature,
                self.epsilon,
            ),
            _ => Ok(super::logits::msp_at(f.logits, self.temperature)?),
        }
    }
}

pub(crate) fn prepare(m: &super::Method, _: &super::Prepare) -> Result<Box<dyn super::Score>> {
    Ok(Box::new(Odin {
        temperature: super::number(m, "temperature")?,
        epsilon: super::number(m, "epsilon")?,
    }))
}
