//! OpenOOD's image lists (`DIR/benchmark_imglist/<benchmark>/*.txt`), read
//! as its `ImglistDataset` reads them: each line `relative/path extra`,
//! split at the first space; the path joined to the images folder
//! (`DIR/images_largescale/` for the ImageNet benchmarks); the extra an
//! integer label (`-1` marks an OOD image) or a dict literal with a
//! `'label'` key.

use crate::data::{Dataset, DatasetKind, Item};
use crate::error::{Error, Result};
use gradnorm_core::run::{DatasetSpec, ListFormat};
use std::path::{Path, PathBuf};

/// Parses an OpenOOD image list: (relative path, label) per line, the
/// label none when negative (OOD). Blank lines are skipped; a line without
/// an extra, an absolute path or an unreadable label is an error naming
/// the line (OpenOOD fails on them too, but only when it reaches them).
pub fn read_imglist(path: &Path) -> Result<Vec<(String, Option<usize>)>> {
    let text = gradnorm_core::error::read_text(
        path,
        "read as an OpenOOD image list but it is not UTF-8 text",
    )?;
    let mut items = Vec::new();
    for (n, line) in text.lines().enumerate() {
        // `lines` leaves no '\n'; a '\r' of a Windows file goes too.
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| Error::data(path, format!("line {}: {why}: `{line}`", n + 1));
        let Some((image, extra)) = line.split_once(' ') else {
            return Err(bad("expected `path label` (OpenOOD's image list format)"));
        };
        if image.is_empty() {
            return Err(bad("the line starts with a space: no path"));
        }
        if image.starts_with('/') {
            return Err(bad("the path is absolute (OpenOOD refuses it too)"));
        }
        let label = parse_label(extra.trim())
            .ok_or_else(|| bad("the label must be an integer or a dict with an integer 'label'"))?;
        items.push((image.to_string(), usize::try_from(label).ok()));
    }
    Ok(items)
}

/// `int(extra)`, or the integer after `'label':` of a dict literal.
fn parse_label(extra: &str) -> Option<i64> {
    if let Ok(n) = extra.parse::<i64>() {
        return Some(n);
    }
    let body = extra.strip_prefix('{')?.strip_suffix('}')?;
    body.split(',').find_map(|pair| {
        let (key, value) = pair.split_once(':')?;
        let key = key.trim().trim_matches(|c| c == '\'' || c == '"');
        (key == "label").then(|| value.trim().parse().ok())?
    })
}

/// Opens a dataset as `spec` describes it: an OpenOOD image list when its
/// format says so, else as [`Dataset::open`] does.
pub fn open(spec: &DatasetSpec) -> Result<Dataset> {
    open_as(
        &spec.path,
        spec.root.as_deref(),
        spec.format.unwrap_or_default(),
    )
}

/// [`open`] with the parts of a spec.
pub fn open_as(path: &Path, root: Option<&Path>, format: ListFormat) -> Result<Dataset> {
    if format == ListFormat::Plain || path.is_dir() {
        return Dataset::open(path, root);
    }
    let root = match root {
        Some(r) => r.to_path_buf(),
        None => path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let items: Vec<Item> = read_imglist(path)?
        .into_iter()
        .map(|(rel, label)| Item {
            path: root.join(rel),
            label,
        })
        .collect();
    if items.is_empty() {
        return Err(Error::data(path, "the image list names no images"));
    }
    Ok(Dataset {
        kind: DatasetKind::List,
        path: path.to_path_buf(),
        items,
        classes: Vec::new(),
    })
}

/// Listed files that are not there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub name: String,
    pub list: PathBuf,
    pub listed: usize,
    pub missing: usize,
    /// The first few missing paths.
    pub first: Vec<PathBuf>,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}`: {} of {} files listed in {} are missing (first: {})",
            self.name,
            self.missing,
            self.listed,
            self.list.display(),
            self.first
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// How many of the files a dataset lists are missing, with the first
/// `show`; none when every file is there (folders list only what exists).
pub fn missing(spec: &DatasetSpec, show: usize) -> Result<Option<Missing>> {
    let ds = open(spec)?;
    if ds.kind != DatasetKind::List {
        return Ok(None);
    }
    let absent: Vec<&Item> = ds.items.iter().filter(|i| !i.path.is_file()).collect();
    Ok((!absent.is_empty()).then(|| Missing {
        name: spec.name.clone(),
        list: spec.path.clone(),
        listed: ds.items.len(),
        missing: absent.len(),
        first: absent.iter().take(show).map(|i| i.path.clone()).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_as_openood_reads_them() {
        assert_eq!(parse_label("65"), Some(65));
        assert_eq!(parse_label("-1"), Some(-1));
        assert_eq!(parse_label("{'label': 3, 'x': 1}"), Some(3));
        assert_eq!(parse_label("{'x': 1}"), None);
        assert_eq!(parse_label("dog"), None);
    }

    #[test]
    fn lines_split_at_the_first_space() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("test_x.txt");
        std::fs::write(&list, "a/b c.jpg 7\r\nood/x.JPEG -1\n\n").unwrap();
        // OpenOOD splits at the first space: `a/b` with the extra `c.jpg 7`,
        // which is no label.
        let err = read_imglist(&list).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        std::fs::write(&list, "a/b.jpg 7\r\nood/x.JPEG -1\n\n").unwrap();
        assert_eq!(
            read_imglist(&list).unwrap(),
            vec![("a/b.jpg".into(), Some(7)), ("ood/x.JPEG".into(), None)]
        );
        std::fs::write(&list, "/abs/x.jpg 1\n").unwrap();
        assert!(read_imglist(&list)
            .unwrap_err()
            .to_string()
            .contains("absolute"));
    }
}
