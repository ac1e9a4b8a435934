//! GradNorm with the paper's ablations as parameters: the norm of the
//! gradient (L1, the paper's; L2; L-infinity) and the loss's target (the
//! uniform distribution, the paper's KL; or the model's own top-1 label,
//! cross-entropy). The gradient is the head weight's, per image, in closed
//! form: dL/dW = g h^T with g = dL/dz the gradient at the logits z = W h + b,
//! so every entrywise p-norm of it is ||g||_p ||h||_p, for a batch at once.

use super::Method;
use crate::error::Error;
use crate::model::probe;

mod layer_grad;
use candle_core::{DType, Result, Tensor, D};

/// Which entrywise norm of the gradient is the score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    L1,
    L2,
    Linf,
}

/// What the loss compares softmax(z / T) with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// sum_c -log softmax(z / T)_c: the paper's targets of ones.
    Uniform,
    /// -log softmax(z / T)_y with y = argmax_c z_c: cross-entropy against
    /// the predicted label.
    Predicted,
}

impl Norm {
    /// The registry's name (`l1`, `l2`, `linf`); the registry checks it.
    pub fn from_name(name: &str) -> Option<Norm> {
        match name {
            "l1" => Some(Norm::L1),
            "l2" => Some(Norm::L2),
            "linf" => Some(Norm::Linf),
            _ => None,
        }
    }

    /// The norm of every row of `x` [B, N]: [B].
    pub fn of_rows(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Norm::L1 => x.abs()?.sum(D::Minus1),
            Norm::L2 => x.sqr()?.sum(D::Minus1)?.sqrt(),
            Norm::Linf => x.abs()?.max(D::Minus1),
        }
    }
}

impl Target {
    pub fn from_name(name: &str) -> Option<Target> {
        match name {
            "uniform" => Some(Target::Uniform),
            "predicted" => Some(Target::Predicted),
            _ => None,
        }
    }
}

/// dL/dz for every image of a batch of logits z [B, C] (f32): (C p - 1) / T
/// for the uniform target, (p - onehot(argmax z)) / T for the predicted one,
/// with p = softmax(z / T).
pub fn logit_gradient(logits: &Tensor, temperature: f64, target: Target) -> Result<Tensor> {
    let c = logits.dim(D::Minus1)?;
    let p = candle_nn::ops::softmax(&(logits / temperature)?, D::Minus1)?;
    let g = match target {
        Target::Uniform => p.affine(c as f64, -1.0)?,
        Target::Predicted => {
            let top = logits.argmax_keepdim(D::Minus1)?;
            let classes = Tensor::arange(0u32, c as u32, logits.device())?.unsqueeze(0)?;
            let onehot = classes.broadcast_eq(&top)?.to_dtype(p.dtype())?;
            (p - onehot)?
        }
    };
    g / temperature
}

/// The norm of the head weight's gradient, per image: ||g||_p ||h||_p.
pub fn head(
    logits: &Tensor,
    feature: &Tensor,
    temperature: f64,
    norm: Norm,
    target: Target,
) -> Result<Tensor> {
    let g = logit_gradient(logits, temperature, target)?;
    let h = feature.to_dtype(DType::F32)?;
    norm.of_rows(&g)? * norm.of_rows(&h)?
}

/// GradNorm as a method configures it.
#[derive(Debug, Clone)]
pub struct Config {
    pub temperature: f64,
    /// A weight's name, or `head`.
    pub layer: String,
    pub norm: Norm,
    pub target: Target,
}

impl Config {
    pub fn of(m: &Method) -> crate::error::Result<Config> {
        let unknown = |name: &str, v: &str| Error::Invalid(format!("{}: no {name} {v:?}", m.key()));
        let norm = super::choice(m, "norm")?;
        let target = super::choice(m, "target")?;
        Ok(Config {
            temperature: super::number(m, "temperature")?,
            layer: layer_name(super::text(m, "layer")?).to_string(),
            norm: Norm::from_name(norm).ok_or_else(|| unknown("norm", norm))?,
            target: Target::from_name(target).ok_or_else(|| unknown("target", target))?,
        })
    }
}

/// A weight's name as the checkpoint has it, also accepted with
/// `.weight` or DataParallel's `module.`.
fn layer_name(name: &str) -> &str {
    let name = name.strip_prefix("module.").unwrap_or(name);
    name.strip_suffix(".weight").unwrap_or(name)
}

struct HeadGradNorm(Config);

impl super::Score for HeadGradNorm {
    fn score(&self, f: &super::Forward) -> crate::error::Result<Tensor> {
        let c = &self.0;
        Ok(head(f.logits, f.feature, c.temperature, c.norm, c.target)?)
    }
}

/// GradNorm of an earlier layer's weight: a forward pass with a probe at
/// the layer, one backward pass of the batch to the layer's output, then
/// every image's weight gradient from it (`layer_grad`).
struct LayerGradNorm(Config);

/// The last batch's probed pass, which the next methods on the same batch
/// and layer share (a sweep over norms, targets or temperatures runs one
/// forward pass, and one backward pass per target and temperature). It is
/// kept until the next batch: that batch's activations past the layer.
struct Shared {
    x: candle_core::TensorId,
    layer: String,
    /// The logits, tracked back to the layer's output.
    logits: Tensor,
    captured: probe::Captured,
    /// d loss / d output for (T, target).
    dy: Option<(u64, Target, Tensor)>,
}

thread_local! {
    static SHARED: std::cell::RefCell<Option<Shared>> = const { std::cell::RefCell::new(None) };
}

