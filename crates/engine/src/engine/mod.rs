//! Runs an evaluation: datasets -> batches -> model -> scores -> events.
//! Knows nothing of terminals; the CLI and the TUI consume its events.
//! Every run starts through one builder, [`Run`] (start.rs).

pub mod fit;
mod prepare;
mod start;

pub use prepare::{check, inspect, Checks};
pub use start::{OnStoreError, Recording, Run, RunHandle};

use crate::classes::Classes;
use crate::data::dataset::{Dataset, DatasetKind, Item};
use crate::data::loader::{self, LoaderConfig};
use crate::error::{Error, Result};
use crate::model::{self, ModelInfo};
use crate::score::Scorer;
use candle_core::Tensor;
use gradnorm_core::run::{
    DatasetInfo, DatasetSpec, Event, ImageRecord, Progress, Role, RunConfig, RunInfo, Setup, Shard,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Batches prefetched ahead of the model.
const PREFETCH: usize = 3;

/// A dataset opened for a run: its items (after --limit) and labels in the
/// model's class order.
struct Opened {
    info: DatasetInfo,
    items: Arc<[Item]>,
}

/// Records computed before (the run store's), for resume and reuse.
pub trait KnownRecords {
    /// A stored record of this image and the content fingerprint it was
    /// computed from, found without reading the image (the run store
    /// looks the path up). The loader reads the image when its batch comes
    /// and the record is reused only if the bytes still have that
    /// fingerprint; otherwise the image is evaluated.
    fn lookup(
        &mut self,
        dataset: usize,
        path: &std::path::Path,
        label: Option<usize>,
    ) -> Option<(String, ImageRecord)>;

    /// The fingerprint of the bytes an evaluated image was scored from,
    /// told just before its record is emitted.
    fn scored(&mut self, path: &std::path::Path, fingerprint: String);
}

/// How a run is carried out beyond its config: a shard of every set, and
/// records already known (the run store's, for resume and reuse).
#[derive(Default)]
struct RunOptions<'a> {
    shard: Option<Shard>,
    known: Option<&'a mut dyn KnownRecords>,
    /// Mahalanobis's parameters in memory, for a `mahalanobis` given no
    /// file (bench's synthetic ones).
    mahalanobis: Option<&'a crate::score::mahalanobis::MahalanobisParams>,
}

