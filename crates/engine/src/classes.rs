//! Class names and class order. ImageNet's 1,000 names ship in
//! `assets/imagenet_classes.txt` (standard sorted-wnid order); a model
//! trained in another order (the seed's BiT) is described by a class-order
//! file of wnids.

use crate::error::{Error, Result};
use std::path::Path;

const IMAGENET: &str = include_str!("../../../assets/imagenet_classes.txt");

/// Names (and wnids when known) in the model's output order.
#[derive(Debug, Clone, PartialEq)]
pub struct Classes {
    pub names: Vec<String>,
    pub wnids: Option<Vec<String>>,
}

impl Classes {
    /// ImageNet-1k in the standard sorted-wnid order.
    pub fn imagenet() -> Classes {
        parse_names(IMAGENET)
    }

    /// `0`, `1`, ... for models without names.
    pub fn indices(n: usize) -> Classes {
        Classes {
            names: (0..n).map(|i| i.to_string()).collect(),
            wnids: None,
        }
    }

    /// One name per line, optionally prefixed by a wnid ("n01440764 tench").
    pub fn from_file(path: &Path) -> Result<Classes> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let c = parse_names(&text);
        if c.names.is_empty() {
            return Err(Error::data(path, "no class names in this file"));
        }
        Ok(c)
    }

    /// The classes for a model with `num_classes` outputs: names from
    /// `names` (else ImageNet's for 1,000 classes, else indices), reordered
    /// by `order` (a wnid per model index) when given.
    pub fn for_model(
        num_classes: usize,
        names: Option<&Path>,
        order: Option<&Path>,
    ) -> Result<Classes> {
        let base = match names {
            Some(p) => Classes::from_file(p)?,
            None if num_classes == 1000 => Classes::imagenet(),
            None => Classes::indices(num_classes),
        };
        let classes = match order {
            Some(p) => base.reordered(&read_order(p)?, p)?,
            None => base,
        };
        if classes.names.len() != num_classes {
            let what = format!(
                "{} class names for a model with {num_classes} classes",
                classes.names.len()
            );
            // The file that gave them is the one to fix.
            return Err(match order.or(names) {
                Some(p) => Error::data(p, what),
                None => Error::Invalid(what),
            });
        }
        Ok(classes)
    }

    /// These classes put in the order of `wnids` (model index -> wnid).
    pub fn reordered(&self, wnids: &[String], order_file: &Path) -> Result<Classes> {
        let Some(own) = &self.wnids else {
            return Err(Error::data(
                order_file,
                "a class order needs class names with wnids (\"n01440764 tench\" lines)",
            ));
        };
        let mut names = Vec::with_capacity(wnids.len());
        for w in wnids {
            let i = own
                .iter()
                .position(|o| o == w)
                .ok_or_else(|| Error::data(order_file, format!("unknown wnid {w}")))?;
            names.push(self.names[i].clone());
        }
        Ok(Classes {
            names,
            wnids: Some(wnids.to_vec()),
        })
    }

    /// The first synonym: "great white shark" of "great white shark, white shark, ...".
    pub fn short(&self, i: usize) -> &str {
        self.names
            .get(i)
            .map(|n| n.split(',').next().unwrap_or(n).trim())
            .unwrap_or("?")
    }

    /// The model index of a wnid.
    pub fn index_of_wnid(&self, wnid: &str) -> Option<usize> {
        self.wnids.as_ref()?.iter().position(|w| w == wnid)
    }
}

fn is_wnid(s: &str) -> bool {
    s.len() == 9 && s.starts_with('n') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

fn parse_names(text: &str) -> Classes {
    let mut names = Vec::new();
    let mut wnids = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once(char::is_whitespace) {
            Some((w, rest)) if is_wnid(w) => {
                wnids.push(w.to_string());
                names.push(rest.trim().to_string());
            }
            _ => names.push(line.to_string()),
        }
    }
    let wnids = (wnids.len() == names.len() && !wnids.is_empty()).then_some(wnids);
    Classes { names, wnids }
}

/// A class-order file: one wnid per line, or a list file whose lines
/// `dir/WNID/file LABEL` give each label's wnid (the seed's val list).
pub fn read_order(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.iter().all(|l| is_wnid(l)) {
        return Ok(lines.iter().map(|s| s.to_string()).collect());
    }
    let mut by_label: Vec<Option<String>> = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let bad = || {
            Error::data(
                path,
                format!("line {}: expected a wnid or `dir/WNID/file LABEL`", n + 1),
            )
        };
        let (file, label) = line.rsplit_once(char::is_whitespace).ok_or_else(bad)?;
        let label: usize = label.trim().parse().map_err(|_| bad())?;
        let wnid = file
            .split(['/', '\\'])
            .find(|p| is_wnid(p))
            .ok_or_else(bad)?;
        if by_label.len() <= label {
            by_label.resize(label + 1, None);
        }
        match &by_label[label] {
            Some(w) if w != wnid => {
                return Err(Error::data(
                    path,
                    format!("label {label} is both {w} and {wnid}"),
                ))
            }
            _ => by_label[label] = Some(wnid.to_string()),
        }
    }
    by_label
        .into_iter()
        .enumerate()
        .map(|(i, w)| w.ok_or_else(|| Error::data(path, format!("no image has label {i}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imagenet_names_are_in_sorted_wnid_order() {
        let c = Classes::imagenet();
        assert_eq!(c.names.len(), 1000);
        let w = c.wnids.as_ref().unwrap();
        assert!(w.windows(2).all(|p| p[0] < p[1]));
        assert_eq!(c.short(0), "tench");
        assert_eq!(c.index_of_wnid("n01443537"), Some(1));
    }

    #[test]
    fn order_from_a_list_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("list.txt");
        std::fs::write(
            &p,
            "val/n01443537/a.JPEG 0\nval/n01440764/b.JPEG 1\nval/n01443537/c.JPEG 0\n",
        )
        .unwrap();
        assert_eq!(read_order(&p).unwrap(), vec!["n01443537", "n01440764"]);
        let c = Classes::imagenet()
            .reordered(&read_order(&p).unwrap(), &p)
            .unwrap();
        assert_eq!(c.short(0), "goldfish");
    }
}
