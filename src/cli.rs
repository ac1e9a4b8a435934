//! Command-line definitions (clap). Behaviour lives in `commands`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "gradnorm-tui",
    version,
    about = "Out-of-distribution detection with GradNorm (NeurIPS 2021) and its baselines: \
             a terminal UI and a headless engine",
    long_about = None
)]
pub struct Cli {
    /// Configuration file for the TUI (default: ./gradnorm-tui.toml when present, else the demo).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the terminal UI (the default without a command).
    Tui,
    /// Classify images: top-K classes, logits and ||h||_1.
    Predict(PredictArgs),
    /// Evaluate OOD detection: the paper's table, summary.json and scores.csv.
    Eval(EvalArgs),
    /// AUROC, AUPR-In, AUPR-Out and FPR95 of two score files (ID positive).
    Metrics(MetricsArgs),
    /// Train the demo's small BiT on generated shapes (the committed
    /// checkpoints/demo/ weights were made this way).
    TrainDemo(TrainDemoArgs),
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
    /// Input size N (images are resized to N x N); default: the model's.
    #[arg(long)]
    pub image_size: Option<usize>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// f32, bf16 or f16 (reduced precision is for CUDA).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
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
    /// Comma-separated: msp, odin, energy, gradnorm, maxlogit, mahalanobis.
    #[arg(
        long,
        default_value = "msp,odin,energy,gradnorm",
        value_delimiter = ','
    )]
    pub methods: Vec<String>,
    #[arg(long, default_value_t = 1000.0)]
    pub temperature_odin: f64,
    #[arg(long, default_value_t = 0.0)]
    pub epsilon_odin: f64,
    #[arg(long, default_value_t = 1.0)]
    pub temperature_energy: f64,
    #[arg(long, default_value_t = 1.0)]
    pub temperature_gradnorm: f64,
    /// Parameters from `tune-mahalanobis` (needed by --methods mahalanobis).
    #[arg(long)]
    pub mahalanobis_params: Option<PathBuf>,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// At most N images per dataset.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Decoding threads (default: all cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Output folder for summary.json and scores.csv.
    #[arg(long, default_value = "runs/latest")]
    pub out: PathBuf,
    /// Print summary.json to stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Run the embedded demo (model, ID set and OOD sets made by the project).
    #[arg(long)]
    pub demo: bool,
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
    #[arg(long, default_value = crate::demo::CHECKPOINT)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 40)]
    pub epochs: usize,
    /// Seed of the weights, the training images and their order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
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

/// An error in what the user gave (exit code 2), as opposed to a failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