/// Runs `config` to the end (or until `cancel` is set), reporting through
/// `emit`: a known image (`options.known`) is reported in its batch, as an
/// evaluated one, once the loader has checked its bytes. Returns the error
/// that stopped it, if any; a cancelled run still ends with
/// `Event::Finished { cancelled: true, .. }`. Started through [`Run`].
fn execute(
    config: &RunConfig,
    mut options: RunOptions,
    cancel: &Arc<AtomicBool>,
    emit: &mut dyn FnMut(Event),
) -> Result<()> {
    let start = Instant::now();
    let prepare::Prepared {
        id,
        oods,
        device,
        dtype,
        model,
        input,
        classes,
        scorer,
    } = prepare::prepare(config, options.mahalanobis)?;
    let info = model.info().clone();
    let mut deferred_notice = None;
    let limit = config.limit.map(|l| l.get());
    let mut opened = vec![open(
        &config.id,
        id,
        Role::Id,
        &classes,
        limit,
        options.shard,
    )];
    // A label the model cannot output would count as a silent miss in the
    // accuracy: such images are scored but left out of it, and said so.
    let beyond = opened[0]
        .items
        .iter()
        .filter(|i| i.label.is_some_and(|l| l >= info.num_classes))
        .count();
    if beyond > 0 {
        let first = opened[0]
            .items
            .iter()
            .find(|i| i.label.is_some_and(|l| l >= info.num_classes));
        let note = format!(
            "{beyond} ID image(s) have labels beyond the model's {} classes (e.g. {} labelled {}): they are scored but left out of the accuracy",
            info.num_classes,
            first.map_or(String::new(), |i| i.path.display().to_string()),
            first.and_then(|i| i.label).unwrap_or_default(),
        );
        tracing::warn!("{note}");
        deferred_notice = Some(note);
    }
    for (spec, ds) in config.ood.iter().zip(oods) {
        opened.push(open(spec, ds, Role::Ood, &classes, limit, options.shard));
    }
    let run_info = Arc::new(RunInfo {
        model: info,
        setup: Setup {
            checkpoint: config.model.checkpoint.clone(),
            device: crate::device::device_name(&device),
            dtype: crate::device::dtype_name(dtype).to_string(),
            image_size: input.size,
            fit: config.fit.clone(),
        },
        input,
        batch: config.batch.get(),
        datasets: opened.iter().map(|o| o.info.clone()).collect(),
        methods: config.methods.clone(),
        class_names: Arc::new(classes.names.clone()),
    });
    tracing::info!(model = %run_info.model.name, device = %run_info.setup.device, "run started");
    emit(Event::Started(run_info));
    if let Some(note) = deferred_notice {
        emit(Event::Notice(note));
    }
    for (method, stat, value) in scorer.stats() {
        let value = crate::score::stat_text(value);
        emit(Event::Notice(format!("{method}: {stat} = {value}")));
    }

    let run_total: usize = opened.iter().map(|o| o.items.len()).sum();
    let mut run_done = 0usize;
    let workers = config.workers.map_or(0, |w| w.get());
    // Reduced (and kept) whenever a batch does not fit the device.
    let mut max_batch = config.batch.get();
    let mut done = vec![0usize; opened.len()];
    // Every set at once, in proportion to its size: each batch holds ID and
    // OOD images, so every metric means something from the first batch and
    // all sets finish together (a cancel keeps them in proportion).
    let order = interleave(&opened.iter().map(|o| o.items.len()).collect::<Vec<_>>());
    let items: Arc<[Item]> = order
        .iter()
        .map(|&(d, i)| opened[d].items[i].clone())
        .collect();
    // Stored records, looked up by path only (no image is read here, so
    // the first batch starts at once); the loader checks each one's bytes.
    let mut stored: Vec<Option<ImageRecord>> = Vec::new();
    let mut reused = 0usize;
    let expected = options.known.as_mut().map(|known| {
        stored = vec![None; items.len()];
        order
            .iter()
            .zip(items.iter())
            .zip(stored.iter_mut())
            .map(|((&(d, _), item), slot)| {
                let (fp, record) = known.lookup(d, &item.path, item.label)?;
                *slot = Some(record);
                Some(fp)
            })
            .collect::<loader::Expected>()
    });
    let mut batches = loader::batches_checked(
        items.clone(),
        expected,
        LoaderConfig {
            input,
            batch: config.batch.get(),
            workers,
            prefetch: PREFETCH,
        },
        cancel.clone(),
    );
    while let Some(batch) = batches.next() {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let mut touched = vec![false; opened.len()];
        for (idx, reason) in batch.failures {
            let (d, _) = order[idx];
            let path = items[idx].path.clone();
            tracing::warn!(path = %path.display(), %reason, "skipped");
            emit(Event::Skipped {
                dataset: d,
                path,
                reason,
            });
            done[d] += 1;
            run_done += 1;
            touched[d] = true;
        }
        let mut per_set: Vec<Vec<ImageRecord>> = vec![Vec::new(); opened.len()];
        for &idx in &batch.matched {
            if let Some(record) = stored.get_mut(idx).and_then(Option::take) {
                per_set[order[idx].0].push(record);
                reused += 1;
            }
        }
        let n = batch.indices.len();
        if n > 0 {
            // Straight from the loader's buffer to the device; the buffer
            // goes back to the loader (fresh allocations cost as much as
            // preprocessing).
            let x = Tensor::from_slice(&batch.data, (n, 3, input.size, input.size), &device)?;
            batches.recycle(batch.data);
            let scores = score_fitting(&scorer, model.as_ref(), &x, &mut max_batch, emit)?;
            for ((k, &idx), fp) in batch.indices.iter().enumerate().zip(batch.fingerprints) {
                let (d, _) = order[idx];
                let item = &items[idx];
                if let Some(known) = options.known.as_mut() {
                    known.scored(&item.path, fp);
                }
                per_set[d].push(ImageRecord {
                    dataset: d,
                    path: item.path.clone(),
                    label: item.label,
                    top: scores.top[k].clone(),
                    scores: scores.scores.iter().map(|m| m[k]).collect(),
                    softmax_term: scores.softmax_term[k],
                    feature_l1: scores.feature_l1[k],
                });
            }
        }
        for (d, records) in per_set.into_iter().enumerate() {
            if records.is_empty() {
                continue;
            }
            done[d] += records.len();
            run_done += records.len();
            touched[d] = true;
            emit(Event::Records {
                dataset: d,
                records,
            });
        }
        for d in (0..opened.len()).filter(|&d| touched[d]) {
            emit(progress(
                d,
                done[d],
                opened[d].items.len(),
                run_done,
                run_total,
                start,
            ));
        }
    }
    let cancelled = cancel.load(Ordering::Relaxed);
    tracing::info!(cancelled, images = run_done, reused, "run finished");
    if reused > 0 {
        emit(Event::Notice(format!(
            "{reused} of {run_done} images reused from earlier records (same model, preprocessing and file contents)"
        )));
    }
    emit(Event::Finished {
        cancelled,
        elapsed_secs: start.elapsed().as_secs_f64(),
    });
    Ok(())
}

