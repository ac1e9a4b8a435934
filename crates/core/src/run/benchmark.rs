//! Named benchmarks: a protocol's ID and OOD sets with their groups, read
//! from the benchmark's own files under a data root. OpenOOD v1.5's
//! ImageNet protocols come from its image lists
//! (`DIR/benchmark_imglist/<name>/test_*.txt`), each list's paths under the
//! images folder its evaluation API (`openood/evaluation_api/datasets.py`,
//! `DATA_INFO`) gives it: `DIR/images_largescale/`, but
//! `DIR/images_classic/` for Textures (its download script puts DTD there).

use crate::run::{DatasetSpec, ListFormat, ValueError};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// A benchmark `--benchmark` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Benchmark {
    /// OpenOOD v1.5 ImageNet-1k: ID ImageNet val (its test split); near
    /// SSB-hard, NINCO; far iNaturalist, Textures, OpenImage-O.
    OpenOodImagenet,
    /// OpenOOD v1.5 ImageNet-200 (a 200-class model): the same OOD sets.
    OpenOodImagenet200,
}

/// One set of a benchmark: its name, its list file, the folder its paths
/// are relative to, and its group (none for the ID set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchmarkSet {
    pub name: &'static str,
    pub list: &'static str,
    pub images: &'static str,
    pub group: Option<&'static str>,
}

/// OpenOOD's folder of the ImageNet-scale images.
const LARGESCALE: &str = "images_largescale";

const fn set(
    name: &'static str,
    list: &'static str,
    images: &'static str,
    group: &'static str,
) -> BenchmarkSet {
    BenchmarkSet {
        name,
        list,
        images,
        group: Some(group),
    }
}

/// The v1.5 OOD sets of both ImageNet protocols, in OpenOOD's order.
const OPENOOD_IMAGENET_OOD: [BenchmarkSet; 5] = [
    set("ssb_hard", "test_ssb_hard.txt", LARGESCALE, "near"),
    set("ninco", "test_ninco.txt", LARGESCALE, "near"),
    set("inaturalist", "test_inaturalist.txt", LARGESCALE, "far"),
    set("textures", "test_textures.txt", "images_classic", "far"),
    set("openimage_o", "test_openimage_o.txt", LARGESCALE, "far"),
];

impl Benchmark {
    pub const ALL: [Benchmark; 2] = [Benchmark::OpenOodImagenet, Benchmark::OpenOodImagenet200];

    pub fn name(self) -> &'static str {
        match self {
            Benchmark::OpenOodImagenet => "openood-imagenet",
            Benchmark::OpenOodImagenet200 => "openood-imagenet200",
        }
    }

    /// The folder under `benchmark_imglist/` holding its lists.
    fn list_dir(self) -> &'static str {
        match self {
            Benchmark::OpenOodImagenet => "imagenet",
            Benchmark::OpenOodImagenet200 => "imagenet200",
        }
    }

    /// The ID set, then the OOD sets with their groups.
    pub fn sets(self) -> (BenchmarkSet, &'static [BenchmarkSet]) {
        let id = match self {
            Benchmark::OpenOodImagenet => BenchmarkSet {
                name: "imagenet",
                list: "test_imagenet.txt",
                images: LARGESCALE,
                group: None,
            },
            Benchmark::OpenOodImagenet200 => BenchmarkSet {
                name: "imagenet200",
                list: "test_imagenet200.txt",
                images: LARGESCALE,
                group: None,
            },
        };
        (id, &OPENOOD_IMAGENET_OOD)
    }

    /// The datasets under `data_root` (OpenOOD's `data` folder): each list
    /// read in OpenOOD's format, its paths under its images folder.
    pub fn datasets(self, data_root: &Path) -> (DatasetSpec, Vec<DatasetSpec>) {
        let lists = data_root.join("benchmark_imglist").join(self.list_dir());
        let spec = |s: &BenchmarkSet| DatasetSpec {
            name: s.name.into(),
            path: lists.join(s.list),
            root: Some(data_root.join(s.images)),
            format: Some(ListFormat::OpenOod),
            group: s.group.map(String::from),
        };
        let (id, oods) = self.sets();
        (spec(&id), oods.iter().map(spec).collect())
    }
}

impl FromStr for Benchmark {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let s = s.trim().to_ascii_lowercase();
        Benchmark::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                ValueError(format!(
                    "`{s}`: expected {}",
                    Benchmark::ALL.map(Benchmark::name).join(" or ")
                ))
            })
    }
}

impl fmt::Display for Benchmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openood_imagenet_is_laid_out_as_openood_does() {
        let b: Benchmark = "openood-imagenet".parse().unwrap();
        let (id, ood) = b.datasets(Path::new("/data"));
        assert_eq!(
            id.path,
            Path::new("/data/benchmark_imglist/imagenet/test_imagenet.txt")
        );
        assert_eq!(
            id.root.as_deref(),
            Some(Path::new("/data/images_largescale"))
        );
        assert_eq!(
            ood[3].root.as_deref(),
            Some(Path::new("/data/images_classic"))
        );
        let groups: Vec<(&str, Option<&str>)> = ood
            .iter()
            .map(|d| (d.name.as_str(), d.group.as_deref()))
            .collect();
        assert_eq!(
            groups,
            [
                ("ssb_hard", Some("near")),
                ("ninco", Some("near")),
                ("inaturalist", Some("far")),
                ("textures", Some("far")),
                ("openimage_o", Some("far")),
            ]
        );
        assert!("cifar10".parse::<Benchmark>().is_err());
    }
}
