//! Recording a run as its events arrive, and answering the engine's
//! "is this image known?" from earlier records.

use super::{image_record, now, Store};
use crate::engine::{KnownRecords, Recording};
use crate::error::{Error, Result};
use gradnorm_core::run::{Event, ImageRecord, RunConfig, RunInfo, Shard};
use rusqlite::params;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// An image file's content fingerprint (the loader's, `SIZE-CRC`).
pub fn fingerprint(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(crate::data::loader::fingerprint(&bytes))
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(path, e))?;
    Ok(hex(&hasher.finalize()))
}

/// A key no other start has: two runs of one process within a second
/// (the TUI's) must not share unidentified weights' records.
fn nonce() -> String {
    static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = STARTS.fetch_add(1, Ordering::Relaxed);
    format!("{nanos}-{}-{n}", std::process::id())
}

fn sha256_str(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key each method's scores are stored under: its JSON, parameters included.
pub(crate) fn method_keys(methods: &[crate::score::Method]) -> Vec<String> {
    methods
        .iter()
        .map(|m| serde_json::to_string(m).unwrap_or_else(|_| m.key().to_string()))
        .collect()
}

/// GradNorm's softmax factor depends on GradNorm's temperature (1 without
/// GradNorm); it is stored as a score under this key.
pub(crate) fn factor_key(methods: &[crate::score::Method]) -> String {
    match gradnorm_core::method::anatomy_gradnorm(methods).map(|i| &methods[i]) {
        Some(m) => format!(
            "softmax_term {}",
            serde_json::to_string(m).unwrap_or_default()
        ),
        None => "softmax_term T=1".into(),
    }
}

pub(crate) fn read_scores(
    stmt: &mut rusqlite::Statement,
    image: i64,
) -> rusqlite::Result<HashMap<String, f64>> {
    stmt.query_map([image], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?))
    })?
    .collect()
}

/// An `ImageRecord` from stored rows; `None` when a method's score is missing.
#[allow(clippy::too_many_arguments)]
pub(crate) fn assemble(
    dataset: usize,
    path: PathBuf,
    label: Option<usize>,
    top: Vec<(usize, f32)>,
    keys: &[String],
    factor: &str,
    feature_l1: f64,
    values: &HashMap<String, f64>,
) -> Option<ImageRecord> {
    let scores = keys
        .iter()
        .map(|k| values.get(k).map(|v| *v as f32))
        .collect::<Option<Vec<f32>>>()?;
    let softmax = *values.get(factor)? as f32;
    Some(image_record(
        dataset,
        path,
        label,
        (top, softmax, scores, feature_l1 as f32),
    ))
}

/// Writes one run into a store as its events arrive; also the engine's
/// source of known records (`known`).
pub struct Recorder {
    store: Store,
    config: RunConfig,
    config_key: String,
    shard: Option<Shard>,
    run_id: Option<i64>,
    model_key: Option<String>,
    keys: Vec<String>,
    factor: String,
    /// Fingerprints computed by `known`, reused when the record arrives.
    fingerprints: HashMap<PathBuf, String>,
    elapsed: f64,
}

impl Recorder {
    pub fn new(store: Store, config: &RunConfig, shard: Option<Shard>) -> Result<Recorder> {
        let json = serde_json::to_string(config)
            .map_err(|e| Error::Invalid(format!("run config: {e}")))?;
        Ok(Recorder {
            store,
            config: config.clone(),
            config_key: sha256_str(&json),
            shard,
            run_id: None,
            model_key: None,
            keys: method_keys(&config.methods),
            factor: factor_key(&config.methods),
            fingerprints: HashMap::new(),
            elapsed: 0.0,
        })
    }

