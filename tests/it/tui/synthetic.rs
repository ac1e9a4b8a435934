//! A deterministic synthetic run, as the engine would send it: a tiny
//! BiT on an ID set and two OOD sets, with small PNGs behind its paths.

use gradnorm_core::run::{DatasetInfo, Event, ImageRecord, Progress, Role, RunInfo, Setup};
use gradnorm_engine::model::{Family, InputSpec, ModelInfo};
use gradnorm_engine::score::Method;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// splitmix64: the same numbers on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-12);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

const CLASSES: [&str; 10] = [
    "tench, Tinca tinca",
    "goldfish, Carassius auratus",
    "great white shark",
    "tiger shark, Galeocerdo cuvieri",
    "hammerhead",
    "electric ray",
    "stingray",
    "cock",
    "hen",
    "ostrich, Struthio camelus",
];

/// (name, role, folder or list file, image folder, count)
pub(super) const SETS: [(&str, Role, &str, &str, usize); 3] = [
    (
        "imagenet-val",
        Role::Id,
        "tui-data/imagenet-val/val_list.txt",
        "tui-data/imagenet-val/images",
        120,
    ),
    (
        "textures",
        Role::Ood,
        "tui-data/textures",
        "tui-data/textures/banded",
        80,
    ),
    (
        "scenes",
        Role::Ood,
        "tui-data/scenes",
        "tui-data/scenes/indoor",
        60,
    ),
];
pub(super) const BATCH: usize = 16;

pub(crate) fn methods() -> Vec<Method> {
    vec![
        Method::from_key("msp").unwrap(),
        Method::with_params("odin", &[("temperature", 1000.0), ("epsilon", 0.0)]).unwrap(),
        Method::with_params("energy", &[("temperature", 1.0)]).unwrap(),
        Method::with_params("gradnorm", &[("temperature", 1.0)]).unwrap(),
        Method::from_key("maxlogit").unwrap(),
    ]
}

pub(crate) fn info() -> Arc<RunInfo> {
    Arc::new(RunInfo {
        model: ModelInfo {
            name: "BiT-tiny".into(),
            family: Family::Bit,
            num_classes: 10,
            feature_dim: 64,
            tap_dims: vec![8, 16, 32, 64, 64],
            num_params: 12345,
            input: InputSpec::half(64),
        },
        setup: Setup {
            checkpoint: Some(PathBuf::from("checkpoints/tiny.pth.tar")),
            device: "cpu".into(),
            dtype: "f32".into(),
            image_size: 64,
            fit: None,
        },
        input: InputSpec::half(64),
        batch: BATCH,
        datasets: SETS
            .iter()
            .map(|&(name, role, path, _, count)| DatasetInfo {
                name: name.into(),
                role,
                path: path.into(),
                count,
                group: None,
            })
            .collect(),
        methods: methods(),
        class_names: Arc::new(CLASSES.iter().map(|s| s.to_string()).collect()),
    })
}

