//! The backbones and what every one of them offers the scores: logits, the
//! penultimate feature `h`, the head, and spatially averaged taps for
//! Mahalanobis, all differentiable with respect to the input.

pub mod bit;
pub mod efficientnet_lite;
pub mod ops;
pub mod params;
pub mod probe;
pub mod resnet;
pub mod vit;

use crate::error::{Error, Result};
use crate::weights::{self, Checkpoint};
use candle_core::{DType, Device, Tensor};
use std::path::Path;

pub use gradnorm_core::run::{Family, InputSpec, ModelInfo, ModelSpec, Preprocess, Resize};

/// Logits [B, C] and penultimate feature [B, D], both f32.
#[derive(Debug, Clone)]
pub struct Output {
    pub logits: Tensor,
    pub feature: Tensor,
}

/// What every backbone carries besides its body's weights: what it is,
/// where and in which dtype it runs, and its classifier head.
#[derive(Debug, Clone)]
pub struct Meta {
    pub info: ModelInfo,
    pub device: Device,
    pub dtype: DType,
    /// Head weight [C, D] and bias [C] (f32, or BiT's Vars while training).
    head: (Tensor, Tensor),
}

impl Meta {
    pub(crate) fn new(
        info: ModelInfo,
        device: &Device,
        dtype: DType,
        head: (Tensor, Tensor),
    ) -> Self {
        Meta {
            info,
            device: device.clone(),
            dtype,
            head,
        }
    }

    /// Marks the model as built with random weights (its name says so).
    pub(crate) fn mark_random(&mut self) {
        self.info.name = format!("{} (random weights)", self.info.name);
    }
}

/// A backbone as every score uses it. Inputs are f32 [B, 3, H, W] tensors
/// already normalized (see [`Backbone::preprocess`]); outputs are f32
/// whatever the model's dtype.
///
/// A backbone is a chain of stages between Mahalanobis taps: `stem` gives
/// the state at tap 0, `stage(l, ..)` the state at tap l (1 <= l < taps),
/// `tap` pools a state to a vector and `feature` turns the last state into
/// the head's input h. The forward passes (logits only, logits and every
/// tap, one tap) are written once here on top of them, so no model carries
/// its own flags for which of them it is running. The state is the model's
/// business (NCHW, NHWC for the CPU kernels, tokens for ViT).
pub trait Backbone: Send + Sync {
    fn meta(&self) -> &Meta;
    /// The input [B, 3, H, W] to the state at tap 0.
    fn stem(&self, x: &Tensor) -> Result<Tensor>;
    /// The state at tap `l - 1` to the state at tap `l`.
    fn stage(&self, l: usize, x: Tensor) -> Result<Tensor>;
    /// Tap `l` of its state, f32 [B, tap_dims[l]].
    fn tap(&self, l: usize, state: &Tensor) -> Result<Tensor>;
    /// The head's input h, f32 [B, D], from the state at the last tap: by
    /// default that state's tap (a CNN's pooled last stage).
    fn feature(&self, last: &Tensor) -> Result<Tensor> {
        self.tap(self.num_taps() - 1, last)
    }

    /// The probe names under which stage `l`'s normalization outputs lie
    /// (its blocks; 1 <= l < taps), for the gradient detectors' layer
    /// choices; none where the model passes no probe points (ViT).
    fn stage_probe_blocks(&self, _l: usize) -> Vec<String> {
        Vec::new()
    }

    /// The probe name of stage `l`'s output point, where it has one.
    fn stage_probe_output(&self, _l: usize) -> Option<String> {
        None
    }

    /// Head weight [C, D] and bias [C], f32.
    fn head(&self) -> (&Tensor, &Tensor) {
        let (w, b) = &self.meta().head;
        (w, b)
    }

    fn info(&self) -> &ModelInfo {
        &self.meta().info
    }

    fn device(&self) -> &Device {
        &self.meta().device
    }

    /// The dtype the body computes in (the head always runs in f32).
    fn dtype(&self) -> DType {
        self.meta().dtype
    }

    /// How this model wants its images (`--image-size` and `--preprocess`
    /// override parts of it).
    fn preprocess(&self) -> InputSpec {
        self.info().input
    }

    /// Logits of a feature through the head.
    fn logits(&self, feature: &Tensor) -> Result<Tensor> {
        let (w, b) = self.head();
        Ok(feature.matmul(&w.t()?)?.broadcast_add(b)?)
    }

    fn num_taps(&self) -> usize {
        self.info().tap_dims.len()
    }

