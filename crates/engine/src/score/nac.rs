//! NAC-UE (neuron activation coverage, Liu et al., ICLR 2024) as the
//! authors' OpenOOD postprocessor computes it (BierOne/ood_coverage,
//! openood/postprocessors/nac_postprocessor.py and nac/{coverage,utils,
//! instr_state}.py): at each chosen layer, every neuron's state is
//! sigmoid(alpha o g), with o the layer's output and g the gradient there of
//! the KL divergence to the uniform distribution, both summed over the
//! positions of the map; the fit set's states, binned over M logarithmic
//! intervals of [0, 1.2), give every (interval, neuron) a coverage
//! min(count / O, 1); an image's score is the mean over neurons of the
//! coverage of the interval its state falls in, averaged over the layers.
//!
//! The fit keeps every neuron's pooled (o, g) for up to [`DEFAULT_FIT_ROWS`]
//! images at each of the family's four layers, so that the layers and the
//! hyperparameters stay choices of the method, not of the fit.

use super::{Forward, Method, Prepare, Score};
use crate::error::{Error, Result};
use crate::model::{probe, Classifier, Family};
use candle_core::{DType, Device, Tensor, D};

/// Images of the fit set whose states the fit keeps by default (the
/// authors' ImageNet `valid_num`), evenly spaced over the list.
pub const DEFAULT_FIT_ROWS: usize = 1000;

/// One layer's hyperparameters: O (how many fit states fill an interval),
/// M (intervals + 1) and the sigmoid's steepness alpha.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hyper {
    pub o: f64,
    pub bins: usize,
    pub alpha: f64,
}

/// The authors' ImageNet ResNet-50 layers, deepest first (their README's
/// `avgpool layer3 layer2 layer1`), with their configuration's O, M and
/// alpha (configs/postprocessors/nac/resnet/nac_imagenet.yml), by the
/// model's names: the pooled feature (the head's input), then the outputs
/// of the stride-16, -8 and -4 stages (ResNet's layer3-1, BiT's blocks,
/// EfficientNet-Lite's last block of each, which no paper gives layers or
/// hyperparameters for: it takes ResNet's). None for ViT.
pub fn authors_layers(model: &dyn Classifier) -> Option<[(String, Hyper); 4]> {
    let h = |o: f64, bins: usize, alpha: f64| Hyper { o, bins, alpha };
    let feature = match model.info().family {
        Family::ResNet => "avgpool",
        Family::Bit => "before_head",
        // The wheel's pooling module.
        Family::EfficientNetLite => "_avg_pooling",
        Family::Vit => return None,
    };
    let stage = |l: usize| model.stage_probe_output(l);
    Some([
        (feature.to_string(), h(10.0, 50, 3000.0)),
        (stage(3)?, h(500.0, 50, 300.0)),
        (stage(2)?, h(50.0, 500, 0.01)),
        (stage(1)?, h(5000.0, 1000, 1.0)),
    ])
}

