//! A probe on the backbones' weight layers, for scores that need the
//! gradient of one layer's weight (GradNorm's `layer=`). Each convolution
//! and linear layer of a backbone's candle path passes its input and output
//! through [`at`]; while a probe is set on this thread it either lists the
//! layers (name, weight shape) or, at the layer it names, keeps the input
//! and replaces the output by a fresh autograd variable, so that a backward
//! pass from the logits stops there and yields d loss / d output for every
//! image of the batch at once. Nothing happens while no probe is set.
//!
//! The probe is thread-local and lives for one closure ([`capture`],
//! [`list`], [`points`]): the forward pass runs on the thread that set it.
//!
//! Normalization outputs (and a stage's output) pass through [`point`]
//! instead: a [`points`] probe adds a zero variable there, so that one
//! backward pass yields the gradient at every selected point while the
//! graph stays connected through all of them (GAIA reads many at once).

use candle_core::{Result, Tensor, Var};
use std::cell::RefCell;

/// What a layer does with its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerOp {
    /// y = x W^T over the last dimension (any leading dimensions).
    Linear,
    /// NCHW convolution, groups 1, dilation 1.
    Conv2d {
        kernel: (usize, usize),
        stride: usize,
        padding: usize,
    },
    /// Channels-last ([B, H, W, C]) depthwise k x k convolution (one filter
    /// per channel), zeros `pad` = (top, left) before and as many after as
    /// the output's size needs (TensorFlow's "same").
    Depthwise {
        kernel: usize,
        stride: usize,
        pad: (usize, usize),
    },
}

/// A weight standardized before its op (BiT's StdConv2d): the op used
/// `weight` = (w - mean) / scale per output channel, w the stored weight.
#[derive(Debug, Clone)]
pub struct Standardized {
    /// The standardized weight, [O, ...].
    pub weight: Tensor,
    /// sqrt(var + eps) of each output channel of the stored weight, [O].
    pub scale: Tensor,
}

/// One layer as the probe found it.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The layer's input (detached).
    pub input: Tensor,
    /// Its output, the variable the rest of the pass was built on.
    pub output: Var,
    pub op: LayerOp,
    pub standardized: Option<Standardized>,
    /// The op used the stored weight times this, per output channel (a
    /// BatchNorm folded in at load): d/dw = scale * d/dw_op. [O], f32.
    pub out_scale: Option<Tensor>,
}

/// A weight layer: its name as the checkpoint has it (without `.weight`)
/// and the stored weight's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    pub name: String,
    pub shape: Vec<usize>,
}

/// A point of the forward pass a [`points`] probe selected: the tensor
/// there is the model's value plus `var` (zeros), so d loss / d var is the
/// gradient at that point.
#[derive(Debug, Clone)]
pub struct Point {
    /// The checkpoint's name of the layer whose output it is.
    pub name: String,
    pub kind: PointKind,
    /// The model's value there (detached).
    pub value: Tensor,
    pub var: Var,
}

enum Probe {
    List(Vec<LayerInfo>),
    Capture {
        name: String,
        found: Option<Captured>,
    },
    Points {
        select: Selection,
        found: Vec<Point>,
    },
}

thread_local! {
    static PROBE: RefCell<Option<Probe>> = const { RefCell::new(None) };
}

/// Whether a probe is set: backbones with a faster path that passes no
/// layer through [`at`] (BiT's CPU kernels) take their candle path then.
pub fn active() -> bool {
    PROBE.with(|p| p.borrow().is_some())
}

/// Whether a probe that sees weight layers ([`list`], [`capture`]) is set:
/// only a model's candle path passes its layers through [`at`]. A
/// [`points`] probe reads no weight, so a faster path that passes its
/// points through [`point_channels_last`] may run under it.
pub fn reads_layers() -> bool {
    PROBE.with(|p| matches!(*p.borrow(), Some(Probe::List(_) | Probe::Capture { .. })))
}

/// Whether a [`points`] probe is set and takes the point `name`: a fused
/// layer then computes that output on its own, for [`point_channels_last`].
pub fn takes(kind: PointKind, name: &str) -> bool {
    PROBE.with(|p| match p.borrow().as_ref() {
        Some(Probe::Points { select, .. }) => select.takes(kind, name),
        _ => false,
    })
}