    /// Logits and feature.
    fn forward(&self, x: &Tensor) -> Result<Output> {
        let mut y = self.stem(x)?;
        for l in 1..self.num_taps() {
            y = self.stage(l, y)?;
        }
        let feature = self.feature(&y)?;
        Ok(Output {
            logits: self.logits(&feature)?,
            feature,
        })
    }

    /// The forward pass plus every tap, each [B, tap_dims[l]] in f32.
    fn forward_taps(&self, x: &Tensor) -> Result<(Output, Vec<Tensor>)> {
        let mut y = self.stem(x)?;
        let mut taps = vec![self.tap(0, &y)?];
        for l in 1..self.num_taps() {
            y = self.stage(l, y)?;
            taps.push(self.tap(l, &y)?);
        }
        let feature = self.feature(&y)?;
        let out = Output {
            logits: self.logits(&feature)?,
            feature,
        };
        Ok((out, taps))
    }

    /// Tap `layer` alone, running the network only as far as it needs.
    fn forward_tap(&self, x: &Tensor, layer: usize) -> Result<Tensor> {
        let n = self.num_taps();
        if layer >= n {
            return Err(Error::Invalid(format!(
                "{} has taps 0..{n}, not {layer}",
                self.info().name
            )));
        }
        let mut y = self.stem(x)?;
        for l in 1..=layer {
            y = self.stage(l, y)?;
        }
        self.tap(layer, &y)
    }
}

/// The name the scores and commands have used for [`Backbone`].
pub use Backbone as Classifier;

/// A model read from its family's own checkpoints: the architecture the
/// tensors (and `--model`) name, then the weights checked against it.
pub trait FromCheckpoint: Sized {
    type Config;

    /// The architecture of `ckpt`, checked against `--model` when given.
    fn config_of(ckpt: &Checkpoint, name: Option<&str>) -> Result<Self::Config>;

    /// The weights of `ckpt` for `cfg` (names and shapes checked).
    fn load(cfg: &Self::Config, ckpt: Checkpoint, device: &Device, dtype: DType) -> Result<Self>;

    /// The model as named on the command line (the default keeps its name).
    fn named(self, _name: Option<&str>) -> Self {
        self
    }

    fn from_checkpoint(
        ckpt: Checkpoint,
        name: Option<&str>,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let cfg = Self::config_of(&ckpt, name)?;
        Ok(Self::load(&cfg, ckpt, device, dtype)?.named(name))
    }
}

/// Every model name `--model` accepts (the TUI's Setup lists these).
pub fn known_models() -> Vec<String> {
    let mut names: Vec<String> = bit::variant_names().collect();
    names.push("bit".to_string());
    names.extend(
        efficientnet_lite::VARIANTS
            .iter()
            .map(|v| v.name.to_string()),
    );
    names.extend(resnet::VARIANTS.iter().map(|v| v.0.to_string()));
    names.push("resnet".to_string());
    names.extend(vit::VARIANTS.iter().map(|v| v.0.to_string()));
    names.push("vit".to_string());
    names
}

/// The input a named model expects, without reading weights (what the
/// TUI's Setup shows as the image size while the user has set none).
pub fn default_input(name: &str) -> Option<InputSpec> {
    match family_of_name(name).ok()? {
        Family::Bit => Some(InputSpec::half(480)),
        Family::EfficientNetLite => {
            efficientnet_lite::variant(name).map(|v| InputSpec::half(v.resolution))
        }
        Family::ResNet => Some(Preprocess::Torchvision.spec(224)),
        Family::Vit => vit::variant(name).map(|c| Preprocess::Torchvision.spec(c.image_size)),
    }
}

fn family_of_name(name: &str) -> Result<Family> {
    let lower = name.to_ascii_lowercase();
    if lower == "bit" || bit::variant(name).is_some() {
        Ok(Family::Bit)
    } else if efficientnet_lite::variant(name).is_some() {
        Ok(Family::EfficientNetLite)
    } else if resnet::is_family_name(name) || resnet::variant(name).is_some() {
        Ok(Family::ResNet)
    } else if vit::is_family_name(name) || vit::variant(name).is_some() {
        Ok(Family::Vit)
    } else {
        Err(Error::UnknownModel(
            name.to_string(),
            known_models().join(", "),
        ))
    }
}

/// Loads a model from a checkpoint, checking it against `--model` when given.
pub fn load(spec: &ModelSpec, device: &Device, dtype: DType) -> Result<Box<dyn Backbone>> {
    match &spec.checkpoint {
        Some(path) => load_checkpoint(path, spec.name.as_deref(), device, dtype),
        None => {
            let name = spec.name.as_deref().ok_or_else(|| {
                Error::Invalid("give a checkpoint (--checkpoint FILE) or a model name".into())
            })?;
            random(name, device, dtype)
        }
    }
}