/// A `Progress` event at the run's current rate.
fn progress(
    dataset: usize,
    done: usize,
    total: usize,
    run_done: usize,
    run_total: usize,
    start: Instant,
) -> Event {
    let elapsed = start.elapsed().as_secs_f64();
    Event::Progress(Progress {
        dataset,
        done,
        total,
        run_done,
        run_total,
        images_per_sec: run_done as f64 / elapsed.max(1e-9),
        elapsed_secs: elapsed,
    })
}

/// The order in which `(set, item)` pairs are evaluated: every set spread
/// evenly over the run (item `i` of a set of `n` at `(i + 1/2) / n`), so the
/// sets advance in proportion to their sizes and end together. Within a
/// set the order is the set's own.
pub fn interleave(sizes: &[usize]) -> Vec<(usize, usize)> {
    let mut order: Vec<(usize, usize)> = sizes
        .iter()
        .enumerate()
        .flat_map(|(d, &n)| (0..n).map(move |i| (d, i)))
        .collect();
    // (2i + 1) / 2n compared exactly: (2i + 1) * 2m against (2j + 1) * 2n.
    order.sort_by(|&(d, i), &(e, j)| {
        let a = (2 * i as u128 + 1) * sizes[e] as u128;
        let b = (2 * j as u128 + 1) * sizes[d] as u128;
        a.cmp(&b).then(d.cmp(&e))
    });
    order
}