    /// The run's id once it has started.
    pub fn run_id(&self) -> Option<i64> {
        self.run_id
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Records one event. `Records` are written in one transaction.
    pub fn on(&mut self, event: &Event) -> Result<()> {
        match event {
            Event::Started(info) => self.start(info),
            Event::Records { dataset, records } => self.records(*dataset, records),
            Event::Skipped {
                dataset,
                path,
                reason,
            } => {
                let id = self.started()?;
                let path_s = path.to_string_lossy();
                self.store
                    .conn
                    .execute(
                        "INSERT INTO skipped (run_id, dataset, path, reason) VALUES (?1, ?2, ?3, ?4)",
                        params![id, *dataset as i64, path_s, reason],
                    )
                    .map_err(|e| self.store.err(e))?;
                Ok(())
            }
            Event::Progress(p) => {
                self.elapsed = p.elapsed_secs;
                Ok(())
            }
            Event::Notice(_) => Ok(()),
            Event::Finished {
                cancelled,
                elapsed_secs,
            } => {
                self.elapsed = *elapsed_secs;
                self.finish(if *cancelled { "cancelled" } else { "finished" }, None)
            }
            Event::Failed(msg) => self.finish("failed", Some(msg)),
        }
    }

    /// The engine's question: the latest stored record of this path under
    /// this run's model, with every method of the run, and the fingerprint
    /// it was computed from (a database lookup; no image is read).
    pub fn lookup(
        &mut self,
        dataset: usize,
        path: &Path,
        label: Option<usize>,
    ) -> Option<(String, ImageRecord)> {
        let model_key = self.model_key.as_deref()?;
        let (fp, found) = self
            .store
            .cached(model_key, &path.to_string_lossy(), &self.keys, &self.factor)
            .map_err(|e| tracing::warn!("store lookup: {e}"))
            .ok()??;
        // Kept for the record's row when the image is reused; replaced by
        // `scored` when its bytes changed and it is evaluated again.
        self.fingerprints.insert(path.to_path_buf(), fp.clone());
        Some((fp, image_record(dataset, path.to_path_buf(), label, found)))
    }

    /// The fingerprint of the bytes an evaluated image was scored from.
    pub fn scored(&mut self, path: &Path, fingerprint: String) {
        self.fingerprints.insert(path.to_path_buf(), fingerprint);
    }

    fn started(&self) -> Result<i64> {
        self.run_id
            .ok_or_else(|| Error::Invalid("store: an event arrived before the run started".into()))
    }

    fn start(&mut self, info: &RunInfo) -> Result<()> {
        let checkpoint = info
            .setup
            .checkpoint
            .as_ref()
            .or(self.config.model.checkpoint.as_ref());
        let sha = checkpoint
            .filter(|p| p.is_file())
            .map(|p| sha256_file(p))
            .transpose()?;
        // Without a checkpoint file the weights cannot be identified: records
        // are kept but never reused (a key unique to this start).
        // A fit-based score depends on the fit file as much as on the
        // weights: images scored with another fit are not reused (nor
        // their scores overwritten), so the fit joins the key of runs
        // that read one (the key of the others is unchanged).
        let fit_sha = match &self.config.fit {
            Some(p) if p.is_file() && self.config.methods.iter().any(|m| m.needs_fit()) => {
                Some(sha256_file(p)?)
            }
            _ => None,
        };
        let mut identity = serde_json::json!({
            "checkpoint_sha256": sha,
            "model": info.model.name,
            "family": info.model.family,
            "classes": info.model.num_classes,
            "image_size": info.setup.image_size,
            // The preprocessing in effect (a `preprocess` preset changes
            // every score), not the model's default.
            "mean": info.input.mean,
            "std": info.input.std,
            "resize": info.input.resize,
            "dtype": info.setup.dtype,
            "device": info.setup.device,
            "nonce": sha.is_none().then(nonce),
        });
        if let Some(fit) = fit_sha {
            identity["fit_sha256"] = fit.into();
        }
        let model_key = sha256_str(&identity.to_string());
        let info_json =
            serde_json::to_string(info).map_err(|e| Error::Invalid(format!("run info: {e}")))?;
        let config_json = serde_json::to_string(&self.config)
            .map_err(|e| Error::Invalid(format!("run config: {e}")))?;
        let (si, sc) = match self.shard {
            Some(s) => (Some(s.index as i64), Some(s.count as i64)),
            None => (None, None),
        };
        let t = now();
        let conn = &mut self.store.conn;
        let path = self.store.path.clone();
        let err = |e| super::sql_err(&path, e);
        let tx = conn.transaction().map_err(err)?;
        // The same config (and shard) continues its latest run.
        let existing: Option<i64> = {
            use rusqlite::OptionalExtension;
            tx.query_row(
                "SELECT id FROM runs WHERE config_key = ?1 AND shard_index IS ?2
                 AND shard_count IS ?3 ORDER BY id DESC LIMIT 1",
                params![self.config_key, si, sc],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?
        };
        let id = match existing {
            Some(id) => {
                tx.execute("DELETE FROM run_images WHERE run_id = ?1", [id])
                    .map_err(err)?;
                tx.execute("DELETE FROM skipped WHERE run_id = ?1", [id])
                    .map_err(err)?;
                tx.execute(
                    "UPDATE runs SET updated = ?2, model_key = ?3, checkpoint_sha256 = ?4,
                     info = ?5, state = 'running', error = NULL, summary = NULL WHERE id = ?1",
                    params![id, t, model_key, sha, info_json],
                )
                .map_err(err)?;
                id
            }
            None => {
                tx.execute(
                    "INSERT INTO runs (created, updated, config_key, config, shard_index,
                     shard_count, model_key, checkpoint_sha256, info, state)
                     VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'running')",
                    params![
                        t,
                        self.config_key,
                        config_json,
                        si,
                        sc,
                        model_key,
                        sha,
                        info_json
                    ],
                )
                .map_err(err)?;
                tx.last_insert_rowid()
            }
        };
        tx.commit().map_err(err)?;
        self.run_id = Some(id);
        self.model_key = Some(model_key);
        Ok(())
    }