/// Loads `path`, inferring the architecture from its tensors.
pub fn load_checkpoint(
    path: &Path,
    name: Option<&str>,
    device: &Device,
    dtype: DType,
) -> Result<Box<dyn Backbone>> {
    let ckpt = weights::read(path)?;
    let family = match name {
        Some(n) => {
            let family = family_of_name(n)?;
            // A checkpoint of another family would fail deep in that
            // family's loader ("not a checkpoint"); say what the file is.
            match detect_family(&ckpt) {
                Ok(found) if found != family => {
                    return Err(params::mismatch(&ckpt, n, family_weights(found).into()))
                }
                _ => family,
            }
        }
        None => detect_family(&ckpt)?,
    };
    Ok(match family {
        Family::Bit => Box::new(bit::Bit::from_checkpoint(ckpt, name, device, dtype)?),
        Family::EfficientNetLite => Box::new(efficientnet_lite::EfficientNetLite::from_checkpoint(
            ckpt, name, device, dtype,
        )?),
        Family::ResNet => Box::new(params::load_torchvision::<resnet::ResNetConfig>(
            ckpt, name, device, dtype,
        )?),
        Family::Vit => Box::new(params::load_torchvision::<vit::VitConfig>(
            ckpt, name, device, dtype,
        )?),
    })
}

/// A model with random weights (for `bench` without a checkpoint).
pub fn random(name: &str, device: &Device, dtype: DType) -> Result<Box<dyn Backbone>> {
    // The variant `name` names, else an error naming the family and an example.
    let fixed = |family: &str, example: &str| {
        Error::Invalid(format!(
            "`{name}` names no fixed {family} variant: give a checkpoint or e.g. {example}"
        ))
    };
    Ok(match family_of_name(name)? {
        Family::Bit => {
            let cfg = bit::variant(name).ok_or_else(|| fixed("BiT", "BiT-S-R101x1"))?;
            Box::new(bit::Bit::random(&cfg, params::RANDOM_SEED, device, dtype)?)
        }
        Family::EfficientNetLite => Box::new(efficientnet_lite::EfficientNetLite::random(
            name, device, dtype,
        )?),
        Family::ResNet => {
            let cfg = resnet::variant(name).ok_or_else(|| fixed("ResNet", "resnet50"))?;
            Box::new(params::random_torchvision(&cfg, device, dtype)?)
        }
        Family::Vit => {
            let cfg = vit::variant(name).ok_or_else(|| fixed("ViT", "vit-b-16"))?;
            Box::new(params::random_torchvision(&cfg, device, dtype)?)
        }
    })
}

/// What a checkpoint of `family` holds, for messages.
fn family_weights(family: Family) -> &'static str {
    match family {
        Family::Bit => "BiT ResNetV2 weights",
        Family::EfficientNetLite => "EfficientNet-Lite weights",
        Family::ResNet => "torchvision ResNet weights",
        Family::Vit => "torchvision ViT weights",
    }
}

fn detect_family(ckpt: &Checkpoint) -> Result<Family> {
    if bit::looks_like(ckpt) {
        Ok(Family::Bit)
    } else if efficientnet_lite::looks_like(ckpt) {
        Ok(Family::EfficientNetLite)
    } else if resnet::looks_like(ckpt) {
        Ok(Family::ResNet)
    } else if vit::looks_like(ckpt) {
        Ok(Family::Vit)
    } else {
        let mut names: Vec<&String> = ckpt.tensors.keys().collect();
        names.sort();
        let sample: Vec<&str> = names.iter().take(3).map(|s| s.as_str()).collect();
        Err(Error::NotACheckpoint {
            path: ckpt.path.clone(),
            reason: format!(
                "its {} tensors ({}, ...) match no known model (BiT, EfficientNet-Lite, torchvision ResNet or ViT); pass --model",
                ckpt.tensors.len(),
                sample.join(", ")
            ),
        })
    }
}

/// Spatial mean of a [B, C, H, W] tensor as f32 [B, C].
pub(crate) fn spatial_mean(x: &Tensor) -> Result<Tensor> {
    Ok(x.to_dtype(DType::F32)?.flatten_from(2)?.mean(2)?)
}

