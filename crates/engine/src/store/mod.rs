//! The run store: every run, from `eval` or the TUI, recorded in SQLite as
//! its events arrive (one transaction per batch, WAL), so a run killed at
//! any moment keeps every finished batch and the file still opens.
//!
//! What is stored and why:
//! - `runs`: one row per run: its typed config (JSON), the engine's
//!   `RunInfo` (JSON), its state, shard, and the summary once it stops.
//! - `images`: one row per (model key, path, content fingerprint) with the
//!   top-5 and ||h||_1. The model key hashes the checkpoint's bytes (SHA-256),
//!   the model name, input size and normalization, dtype and device kind:
//!   whatever changes a forward pass.
//! - `scores`: one score per image and method, the method keyed by its full
//!   JSON (parameters included); GradNorm's softmax factor is stored as a
//!   score under a key derived from GradNorm's temperature.
//! - `run_images`, `skipped`: which images (and labels) make up each run's
//!   datasets, and the files that could not be read, with the reason.
//!
//! Records are reused whenever the model key and the image's path and
//! content fingerprint match and every requested method already has a
//! score. Logits and features are *not* stored (1,000 floats per image
//! would multiply the store's size by ~100): an image that lacks a score for
//! a newly requested method is computed again (all methods in one pass).
//!
//! The functions here return plain data (`RunRow`, `RunResults`,
//! `Comparison`) for the commands and the TUI's Runs screen.

mod compare;
pub mod export;
mod merge;
pub mod parquet;
pub mod plots;
mod record;
mod schema;

pub use compare::{compare, compare_files, Comparison, Delta};
pub use merge::merge;
pub use record::{fingerprint, Recorder};

use crate::error::{Error, Result};
pub use gradnorm_core::run::Shard;
use gradnorm_core::run::{ImageRecord, RunConfig, RunInfo, RunResults, Skipped};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The database file inside a store folder.
pub const FILE_NAME: &str = "runs.sqlite";
/// Where runs go without `--store`: `runs/` in the working directory.
pub const DEFAULT_DIR: &str = "runs";

/// A run as `runs` lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    /// Creation time, UTC, `YYYY-MM-DD HH:MM:SS`.
    pub created: String,
    pub updated: String,
    pub model: String,
    /// Dataset names, ID first.
    pub sets: Vec<String>,
    /// Method keys.
    pub methods: Vec<String>,
    /// `running` (or killed while running), `finished`, `cancelled`, `failed`.
    pub state: String,
    pub shard: Option<Shard>,
    /// Images recorded for this run so far.
    pub images: usize,
    pub device: String,
    pub elapsed_secs: f64,
    pub error: Option<String>,
    /// The fit file its config named.
    pub fit: Option<PathBuf>,
}

