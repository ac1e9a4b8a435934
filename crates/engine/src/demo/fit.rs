//! The demo's fit set: labelled training shapes drawn by the same generator
//! (another tag than the ID set, so no ID image is in it), and the fit file
//! made from them with the demo model, both cached under `dataset/demo/`
//! at first use so the fit-based methods run without a download.

use super::generate::{self, CLASSES};
use crate::data::dataset::Dataset;
use crate::error::{Error, Result};
use crate::model::{self, InputSpec};
use crate::score::fit::{fit_images, Fit, FitOptions, DEFAULT_BANK};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Training images per class.
pub const PER_CLASS: usize = 30;
/// The images (an ImageFolder) and the fit file, under the demo's data.
pub const FIT_DIR: &str = "fit";
pub const FIT_FILE: &str = "fit.safetensors";

/// The fit file for the demo model `checkpoint` in `data_root`
/// (dataset/demo), drawn and computed when absent or made for another model.
pub fn ensure_fit(data_root: &Path, checkpoint: &Path, seed: u64) -> Result<PathBuf> {
    let device = candle_core::Device::Cpu;
    let model = model::load_checkpoint(checkpoint, None, &device, candle_core::DType::F32)?;
    let file = data_root.join(FIT_FILE);
    // A fit made before NAC-UE's states or the bank's classes (GROOD's)
    // were kept is made again.
    let current = |f: &Fit| {
        (f.nac.is_some() || crate::score::nac::authors_layers(model.as_ref()).is_none())
            && f.bank_classes.is_some()
    };
    if Fit::load_for(&file, model.as_ref()).is_ok_and(|f| current(&f)) {
        return Ok(file);
    }
    let dir = data_root.join(FIT_DIR);
    let jobs: Vec<(usize, usize)> = (0..CLASSES.len())
        .flat_map(|c| (0..PER_CLASS).map(move |i| (c, i)))
        .collect();
    for class in CLASSES {
        let d = dir.join(class);
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    jobs.par_iter().try_for_each(|&(c, i)| {
        let path = dir.join(CLASSES[c]).join(format!("{:04}.png", i + 1));
        if path.is_file() {
            return Ok(());
        }
        super::write_png(&generate::class_image(seed, "fit", c, i), &path)
    })?;
    let items = Dataset::open(&dir, None)?.items;
    let opts = FitOptions {
        input: InputSpec {
            size: super::IMAGE_SIZE,
            ..model.info().input
        },
        batch: 50,
        workers: 0,
        bank: DEFAULT_BANK,
        nac_rows: crate::score::nac::DEFAULT_FIT_ROWS,
    };
    let (fit, _) = fit_images(
        model.as_ref(),
        items,
        opts,
        Arc::new(AtomicBool::new(false)),
        &mut |_, _| {},
    )?;
    // Written aside and moved into place: never a half-written fit file.
    let tmp = data_root.join(format!(".{FIT_FILE}.partial-{}", std::process::id()));
    fit.save(&tmp)?;
    std::fs::rename(&tmp, &file).map_err(|e| Error::io(&file, e))?;
    Ok(file)
}