/// Clears the probe when the closure ends, panicking or not.
struct Reset;

impl Drop for Reset {
    fn drop(&mut self) {
        PROBE.with(|p| p.borrow_mut().take());
    }
}

fn with_probe<T>(probe: Probe, f: impl FnOnce() -> T) -> (T, Option<Probe>) {
    PROBE.with(|p| *p.borrow_mut() = Some(probe));
    let reset = Reset;
    let out = f();
    let probe = PROBE.with(|p| p.borrow_mut().take());
    drop(reset);
    (out, probe)
}

/// Runs `f` (a forward pass) with a probe at layer `name`: its result and
/// the layer, when the pass went through it.
pub fn capture<T>(name: &str, f: impl FnOnce() -> T) -> (T, Option<Captured>) {
    let probe = Probe::Capture {
        name: name.to_string(),
        found: None,
    };
    match with_probe(probe, f) {
        (out, Some(Probe::Capture { found, .. })) => (out, found),
        (out, _) => (out, None),
    }
}

/// Runs `f` (a forward pass) and lists every weight layer it went through,
/// in order.
pub fn list<T>(f: impl FnOnce() -> T) -> (T, Vec<LayerInfo>) {
    match with_probe(Probe::List(Vec::new()), f) {
        (out, Some(Probe::List(layers))) => (out, layers),
        (out, _) => (out, Vec::new()),
    }
}

/// What a probe point is the output of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointKind {
    /// A normalization layer (BatchNorm, GroupNorm).
    Norm,
    /// A stage of the backbone (ResNet's `layer4`).
    Stage,
}

/// Which points a [`points`] probe takes: normalization outputs named by
/// one of `norms` or lying under one (`layer4` selects `layer4.0.bn1`),
/// and the stage outputs named in `stages`.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub norms: Vec<String>,
    pub stages: Vec<String>,
}

impl Selection {
    fn takes(&self, kind: PointKind, name: &str) -> bool {
        match kind {
            PointKind::Norm => self.norms.iter().any(|p| is_under(name, p)),
            PointKind::Stage => self.stages.iter().any(|s| s == name),
        }
    }
}

/// Runs `f` (a forward pass) with a probe at every point `select` takes:
/// its result and those points, in forward order.
pub fn points<T>(select: &Selection, f: impl FnOnce() -> T) -> (T, Vec<Point>) {
    let probe = Probe::Points {
        select: select.clone(),
        found: Vec::new(),
    };
    match with_probe(probe, f) {
        (out, Some(Probe::Points { found, .. })) => (out, found),
        (out, _) => (out, Vec::new()),
    }
}

