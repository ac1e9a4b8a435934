//! Checkpoint files: the seed's PyTorch pickles, Google's BiT `.npz` and
//! safetensors, read into one map of canonical tensor names (the seed's
//! state-dict names without "module."; EfficientNet keeps its own names).

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Pth,
    Npz,
    Safetensors,
}

/// Which naming scheme the file used before canonicalization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Naming {
    /// The seed's names (`root.conv.weight`), or a model's own.
    Native,
    /// Google's TensorFlow BiT names (`resnet/root_block/...`), HWIO kernels.
    TensorFlow,
    /// timm's resnetv2 names (`stem.conv.weight`, `stages.0.blocks.0...`).
    Timm,
}

/// A checkpoint's tensors (f32, on the CPU) under canonical names.
#[derive(Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub format: Format,
    pub naming: Naming,
    pub tensors: HashMap<String, Tensor>,
    /// Integer tensors left out (BatchNorm's counters carry no weights),
    /// kept by name so that a weight stored as integers is reported as
    /// such rather than as missing.
    pub non_float: HashMap<String, DType>,
}

/// Reads any supported checkpoint file, detecting its format from its bytes.
pub fn read(path: &Path) -> Result<Checkpoint> {
    let format = sniff(path)?;
    let not_ckpt = |reason: String| Error::NotACheckpoint {
        path: path.to_path_buf(),
        reason,
    };
    let raw: Vec<(String, Tensor)> = match format {
        Format::Safetensors => candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| not_ckpt(format!("unreadable safetensors: {e}")))?
            .into_iter()
            .collect(),
        Format::Npz => {
            Tensor::read_npz(path).map_err(|e| not_ckpt(format!("unreadable npz: {e}")))?
        }
        Format::Pth => read_pth(path)?,
    };
    if raw.is_empty() {
        return Err(not_ckpt("it holds no tensors".into()));
    }
    let mut tensors = HashMap::with_capacity(raw.len());
    let mut non_float = HashMap::new();
    for (name, t) in raw {
        let name = name.strip_prefix("module.").unwrap_or(&name).to_string();
        let t = if t.dtype() == DType::F32 {
            t
        } else if t.dtype().is_float() {
            t.to_dtype(DType::F32)?
        } else {
            // Integer buffers (e.g. BatchNorm's num_batches_tracked) carry no weights.
            non_float.insert(name, t.dtype());
            continue;
        };
        // NaN or infinite weights give NaN scores that would rank as
        // numbers: refuse them here, naming the tensor.
        let bad = t
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .filter(|v| !v.is_finite())
            .count();
        if bad > 0 {
            return Err(Error::data(
                path,
                format!(
                    "tensor `{name}` holds {bad} NaN or infinite value(s) of {}: the weights are broken",
                    t.elem_count()
                ),
            ));
        }
        tensors.insert(name, t);
    }
    let naming = detect_naming(&tensors);
    let tensors = match naming {
        Naming::Native => tensors,
        Naming::TensorFlow => rename(tensors, from_tensorflow)?,
        Naming::Timm => rename(tensors, from_timm)?,
    };
    Ok(Checkpoint {
        path: path.to_path_buf(),
        format,
        naming,
        tensors,
        non_float,
    })
}

fn sniff(path: &Path) -> Result<Format> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = [0u8; 9];
    let n = read_up_to(&mut f, &mut head).map_err(|e| Error::io(path, e))?;
    let not_ckpt = |reason: &str| Error::NotACheckpoint {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if n >= 4 && &head[..4] == b"PK\x03\x04" {
        // Both .pth (torch >= 1.6) and .npz are zip archives: tell them apart
        // by their members.
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let zip = zip_names(file).map_err(|e| not_ckpt(&format!("broken zip archive: {e}")))?;
        if zip.iter().any(|n| n.ends_with("data.pkl")) {
            return Ok(Format::Pth);
        }
        if zip.iter().any(|n| n.ends_with(".npy")) {
            return Ok(Format::Npz);
        }
        return Err(not_ckpt(
            "a zip archive with neither a PyTorch data.pkl nor .npy arrays",
        ));
    }
    if n == 9 && head[8] == b'{' {
        return Ok(Format::Safetensors);
    }
    if n >= 2 && head[0] == 0x80 {
        return Err(not_ckpt(
            "a legacy (pre-1.6) PyTorch pickle; re-save it with a recent torch.save",
        ));
    }
    Err(not_ckpt("not a PyTorch zip, an .npz or a safetensors file"))
}