impl LayerGradNorm {
    /// The probed pass of `f`'s batch, from the last method when it ran it.
    fn pass(&self, f: &super::Forward) -> crate::error::Result<Shared> {
        let c = &self.0;
        let reuse = SHARED.with(|s| {
            s.borrow_mut()
                .take()
                .filter(|s| s.x == f.x.id() && s.layer == c.layer)
        });
        if let Some(shared) = reuse {
            return Ok(shared);
        }
        let (out, captured) = probe::capture(&c.layer, || f.model.forward(f.x));
        let captured = captured.ok_or_else(|| {
            Error::Invalid(format!(
                "gradnorm: layer `{}` was not reached by the forward pass",
                c.layer
            ))
        })?;
        Ok(Shared {
            x: f.x.id(),
            layer: c.layer.clone(),
            logits: out?.logits,
            captured,
            dy: None,
        })
    }
}

impl super::Score for LayerGradNorm {
    fn score(&self, f: &super::Forward) -> crate::error::Result<Tensor> {
        let c = &self.0;
        let mut shared = self.pass(f)?;
        let key = (c.temperature.to_bits(), c.target);
        let dy = match &shared.dy {
            Some((t, target, dy)) if (*t, *target) == key => dy.clone(),
            _ => {
                // sum_b g_b . z_b has gradient g_b = dL_b/dz_b at image b's
                // logits, so one backward pass gives every image's own dL/dy.
                let g = logit_gradient(&shared.logits.detach(), c.temperature, c.target)?;
                let loss = (&shared.logits * g)?.sum_all()?;
                let grads = loss.backward()?;
                let output = shared.captured.output.as_tensor();
                let dy = grads.get(output).cloned().ok_or_else(|| {
                    Error::Invalid(format!(
                        "gradnorm: the logits do not depend on layer `{}`",
                        c.layer
                    ))
                })?;
                shared.dy = Some((key.0, key.1, dy.clone()));
                dy
            }
        };
        let score = layer_grad::norm(&shared.captured, &dy, c.norm)?;
        SHARED.with(|s| *s.borrow_mut() = Some(shared));
        Ok(score)
    }
}

pub(crate) fn prepare(
    m: &Method,
    ctx: &super::Prepare,
) -> crate::error::Result<Box<dyn super::Score>> {
    let c = Config::of(m)?;
    let head_name = probe::head_name(ctx.model.info().family);
    if c.layer == "head" || c.layer == head_name {
        return Ok(Box::new(HeadGradNorm(c)));
    }
    let layers = probe::weight_layers(ctx.model)?;
    if !layers.iter().any(|l| l.name == c.layer) {
        let close = probe::close_names(&c.layer, layers.iter().map(|l| l.name.as_str()));
        return Err(Error::Invalid(format!(
            "gradnorm: layer `{}` is not a convolution or linear weight of {} \
             (close: {}; `gradnorm-tui layers` lists them all)",
            c.layer,
            ctx.model.info().name,
            close.join(", ")
        )));
    }
    Ok(Box::new(LayerGradNorm(c)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Per image, the norm of d/dW of the loss by candle autograd.
    fn autograd(
        w: &Tensor,
        b: &Tensor,
        h: &Tensor,
        t: f64,
        norm: Norm,
        target: Target,
    ) -> Vec<f32> {
        (0..h.dim(0).unwrap())
            .map(|i| {
                let wv = Var::from_tensor(w).unwrap();
                let hi = h.narrow(0, i, 1).unwrap();
                let z = hi.matmul(&wv.as_tensor().t().unwrap()).unwrap();
                let z = z.broadcast_add(b).unwrap();
                let logp = candle_nn::ops::log_softmax(&(&z / t).unwrap(), D::Minus1).unwrap();
                let loss = match target {
                    Target::Uniform => logp.neg().unwrap().sum_all().unwrap(),
                    Target::Predicted => {
                        let y = z.argmax(D::Minus1).unwrap().to_vec1::<u32>().unwrap()[0];
                        logp.narrow(1, y as usize, 1)
                            .unwrap()
                            .neg()
                            .unwrap()
                            .sum_all()
                            .unwrap()
                    }
                };
                let g = loss.backward().unwrap().remove(wv.as_tensor()).unwrap();
                norm.of_rows(&g.flatten_all().unwrap().unsqueeze(0).unwrap())
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()[0]
            })
            .collect()
    }

    #[test]
    fn every_norm_and_target_equals_autograd_on_random_heads() {
        let dev = Device::Cpu;
        for (c, d, n) in [(10, 7, 4), (100, 64, 3)] {
            // Deterministic spread values stand in for random ones.
            let wave = |len: usize, f: f64| {
                let x = Tensor::arange(0u32, len as u32, &dev).unwrap();
                (x.to_dtype(DType::F32).unwrap() * f)
                    .unwrap()
                    .sin()
                    .unwrap()
            };
            let w = (wave(c * d, 0.731).reshape((c, d)).unwrap() * 0.9).unwrap();
            let b = wave(c, 1.37);
            let h = (wave(n * d, 0.377).reshape((n, d)).unwrap() + 0.3)
                .unwrap()
                .relu()
                .unwrap();
            let z = h
                .matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(&b)
                .unwrap();
            for norm in [Norm::L1, Norm::L2, Norm::Linf] {
                for target in [Target::Uniform, Target::Predicted] {
                    for t in [1.0, 2.5] {
                        let got = head(&z, &h, t, norm, target)
                            .unwrap()
                            .to_vec1::<f32>()
                            .unwrap();
                        let want = autograd(&w, &b, &h, t, norm, target);
                        for (g, w) in got.iter().zip(&want) {
                            assert!(
                                (g - w).abs() <= 1e-5 * w.abs().max(1e-6),
                                "{norm:?} {target:?} T={t}: {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }
}
