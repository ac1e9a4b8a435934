//! Command-line definitions (clap). Behaviour lives in `commands`.

use clap::{Args, Parser, Subcommand};
use gradnorm_core::run::{Batch, DType, Device, ImageSize, Limit, Workers};
use std::path::{Path, PathBuf};

/// The exit statuses, shown by `--help` (and in the README).
pub const EXIT_STATUS: &str =
    "Exit status: 0 success; 1 error (a file that cannot be read, a run that \
evaluated nothing, an internal error); 2 usage error (a bad flag, argument or config value); \
130 interrupted by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP (eval writes and prints what was \
computed before it stops). Logs: $GRADNORM_LOG, else the platform's state folder \
(~/.local/state/gradnorm-tui/gradnorm-tui.log on Linux).";

#[derive(Debug, Parser)]
#[command(
    name = "gradnorm-tui",
    version,
    about = "Out-of-distribution detection with GradNorm (NeurIPS 2021) and its baselines: \
             a terminal UI and a headless engine",
    long_about = None,
    after_help = EXIT_STATUS
)]
pub struct Cli {
    /// The TUI's flags, which also open it without the `tui` command.
    #[command(flatten)]
    pub tui: TuiArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the terminal UI (the default without a command).
    Tui(TuiArgs),
    /// Classify images: top-K classes, logits and ||h||_1.
    Predict(PredictArgs),
    /// Evaluate OOD detection: the paper's table, summary.json and scores.csv.
    Eval(Box<EvalArgs>),
    /// AUROC, AUPR-In, AUPR-Out and FPR95 of two score files (ID positive).
    Metrics(MetricsArgs),
    /// Train the demo's small BiT on generated shapes (the committed
    /// checkpoints/demo/ weights were made this way).
    TrainDemo(TrainDemoArgs),
    /// Throughput: decoding, the forward pass, and end to end with the chosen
    /// methods (random weights of --model without --checkpoint).
    Bench(BenchArgs),
    /// Fit Mahalanobis class means and precisions, tune its regression and
    /// magnitude as the seed does, and write the parameters file.
    TuneMahalanobis(TuneMahalanobisArgs),
    /// The run store: list runs, show one, remove one.
    Runs(RunsArgs),
    /// A stored run's table (md, latex, csv, json), per-image scores, plots,
    /// or two runs' metric deltas.
    Report(ReportArgs),
    /// Join the shards of `eval --shard i/n` runs into one run.
    Merge(MergeArgs),
    #[command(about = fit_about())]
    Fit(FitArgs),
    /// The weights GradNorm's `layer=` accepts (name, shape, parameters), in
    /// forward order, the head last.
    Layers(LayersArgs),
    /// Parity checks against the seed's outputs on the tiny BiT fixture, on
    /// any device (for machines without Rust; see README "Speed").
    #[command(hide = true)]
    Selftest(SelftestArgs),
}

#[derive(Debug, Args)]
pub struct LayersArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// One JSON object per layer and line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TuiArgs {
    /// Configuration file for the TUI (default: ./gradnorm-tui.toml when present, else the demo).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run store folder: runs started here are recorded there and the Runs
    /// screen lists it (default: the config file's `store` key, else ./runs).
    #[arg(long)]
    pub store: Option<PathBuf>,
}

/// Which model to run and where.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Checkpoint: the seed's .pth(.tar), Google's BiT .npz, or .safetensors.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Model name (e.g. BiT-S-R101x1, efficientnet-lite0); checked against the checkpoint.
    #[arg(long)]
    pub model: Option<String>,
    /// Input size N; default: the model's. Squash-resized models resize to
    /// N x N; torchvision's crop N after resizing the shorter side to
    /// floor(N / 0.875).
    #[arg(long)]
    pub image_size: Option<ImageSize>,
    /// Preprocessing: seed (resize N x N, mean/std 0.5) or torchvision
    /// (shorter side floor(N / 0.875), centre crop N, ImageNet mean/std);
    /// default: the model's own.
    #[arg(long)]
    pub preprocess: Option<gradnorm_core::run::Preprocess>,
    #[command(flatten)]
    pub on: DeviceArgs,
}

/// Where the model runs, and in which precision.
#[derive(Debug, Clone, Copy, Args)]
pub struct DeviceArgs {
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: Device,
    /// f32, bf16 or f16 (reduced precision is for CUDA).
    #[arg(long, default_value = "f32")]
    pub dtype: DType,
}

