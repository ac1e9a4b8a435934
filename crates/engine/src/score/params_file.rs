//! Parameter files (Mahalanobis parameters, fits): safetensors whose
//! metadata names the format, its version and a JSON header.

use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// What a kind of file is called in messages and how it is made.
pub struct Kind {
    pub format: &'static str,
    pub version: &'static str,
    /// The metadata key holding the JSON header.
    pub header: &'static str,
    /// e.g. "Mahalanobis parameters file".
    pub what: &'static str,
    /// e.g. "Mahalanobis parameters" (before "version ...").
    pub short: &'static str,
    /// The command that makes one.
    pub make: &'static str,
}

/// Writes `tensors` with the kind's metadata and `header` as JSON.
pub fn write<H: serde::Serialize>(
    path: &Path,
    kind: &Kind,
    tensors: Vec<(String, Tensor)>,
    header: &H,
) -> Result<()> {
    let meta = HashMap::from([
        ("format".to_string(), kind.format.to_string()),
        ("version".to_string(), kind.version.to_string()),
        (
            kind.header.to_string(),
            serde_json::to_string(header).map_err(|e| Error::data(path, e.to_string()))?,
        ),
    ]);
    safetensors::serialize_to_file(tensors, Some(meta), path)
        .map_err(|e| Error::data(path, format!("cannot write: {e}")))
}

/// Removes tensor `name` from what [`read`] returned, checking its shape;
/// the errors name the file, the tensor and both shapes.
pub fn take(
    tensors: &mut HashMap<String, Tensor>,
    path: &Path,
    name: &str,
    shape: Vec<usize>,
) -> Result<Tensor> {
    let t = tensors.remove(name).ok_or_else(|| Error::MissingTensor {
        path: path.to_path_buf(),
        name: name.to_string(),
        expected: shape.clone(),
    })?;
    if t.dims() != shape.as_slice() {
        return Err(Error::ShapeMismatch {
            path: path.to_path_buf(),
            name: name.to_string(),
            expected: shape,
            found: t.dims().to_vec(),
        });
    }
    Ok(t)
}

/// Reads only the header of a file of `kind` (its first bytes: the
/// safetensors header holding the metadata), not its tensors: cheap
/// enough for a menu to look at every file it finds.
pub fn read_header<H: serde::de::DeserializeOwned>(path: &Path, kind: &Kind) -> Result<H> {
    use std::io::Read;
    let bad = |reason: String| Error::data(path, reason);
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad(format!("not a {}: too short", kind.what)))?;
    let len = u64::from_le_bytes(len);
    // safetensors' own cap on a header (100 MB).
    if len > 100_000_000 {
        return Err(bad(format!("not a {}: header of {len} bytes", kind.what)));
    }
    let mut json = vec![0u8; len as usize];
    f.read_exact(&mut json)
        .map_err(|_| bad(format!("not a {}: header cut short", kind.what)))?;
    #[derive(serde::Deserialize)]
    struct Outer {
        #[serde(rename = "__metadata__", default)]
        metadata: Option<HashMap<String, String>>,
    }
    let outer: Outer =
        serde_json::from_slice(&json).map_err(|e| bad(format!("not a {}: {e}", kind.what)))?;
    header_of(path, kind, &outer.metadata.unwrap_or_default())
}

/// The kind's header from a file's metadata, its format and version checked.
fn header_of<H: serde::de::DeserializeOwned>(
    path: &Path,
    kind: &Kind,
    meta: &HashMap<String, String>,
) -> Result<H> {
    let bad = |reason: String| Error::data(path, reason);
    if meta.get("format").map(String::as_str) != Some(kind.format) {
        return Err(bad(format!(
            "not a {} (make one with `{}`)",
            kind.what, kind.make
        )));
    }
    if meta.get("version").map(String::as_str) != Some(kind.version) {
        return Err(bad(format!(
            "{} version {:?}, this build reads {}",
            kind.short,
            meta.get("version"),
            kind.version
        )));
    }
    serde_json::from_str(meta.get(kind.header).map_or("", |s| s))
        .map_err(|e| bad(format!("bad `{}` metadata: {e}", kind.header)))
}

/// Reads a file of `kind`: its header and its tensors (on the CPU).
pub fn read<H: serde::de::DeserializeOwned>(
    path: &Path,
    kind: &Kind,
) -> Result<(H, HashMap<String, Tensor>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |reason: String| Error::data(path, reason);
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a {}: {e}", kind.what)))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let header: H = header_of(path, kind, &meta)?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| bad(e.to_string()))?;
    Ok((header, tensors))
}