fn read_up_to(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Member names of a zip archive.
fn zip_names(file: std::fs::File) -> std::result::Result<Vec<String>, zip::result::ZipError> {
    let zip = zip::ZipArchive::new(std::io::BufReader::new(file))?;
    zip.file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect()
}

fn read_pth(path: &Path) -> Result<Vec<(String, Tensor)>> {
    // The seed saves {"model": state_dict, "optim": ..., "step": ...}; other
    // tools save "state_dict" or the bare state dict.
    let mut last_err = String::new();
    for key in [Some("model"), Some("state_dict"), None] {
        match candle_core::pickle::read_all_with_key(path, key) {
            Ok(t) if !t.is_empty() => return Ok(t),
            Ok(_) => last_err = "no tensors found".into(),
            Err(e) => last_err = e.to_string(),
        }
    }
    Err(Error::NotACheckpoint {
        path: path.to_path_buf(),
        reason: format!("a PyTorch file without a readable state dict ({last_err})"),
    })
}

fn detect_naming(tensors: &HashMap<String, Tensor>) -> Naming {
    if tensors.keys().any(|k| k.starts_with("resnet/")) {
        Naming::TensorFlow
    } else if tensors.contains_key("stem.conv.weight")
        && tensors.keys().any(|k| k.starts_with("stages."))
    {
        Naming::Timm
    } else {
        Naming::Native
    }
}

/// Renames (and where needed reshapes) every tensor with `entry`.
fn rename(
    tensors: HashMap<String, Tensor>,
    entry: fn(String, Tensor) -> Result<(String, Tensor)>,
) -> Result<HashMap<String, Tensor>> {
    tensors
        .into_iter()
        .map(|(name, t)| entry(name, t))
        .collect()
}

/// Google's BiT names to the seed's, HWIO kernels to OIHW. Names that map to
/// nothing are kept so the shape check reports them.
fn from_tensorflow(name: String, t: Tensor) -> Result<(String, Tensor)> {
    let t = if t.rank() == 4 {
        t.permute((3, 2, 0, 1))?.contiguous()?
    } else {
        t
    };
    Ok((tf_name(&name).unwrap_or(name), t))
}

/// The stem, final norm and head, which map one to one; `(theirs, ours)`.
const TF_FIXED: [(&str, &str); 5] = [
    ("root_block/standardized_conv2d/kernel", "root.conv.weight"),
    ("group_norm/gamma", "before_head.gn.weight"),
    ("group_norm/beta", "before_head.gn.bias"),
    ("head/conv2d/kernel", "head.conv.weight"),
    ("head/conv2d/bias", "head.conv.bias"),
];
const TIMM_FIXED: [(&str, &str); 5] = [
    ("stem.conv.weight", "root.conv.weight"),
    ("norm.weight", "before_head.gn.weight"),
    ("norm.bias", "before_head.gn.bias"),
    ("head.fc.weight", "head.conv.weight"),
    ("head.fc.bias", "head.conv.bias"),
];

/// Our name for `name` in a table of `(theirs, ours)`.
fn fixed(table: &[(&str, &str)], name: &str) -> Option<String> {
    table
        .iter()
        .find(|(theirs, _)| *theirs == name)
        .map(|(_, ours)| ours.to_string())
}

fn tf_name(name: &str) -> Option<String> {
    let rest = name.strip_prefix("resnet/")?;
    if let Some(ours) = fixed(&TF_FIXED, rest) {
        return Some(ours);
    }
    // blockB/unitUU/{a,b,c}/...
    let mut parts = rest.splitn(3, '/');
    let (block, unit, tail) = (parts.next()?, parts.next()?, parts.next()?);
    if !block.starts_with("block") || !unit.starts_with("unit") {
        return None;
    }
    let p = format!("body.{block}.{unit}");
    let leaf = match tail {
        "a/proj/standardized_conv2d/kernel" => "downsample.weight",
        "a/standardized_conv2d/kernel" => "conv1.weight",
        "b/standardized_conv2d/kernel" => "conv2.weight",
        "c/standardized_conv2d/kernel" => "conv3.weight",
        "a/group_norm/gamma" => "gn1.weight",
        "a/group_norm/beta" => "gn1.bias",
        "b/group_norm/gamma" => "gn2.weight",
        "b/group_norm/beta" => "gn2.bias",
        "c/group_norm/gamma" => "gn3.weight",
        "c/group_norm/beta" => "gn3.bias",
        _ => return None,
    };
    Some(format!("{p}.{leaf}"))
}

/// timm's resnetv2 names to the seed's.
fn from_timm(name: String, t: Tensor) -> Result<(String, Tensor)> {
    let new = timm_name(&name).unwrap_or(name);
    // timm may store the 1x1 conv head as a linear layer.
    let t = if new == "head.conv.weight" && t.rank() == 2 {
        let (c, d) = t.dims2()?;
        t.reshape((c, d, 1, 1))?
    } else {
        t
    };
    Ok((new, t))
}

fn timm_name(name: &str) -> Option<String> {
    if let Some(ours) = fixed(&TIMM_FIXED, name) {
        return Some(ours);
    }
    let rest = name.strip_prefix("stages.")?;
    let mut parts = rest.splitn(4, '.');
    let stage: usize = parts.next()?.parse().ok()?;
    if parts.next()? != "blocks" {
        return None;
    }
    let block: usize = parts.next()?.parse().ok()?;
    let tail = parts.next()?;
    let leaf = match tail {
        "downsample.conv.weight" => "downsample.weight".to_string(),
        _ => {
            let (layer, param) = tail.split_once('.')?;
            let layer = match layer {
                "norm1" => "gn1",
                "norm2" => "gn2",
                "norm3" => "gn3",
                "conv1" | "conv2" | "conv3" => layer,
                _ => return None,
            };
            format!("{layer}.{param}")
        }
    };
    Some(format!(
        "body.block{}.unit{:02}.{leaf}",
        stage + 1,
        block + 1
    ))
}

/// Checks a checkpoint against an architecture's tensor list: every tensor
/// present with its shape, nothing else. Errors name the tensor and shapes.
pub fn check_tensors(
    ckpt: &Checkpoint,
    expected: &[(String, Vec<usize>)],
    arch: &str,
) -> Result<()> {
    for (name, shape) in expected {
        match ckpt.tensors.get(name) {
            None if ckpt.non_float.contains_key(name) => {
                return Err(Error::data(
                    &ckpt.path,
                    format!(
                        "tensor `{name}` holds {:?} values; expected floating-point weights of shape {shape:?}",
                        ckpt.non_float[name]
                    ),
                ))
            }
            None => {
                return Err(Error::MissingTensor {
                    path: ckpt.path.clone(),
                    name: name.clone(),
                    expected: shape.clone(),
                })
            }
            Some(t) if t.dims() != shape.as_slice() => {
                return Err(Error::ShapeMismatch {
                    path: ckpt.path.clone(),
                    name: name.clone(),
                    expected: shape.clone(),
                    found: t.dims().to_vec(),
                })
            }
            Some(_) => {}
        }
    }
    if ckpt.tensors.len() != expected.len() {
        let known: std::collections::HashSet<&str> =
            expected.iter().map(|(n, _)| n.as_str()).collect();
        let mut extra: Vec<&String> = ckpt
            .tensors
            .keys()
            .filter(|k| !known.contains(k.as_str()))
            .collect();
        extra.sort();
        if let Some(name) = extra.first() {
            return Err(Error::UnexpectedTensor {
                path: ckpt.path.clone(),
                name: (*name).clone(),
                shape: ckpt.tensors[*name].dims().to_vec(),
                arch: arch.to_string(),
            });
        }
    }
    Ok(())
}

/// Writes tensors as safetensors (e.g. to convert a .pth once).
pub fn save_safetensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    candle_core::safetensors::save(tensors, path).map_err(|e| Error::data(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensorflow_names_map_to_the_seeds() {
        for (tf, seed) in [
            (
                "resnet/block2/unit01/a/proj/standardized_conv2d/kernel",
                Some("body.block2.unit01.downsample.weight"),
            ),
            (
                "resnet/block4/unit03/c/group_norm/beta",
                Some("body.block4.unit03.gn3.bias"),
            ),
            ("resnet/head/conv2d/bias", Some("head.conv.bias")),
            ("resnet/block1/unit01/d/kernel", None),
        ] {
            assert_eq!(tf_name(tf).as_deref(), seed, "{tf}");
        }
    }

    #[test]
    fn timm_names_map_to_the_seeds() {
        for (timm, seed) in [
            (
                "stages.2.blocks.10.norm2.weight",
                "body.block3.unit11.gn2.weight",
            ),
            (
                "stages.0.blocks.0.downsample.conv.weight",
                "body.block1.unit01.downsample.weight",
            ),
            ("head.fc.weight", "head.conv.weight"),
        ] {
            assert_eq!(timm_name(timm).as_deref(), Some(seed), "{timm}");
        }
    }
}