/// Whether `name` is `prefix` or lies under it.
pub fn is_under(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// The output `y` of a layer `name` without a weight of its own: `y` back,
/// or, at a point a [`points`] probe takes, `y` plus a zero variable.
pub fn point(kind: PointKind, name: impl FnOnce() -> String, y: Tensor) -> Result<Tensor> {
    PROBE.with(|p| {
        let mut p = p.borrow_mut();
        let Some(Probe::Points { select, found }) = p.as_mut() else {
            return Ok(y);
        };
        let name = name();
        if !select.takes(kind, &name) {
            return Ok(y);
        }
        let var = Var::zeros(y.shape(), y.dtype(), y.device())?;
        let value = y.detach();
        let out = (y + var.as_tensor())?;
        found.push(Point {
            name,
            kind,
            value,
            var,
        });
        Ok(out)
    })
}

/// [`point`] for a channels-last `y` ([B, H, W, C]): the point's value and
/// variable are channels-first ([B, C, H, W]), as the candle path's, so the
/// scores read one layout; `y` back, contiguous, either way.
pub fn point_channels_last(kind: PointKind, name: &str, y: Tensor) -> Result<Tensor> {
    if y.rank() != 4 || !takes(kind, name) {
        return Ok(y);
    }
    let out = point(kind, || name.to_string(), y.permute((0, 3, 1, 2))?)?;
    out.permute((0, 2, 3, 1))?.contiguous()
}

/// A layer `name` with stored weight `weight` mapped `x` to `y` by `op`:
/// `y` back, or, at the probed layer, a variable holding it.
pub fn at(
    name: impl FnOnce() -> String,
    op: LayerOp,
    weight: &Tensor,
    x: &Tensor,
    y: Tensor,
) -> Result<Tensor> {
    at_standardized(name, op, weight, || Ok(None), x, y)
}

/// [`at`] for a weight stored with shape `stored` and used times `scale`
/// per output channel (a BatchNorm folded into it), in another layout.
pub fn at_folded(
    name: impl FnOnce() -> String,
    op: LayerOp,
    stored: &[usize],
    scale: &Tensor,
    x: &Tensor,
    y: Tensor,
) -> Result<Tensor> {
    at_with(name, op, stored, || Ok((None, Some(scale.clone()))), x, y)
}

/// [`at`] for a standardized weight: `standardized` gives the
/// standardization (called only at the probed layer).
pub fn at_standardized(
    name: impl FnOnce() -> String,
    op: LayerOp,
    weight: &Tensor,
    standardized: impl FnOnce() -> Result<Option<Standardized>>,
    x: &Tensor,
    y: Tensor,
) -> Result<Tensor> {
    let extra = || Ok((standardized()?, None));
    at_with(name, op, weight.dims(), extra, x, y)
}

/// A probed layer: its stored weight's shape, and (only at the probed
/// layer) how the op's weight derives from it.
type Derived = (Option<Standardized>, Option<Tensor>);

fn at_with(
    name: impl FnOnce() -> String,
    op: LayerOp,
    stored: &[usize],
    derived: impl FnOnce() -> Result<Derived>,
    x: &Tensor,
    y: Tensor,
) -> Result<Tensor> {
    PROBE.with(|p| {
        let mut p = p.borrow_mut();
        match p.as_mut() {
            None | Some(Probe::Points { .. }) => Ok(y),
            Some(Probe::List(layers)) => {
                layers.push(LayerInfo {
                    name: name(),
                    shape: stored.to_vec(),
                });
                Ok(y)
            }
            Some(Probe::Capture { name: want, found }) => {
                if found.is_some() || name() != *want {
                    return Ok(y);
                }
                let output = Var::from_tensor(&y.detach())?;
                let tracked = output.as_tensor().clone();
                let (standardized, out_scale) = derived()?;
                *found = Some(Captured {
                    input: x.detach(),
                    output,
                    op,
                    standardized,
                    out_scale,
                });
                Ok(tracked)
            }
        }
    })
}

/// The name of the classifier head's weight in each family's checkpoints.
pub fn head_name(family: super::Family) -> &'static str {
    use super::Family;
    match family {
        Family::Bit => "head.conv",
        Family::ResNet => "fc",
        Family::Vit => "heads.head",
        Family::EfficientNetLite => "_fc",
    }
}

/// Every weight layer of `model` whose gradient a probe reads, in forward
/// order, the head last: found by one forward pass of a blank image.
pub fn weight_layers(model: &dyn super::Backbone) -> crate::error::Result<Vec<LayerInfo>> {
    let info = model.info();
    // The convolutional nets take any size; ViT's position embeddings fix it.
    let size = match info.family {
        super::Family::Vit => model.preprocess().size,
        _ => model.preprocess().size.min(64),
    };
    let x = Tensor::zeros((1, 3, size, size), candle_core::DType::F32, model.device())?;
    let (out, mut layers) = list(|| model.forward(&x));
    out?;
    let (w, _) = model.head();
    let mut shape = w.dims().to_vec();
    if info.family == super::Family::Bit {
        shape.extend([1, 1]);
    }
    layers.push(LayerInfo {
        name: head_name(info.family).to_string(),
        shape,
    });
    Ok(layers)
}

/// Up to five of `names` closest to `name` (edit distance), for errors.
pub fn close_names<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut scored: Vec<(usize, &str)> = names.map(|n| (edit_distance(name, n), n)).collect();
    scored.sort();
    scored.into_iter().take(5).map(|(_, n)| n).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
