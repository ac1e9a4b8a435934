//! The store's tables and its version. A store records its schema version
//! in `meta`; a newer program opens an older store by migrating it, and an
//! older program refuses a newer store with a message saying so.

use rusqlite::{Connection, OptionalExtension};

/// Bump when the tables change, and add the step to `migrate`.
pub const VERSION: i64 = 1;

pub enum SchemaError {
    Sql(rusqlite::Error),
    Version(String),
}

impl From<rusqlite::Error> for SchemaError {
    fn from(e: rusqlite::Error) -> Self {
        SchemaError::Sql(e)
    }
}

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    config_key TEXT NOT NULL,
    config TEXT NOT NULL,
    shard_index INTEGER,
    shard_count INTEGER,
    model_key TEXT,
    checkpoint_sha256 TEXT,
    info TEXT,
    state TEXT NOT NULL,
    error TEXT,
    elapsed_secs REAL NOT NULL DEFAULT 0,
    summary TEXT
);
CREATE INDEX IF NOT EXISTS runs_config ON runs (config_key);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    model_key TEXT NOT NULL,
    path TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    top TEXT NOT NULL,
    feature_l1 REAL NOT NULL,
    UNIQUE (model_key, path, fingerprint)
);
CREATE TABLE IF NOT EXISTS scores (
    image_id INTEGER NOT NULL,
    method TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (image_id, method)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS run_images (
    run_id INTEGER NOT NULL,
    dataset INTEGER NOT NULL,
    image_id INTEGER NOT NULL,
    label INTEGER,
    PRIMARY KEY (run_id, dataset, image_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS skipped (
    run_id INTEGER NOT NULL,
    dataset INTEGER NOT NULL,
    path TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS skipped_run ON skipped (run_id);
";

/// Sets the connection up (WAL, a busy timeout for shards writing one store)
/// and checks or creates the tables.
pub fn prepare(conn: &Connection, create: bool) -> Result<(), SchemaError> {
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    // Reading the header first turns "file is not a database" into an
    // error here rather than halfway through a run.
    conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL in WAL mode: a commit survives a killed process (the WAL is
    // in the file system); only a power loss may drop the last commits.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let has_meta: bool = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    let version: Option<i64> = if has_meta {
        conn.query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get::<_, String>(0),
        )
        .optional()?
        .and_then(|v| v.parse().ok())
    } else {
        None
    };
    match version {
        Some(v) if v > VERSION => Err(SchemaError::Version(format!(
            "written by a newer gradnorm-tui (store schema {v}, this program reads up to {VERSION}): \
             update gradnorm-tui or use another --store"
        ))),
        Some(v) if v < VERSION => migrate(conn, v),
        Some(_) => Ok(()),
        None => {
            let tables: i64 =
                conn.query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'", [], |r| {
                    r.get(0)
                })?;
            if tables > 0 && !has_meta {
                return Err(SchemaError::Version(
                    "an SQLite file that is not a gradnorm-tui run store (no schema version)".into(),
                ));
            }
            if !create && tables == 0 {
                return Err(SchemaError::Version("an empty run store".into()));
            }
            conn.execute_batch(TABLES)?;
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
                [VERSION.to_string()],
            )?;
            Ok(())
        }
    }
}

/// Steps an older store up to `VERSION`. Version 1 is the first; later
/// versions add their `ALTER TABLE`s here.
fn migrate(_conn: &Connection, from: i64) -> Result<(), SchemaError> {
    Err(SchemaError::Version(format!(
        "store schema {from} is older than any this program knows (it reads {VERSION})"
    )))
}