/// Each of `layers`' pooled output o and KL gradient g for a batch `x`:
/// ([B, C], [B, C]) f32 per layer. The first of the family's layers is the
/// pooled feature, whose gradient is (p - 1/C) W in closed form; the others
/// come from one backward pass of the batch (images are independent).
pub fn states(
    model: &dyn Classifier,
    x: &Tensor,
    layers: &[String],
) -> Result<Vec<(Tensor, Tensor)>> {
    let authors = authors_layers(model);
    let feature_name = authors.as_ref().map(|l| l[0].0.as_str()).ok_or_else(|| {
        Error::Invalid(format!(
            "nac-ue: no layers are known for {}",
            model.info().name
        ))
    })?;
    let select = probe::Selection {
        norms: Vec::new(),
        stages: layers
            .iter()
            .filter(|l| l.as_str() != feature_name)
            .cloned()
            .collect(),
    };
    let (out, points) = probe::points(&select, || model.forward(x));
    let out = out?;
    let z = out.logits.detach();
    let c = z.dim(D::Minus1)?;
    // kl_grad: d/dz sum_c -(1/C) log softmax(z)_c = p - 1/C.
    let gz = (candle_nn::ops::softmax(&z, D::Minus1)? - 1.0 / c as f64)?;
    let grads = if points.is_empty() {
        None
    } else {
        Some((&out.logits * &gz)?.sum_all()?.backward()?)
    };
    // avg_pooling: the sum over positions.
    let pool = |t: &Tensor| -> Result<Tensor> {
        let t = t.to_dtype(DType::F32)?;
        Ok(if t.rank() > 2 {
            t.flatten_from(2)?.sum(D::Minus1)?
        } else {
            t
        })
    };
    let mut res = Vec::with_capacity(layers.len());
    for name in layers {
        if name == feature_name {
            let (w, _) = model.head();
            res.push((out.feature.detach().to_dtype(DType::F32)?, gz.matmul(w)?));
            continue;
        }
        let p = points.iter().find(|p| &p.name == name).ok_or_else(|| {
            Error::Invalid(format!(
                "nac-ue: layer `{name}` is not a stage of {}",
                model.info().name
            ))
        })?;
        let g = grads
            .as_ref()
            .and_then(|g| g.get(p.var.as_tensor()))
            .ok_or_else(|| {
                Error::Invalid(format!("nac-ue: the logits do not depend on `{name}`"))
            })?;
        res.push((pool(&p.value)?, pool(g)?));
    }
    Ok(res)
}

/// The fit's states: per layer, o and g of `rows` images ([rows, dims[l]]).
#[derive(Debug, Clone, Default)]
pub struct FitStates {
    pub layers: Vec<String>,
    pub dims: Vec<usize>,
    pub rows: usize,
    pub o: Vec<Vec<f32>>,
    pub g: Vec<Vec<f32>>,
}

impl FitStates {
    /// Empty, for the family's four layers (none where it has none).
    pub fn for_model(model: &dyn Classifier) -> FitStates {
        let layers: Vec<String> = authors_layers(model)
            .map(|l| l.into_iter().map(|(n, _)| n).collect())
            .unwrap_or_default();
        let n = layers.len();
        FitStates {
            layers,
            dims: vec![0; n],
            rows: 0,
            o: vec![Vec::new(); n],
            g: vec![Vec::new(); n],
        }
    }

    /// Adds the states of a batch `x` of fit images.
    pub fn add(&mut self, model: &dyn Classifier, x: &Tensor) -> Result<()> {
        if self.layers.is_empty() {
            return Ok(());
        }
        let st = states(model, x, &self.layers)?;
        for (l, (o, g)) in st.into_iter().enumerate() {
            self.dims[l] = o.dim(1)?;
            self.o[l].extend(o.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?);
            self.g[l].extend(g.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?);
        }
        self.rows += x.dim(0)?;
        Ok(())
    }
}

/// sigmoid(alpha o g) in f64, as nac/utils.py's `sigmoid(o * g_kl, sig_alpha)`.
fn state(o: f32, g: f32, alpha: f64) -> f64 {
    let x = f64::from(o) * f64::from(g);
    1.0 / (1.0 + (-alpha * x).exp())
}

/// coverage.py's `logspace(1e3, M)`: M/2 points of log_1000 over
/// [1, sqrt(1000)] (0 to 0.5), mirrored to 1, the last raised by 0.01,
/// then 1.2: the M interval bounds (M even).
pub fn thresholds(m: usize) -> Vec<f64> {
    let base: f64 = 1e3;
    let num = m / 2;
    let stop = base.sqrt();
    // numpy's linspace: start + i * step, the last exactly stop.
    let step = (stop - 1.0) / (num as f64 - 1.0);
    let x: Vec<f64> = (0..num)
        .map(|i| {
            if i + 1 == num {
                stop
            } else {
                i as f64 * step + 1.0
            }
        })
        .collect();
    let xl: Vec<f64> = x.iter().map(|v| v.ln() / base.ln()).collect();
    let mut out: Vec<f64> = xl[..num - 1].to_vec();
    out.extend(xl.iter().rev().map(|v| 1.0 - v));
    if let Some(last) = out.last_mut() {
        *last += 1e-2;
    }
    out.push(1.2);
    out
}

