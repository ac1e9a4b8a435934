//! The per-image scores of `report --scores FILE.parquet` as a flat Parquet
//! table: one row group, one column per score, strings as UTF-8 BYTE_ARRAY,
//! a column with nulls OPTIONAL. Written by the `parquet` crate (no arrow,
//! no codecs: the file is uncompressed), so the format is Apache's, not ours.

use crate::error::{Error, Result};
use parquet::basic::{ConvertedType, LogicalType, Repetition, Type as Physical};
use parquet::data_type::{ByteArray, ByteArrayType, FloatType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use std::path::Path;
use std::sync::Arc;

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

    fn optional(&self) -> bool {
        matches!(self, Values::Int64(v) if v.iter().any(Option::is_none))
    }

    /// The column's schema field.
    fn field(&self, name: &str) -> parquet::errors::Result<Type> {
        let physical = match self {
            Values::Utf8(_) => Physical::BYTE_ARRAY,
            Values::Int64(_) => Physical::INT64,
            Values::Float(_) => Physical::FLOAT,
        };
        let repetition = if self.optional() {
            Repetition::OPTIONAL
        } else {
            Repetition::REQUIRED
        };
        let field = Type::primitive_type_builder(name, physical).with_repetition(repetition);
        match self {
            Values::Utf8(_) => field
                .with_logical_type(Some(LogicalType::String))
                .with_converted_type(ConvertedType::UTF8),
            _ => field,
        }
        .build()
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
    check_lengths(columns).map_err(|e| Error::data(path, e))?;
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    encode(file, columns).map_err(|e| Error::data(path, e.to_string()))
}

/// Columns of unequal lengths, named: the writer would only say that a
/// row count differs.
fn check_lengths(columns: &[Column]) -> std::result::Result<(), String> {
    let rows = columns.first().map_or(0, |c| c.values.len());
    match columns.iter().find(|c| c.values.len() != rows) {
        Some(c) => Err(format!(
            "column `{}` has {} values, not {rows}",
            c.name,
            c.values.len()
        )),
        None => Ok(()),
    }
}

fn encode(out: impl std::io::Write + Send, columns: &[Column]) -> parquet::errors::Result<()> {
    let fields = columns
        .iter()
        .map(|c| c.values.field(&c.name).map(Arc::new))
        .collect::<parquet::errors::Result<Vec<_>>>()?;
    let schema = Type::group_type_builder("schema")
        .with_fields(fields)
        .build()?;
    let props = WriterProperties::builder().build();
    let mut writer = SerializedFileWriter::new(out, Arc::new(schema), Arc::new(props))?;
    let mut group = writer.next_row_group()?;
    for c in columns {
        let Some(mut column) = group.next_column()? else {
            break;
        };
        match &c.values {
            Values::Utf8(v) => {
                let v: Vec<ByteArray> = v.iter().map(|s| ByteArray::from(s.as_str())).collect();
                column
                    .typed::<ByteArrayType>()
                    .write_batch(&v, None, None)?;
            }
            Values::Int64(v) => {
                let present: Vec<i64> = v.iter().flatten().copied().collect();
                let levels: Vec<i16> = v.iter().map(|x| i16::from(x.is_some())).collect();
                let levels = c.values.optional().then_some(levels.as_slice());
                column
                    .typed::<Int64Type>()
                    .write_batch(&present, levels, None)?;
            }
            Values::Float(v) => {
                column.typed::<FloatType>().write_batch(v, None, None)?;
            }
        }
        column.close()?;
    }
    group.close()?;
    writer.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    #[test]
    fn columns_read_back_with_nulls_and_strings() {
        let cols = [
            Column {
                name: "name".into(),
                values: Values::Utf8(vec!["a".into(), "β".into(), String::new()]),
            },
            Column {
                name: "label".into(),
                values: Values::Int64(vec![Some(3), None, Some(-1)]),
            },
            Column {
                name: "score".into(),
                values: Values::Float(vec![0.5, f32::NAN, -2.25]),
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        write(&path, &cols).unwrap();
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let schema = reader.metadata().file_metadata().schema_descr();
        assert_eq!(
            schema.column(0).logical_type_ref(),
            Some(&LogicalType::String)
        );
        assert!(schema.column(1).self_type().is_optional());
        assert!(!schema.column(2).self_type().is_optional());
        let rows: Vec<Vec<Field>> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| {
                r.unwrap()
                    .get_column_iter()
                    .map(|(_, f)| f.clone())
                    .collect()
            })
            .collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1][0], Field::Str("β".into()));
        assert_eq!(rows[0][1], Field::Long(3));
        assert_eq!(rows[1][1], Field::Null);
        assert_eq!(rows[2][2], Field::Float(-2.25));
        assert!(matches!(rows[1][2], Field::Float(x) if x.is_nan()));
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
        let dir = tempfile::tempdir().unwrap();
        let err = write(&dir.path().join("t.parquet"), &cols).unwrap_err();
        assert!(err.to_string().contains("`b`"), "{err}");
    }
}
