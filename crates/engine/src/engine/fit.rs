//! Making a fit file: the model loaded, the labelled sets opened (at most
//! `limit` images of each, evenly spaced), one pass of `score::fit`, and
//! the file written aside and moved into place. `gradnorm-tui fit` and the
//! TUI's form both make their fits here, so the two give the same file.

use crate::data::dataset::Item;
use crate::error::{Error, Result};
use crate::model::{self, Backbone};
use crate::score::fit::{fit_images, Fit, FitOptions};
use gradnorm_core::run::{DType, DatasetSpec, Device, ModelSpec, Preprocess};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What a fit is made of and where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct FitJob {
    pub model: ModelSpec,
    pub device: Device,
    pub dtype: DType,
    /// None: the model's own input size.
    pub image_size: Option<usize>,
    /// None: the model's own preprocessing.
    pub preprocess: Option<Preprocess>,
    /// The labelled sets, pooled in order.
    pub sets: Vec<DatasetSpec>,
    /// At most this many images of each set, evenly spaced over it.
    pub limit: Option<usize>,
    /// Cap on the feature bank (rows).
    pub bank: usize,
    /// Images whose per-neuron states NAC-UE keeps (0: none).
    pub nac_rows: usize,
    pub batch: usize,
    /// Decoding threads (0: every core).
    pub workers: usize,
    pub out: PathBuf,
}

/// How a fit goes, told as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum FitStep {
    /// The model is loaded and the sets listed.
    Started {
        model: String,
        images: usize,
        size: usize,
        device: String,
    },
    /// Images read so far (after each batch).
    Images { done: usize, total: usize },
}

/// A fit made and written.
pub struct FitMade {
    pub fit: Fit,
    /// The images that could not be read, and why.
    pub skipped: Vec<(PathBuf, String)>,
    /// The model it was made with (for the statistics a caller prints).
    pub model: Box<dyn Backbone>,
    pub out: PathBuf,
}

/// Makes `job`'s fit and writes it to `job.out` (never a half-written
/// file: it is written aside first). `cancel` stops it between batches
/// with an error and nothing written.
pub fn make_fit(
    job: &FitJob,
    cancel: Arc<AtomicBool>,
    on_step: &mut dyn FnMut(FitStep),
) -> Result<FitMade> {
    if job.bank == 0 || job.batch == 0 {
        return Err(Error::Invalid(
            "a fit needs a bank and a batch of at least 1".into(),
        ));
    }
    if job.sets.is_empty() {
        return Err(Error::Invalid("a fit needs a labelled set".into()));
    }
    // The sets first (cheap): a wrong path is found before a large model loads.
    let mut items: Vec<Item> = Vec::new();
    for spec in &job.sets {
        let ds = crate::data::openood::open(spec)?;
        items.extend(super::subsample(ds.items, job.limit));
    }
    let device = crate::device::open(job.device)?;
    let model = model::load(&job.model, &device, crate::device::dtype(job.dtype))?;
    let input = model
        .preprocess()
        .with_overrides(job.image_size, job.preprocess);
    on_step(FitStep::Started {
        model: model.info().name.clone(),
        images: items.len(),
        size: input.size,
        device: crate::device::device_name(&device),
    });
    let opts = FitOptions {
        input,
        batch: job.batch,
        workers: job.workers,
        bank: job.bank,
        nac_rows: job.nac_rows,
    };
    let (fit, skipped) = fit_images(model.as_ref(), items, opts, cancel, &mut |done, total| {
        on_step(FitStep::Images { done, total })
    })?;
    write_aside(&fit, &job.out)?;
    Ok(FitMade {
        fit,
        skipped,
        model,
        out: job.out.clone(),
    })
}

/// Writes `fit` beside `out` and moves it into place.
fn write_aside(fit: &Fit, out: &Path) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let name = out
        .file_name()
        .map_or_else(|| "fit".into(), |n| n.to_string_lossy().into_owned());
    let tmp = out.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    fit.save(&tmp)?;
    std::fs::rename(&tmp, out).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(out, e)
    })
}