/// The interval [t_i, t_{i+1}) that holds `s`, if any.
fn interval(t: &[f64], s: f64) -> Option<usize> {
    let i = t.partition_point(|&b| b <= s);
    (i >= 1 && i < t.len()).then(|| i - 1)
}

/// One layer ready to score: its bounds and coverage [(M-1) x N].
struct Layer {
    name: String,
    hyper: Hyper,
    dim: usize,
    bounds: Vec<f64>,
    coverage: Vec<f64>,
}

impl Layer {
    /// Estimator.update over the fit's states, then get_score.
    fn fit(name: &str, hyper: Hyper, states: &FitStates) -> Result<Layer> {
        let l = states
            .layers
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "nac-ue: the fit has no states of layer `{name}` (it has {})",
                    states.layers.join(", ")
                ))
            })?;
        let dim = states.dims[l];
        let bounds = thresholds(hyper.bins);
        let intervals = bounds.len() - 1;
        let mut counts = vec![0u64; intervals * dim];
        for (o, g) in states.o[l].chunks(dim).zip(states.g[l].chunks(dim)) {
            for (n, (o, g)) in o.iter().zip(g).enumerate() {
                if let Some(i) = interval(&bounds, state(*o, *g, hyper.alpha)) {
                    counts[i * dim + n] += 1;
                }
            }
        }
        let coverage = counts
            .iter()
            .map(|&c| (c as f64 / hyper.o).min(1.0))
            .collect();
        Ok(Layer {
            name: name.to_string(),
            hyper,
            dim,
            bounds,
            coverage,
        })
    }

    /// Estimator.ood_test: per image the mean over neurons of the coverage
    /// of its state's interval.
    fn score(&self, o: &[f32], g: &[f32]) -> Vec<f64> {
        o.chunks(self.dim)
            .zip(g.chunks(self.dim))
            .map(|(o, g)| {
                let sum: f64 = o
                    .iter()
                    .zip(g)
                    .enumerate()
                    .filter_map(|(n, (o, g))| {
                        interval(&self.bounds, state(*o, *g, self.hyper.alpha))
                            .map(|i| self.coverage[i * self.dim + n])
                    })
                    .sum();
                sum / self.dim as f64
            })
            .collect()
    }
}

struct NacUe {
    layers: Vec<Layer>,
}

impl Score for NacUe {
    fn score(&self, f: &Forward) -> Result<Tensor> {
        let names: Vec<String> = self.layers.iter().map(|l| l.name.clone()).collect();
        let st = states(f.model, f.x, &names)?;
        let b = f.x.dim(0)?;
        let mut total = vec![0f64; b];
        for (layer, (o, g)) in self.layers.iter().zip(st) {
            let o = o.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
            let g = g.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
            for (t, s) in total.iter_mut().zip(layer.score(&o, &g)) {
                *t += s / self.layers.len() as f64;
            }
        }
        let total: Vec<f32> = total.into_iter().map(|v| v as f32).collect();
        Ok(Tensor::from_vec(total, b, f.x.device())?)
    }
}

/// `text` as one value for every layer or one per layer (joined by +);
/// `auto` keeps the authors'.
fn per_layer<T: std::str::FromStr + Copy>(
    key: &str,
    param: &str,
    text: &str,
    authors: &[T],
) -> Result<Vec<T>> {
    if text == "auto" {
        return Ok(authors.to_vec());
    }
    let parsed: Vec<T> = text
        .split('+')
        .map(|v| {
            v.trim().parse::<T>().map_err(|_| {
                Error::Invalid(format!("{key}: {param} `{text}` is not a number or auto"))
            })
        })
        .collect::<Result<_>>()?;
    match parsed.len() {
        1 => Ok(vec![parsed[0]; authors.len()]),
        n if n == authors.len() => Ok(parsed),
        n => Err(Error::Invalid(format!(
            "{key}: {param} has {n} values for {} layers",
            authors.len()
        ))),
    }
}