    fn records(&mut self, dataset: usize, records: &[ImageRecord]) -> Result<()> {
        let id = self.started()?;
        let model_key = self.model_key.clone().unwrap_or_default();
        let mut fps = Vec::with_capacity(records.len());
        for r in records {
            let fp = match self.fingerprints.remove(&r.path) {
                Some(fp) => fp,
                None => fingerprint(&r.path).unwrap_or_else(|_| "unreadable".into()),
            };
            fps.push(fp);
        }
        let path = self.store.path.clone();
        let err = |e| super::sql_err(&path, e);
        let tx = self.store.conn.transaction().map_err(err)?;
        {
            let mut image = tx
                .prepare_cached(
                    "INSERT INTO images (model_key, path, fingerprint, top, feature_l1)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (model_key, path, fingerprint)
                     DO UPDATE SET top = excluded.top, feature_l1 = excluded.feature_l1
                     RETURNING id",
                )
                .map_err(err)?;
            let mut score = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO scores (image_id, method, value) VALUES (?1, ?2, ?3)",
                )
                .map_err(err)?;
            let mut member = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO run_images (run_id, dataset, image_id, label)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(err)?;
            for (r, fp) in records.iter().zip(&fps) {
                let top = serde_json::to_string(&r.top).unwrap_or_else(|_| "[]".into());
                let image_id: i64 = image
                    .query_row(
                        params![
                            model_key,
                            r.path.to_string_lossy(),
                            fp,
                            top,
                            r.feature_l1 as f64
                        ],
                        |row| row.get(0),
                    )
                    .map_err(err)?;
                for (k, v) in self.keys.iter().zip(&r.scores) {
                    score
                        .execute(params![image_id, k, *v as f64])
                        .map_err(err)?;
                }
                score
                    .execute(params![image_id, self.factor, r.softmax_term as f64])
                    .map_err(err)?;
                member
                    .execute(params![
                        id,
                        dataset as i64,
                        image_id,
                        r.label.map(|l| l as i64)
                    ])
                    .map_err(err)?;
            }
        }
        tx.execute(
            "UPDATE runs SET updated = ?2, elapsed_secs = ?3 WHERE id = ?1",
            params![id, now(), self.elapsed],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Marks the run stopped and stores its summary. A run refused before
    /// it started (a missing file, a fit for another model) has no row and
    /// gets none: it computed nothing, and the error was said to the caller.
    pub fn finish(&mut self, state: &str, error: Option<&str>) -> Result<()> {
        let Some(id) = self.run_id else {
            return Ok(());
        };
        let summary = self
            .store
            .load(id)
            .ok()
            .and_then(|mut r| {
                r.finished = Some(state != "finished");
                r.elapsed_secs = self.elapsed;
                r.summary()
            })
            .map(|s| s.to_json().to_string());
        self.store
            .conn
            .execute(
                "UPDATE runs SET updated = ?2, state = ?3, error = ?4, elapsed_secs = ?5,
                 summary = ?6 WHERE id = ?1",
                params![id, now(), state, error, self.elapsed, summary],
            )
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }
}

/// The store records what the engine gives it: one way to start a run is
/// the engine's `Run`, which takes a recorder.
impl Recording for Recorder {
    fn on(&mut self, event: &Event) -> Result<()> {
        Recorder::on(self, event)
    }

    fn run_id(&self) -> Option<i64> {
        Recorder::run_id(self)
    }

    fn finish(&mut self, state: &str, error: Option<&str>) -> Result<()> {
        Recorder::finish(self, state, error)
    }

    fn shard(&self) -> Option<Shard> {
        self.shard
    }
}

impl KnownRecords for Recorder {
    fn lookup(
        &mut self,
        dataset: usize,
        path: &Path,
        label: Option<usize>,
    ) -> Option<(String, ImageRecord)> {
        Recorder::lookup(self, dataset, path, label)
    }

    fn scored(&mut self, path: &Path, fingerprint: String) {
        Recorder::scored(self, path, fingerprint);
    }
}