/// ODIN's legacy flags (`--methods odin:temperature=T:epsilon=E` overrides
/// them); unset, the registry's defaults hold.
#[derive(Debug, Clone, Copy, Args)]
pub struct OdinArgs {
    /// ODIN's temperature (default: the registry's, see --methods).
    #[arg(long)]
    pub temperature_odin: Option<f64>,
    /// ODIN's input perturbation (default: the registry's).
    #[arg(long)]
    pub epsilon_odin: Option<f64>,
}

/// Labelled ID training images (`tune-mahalanobis`, `fit`).
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Labelled ID training images: a list file (`path label` lines) or an
    /// ImageFolder root; repeat to pool several. Labels in the model's order.
    #[arg(long, required = true)]
    pub train: Vec<PathBuf>,
    /// Root for the training list files' paths (default: each list's folder).
    #[arg(long)]
    pub train_root: Option<PathBuf>,
}

/// How many threads decode images.
#[derive(Debug, Clone, Copy, Args)]
pub struct WorkersArgs {
    /// Decoding threads (default: all cores).
    #[arg(long)]
    pub workers: Option<Workers>,
}

impl WorkersArgs {
    /// The thread count, 0 for all cores.
    pub fn threads(&self) -> usize {
        self.workers.map_or(0, |w| w.get())
    }
}

