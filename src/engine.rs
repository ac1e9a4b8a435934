//! Runs an evaluation: datasets -> batches -> model -> scores -> events.
//! Knows nothing of terminals; the CLI and the TUI consume its events.

use crate::classes::Classes;
use crate::data::dataset::{Dataset, DatasetKind, Item};
use crate::data::loader::{self, LoaderConfig};
use crate::error::{Error, Result};
use crate::model::{self, InputSpec, ModelInfo};
use crate::run::{
    DatasetInfo, DatasetSpec, Event, ImageRecord, Progress, Role, RunConfig, RunInfo, Shard,
};
use crate::score::Scorer;
use candle_core::Tensor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
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

/// Records computed before, looked up by (dataset, path, label) once the run
/// has started; a hit is reported as is instead of being evaluated again.
pub type Known<'a> =
    &'a mut dyn FnMut(usize, &std::path::Path, Option<usize>) -> Option<ImageRecord>;

/// How a run is carried out beyond its config: a shard of every set, and
/// records already known (the run store's, for resume and reuse).
#[derive(Default)]
pub struct RunOptions<'a> {
    pub shard: Option<Shard>,
    pub known: Option<Known<'a>>,
}

/// Runs `config` to the end (or until `cancel` is set), reporting through
/// `emit`. Returns the error that stopped it, if any; a cancelled run still
/// ends with `Event::Finished { cancelled: true, .. }`.
pub fn run(
    config: &RunConfig,
    cancel: &Arc<AtomicBool>,
    emit: &mut dyn FnMut(Event),
) -> Result<()> {
    run_with(config, RunOptions::default(), cancel, emit)
}

/// `run` with a shard and known records: known images are reported first
/// (one `Records` event per dataset), the rest are evaluated.
pub fn run_with(
    config: &RunConfig,
    mut options: RunOptions,
    cancel: &Arc<AtomicBool>,
    emit: &mut dyn FnMut(Event),
) -> Result<()> {
    let start = Instant::now();
    if config.methods.is_empty() {
        return Err(Error::Invalid("no methods selected".into()));
    }
    if config.batch == 0 {
        return Err(Error::Invalid("batch size must be at least 1".into()));
    }
    let device = crate::device::parse_device(&config.device)?;
    let dtype = crate::device::parse_dtype(&config.dtype)?;
    let model = model::load(&config.model, &device, dtype)?;
    let info = model.info().clone();
    let input = InputSpec {
        size: config.image_size.unwrap_or(info.input.size),
        ..info.input
    };

    let id = Dataset::open(&config.id.path, config.id.root.as_deref())?;
    let classes = class_names(config, &info, &id)?;
    let mut opened = vec![open(
        &config.id,
        id,
        Role::Id,
        &classes,
        config.limit,
        options.shard,
    )];
    for spec in &config.ood {
        let ds = Dataset::open(&spec.path, spec.root.as_deref())?;
        opened.push(open(
            spec,
            ds,
            Role::Ood,
            &classes,
            config.limit,
            options.shard,
        ));
    }
    let scorer = Scorer::new(&config.methods, model.as_ref())?;
    let run_info = Arc::new(RunInfo {
        model: info,
        checkpoint: config.model.checkpoint.clone(),
        device: crate::device::device_name(&device),
        dtype: crate::device::dtype_name(dtype).to_string(),
        image_size: input.size,
        batch: config.batch,
        datasets: opened.iter().map(|o| o.info.clone()).collect(),
        methods: config.methods.clone(),
        class_names: Arc::new(classes.names.clone()),
    });
    tracing::info!(model = %run_info.model.name, device = %run_info.device, "run started");
    emit(Event::Started(run_info));

    let run_total: usize = opened.iter().map(|o| o.items.len()).sum();
    let mut run_done = 0usize;
    let workers = config.workers.unwrap_or(0);
    // Reduced (and kept) whenever a batch does not fit the device.
    let mut max_batch = config.batch;
    'datasets: for (d, ds) in opened.iter().enumerate() {
        let total = ds.items.len();
        let mut done = 0usize;
        let (known, todo) = split_known(d, &ds.items, &mut options.known);
        if !known.is_empty() {
            done += known.len();
            run_done += known.len();
            emit(Event::Records {
                dataset: d,
                records: known,
            });
            emit(progress(d, done, total, run_done, run_total, start));
        }
        let mut batches = loader::batches(
            todo.clone(),
            LoaderConfig {
                input,
                batch: config.batch,
                workers,
                prefetch: PREFETCH,
            },
            cancel.clone(),
        );
        while let Some(batch) = batches.next() {
            if cancel.load(Ordering::Relaxed) {
                break 'datasets;
            }
            for (idx, reason) in batch.failures {
                tracing::warn!(path = %todo[idx].path.display(), %reason, "skipped");
                emit(Event::Skipped {
                    dataset: d,
                    path: todo[idx].path.clone(),
                    reason,
                });
                done += 1;
                run_done += 1;
            }
            let n = batch.indices.len();
            if n > 0 {
                // Straight from the loader's buffer to the device; the buffer
                // goes back to the loader (fresh allocations cost as much as
                // preprocessing).
                let x = Tensor::from_slice(&batch.data, (n, 3, input.size, input.size), &device)?;
                batches.recycle(batch.data);
                let scores = score_fitting(&scorer, model.as_ref(), &x, &mut max_batch, emit)?;
                let records = batch
                    .indices
                    .iter()
                    .enumerate()
                    .map(|(i, &idx)| ImageRecord {
                        dataset: d,
                        path: todo[idx].path.clone(),
                        label: todo[idx].label,
                        top: scores.top[i].clone(),
                        scores: scores.scores.iter().map(|m| m[i]).collect(),
                        softmax_term: scores.softmax_term[i],
                        feature_l1: scores.feature_l1[i],
                    })
                    .collect();
                emit(Event::Records {
                    dataset: d,
                    records,
                });
                done += n;
                run_done += n;
            }
            emit(progress(d, done, total, run_done, run_total, start));
        }
    }
    let cancelled = cancel.load(Ordering::Relaxed);
    tracing::info!(cancelled, images = run_done, "run finished");
    emit(Event::Finished {
        cancelled,
        elapsed_secs: start.elapsed().as_secs_f64(),
    });
    Ok(())
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