pub(crate) fn prepare(m: &Method, ctx: &Prepare) -> Result<Box<dyn Score>> {
    let key = m.key();
    let info = ctx.model.info();
    let authors = authors_layers(ctx.model).ok_or_else(|| {
        Error::Invalid(format!(
            "{key}: its layers are known for BiT, ResNet and EfficientNet-Lite, not {}",
            info.name
        ))
    })?;
    let names: Vec<String> = match super::text(m, "layers")? {
        "auto" => authors.iter().map(|(n, _)| n.clone()).collect(),
        given => given.split('+').map(|s| s.trim().to_string()).collect(),
    };
    // Each chosen layer's own defaults are the authors' for it.
    let mut defaults = Vec::with_capacity(names.len());
    for n in &names {
        let h = authors
            .iter()
            .find(|(a, _)| a == n)
            .map(|(_, h)| *h)
            .ok_or_else(|| {
                let known: Vec<&str> = authors.iter().map(|(a, _)| a.as_str()).collect();
                Error::Invalid(format!(
                    "{key}: layer `{n}` is not one of {}'s NAC layers ({})",
                    info.name,
                    known.join(", ")
                ))
            })?;
        defaults.push(h);
    }
    let o = per_layer(
        key,
        "o",
        super::text(m, "o")?,
        &defaults.iter().map(|h| h.o).collect::<Vec<_>>(),
    )?;
    let bins = per_layer(
        key,
        "bins",
        super::text(m, "bins")?,
        &defaults.iter().map(|h| h.bins).collect::<Vec<_>>(),
    )?;
    let alpha = per_layer(
        key,
        "alpha",
        super::text(m, "alpha")?,
        &defaults.iter().map(|h| h.alpha).collect::<Vec<_>>(),
    )?;
    let fit = ctx.fit_of(m)?.fit;
    let states = fit.nac.as_ref().filter(|s| s.rows > 0).ok_or_else(|| {
        Error::Invalid(format!(
            "{key}: the fit file has no NAC states (made before they were kept, or with --nac-rows 0); run `gradnorm-tui fit` again"
        ))
    })?;
    let mut layers = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        if bins[i] < 4 || bins[i] % 2 != 0 {
            return Err(Error::Invalid(format!(
                "{key}: bins must be even and at least 4, not {}",
                bins[i]
            )));
        }
        if o[i] <= 0.0 {
            return Err(Error::Invalid(format!(
                "{key}: o must be positive, not {}",
                o[i]
            )));
        }
        let hyper = Hyper {
            o: o[i],
            bins: bins[i],
            alpha: alpha[i],
        };
        layers.push(Layer::fit(n, hyper, states)?);
    }
    Ok(Box::new(NacUe { layers }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_the_authors_logspace() {
        // coverage.py's logspace(1e3, 6): 0, log_1000 of linspace's middle,
        // 0.5, its mirror, 1 + 0.01, 1.2.
        let t = thresholds(6);
        assert_eq!(t.len(), 6);
        assert_eq!(t[0], 0.0);
        // linspace(1, sqrt(1000), 3) = [1, 16.31, 31.62]: log_1000 16.31.
        let mid = (1.0 + (1e3f64.sqrt() - 1.0) / 2.0).ln() / 1e3f64.ln();
        assert!((t[1] - mid).abs() < 1e-12);
        assert!((t[2] - 0.5).abs() < 1e-12);
        assert!((t[3] - (1.0 - mid)).abs() < 1e-12);
        assert!((t[4] - 1.01).abs() < 1e-12);
        assert_eq!(t[5], 1.2);
    }

    #[test]
    fn intervals_are_half_open_and_bounded() {
        let t = [0.0, 0.5, 1.0];
        assert_eq!(interval(&t, 0.0), Some(0));
        assert_eq!(interval(&t, 0.5), Some(1));
        assert_eq!(interval(&t, 1.0), None);
        assert_eq!(interval(&t, -0.1), None);
    }
}