/// The per-layer profiles' clock (ignored tests run by hand): the
/// process's CPU seconds over all threads, steady on a shared machine.
#[cfg(all(test, unix))]
pub(crate) fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the one timespec passed.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Uniform values in [-1, 1) of `shape` from `seed`: the same input on
/// every run, so a comparison of two paths cannot pass or fail by chance.
#[cfg(test)]
pub(crate) fn fixed_input(shape: &[usize], seed: u64) -> Tensor {
    let mut r = crate::rng::Pcg32::new(seed);
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| r.range(-1.0, 1.0)).collect();
    Tensor::from_vec(v, shape, &candle_core::Device::Cpu).expect("shape holds n values")
}

/// `got` equals `want` within `rtol` of `want`'s largest magnitude.
#[cfg(test)]
pub(crate) fn assert_close(what: &str, got: &Tensor, want: &Tensor, rtol: f32) {
    assert_eq!(got.dims(), want.dims(), "{what}");
    let max = |t: Tensor| {
        t.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    let diff = max((got - want).unwrap());
    let scale = max(want.clone());
    assert!(diff <= rtol * scale.max(1e-6), "{what}: {diff} of {scale}");
}

/// The probe points `select` takes in two models' forward passes of `x`
/// (the CPU kernels' and candle's paths): the same names in the same order,
/// and the logits and each point's value and gradient (of the logits'
/// squared sum) within `rtol`. The names, for the caller to check.
#[cfg(test)]
pub(crate) fn assert_same_points(
    models: [&dyn Backbone; 2],
    x: &Tensor,
    select: &probe::Selection,
    rtol: f32,
) -> Vec<String> {
    let run = |m: &dyn Backbone| {
        let (out, points) = probe::points(select, || m.forward(x));
        let out = out.unwrap();
        let grads = out
            .logits
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let got: Vec<_> = points
            .iter()
            .map(|p| {
                let g = grads.get(p.var.as_tensor()).expect(&p.name).clone();
                (p.name.clone(), p.value.clone(), g)
            })
            .collect();
        (out.logits, got)
    };
    let ((za, a), (zb, b)) = (run(models[0]), run(models[1]));
    assert_close("logits", &za, &zb, rtol);
    let names: Vec<String> = a.iter().map(|p| p.0.clone()).collect();
    assert_eq!(names, b.iter().map(|p| p.0.clone()).collect::<Vec<_>>());
    for ((name, va, ga), (_, vb, gb)) in a.iter().zip(&b) {
        assert_close(&format!("{name} value"), va, vb, rtol);
        assert_close(&format!("{name} gradient"), ga, gb, rtol);
    }
    names
}

/// A per-layer profile being taken: CPU seconds and multiply-adds per kind
/// of layer, summed, in first-seen order.
#[cfg(all(test, unix))]
#[derive(Default)]
pub(crate) struct Profile(Vec<(String, f64, f64)>);

#[cfg(all(test, unix))]
impl Profile {
    /// `f`'s CPU time (and `macs` multiply-adds) added to `name`'s row,
    /// timed on its second run: the first one's output is dropped, so the
    /// timed run reuses memory as a forward pass does instead of writing
    /// fresh pages (which the kernel zeroes on first touch, in CPU time).
    pub(crate) fn time<T>(&mut self, name: &str, macs: usize, f: impl Fn() -> T) -> T {
        drop(f());
        let t = cpu_seconds();
        let y = f();
        let dt = cpu_seconds() - t;
        match self.0.iter_mut().find(|r| r.0 == name) {
            Some(r) => {
                r.1 += dt;
                r.2 += macs as f64;
            }
            None => self.0.push((name.to_string(), dt, macs as f64)),
        }
        y
    }

    pub(crate) fn print(&self, title: &str, batch: usize) {
        print_profile(title, batch, &self.0)
    }
}

/// A per-layer profile's table: rows of (layer kind, CPU seconds,
/// multiply-adds) over a batch of `batch` images, as CPU ms per image,
/// share and GMAC per CPU second.
#[cfg(all(test, unix))]
pub(crate) fn print_profile(title: &str, batch: usize, table: &[(String, f64, f64)]) {
    let all: f64 = table.iter().map(|r| r.1).sum();
    println!(
        "{title}, batch {batch}, {} threads",
        rayon::current_num_threads()
    );
    println!(
        "{:<28} {:>10} {:>6} {:>10}",
        "layer", "CPU ms/img", "%", "GMAC/CPU s"
    );
    for (name, dt, macs) in table {
        let rate = if *macs > 0.0 { macs / dt / 1e9 } else { 0.0 };
        println!(
            "{name:<28} {:>10.1} {:>6.1} {rate:>10.1}",
            dt * 1e3 / batch as f64,
            100.0 * dt / all
        );
    }
    println!("{:<28} {:>10.1}", "total", all * 1e3 / batch as f64);
}