/// An open store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating when needed) the store in folder `dir`.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Self::open_file(&dir.join(FILE_NAME), true)
    }

    /// Opens the store in `dir`, which must exist (for reading commands).
    pub fn open_existing(dir: &Path) -> Result<Store> {
        let path = dir.join(FILE_NAME);
        Error::require_file(
            &path,
            "no run store here (run `gradnorm-tui eval --store DIR ...` first)",
        )?;
        Self::open_file(&path, false)
    }

    fn open_file(path: &Path, create: bool) -> Result<Store> {
        let conn = Connection::open(path).map_err(|e| sql_err(path, e))?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        schema::prepare(&store.conn, create).map_err(|e| match e {
            schema::SchemaError::Sql(e) => sql_err(path, e),
            schema::SchemaError::Version(msg) => Error::data(path, msg),
        })?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn conn(&mut self) -> &mut Connection {
        &mut self.conn
    }

    pub(crate) fn err(&self, e: rusqlite::Error) -> Error {
        sql_err(&self.path, e)
    }

    /// Every run, oldest first.
    pub fn list(&self) -> Result<Vec<RunRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.id, r.created, r.updated, r.config, r.info, r.state, r.shard_index,
                        r.shard_count, r.elapsed_secs, r.error,
                        (SELECT COUNT(*) FROM run_images ri WHERE ri.run_id = r.id)
                 FROM runs r ORDER BY r.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Option<String>>(4)?,
                    row.get::<_, String>(5)?,
                    row.get::<_, Option<i64>>(6)?,
                    row.get::<_, Option<i64>>(7)?,
                    row.get::<_, f64>(8)?,
                    row.get::<_, Option<String>>(9)?,
                    row.get::<_, i64>(10)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            let (id, created, updated, config, info, state, si, sc, elapsed, error, n) =
                r.map_err(|e| self.err(e))?;
            let config: RunConfig = self.parse_json(&config, id)?;
            let info: Option<RunInfo> = info.map(|s| self.parse_json(&s, id)).transpose()?;
            let mut sets = vec![config.id.name.clone()];
            sets.extend(config.ood.iter().map(|d| d.name.clone()));
            out.push(RunRow {
                id,
                created: format_time(created),
                updated: format_time(updated),
                model: info
                    .as_ref()
                    .map(|i| i.model.name.clone())
                    .unwrap_or_else(|| {
                        config
                            .model
                            .name
                            .clone()
                            .unwrap_or_else(|| "(not loaded)".into())
                    }),
                sets,
                methods: config.methods.iter().map(|m| m.key().to_string()).collect(),
                fit: config.fit.clone(),
                state,
                shard: si.zip(sc).map(|(i, c)| Shard {
                    index: i as usize,
                    count: c as usize,
                }),
                images: n as usize,
                device: info.map_or_else(|| config.device.into(), |i| i.setup.device),
                elapsed_secs: elapsed,
                error,
            });
        }
        Ok(out)
    }

    /// `latest` (the newest run) or a run id, checked to exist.
    pub fn resolve(&self, id: &str) -> Result<i64> {
        let found: Option<i64> = if id == "latest" {
            self.conn
                .query_row("SELECT MAX(id) FROM runs", [], |r| r.get(0))
                .map_err(|e| self.err(e))?
        } else {
            let n: i64 = id.parse().map_err(|_| {
                Error::Invalid(format!("`{id}` is not a run id (a number or `latest`)"))
            })?;
            self.conn
                .query_row("SELECT id FROM runs WHERE id = ?1", [n], |r| r.get(0))
                .optional()
                .map_err(|e| self.err(e))?
        };
        found.ok_or_else(|| {
            Error::data(
                &self.path,
                if id == "latest" {
                    "the store holds no runs".to_string()
                } else {
                    format!("no run {id} (see `gradnorm-tui runs`)")
                },
            )
        })
    }

    /// The config a run was started with.
    pub fn config(&self, id: i64) -> Result<RunConfig> {
        let s: String = self
            .conn
            .query_row("SELECT config FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        self.parse_json(&s, id)
    }

    /// A run's results as the engine produced them: info, records (per
    /// dataset, ordered by path), skipped files, state. Summaries,
    /// reports and plots are computed from this.
    pub fn load(&self, id: i64) -> Result<RunResults> {
        let (info, state, elapsed, error): (Option<String>, String, f64, Option<String>) = self
            .conn
            .query_row(
                "SELECT info, state, elapsed_secs, error FROM runs WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .map_err(|e| self.err(e))?;
        let mut results = RunResults::new();
        let Some(info) = info else {
            results.failed = error;
            return Ok(results);
        };
        let info: Arc<RunInfo> = Arc::new(self.parse_json(&info, id)?);
        let n = info.datasets.len();
        let keys = record::method_keys(&info.methods);
        let factor = record::factor_key(&info.methods);
        results.records = vec![Vec::new(); n];
        results.skipped = vec![Vec::new(); n];
        let mut stmt = self
            .conn
            .prepare(
                "SELECT ri.dataset, i.id, i.path, ri.label, i.top, i.feature_l1
                 FROM run_images ri JOIN images i ON i.id = ri.image_id
                 WHERE ri.run_id = ?1 ORDER BY ri.dataset, i.path",
            )
            .map_err(|e| self.err(e))?;
        let mut scores = self
            .conn
            .prepare("SELECT method, value FROM scores WHERE image_id = ?1")
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query([id]).map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let dataset: usize = row.get::<_, i64>(0).map_err(|e| self.err(e))? as usize;
            let image: i64 = row.get(1).map_err(|e| self.err(e))?;
            let path: String = row.get(2).map_err(|e| self.err(e))?;
            let label: Option<i64> = row.get(3).map_err(|e| self.err(e))?;
            let top: String = row.get(4).map_err(|e| self.err(e))?;
            let feature_l1: f64 = row.get(5).map_err(|e| self.err(e))?;
            let values = record::read_scores(&mut scores, image).map_err(|e| self.err(e))?;
            let rec = record::assemble(
                dataset,
                PathBuf::from(path),
                label.map(|l| l as usize),
                self.parse_json(&top, id)?,
                &keys,
                &factor,
                feature_l1,
                &values,
            )
            .ok_or_else(|| {
                Error::data(
                    &self.path,
                    format!("run {id}: an image lacks a score for one of its methods"),
                )
            })?;
            if let Some(r) = results.records.get_mut(dataset) {
                r.push(rec);
            }
        }
        let mut stmt = self
            .conn
            .prepare("SELECT dataset, path, reason FROM skipped WHERE run_id = ?1 ORDER BY rowid")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?))
            })
            .map_err(|e| self.err(e))?;
        for r in rows {
            let (d, path, reason) = r.map_err(|e| self.err(e))?;
            if let Some(s) = results.skipped.get_mut(d as usize) {
                s.push(Skipped {
                    path: path.into(),
                    reason,
                });
            }
        }
        results.info = Some(info);
        results.elapsed_secs = elapsed;
        results.finished = match state.as_str() {
            "finished" => Some(false),
            "cancelled" => Some(true),
            _ => None,
        };
        results.failed = error;
        Ok(results)
    }

    /// A key of each of a run's sets' contents, by set name: a hash of the
    /// sorted content fingerprints of its evaluated images, so two runs'
    /// sets compare equal when they hold the same files, whatever their
    /// names or paths. Sets with no image recorded have no key.
    pub fn set_files(&self, id: i64) -> Result<std::collections::HashMap<String, String>> {
        use sha2::{Digest, Sha256};
        let config = self.config(id)?;
        let mut names = vec![config.id.name.clone()];
        names.extend(config.ood.iter().map(|d| d.name.clone()));
        let mut stmt = self
            .conn
            .prepare(
                "SELECT ri.dataset, i.fingerprint
                 FROM run_images ri JOIN images i ON i.id = ri.image_id
                 WHERE ri.run_id = ?1 ORDER BY ri.dataset, i.fingerprint",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut hashers: std::collections::BTreeMap<i64, Sha256> = Default::default();
        for r in rows {
            let (dataset, fp) = r.map_err(|e| self.err(e))?;
            let h = hashers.entry(dataset).or_default();
            h.update(fp.as_bytes());
            h.update(b"\n");
        }
        Ok(hashers
            .into_iter()
            .filter_map(|(d, h)| {
                let name = names.get(d as usize)?.clone();
                let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
                Some((name, digest))
            })
            .collect())
    }

    /// Deletes a run; its image records stay as a cache for later runs.
    pub fn remove(&mut self, id: i64) -> Result<()> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| sql_err(&self.path, e))?;
        for sql in [
            "DELETE FROM run_images WHERE run_id = ?1",
            "DELETE FROM skipped WHERE run_id = ?1",
            "DELETE FROM runs WHERE id = ?1",
        ] {
            tx.execute(sql, [id]).map_err(|e| sql_err(&self.path, e))?;
        }
        tx.commit().map_err(|e| sql_err(&self.path, e))
    }

    fn parse_json<T: serde::de::DeserializeOwned>(&self, s: &str, id: i64) -> Result<T> {
        serde_json::from_str(s)
            .map_err(|e| Error::data(&self.path, format!("run {id}: unreadable record: {e}")))
    }

    /// The latest record of a path under a model key, with the fingerprint
    /// of the bytes it was computed from, when every method is there.
    pub(crate) fn cached(
        &self,
        model_key: &str,
        path: &str,
        keys: &[String],
        factor: &str,
    ) -> Result<Option<(String, Cached)>> {
        let row: Option<(i64, String, String, f64)> = self
            .conn
            .prepare_cached(
                "SELECT id, fingerprint, top, feature_l1 FROM images
                 WHERE model_key = ?1 AND path = ?2 ORDER BY id DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![model_key, path], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()
            })
            .map_err(|e| self.err(e))?;
        let Some((image, fp, top, feature_l1)) = row else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare_cached("SELECT method, value FROM scores WHERE image_id = ?1")
            .map_err(|e| self.err(e))?;
        let values = record::read_scores(&mut stmt, image).map_err(|e| self.err(e))?;
        let Some(softmax) = values.get(factor) else {
            return Ok(None);
        };
        let mut scores = Vec::with_capacity(keys.len());
        for k in keys {
            match values.get(k) {
                Some(v) => scores.push(*v as f32),
                None => return Ok(None),
            }
        }
        let top: Vec<(usize, f32)> = match serde_json::from_str(&top) {
            Ok(t) => t,
            Err(_) => return Ok(None),
        };
        Ok(Some((
            fp,
            (top, *softmax as f32, scores, feature_l1 as f32),
        )))
    }
}

