//! A minimal Parquet writer for flat tables (the per-image scores of
//! `report --scores FILE.parquet`): one row group, one uncompressed data
//! page (v1) per column, PLAIN values, RLE definition levels for optional
//! columns, and the file metadata in Thrift's compact protocol.
//!
//! Written by hand because the `parquet` crate, even without arrow, adds a
//! Thrift runtime and codecs to the build for a file this small in scope.
//! The format: <https://parquet.apache.org/docs/file-format/> and
//! `parquet.thrift` (field ids below are that file's).

use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;

/// One column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// UTF-8 strings (BYTE_ARRAY, logical type STRING).
    Utf8(Vec<String>),
    /// 64-bit integers; `None` is a null (the column is then OPTIONAL).
    Int64(Vec<Option<i64>>),
    /// 32-bit floats (FLOAT).
    Float(Vec<f32>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Utf8(v) => v.len(),
            Values::Int64(v) => v.len(),
            Values::Float(v) => v.len(),
        }
    }

    /// The physical type (parquet.thrift `Type`).
    fn physical(&self) -> i32 {
        match self {
            Values::Utf8(_) => 6,  // BYTE_ARRAY
            Values::Int64(_) => 2, // INT64
            Values::Float(_) => 4, // FLOAT
        }
    }

    fn optional(&self) -> bool {
        matches!(self, Values::Int64(v) if v.iter().any(Option::is_none))
    }
}

/// A named column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub values: Values,
}

/// Writes `columns` (all of one length) as a Parquet file at `path`.
pub fn write(path: &Path, columns: &[Column]) -> Result<()> {
    let bytes = encode(columns).map_err(|e| Error::data(path, e))?;
    let mut file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    file.write_all(&bytes).map_err(|e| Error::io(path, e))
}

/// The whole file in memory (scores of a paper-scale run are a few MB).
pub fn encode(columns: &[Column]) -> std::result::Result<Vec<u8>, String> {
    let rows = columns.first().map_or(0, |c| c.values.len());
    if let Some(c) = columns.iter().find(|c| c.values.len() != rows) {
        return Err(format!(
            "column `{}` has {} values, not {rows}",
            c.name,
            c.values.len()
        ));
    }
    let mut out = b"PAR1".to_vec();
    let mut chunks = Vec::with_capacity(columns.len());
    for c in columns {
        let page = page_data(&c.values);
        let size =
            i32::try_from(page.len()).map_err(|_| format!("column `{}` is over 2 GiB", c.name))?;
        let mut header = Compact::default();
        header.i32(1, 0); // type: DATA_PAGE
        header.i32(2, size); // uncompressed_page_size
        header.i32(3, size); // compressed_page_size
        header.begin_struct(5); // data_page_header
        header.i32(1, rows as i32); // num_values
        header.i32(2, 0); // encoding: PLAIN
        header.i32(3, 3); // definition_level_encoding: RLE
        header.i32(4, 3); // repetition_level_encoding: RLE
        header.end_struct();
        header.stop();
        let offset = out.len() as i64;
        let total = (header.buf.len() + page.len()) as i64;
        out.extend_from_slice(&header.buf);
        out.extend_from_slice(&page);
        chunks.push((offset, total));
    }
    let mut meta = Compact::default();
    meta.i32(1, 1); // version
    meta.list_begin(2, STRUCT, columns.len() + 1); // schema
    meta.struct_elem(|m| {
        m.binary(4, b"schema");
        m.i32(5, columns.len() as i32); // num_children
    });
    for c in columns {
        meta.struct_elem(|m| {
            m.i32(1, c.values.physical());
            m.i32(3, i32::from(c.values.optional())); // REQUIRED / OPTIONAL
            m.binary(4, c.name.as_bytes());
            if let Values::Utf8(_) = c.values {
                m.i32(6, 0); // converted_type: UTF8
                m.begin_struct(10); // logicalType
                m.begin_struct(1); // STRING
                m.end_struct();
                m.end_struct();
            }
        });
    }
    meta.i64(3, rows as i64); // num_rows
    meta.list_begin(4, STRUCT, 1); // row_groups
    meta.struct_elem(|m| {
        m.list_begin(1, STRUCT, columns.len()); // columns
        for (c, &(offset, total)) in columns.iter().zip(&chunks) {
            m.struct_elem(|m| {
                m.i64(2, offset); // file_offset
                m.begin_struct(3); // meta_data
                m.i32(1, c.values.physical());
                m.list_begin(2, I32, 2); // encodings: PLAIN, RLE
                m.varint(zigzag(0));
                m.varint(zigzag(3));
                m.list_begin(3, BINARY, 1); // path_in_schema
                m.bytes(c.name.as_bytes());
                m.i32(4, 0); // codec: UNCOMPRESSED
                m.i64(5, rows as i64); // num_values
                m.i64(6, total); // total_uncompressed_size
                m.i64(7, total); // total_compressed_size
                m.i64(9, offset); // data_page_offset
                m.end_struct();
            });
        }
        let size: i64 = chunks.iter().map(|c| c.1).sum();
        m.i64(2, size); // total_byte_size
        m.i64(3, rows as i64); // num_rows
    });
    meta.binary(6, b"gradnorm-tui");
    meta.stop();
    out.extend_from_slice(&meta.buf);
    out.extend_from_slice(&(meta.buf.len() as u32).to_le_bytes());
    out.extend_from_slice(b"PAR1");
    Ok(out)
}