/// One image: ID images are more confident and have larger features, as a
/// real classifier's tend to; GradNorm is exactly the product of its factors.
fn record(rng: &mut Rng, dataset: usize, i: usize) -> ImageRecord {
    let id = dataset == 0;
    let conf = 1.0 / (1.0 + (-(if id { 1.2 } else { 0.1 } + rng.normal())).exp());
    let feature_l1 = (if id { 400f64 } else { 340f64 }).ln() + 0.15 * rng.normal();
    let feature_l1 = feature_l1.exp();
    let c = CLASSES.len() as f64;
    // sum_k |C p_k - 1| with the top class at `conf`, the rest uniform.
    let rest = (1.0 - conf) / (c - 1.0);
    let softmax_term = (c * conf - 1.0).abs() + (c - 1.0) * (c * rest - 1.0).abs();
    let first = (rng.next() % 10) as usize;
    let mut top = vec![(first, conf as f32)];
    for k in 1..5 {
        top.push(((first + k) % 10, (rest * (1.0 - 0.1 * k as f64)) as f32));
    }
    let label = id.then(|| {
        if rng.uniform() < 0.6 {
            first
        } else {
            (rng.next() % 10) as usize
        }
    });
    let energy = 2.0 + 3.0 * conf + 0.5 * rng.normal();
    let (_, _, _, folder, _) = SETS[dataset];
    let file = match dataset {
        0 => format!("ILSVRC2012_val_{:08}.png", i + 1),
        1 => format!("banded_{:04}.png", i + 1),
        _ => format!("sun_{:04}.png", i + 1),
    };
    ImageRecord {
        dataset,
        path: Path::new(folder).join(file),
        label,
        top,
        scores: vec![
            conf as f32,
            (0.1 + 1e-4 * conf + 2e-5 * rng.normal()) as f32,
            energy as f32,
            (softmax_term * feature_l1) as f32,
            (energy + 1.0 + 0.3 * rng.normal()) as f32,
        ],
        softmax_term: softmax_term as f32,
        feature_l1: feature_l1 as f32,
    }
}

/// The whole synthetic run as the engine would send it: Started, batches
/// of records each followed by a Progress, Finished.
pub(crate) fn run_events() -> Vec<Event> {
    let mut rng = Rng(2021);
    let total: usize = SETS.iter().map(|s| s.4).sum();
    let mut events = vec![Event::Started(info())];
    let mut run_done = 0;
    for (d, set) in SETS.iter().enumerate() {
        let n = set.4;
        let mut done = 0;
        while done < n {
            let k = BATCH.min(n - done);
            let records = (done..done + k).map(|i| record(&mut rng, d, i)).collect();
            events.push(Event::Records {
                dataset: d,
                records,
            });
            done += k;
            run_done += k;
            events.push(Event::Progress(Progress {
                dataset: d,
                done,
                total: n,
                run_done,
                run_total: total,
                images_per_sec: 40.0,
                elapsed_secs: run_done as f64 / 40.0,
            }));
        }
    }
    events.push(Event::Finished {
        cancelled: false,
        elapsed_secs: total as f64 / 40.0,
    });
    events
}

/// Small PNGs behind the synthetic paths, for the preview. Paths are
/// relative to the test's scratch folder so snapshots do not hold
/// machine-specific paths.
pub(crate) fn enter_scratch() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::env::set_current_dir(dir).unwrap();
    for e in run_events() {
        if let Event::Records { records, .. } = e {
            for r in records {
                if r.path.exists() {
                    continue;
                }
                std::fs::create_dir_all(r.path.parent().unwrap()).unwrap();
                let seed = r.scores[0];
                let img = image::RgbImage::from_fn(48, 36, |x, y| {
                    image::Rgb([(x * 5) as u8, (y * 7) as u8, (seed * 255.0) as u8])
                });
                img.save(&r.path).unwrap();
            }
        }
    }
}

/// The synthetic run with every method of the registry (20, more than a
/// short terminal's table holds): method `k` scores as base method `k % 5`,
/// scaled by `1 + k / 100` (the same ranking, another scale).
pub(crate) fn run_events_every_method() -> Vec<Event> {
    let methods: Vec<Method> = gradnorm_core::method::registry::keys()
        .into_iter()
        .map(|k| Method::from_key(k).unwrap())
        .collect();
    let n = methods.len();
    run_events()
        .into_iter()
        .map(|e| match e {
            Event::Started(info) => {
                let mut info = (*info).clone();
                info.methods = methods.clone();
                Event::Started(Arc::new(info))
            }
            Event::Records {
                dataset,
                mut records,
            } => {
                for r in &mut records {
                    let base = r.scores.clone();
                    r.scores = (0..n)
                        .map(|k| base[k % base.len()] * (1.0 + k as f32 / 100.0))
                        .collect();
                }
                Event::Records { dataset, records }
            }
            e => e,
        })
        .collect()
}