/// The items `known` already has records for, and the rest (in order).
fn split_known(
    dataset: usize,
    items: &Arc<[Item]>,
    known: &mut Option<Known>,
) -> (Vec<ImageRecord>, Arc<[Item]>) {
    let Some(known) = known.as_mut() else {
        return (Vec::new(), items.clone());
    };
    let mut hits = Vec::new();
    let mut todo = Vec::new();
    for item in items.iter() {
        match known(dataset, &item.path, item.label) {
            Some(rec) => hits.push(rec),
            None => todo.push(item.clone()),
        }
    }
    (hits, todo.into())
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

/// A run on its own thread.
pub struct RunHandle {
    pub events: Receiver<Event>,
    pub cancel: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunHandle {
    /// Asks the run to stop after the batch in flight; what was computed stays.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Waits for the thread to end.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for RunHandle {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// Starts `config` on a background thread; events arrive on `events`, an
/// error arrives as `Event::Failed` (then the channel closes).
pub fn spawn(config: RunConfig) -> RunHandle {
    spawn_with(move |cancel, emit| run(&config, cancel, emit))
}

/// Runs `work` (an engine run with extras, e.g. the store's recording) on a
/// background thread, as `spawn` does.
pub fn spawn_with<W>(work: W) -> RunHandle
where
    W: FnOnce(&Arc<AtomicBool>, &mut dyn FnMut(Event)) -> Result<()> + Send + 'static,
{
    let (tx, rx): (Sender<Event>, Receiver<Event>) = std::sync::mpsc::channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let thread = std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || {
            let mut emit = |e: Event| {
                let _ = tx.send(e);
            };
            if let Err(e) = work(&flag, &mut emit) {
                tracing::error!("run failed: {e}");
                let _ = tx.send(Event::Failed(e.to_string()));
            }
        })
        .expect("spawning the engine thread");
    RunHandle {
        events: rx,
        cancel,
        thread: Some(thread),
    }
}
