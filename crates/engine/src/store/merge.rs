//! Joining shards (`eval --shard i/n`) into one run. Shards take contiguous
//! slices of every set and records are kept per image, so the joined run
//! holds exactly the unsharded run's records and its summary is the same.

use super::{now, sql_err, Store};
use crate::error::{Error, Result};
use gradnorm_core::run::RunInfo;
use rusqlite::params;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One shard run found in a source store.
struct ShardRun {
    source: PathBuf,
    id: i64,
    index: i64,
    count: i64,
    config: String,
    model_key: Option<String>,
    info: Option<String>,
    state: String,
    elapsed: f64,
}

/// Joins every sharded run found in `sources` (store folders; `into` itself
/// may be one of them) into one run per configuration in the store at
/// `into`. Returns the new run ids. A configuration with a shard missing is
/// an error naming it; a merged run replaces an earlier merge of the same
/// configuration.
pub fn merge(into: &Path, sources: &[PathBuf]) -> Result<Vec<i64>> {
    let mut dest = Store::open(into)?;
    let dest_file = canonical(dest.path());
    let mut groups: BTreeMap<String, Vec<ShardRun>> = BTreeMap::new();
    for dir in sources {
        let src = if canonical(&dir.join(super::FILE_NAME)) == dest_file {
            None
        } else {
            Some(Store::open_existing(dir)?)
        };
        let store = src.as_ref().unwrap_or(&dest);
        let mut stmt = store
            .conn
            .prepare(
                "SELECT id, config_key, shard_index, shard_count, config, model_key, info, state,
                        elapsed_secs
                 FROM runs WHERE shard_count IS NOT NULL ORDER BY id",
            )
            .map_err(|e| store.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(1)?,
                    ShardRun {
                        source: dir.clone(),
                        id: r.get(0)?,
                        index: r.get(2)?,
                        count: r.get(3)?,
                        config: r.get(4)?,
                        model_key: r.get(5)?,
                        info: r.get(6)?,
                        state: r.get(7)?,
                        elapsed: r.get(8)?,
                    },
                ))
            })
            .map_err(|e| store.err(e))?;
        for row in rows {
            let (key, run) = row.map_err(|e| store.err(e))?;
            groups.entry(key).or_default().push(run);
        }
    }
    if groups.is_empty() {
        return Err(Error::Invalid(format!(
            "no sharded runs (eval --shard i/n) in {}",
            sources
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut merged = Vec::new();
    for (key, mut shards) in groups {
        shards.sort_by_key(|s| (s.index, s.id));
        // The latest run of each shard index (a rerun continues, so there is
        // normally one).
        shards.dedup_by(|later, earlier| {
            if later.index == earlier.index {
                std::mem::swap(later, earlier);
                true
            } else {
                false
            }
        });
        let count = shards[0].count;
        let have: Vec<i64> = shards.iter().map(|s| s.index).collect();
        if shards.iter().any(|s| s.count != count) || have != (0..count).collect::<Vec<_>>() {
            return Err(Error::Invalid(format!(
                "cannot merge: shards {} of {count} found (from {}), every shard 0..{} is needed",
                have.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                shards[0].source.display(),
                count - 1
            )));
        }
        merged.push(merge_group(&mut dest, &dest_file, &key, &shards)?);
    }
    Ok(merged)
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

fn merge_group(dest: &mut Store, dest_file: &Path, key: &str, shards: &[ShardRun]) -> Result<i64> {
    let path = dest.path().to_path_buf();
    let err = |e| sql_err(&path, e);
    let mut info: Option<RunInfo> = None;
    for s in shards {
        let Some(text) = &s.info else {
            return Err(Error::Invalid(format!(
                "cannot merge: shard {}/{} in {} never started",
                s.index,
                s.count,
                s.source.display()
            )));
        };
        let i: RunInfo = serde_json::from_str(text)
            .map_err(|e| Error::data(&path, format!("shard run {}: {e}", s.id)))?;
        match &mut info {
            None => info = Some(i),
            Some(acc) => {
                for (d, ds) in acc.datasets.iter_mut().zip(&i.datasets) {
                    d.count += ds.count;
                }
            }
        }
    }
    let info = info.expect("at least one shard");
    let state = if shards.iter().all(|s| s.state == "finished") {
        "finished"
    } else {
        "cancelled"
    };
    let elapsed: f64 = shards.iter().map(|s| s.elapsed).sum();
    let info_json = serde_json::to_string(&info).map_err(|e| Error::Invalid(e.to_string()))?;
    let conn = dest.conn();
    let tx = conn.transaction().map_err(err)?;
    // A new merge of the same configuration replaces the previous one.
    let old: Vec<i64> = {
        let mut stmt = tx
            .prepare("SELECT id FROM runs WHERE config_key = ?1 AND shard_count IS NULL")
            .map_err(err)?;
        let ids = stmt
            .query_map([key], |r| r.get(0))
            .map_err(err)?
            .collect::<rusqlite::Result<Vec<i64>>>()
            .map_err(err)?;
        ids
    };
    for id in old {
        for sql in [
            "DELETE FROM run_images WHERE run_id = ?1",
            "DELETE FROM skipped WHERE run_id = ?1",
            "DELETE FROM runs WHERE id = ?1",
        ] {
            tx.execute(sql, [id]).map_err(err)?;
        }
    }
    let t = now();
    tx.execute(
        "INSERT INTO runs (created, updated, config_key, config, model_key, info, state,
         elapsed_secs) VALUES (?1, ?1, ?2, ?3, ?4, ?5, 'merging', ?6)",
        params![
            t,
            key,
            shards[0].config,
            shards[0].model_key,
            info_json,
            elapsed
        ],
    )
    .map_err(err)?;
    let new_id = tx.last_insert_rowid();
    tx.commit().map_err(err)?;
    // SQLite attaches only outside a transaction: one transaction per shard;
    // until the last one the run is `merging` (a new merge replaces it).
    for s in shards {
        let same = canonical(&s.source.join(super::FILE_NAME)) == dest_file;
        let schema = if same { "main" } else { "src" };
        let conn = dest.conn();
        if !same {
            conn.execute(
                "ATTACH DATABASE ?1 AS src",
                [s.source.join(super::FILE_NAME).to_string_lossy()],
            )
            .map_err(err)?;
        }
        let result = copy_shard(conn, schema, s.id, new_id);
        if !same {
            conn.execute("DETACH DATABASE src", []).map_err(err)?;
        }
        result.map_err(err)?;
    }
    let summary = dest
        .load(new_id)?
        .summary()
        .map(|s| s.to_json().to_string());
    dest.conn
        .execute(
            "UPDATE runs SET summary = ?2, state = ?3 WHERE id = ?1",
            params![new_id, summary, state],
        )
        .map_err(|e| dest.err(e))?;
    Ok(new_id)
}

/// Copies one shard's images, scores, membership and skipped files from
/// `schema` (`main` or the attached `src`) into run `new_id`.
fn copy_shard(
    conn: &mut rusqlite::Connection,
    schema: &str,
    shard: i64,
    new_id: i64,
) -> rusqlite::Result<()> {
    let join = format!(
        "FROM {schema}.run_images ri JOIN {schema}.images i ON i.id = ri.image_id
         JOIN main.images mi ON mi.model_key = i.model_key AND mi.path = i.path
                             AND mi.fingerprint = i.fingerprint"
    );
    let tx = conn.transaction()?;
    tx.execute(
        &format!(
            "INSERT INTO main.images (model_key, path, fingerprint, top, feature_l1)
             SELECT i.model_key, i.path, i.fingerprint, i.top, i.feature_l1
             FROM {schema}.run_images ri JOIN {schema}.images i ON i.id = ri.image_id
             WHERE ri.run_id = ?1 ON CONFLICT DO NOTHING"
        ),
        [shard],
    )?;
    tx.execute(
        &format!(
            "INSERT OR REPLACE INTO main.scores (image_id, method, value)
             SELECT mi.id, sc.method, sc.value {join}
             JOIN {schema}.scores sc ON sc.image_id = i.id WHERE ri.run_id = ?1"
        ),
        [shard],
    )?;
    tx.execute(
        &format!(
            "INSERT OR REPLACE INTO main.run_images (run_id, dataset, image_id, label)
             SELECT ?2, ri.dataset, mi.id, ri.label {join} WHERE ri.run_id = ?1"
        ),
        params![shard, new_id],
    )?;
    tx.execute(
        &format!(
            "INSERT INTO main.skipped (run_id, dataset, path, reason)
             SELECT ?2, dataset, path, reason FROM {schema}.skipped WHERE run_id = ?1
             ORDER BY rowid"
        ),
        params![shard, new_id],
    )?;
    tx.commit()
}