/// Class names and order.
#[derive(Debug, Clone, Args)]
pub struct ClassArgs {
    /// Class names, one per line ("wnid name" lines are accepted); default: ImageNet's for 1,000 classes.
    #[arg(long)]
    pub classes: Option<PathBuf>,
    /// The model's class order as wnids (one per line, or a list file
    /// `dir/WNID/file LABEL` such as the seed's val list).
    #[arg(long)]
    pub class_order: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub classes: ClassArgs,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// One JSON object per image and line.
    #[arg(long)]
    pub json: bool,
    /// Images to classify.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub classes: ClassArgs,
    /// ID set: a list file (`path label` lines), an ImageFolder root or a folder.
    #[arg(long)]
    pub id: Option<PathBuf>,
    /// Root for the ID list file's paths (default: the list file's folder).
    #[arg(long)]
    pub id_root: Option<PathBuf>,
    /// OOD set as NAME=PATH (a folder, an ImageFolder root or a list file); repeatable.
    #[arg(long, value_name = "NAME=PATH")]
    pub ood: Vec<String>,
    /// A group of --ood sets averaged together beside the overall average,
    /// as OpenOOD's near and far (e.g. `--group near=scenes
    /// --group far=textures,cifar10`); repeatable.
    #[arg(long, value_name = "GROUP=SET,...", conflicts_with = "benchmark")]
    pub group: Vec<String>,
    #[arg(long, value_delimiter = ',', help = methods_help())]
    pub methods: Vec<String>,
    #[command(flatten)]
    pub odin: OdinArgs,
    /// Energy's temperature (default: the registry's).
    #[arg(long)]
    pub temperature_energy: Option<f64>,
    /// GradNorm's temperature (default: the registry's).
    #[arg(long)]
    pub temperature_gradnorm: Option<f64>,
    /// Parameters from `tune-mahalanobis` (needed by --methods mahalanobis).
    #[arg(long)]
    pub mahalanobis_params: Option<PathBuf>,
    #[arg(long, help = fit_file_help())]
    pub fit: Option<PathBuf>,
    /// Images per batch.
    #[arg(long, default_value = "64")]
    pub batch: Batch,
    /// At most N images per dataset.
    #[arg(long)]
    pub limit: Option<Limit>,
    #[command(flatten)]
    pub workers: WorkersArgs,
    /// Output folder for summary.json and scores.csv (default: `latest`
    /// inside the run store, e.g. runs/latest).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print summary.json to stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Run the embedded demo (model, ID set and OOD sets made by the project).
    #[arg(long)]
    pub demo: bool,
    /// Run store folder: the run is recorded there batch by batch, and a
    /// rerun of the same configuration continues from it (default: the
    /// --config file's `store` key, else ./runs).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Record nothing (and reuse nothing).
    #[arg(long, conflicts_with = "shard")]
    pub no_store: bool,
    /// Evaluate the i-th of n disjoint slices of every set (i from 0; `n/n`
    /// counts as `0/n`); join the shards with `merge`.
    #[arg(long, value_name = "i/n", value_parser = gradnorm_core::run::Shard::parse)]
    pub shard: Option<gradnorm_core::run::Shard>,
    /// Run a config file (the TUI's TOML) instead of --checkpoint/--id/--ood.
    #[arg(long, conflicts_with_all = ["demo", "checkpoint", "id", "ood"])]
    pub config: Option<PathBuf>,
    /// A benchmark's sets instead of --id/--ood, read from its own files
    /// under --data-root: openood-imagenet (OpenOOD v1.5 ImageNet-1k: ID
    /// imagenet; near ssb_hard, ninco; far inaturalist, textures,
    /// openimage_o) or openood-imagenet200 (the same OOD sets).
    #[arg(long, conflicts_with_all = ["demo", "id", "id_root", "ood", "config"], requires = "data_root")]
    pub benchmark: Option<gradnorm_core::run::Benchmark>,
    /// The benchmark's data folder (OpenOOD's `data`: benchmark_imglist/,
    /// images_largescale/ and, for Textures, images_classic/).
    #[arg(long, requires = "benchmark")]
    pub data_root: Option<PathBuf>,
    /// The convention of the printed table (and of --json's first
    /// figures): paper (ID positive) or openood (OOD positive, scores
    /// negated, as OpenOOD's evaluator); summary.json holds both.
    #[arg(long, default_value = "paper")]
    pub convention: gradnorm_core::metrics::Convention,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Run store folder (default: `gradnorm-tui --store DIR runs`'s, else ./runs).
    #[arg(long, global = true)]
    pub store: Option<PathBuf>,
    /// JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<RunsCommand>,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// One run: config, datasets, state and its table.
    Show {
        /// Run id or `latest`.
        id: String,
    },
    /// Delete a run (its image records stay as a cache for later runs).
    Rm {
        /// Run id or `latest`.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run store folder (default: `gradnorm-tui --store DIR report`'s, else ./runs).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Run id or `latest`; a second id compares the two (deltas second - first).
    #[arg(required = true, num_args = 1..=2)]
    pub ids: Vec<String>,
    #[arg(long, value_enum, default_value_t = gradnorm_engine::store::export::Format::Md)]
    pub format: gradnorm_engine::store::export::Format,
    /// Also write per-image rows (dataset, path, label, top-1, every score) to FILE.csv or FILE.parquet.
    #[arg(long)]
    pub scores: Option<PathBuf>,
    /// Also write plots (PNG and SVG) into DIR: score histograms, ROC curves, GradNorm's anatomy.
    #[arg(long)]
    pub plots: Option<PathBuf>,
    /// The convention of the table: paper (ID positive) or openood (OOD
    /// positive, scores negated, as OpenOOD's evaluator).
    #[arg(long, default_value = "paper")]
    pub convention: gradnorm_core::metrics::Convention,
}

// Help texts that name methods read the registry, so a new method is
// listed without editing them.
fn methods_help() -> String {
    use gradnorm_core::method::registry::{keys, DEFAULT_METHODS};
    format!(
        "Comma-separated specs `KEY[:PARAM=VALUE[|VALUE...]]...`, e.g. \
         `msp,odin:temperature=1000:epsilon=0.002,react:percentile=85|90` (alternatives are \
         evaluated from the same pass, one row each). Keys: {}. Default: the paper's {}; \
         with --demo every method the demo can run",
        keys().join(", "),
        DEFAULT_METHODS.join(", ")
    )
}

fn fit_file_help() -> String {
    format!(
        "Fit file from `gradnorm-tui fit` (needed by {})",
        gradnorm_core::method::registry::fitted_keys().join(", ")
    )
}

fn fit_about() -> String {
    format!(
        "One pass over labelled ID images storing what the fit-based methods ({}) need",
        gradnorm_core::method::registry::fitted_keys().join(", ")
    )
}

/// The store a command reads: its `--store` (or the one given before the
/// command, `gradnorm-tui --store DIR runs`, which main passes down), else
/// ./runs.
pub fn store_dir(given: Option<&Path>) -> PathBuf {
    given.map_or_else(
        || PathBuf::from(gradnorm_engine::store::DEFAULT_DIR),
        Path::to_path_buf,
    )
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Store folder that receives the merged run (may be one of the sources).
    #[arg(long)]
    pub into: PathBuf,
    /// Store folders holding the shards.
    #[arg(required = true)]
    pub sources: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// ID scores, one number per line.
    #[arg(long)]
    pub id: PathBuf,
    /// OOD scores, one number per line.
    #[arg(long)]
    pub ood: PathBuf,
    /// Print {"auroc","aupr_in","aupr_out","fpr95"} as fractions.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TrainDemoArgs {
    /// Where to write the weights (safetensors, f16).
    #[arg(long, default_value = gradnorm_engine::demo::CHECKPOINT)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 40)]
    pub epochs: usize,
    /// Seed of the weights, the training images and their order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: Device,
    /// Training images per class and epoch, new ones every epoch (drawn in
    /// memory; 100 more per class are held out).
    #[arg(long, default_value_t = 150)]
    pub per_class: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Peak learning rate of AdamW (warm-up, then cosine decay).
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Stop after N optimizer steps.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Skip the OOD measurement after training.
    #[arg(long)]
    pub no_check: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The checkpoint timed, else random weights of --model.
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, default_value = "32")]
    pub batch: Batch,
    /// Methods timed end to end (comma-separated; default: the paper's,
    /// as `eval`).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    #[command(flatten)]
    pub odin: OdinArgs,
    /// Parameters for --methods mahalanobis (default: synthetic Gaussians of
    /// the model's shapes, magnitude 0.001: the same cost, for timing).
    #[arg(long)]
    pub mahalanobis_params: Option<PathBuf>,
    /// A fit file (`gradnorm-tui fit`) for the fit-based methods, made for
    /// this model at this --image-size.
    #[arg(long)]
    pub fit: Option<PathBuf>,
    /// `synthetic` (random inputs made in memory) or a folder / list file of images.
    #[arg(long, default_value = "synthetic")]
    pub source: String,
    /// Images per measurement.
    #[arg(long, default_value_t = 256)]
    pub images: usize,
    #[command(flatten)]
    pub workers: WorkersArgs,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SelftestArgs {
    /// Folder holding tiny.pth.tar and tiny_expected.safetensors (../shared/fixtures/bit).
    #[arg(long)]
    pub fixtures: PathBuf,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: Device,
}

#[derive(Debug, Args)]
pub struct TuneMahalanobisArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// For the class means and covariance (the seed: the ImageNet train list).
    #[command(flatten)]
    pub train: TrainArgs,
    /// At most N training images (from the first --train on).
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Labelled ID validation images: the first --tune-count train the
    /// regression, the next --tune-count validate it (the seed: the val list).
    #[arg(long)]
    pub val: PathBuf,
    /// Root for the validation list's paths (default: the list's folder).
    #[arg(long)]
    pub val_root: Option<PathBuf>,
    /// Images in each half of the tuning (the seed: 500).
    #[arg(long, default_value_t = 500)]
    pub tune_count: usize,
    /// Clamp of the FGSM "OOD" images: `unit` clamps to [0, 1] in the
    /// normalized input space (the seed's quirk), `valid` to the range of
    /// real images after normalization, `none` leaves them.
    #[arg(long, value_enum, default_value_t = FgsmClampArg::Unit)]
    pub fgsm_clamp: FgsmClampArg,
    /// Where to write the parameters (safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the tuning's layer scores (JSON: per magnitude, the
    /// train/val ID/FGSM rows), e.g. to refit the regression elsewhere.
    #[arg(long)]
    pub scores_out: Option<PathBuf>,
    /// Images per batch.
    #[arg(long, default_value = "32")]
    pub batch: Batch,
    #[command(flatten)]
    pub workers: WorkersArgs,
}

#[derive(Debug, Args)]
pub struct FitArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub train: TrainArgs,
    /// At most N images, evenly spaced over the list.
    #[arg(long)]
    pub limit: Option<usize>,
    /// At most N features kept for KNN, ReAct's percentile, ViM's alpha,
    /// GROOD's index and LowDim-Grad's statistics and neighbours (evenly
    /// spaced; exact while the set is no larger; LowDim-Grad's cost per
    /// image grows with it).
    #[arg(long, default_value_t = gradnorm_engine::score::fit::DEFAULT_BANK)]
    pub bank: usize,
    /// At most N images whose per-neuron states NAC-UE keeps (evenly
    /// spaced; each takes a backward pass); 0 keeps none.
    #[arg(long, default_value_t = gradnorm_engine::score::nac::DEFAULT_FIT_ROWS)]
    pub nac_rows: usize,
    /// Where to write the fit (safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Images per batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[command(flatten)]
    pub workers: WorkersArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FgsmClampArg {
    Unit,
    Valid,
    None,
}

/// An error in what the user gave (exit code 2), as opposed to a failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