/// A stored image's top-5, softmax factor, scores (in the asked order) and ||h||_1.
pub(crate) type Cached = (Vec<(usize, f32)>, f32, Vec<f32>, f32);

/// Builds one `ImageRecord` (used by `load` and the recorder).
pub(crate) fn image_record(
    dataset: usize,
    path: PathBuf,
    label: Option<usize>,
    (top, softmax_term, scores, feature_l1): Cached,
) -> ImageRecord {
    ImageRecord {
        dataset,
        path,
        label,
        top,
        scores,
        softmax_term,
        feature_l1,
    }
}

/// A SQLite error, naming the file; a file that is not a database says so.
fn sql_err(path: &Path, e: rusqlite::Error) -> Error {
    let reason = match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
            ) =>
        {
            format!("not a readable run store (corrupt or truncated?): {e}")
        }
        _ => format!("run store: {e}"),
    };
    Error::data(path, reason)
}

/// Seconds since the epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) from seconds since the epoch.
pub fn format_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        for (secs, utc) in [
            (0, "1970-01-01 00:00:00"),
            // A leap day, and the last second of a leap year.
            (1_709_210_096, "2024-02-29 12:34:56"),
            (1_735_689_599, "2024-12-31 23:59:59"),
        ] {
            assert_eq!(format_time(secs), utc, "{secs}");
        }
    }
}