/// Scores `x` in chunks of at most `max_batch` images; a chunk that runs
/// out of device memory is retried at half the size, and the smaller size is
/// kept for the rest of the run.
pub fn score_fitting(
    scorer: &Scorer,
    model: &dyn model::Classifier,
    x: &Tensor,
    max_batch: &mut usize,
    emit: &mut dyn FnMut(Event),
) -> Result<crate::score::BatchScores> {
    let n = x.dim(0)?;
    let mut all = crate::score::BatchScores::default();
    let mut start = 0;
    while start < n {
        let len = (*max_batch).min(n - start);
        let chunk = if len == n {
            x.clone()
        } else {
            x.narrow(0, start, len)?
        };
        match scorer.score(model, &chunk) {
            Ok(s) => {
                all.extend(s);
                start += len;
            }
            Err(e) if is_out_of_memory(&e) && len > 1 => {
                *max_batch = len / 2;
                tracing::warn!(
                    "batch of {len} does not fit the device; using {}",
                    *max_batch
                );
                emit(Event::Notice(format!(
                    "a batch of {len} images does not fit the device memory: continuing with batches of {}",
                    *max_batch
                )));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(all)
}

/// Whether an error is the device running out of memory.
pub fn is_out_of_memory(e: &Error) -> bool {
    let msg = e.to_string().to_ascii_lowercase();
    msg.contains("out of memory")
        || msg.contains("out_of_memory")
        || msg.contains("cuda_error_out_of_memory")
}

/// Class names: a names file, else ImageNet's for 1,000 classes, else the
/// ID ImageFolder's class folders when they match the model's class count.
fn class_names(config: &RunConfig, info: &ModelInfo, id: &Dataset) -> Result<Classes> {
    if config.class_names.is_none()
        && config.class_order.is_none()
        && info.num_classes != 1000
        && id.kind == DatasetKind::ImageFolder
        && id.classes.len() == info.num_classes
    {
        return Ok(Classes {
            names: id.classes.clone(),
            wnids: None,
        });
    }
    Classes::for_model(
        info.num_classes,
        config.class_names.as_deref(),
        config.class_order.as_deref(),
    )
}

fn open(
    spec: &DatasetSpec,
    ds: Dataset,
    role: Role,
    classes: &Classes,
    limit: Option<usize>,
    shard: Option<Shard>,
) -> Opened {
    // ImageFolder labels are sorted-folder indices; when the folders are
    // wnids and the model's order is known, use the model's index instead.
    let remap: Option<Vec<Option<usize>>> =
        (role == Role::Id && ds.kind == DatasetKind::ImageFolder && classes.wnids.is_some())
            .then(|| {
                ds.classes
                    .iter()
                    .map(|c| classes.index_of_wnid(c))
                    .collect()
            })
            .filter(|m: &Vec<Option<usize>>| m.iter().all(Option::is_some));
    let mut items: Vec<Item> = subsample(ds.items, limit);
    if let Some(shard) = shard {
        items = items.drain(shard.range(items.len())).collect();
    }
    for item in &mut items {
        item.label = match role {
            Role::Ood => None,
            Role::Id => match (&remap, item.label) {
                (Some(m), Some(l)) => m.get(l).copied().flatten(),
                (_, l) => l,
            },
        };
    }
    Opened {
        info: DatasetInfo {
            name: spec.name.clone(),
            role,
            path: spec.path.clone(),
            count: items.len(),
            group: spec.group.clone(),
        },
        items: items.into(),
    }
}

/// At most `limit` items, evenly spaced over the sorted list so that every
/// class of an ImageFolder stays represented.
fn subsample(items: Vec<Item>, limit: Option<usize>) -> Vec<Item> {
    match limit {
        Some(n) if n < items.len() => {
            let len = items.len();
            let mut keep = vec![false; len];
            for i in 0..n {
                keep[i * len / n] = true;
            }
            items
                .into_iter()
                .zip(keep)
                .filter_map(|(it, k)| k.then_some(it))
                .collect()
        }
        _ => items,
    }
}

/// The Scorer of `config`'s methods, with its fit file when one is given
/// (checked against the model) or needed (a clear error when missing).
fn prepare_scorer(
    config: &RunConfig,
    model: &dyn crate::model::Classifier,
    mahalanobis: Option<&crate::score::mahalanobis::MahalanobisParams>,
) -> Result<Scorer> {
    let fit = match &config.fit {
        Some(path) if config.methods.iter().any(|m| m.needs_fit()) => {
            Some(crate::score::fit::Fit::load_for(path, model)?)
        }
        _ => None,
    };
    let given = crate::score::InMemory {
        fit: fit.as_ref(),
        mahalanobis,
    };
    Scorer::with_params(&config.methods, model, given)
}

#[cfg(test)]
mod tests {
    use super::interleave;

    #[test]
    fn interleaving_keeps_every_set_in_proportion() {
        let sizes = [600, 50, 200];
        let order = interleave(&sizes);
        assert_eq!(order.len(), 850);
        // Each set's own order is kept and every item comes once.
        for (d, &n) in sizes.iter().enumerate() {
            let mine: Vec<usize> = order.iter().filter(|p| p.0 == d).map(|p| p.1).collect();
            assert_eq!(mine, (0..n).collect::<Vec<_>>());
        }
        // After any prefix, each set is within one image of its share.
        let mut seen = [0usize; 3];
        for (k, &(d, _)) in order.iter().enumerate() {
            seen[d] += 1;
            let frac = (k + 1) as f64 / 850.0;
            for (e, &n) in sizes.iter().enumerate() {
                let want = frac * n as f64;
                assert!((seen[e] as f64 - want).abs() <= 1.5, "{k} {e} {seen:?}");
            }
        }
        assert_eq!(interleave(&[3, 0]), [(0, 0), (0, 1), (0, 2)]);
        assert!(interleave(&[]).is_empty());
    }
}