/// A v1 data page's body: definition levels (optional columns only), then
/// the non-null values, PLAIN.
fn page_data(values: &Values) -> Vec<u8> {
    let mut out = Vec::new();
    match values {
        Values::Utf8(v) => {
            for s in v {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
        Values::Int64(v) => {
            if values.optional() {
                let levels = rle_levels(v.iter().map(Option::is_some));
                out.extend_from_slice(&(levels.len() as u32).to_le_bytes());
                out.extend_from_slice(&levels);
            }
            for x in v.iter().flatten() {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        Values::Float(v) => {
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    out
}

/// Definition levels of bit width 1 as RLE runs of the hybrid encoding:
/// per run, varint `len << 1` then the level in one byte.
fn rle_levels(defined: impl Iterator<Item = bool>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut run: Option<(bool, u64)> = None;
    let flush = |out: &mut Vec<u8>, (level, len): (bool, u64)| {
        put_varint(out, len << 1);
        out.push(u8::from(level));
    };
    for d in defined {
        run = match run {
            Some((level, len)) if level == d => Some((level, len + 1)),
            Some(r) => {
                flush(&mut out, r);
                Some((d, 1))
            }
            None => Some((d, 1)),
        };
    }
    if let Some(r) = run {
        flush(&mut out, r);
    }
    out
}

// Thrift compact protocol element types.
const I32: u8 = 5;
const I64: u8 = 6;
const BINARY: u8 = 8;
const STRUCT: u8 = 12;

/// A Thrift compact-protocol encoder, just what the metadata needs.
#[derive(Default)]
struct Compact {
    buf: Vec<u8>,
    /// The last field id of each open struct (ids are written as deltas).
    last: Vec<i16>,
    current: i16,
}

impl Compact {
    fn field(&mut self, id: i16, kind: u8) {
        let delta = id - self.current;
        if (1..=15).contains(&delta) {
            self.buf.push(((delta as u8) << 4) | kind);
        } else {
            self.buf.push(kind);
            self.varint(zigzag(i64::from(id)));
        }
        self.current = id;
    }

    fn varint(&mut self, v: u64) {
        put_varint(&mut self.buf, v);
    }

    fn i32(&mut self, id: i16, v: i32) {
        self.field(id, I32);
        self.varint(zigzag(i64::from(v)));
    }

    fn i64(&mut self, id: i16, v: i64) {
        self.field(id, I64);
        self.varint(zigzag(v));
    }

    fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    fn binary(&mut self, id: i16, b: &[u8]) {
        self.field(id, BINARY);
        self.bytes(b);
    }

    fn list_begin(&mut self, id: i16, kind: u8, len: usize) {
        self.field(id, 9);
        if len < 15 {
            self.buf.push(((len as u8) << 4) | kind);
        } else {
            self.buf.push(0xf0 | kind);
            self.varint(len as u64);
        }
    }

    /// A struct field: its fields follow, then `end_struct`.
    fn begin_struct(&mut self, id: i16) {
        self.field(id, STRUCT);
        self.last.push(self.current);
        self.current = 0;
    }

    /// Ends a nested struct (its stop byte) and returns to the outer one.
    fn end_struct(&mut self) {
        self.stop();
        self.current = self.last.pop().unwrap_or(0);
    }

    /// A struct as a list element (no field header).
    fn struct_elem(&mut self, body: impl FnOnce(&mut Compact)) {
        self.last.push(self.current);
        self.current = 0;
        body(self);
        self.end_struct();
    }

    fn stop(&mut self) {
        self.buf.push(0);
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thrift_compact_basics() {
        // Values from the Thrift compact protocol spec.
        assert_eq!(zigzag(0), 0);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(-2), 3);
        let mut v = Vec::new();
        put_varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        // Field 1 (i32 = 5), then field 20 (long form), a nested struct
        // with field 1 (deltas restart inside), then stops.
        let mut c = Compact::default();
        c.i32(1, 5);
        c.i32(20, -1);
        c.begin_struct(21);
        c.i32(1, 0);
        c.end_struct();
        c.stop();
        assert_eq!(c.buf, [0x15, 10, 0x05, 40, 1, 0x1c, 0x15, 0, 0, 0]);
    }

    #[test]
    fn rle_levels_are_runs() {
        let levels = rle_levels([true, true, false, true].into_iter());
        assert_eq!(levels, [4, 1, 2, 0, 2, 1]);
    }

    #[test]
    fn mismatched_columns_are_refused() {
        let cols = [
            Column {
                name: "a".into(),
                values: Values::Float(vec![1.0]),
            },
            Column {
                name: "b".into(),
                values: Values::Float(vec![]),
            },
        ];
        assert!(encode(&cols).unwrap_err().contains("`b`"));
    }
}
