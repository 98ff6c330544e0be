//! `oodcert reproduce`: the main job. Fetches the data, pre-trains a classifier with cross-entropy,
//! fine-tunes it with the energy loss and with GReg from the same checkpoint, evaluates all three as
//! OOD detectors and writes a comparison; every stage leaves its own outputs and manifest. A killed
//! run resumes from the stages' checkpoints. `--preset` picks the protocol (preset.rs);
//! `--manifest FILE` re-runs one recorded run instead (rerun.rs).

pub mod preset;
pub mod rerun;

pub use preset::{Preset, Protocol, Stage};

use crate::error::{Error, Result};
use crate::evaluation::{EvalConfig, evaluate, mean_energy_grad_norm};
use crate::evidence::{write_atomic, write_csv_atomic};
use crate::metrics::FprRule;
use crate::model::{Classifier, Model};
use crate::score::ScoreKind;
use crate::train::TrainConfig;
use clap::Parser;
use std::path::{Path, PathBuf};

const DEFAULT_OUT: &str = "runs/reproduce";
/// Test OOD sets: never used for training (the auxiliary set is Fashion-MNIST's train split).
const OOD_SETS: [&str; 6] = [
    "animal-mnist:test",
    "textures:test",
    "lfw:test",
    "digits8:test",
    "noise-gauss:test",
    "noise-uniform:test",
];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output folder for every stage.
    #[arg(long, default_value = DEFAULT_OUT)]
    pub out: PathBuf,
    /// Seed of every stage.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Override a key of every training stage (repeatable), e.g. `train.max_steps=100`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Data directory (default: $OODCERT_DATA or data/ at the repository root).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Evaluate on at most N images per set (0 = all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// cpu, or cuda[:N] in a binary built with `--features cuda`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long)]
    pub quiet: bool,
    /// Stop after the evaluation (no Lipschitz bounds, smoothing certificates, verification or
    /// report).
    #[arg(long)]
    pub skip_certificates: bool,
    /// Instead of the main job: re-run the command recorded in this manifest.json into `--out`
    /// (default: `reproduced/` beside it) and compare every output's SHA-256 (exit 1 on a difference).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Samples certified per dataset by the Lipschitz and smoothing stages (default: the
    /// preset's: 20 and 20 for quick, 50 and 500 for paper).
    #[arg(long)]
    pub certify_limit: Option<usize>,
    /// The protocol: quick (CPU, minutes) or paper (GPU-sized; see README "Presets").
    #[arg(long, value_enum, default_value = "quick")]
    pub preset: Preset,
}

pub fn run(a: Args) -> Result<()> {
    if let Some(m) = &a.manifest {
        let out = if a.out == Path::new(DEFAULT_OUT) {
            m.parent().unwrap_or(Path::new(".")).join("reproduced")
        } else {
            a.out.clone()
        };
        return rerun::rerun(m, &out);
    }
    let protocol = a.preset.protocol();
    let t0 = std::time::Instant::now();
    let device = crate::device::parse_device(&a.device)?;
    let root = a
        .data_dir
        .clone()
        .unwrap_or_else(crate::data::default_data_dir);
    eprintln!("oodcert reproduce: data → {}", root.display());
    for (src, outcome) in crate::data::fetch(&root, &[])? {
        eprintln!("  {src}: {outcome:?}");
    }
    let mut summary = vec![];
    for st in &protocol.stages {
        let dir = a.out.join(st.name);
        eprintln!("oodcert reproduce: train {} → {}", st.name, dir.display());
        let cfg_path = a.out.join("configs").join(format!("{}.toml", st.name));
        write_atomic(&cfg_path, st.config.as_bytes())?;
        let mut sets = vec![format!("seed={}", a.seed)];
        if let Some(from) = st.init_from {
            sets.push(format!(
                "model.init_from={}",
                model_path(&a.out, from).display()
            ));
        }
        sets.extend(a.set.iter().cloned());
        let cfg = TrainConfig::load(&cfg_path, &sets)?;
        let model_file = model_path(&a.out, st.name);
        // A stage is reused only if it ran with this configuration from these initial weights.
        let init_sha = match &cfg.model.init_from {
            Some(p) => Some(crate::evidence::sha256_file(Path::new(p))?),
            None => None,
        };
        let done = crate::evidence::Manifest::read(&dir.join("manifest.json")).is_ok_and(|m| {
            let same_init = init_sha.as_ref().is_none_or(|h| {
                m.datasets
                    .iter()
                    .any(|d| d.role == "initial-weights" && &d.sha256 == h)
            });
            m.config == crate::cli::train::manifest_config(&cfg, &cfg_path)
                && same_init
                && model_file.exists()
        });
        if done {
            eprintln!(
                "  done already with this configuration ({})",
                model_file.display()
            );
        } else {
            // Resume a killed stage, but never from a checkpoint of another configuration.
            if crate::train::checkpoint::recorded_config(&dir)
                .is_some_and(|c| c != crate::train::config_sha256(&cfg))
            {
                eprintln!("  configuration changed: starting {} afresh", dir.display());
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
            }
            // Recorded as the equivalent `oodcert train` command, so `--manifest` can re-run it.
            let mut argv = vec!["train".to_string(), "--config".into(), path_arg(&cfg_path)];
            for s in &sets {
                argv.extend(["--set".to_string(), s.clone()]);
            }
            argv.extend([
                "--out".to_string(),
                path_arg(&dir),
                "--data-dir".into(),
                path_arg(&root),
                "--device".into(),
                a.device.clone(),
                "--resume".into(),
            ]);
            if a.quiet {
                argv.push("--quiet".into());
            }
            rerun::recording(&argv, || {
                crate::cli::train::run_config(&cfg, &cfg_path, &dir, &root, &device, true, a.quiet)
            })?;
        }
        summary.push((st.name, model_file));
    }
    eprintln!(
        "oodcert reproduce: evaluate against {}",
        OOD_SETS.join(", ")
    );
    let rule = FprRule::FPR95;
    let mut rows = vec![];
    let mut tables = String::new();
    for (name, model_file) in &summary {
        let cfg = EvalConfig {
            model: model_file.clone(),
            id: "mnist:test".into(),
            ood: OOD_SETS.iter().map(|s| s.to_string()).collect(),
            score: ScoreKind::Energy,
            temperature: 1.0,
            rule,
            limit: a.limit,
            subset: Default::default(),
            batch_size: 500,
            data_root: root.clone(),
            out: a.out.join(format!("eval-{name}")),
            progress: !a.quiet,
        };
        let mut argv: Vec<String> = [
            "eval",
            "--model",
            &path_arg(model_file),
            "--id",
            "mnist:test",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        argv.extend(["--ood".into(), OOD_SETS.join(",")]);
        argv.extend([
            "--limit".into(),
            a.limit.to_string(),
            "--batch-size".into(),
            "500".into(),
            "--data-dir".into(),
            path_arg(&root),
            "--out".into(),
            path_arg(&cfg.out),
            "--device".into(),
            a.device.clone(),
        ]);
        if a.quiet {
            argv.push("--quiet".into());
        }
        let report = rerun::recording(&argv, || evaluate(&cfg, &device))?;
        let model = Model::load(model_file, &device)?;
        let shape = model.spec().input_shape;
        // Gradient norms over a stratified 1000-image subset of each set (seed 0).
        let grad_sample = |spec: &str| -> Result<crate::data::Dataset> {
            let d = crate::data::load_as(spec, &root, shape)?;
            let idx = crate::data::subset::SubsetSpec::default().indices(&d.labels, 1000);
            crate::data::subset::select(&d, &idx)
        };
        let grad_id =
            mean_energy_grad_norm(&model, &grad_sample("mnist:test")?, 1.0, 0, 250, &device)?;
        let mut grad_ood = 0.0;
        for s in OOD_SETS {
            grad_ood += mean_energy_grad_norm(&model, &grad_sample(s)?, 1.0, 0, 250, &device)?;
        }
        grad_ood /= OOD_SETS.len() as f64;
        tables += &format!("== {name} ==\n{}", report.table(rule, ScoreKind::Energy));
        tables +=
            &format!("mean |∇x S|_2: ID {grad_id:.4}, OOD (mean over sets) {grad_ood:.4}\n\n");
        for r in &report.rows {
            rows.push(vec![
                name.to_string(),
                r.ood.clone(),
                r.metrics.fpr_at_tpr.to_string(),
                r.metrics.auroc.to_string(),
                r.metrics.aupr_in.to_string(),
                r.metrics.aupr_out.to_string(),
                report.id_accuracy.map_or(String::new(), |v| v.to_string()),
                grad_id.to_string(),
                grad_ood.to_string(),
            ]);
        }
    }
    write_csv_atomic(&a.out.join("summary.csv"), |w| {
        let e = |e: csv::Error| Error::Internal(e.to_string());
        w.write_record([
            "model",
            "ood",
            "fpr95",
            "auroc",
            "aupr_in",
            "aupr_out",
            "id_accuracy",
            "grad_norm_id",
            "grad_norm_ood",
        ])
        .map_err(e)?;
        for r in &rows {
            w.write_record(r).map_err(e)?;
        }
        Ok(())
    })?;
    write_atomic(&a.out.join("summary.txt"), tables.as_bytes())?;
    print!("{tables}");
    if !a.skip_certificates {
        certificates(&a, &protocol, &root)?;
    }
    eprintln!(
        "oodcert reproduce: done in {:.0}s; outputs under {} (summary.csv, summary.txt, one folder per stage with manifest.json)",
        t0.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}

/// Runs a subcommand through the same parser as the command line.
/// Its manifests record `oodcert ARGS…` as their command line (not `oodcert reproduce`).
fn subcommand(args: &[String]) -> Result<()> {
    let argv = std::iter::once("oodcert".to_string()).chain(args.iter().cloned());
    let cli = crate::cli::Cli::try_parse_from(argv)
        .map_err(|e| Error::Internal(format!("reproduce built a bad command line: {e}")))?;
    rerun::recording(args, || crate::cli::run(cli))
}

/// A path as a command-line argument.
fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// The certificate stages: Lipschitz bounds and radii, randomized-smoothing certificates, attacks
/// on both, paired claims on the radii (greg against energy), and the report over everything.
fn certificates(a: &Args, p: &Protocol, root: &Path) -> Result<()> {
    let s = |p: &Path| p.display().to_string();
    let data_dir = s(root);
    let lim = a.certify_limit.unwrap_or(p.certify_limit).to_string();
    let lip_lim = a.certify_limit.unwrap_or(p.lipschitz_limit).to_string();
    let id_val_limit = p.lipschitz_id_val_limit.to_string();
    let (lip_steps, lip_restarts) = (
        p.verify_lipschitz.0.to_string(),
        p.verify_lipschitz.1.to_string(),
    );
    let (sm_steps, sm_restarts, sm_fresh) = (
        p.verify_smoothing.0.to_string(),
        p.verify_smoothing.1.to_string(),
        p.verify_smoothing.2.to_string(),
    );
    let (n0, n, cal_limit) = (
        p.smoothing_n0.to_string(),
        p.smoothing_n.to_string(),
        p.smoothing_cal_limit.to_string(),
    );
    let stage = |what: &str, args: Vec<String>| -> Result<()> {
        eprintln!("oodcert reproduce: {what}");
        subcommand(&args)
    };
    for name in ["energy", "greg"] {
        let model = s(&model_path(&a.out, name));
        let lip = a.out.join(format!("lipschitz-{name}"));
        let mut args: Vec<String> = [
            "lipschitz",
            "--model",
            &model,
            "--data",
            "mnist:test",
            "--norm",
            "l2",
            "--eps",
            "0.3",
            "--bounds",
            "crown",
            "--limit",
            &lip_lim,
            "--id-val-limit",
            &id_val_limit,
            "--out",
            &s(&lip),
            "--data-dir",
            &data_dir,
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        if a.quiet {
            args.push("--quiet".into());
        }
        stage(
            &format!("Lipschitz bounds of {name} (ℓ2, ε = 0.3, CROWN)"),
            args,
        )?;
        stage(
            &format!("verify the Lipschitz certificates of {name}"),
            [
                "verify",
                "--run",
                &s(&lip),
                "--steps",
                &lip_steps,
                "--restarts",
                &lip_restarts,
                "--data-dir",
                &data_dir,
            ]
            .iter()
            .map(|x| x.to_string())
            .collect(),
        )?;
        let cert = a.out.join(format!("certify-{name}"));
        stage(
            &format!("randomized smoothing of {name} (σ = 0.25)"),
            [
                "certify",
                "--model",
                &model,
                "--data",
                "mnist:test",
                "--ood",
                "animal-mnist:test",
                "--ood",
                "textures:test",
                "--sigma",
                "0.25",
                "--n0",
                &n0,
                "--n",
                &n,
                "--alpha",
                "0.001",
                "--limit",
                &lim,
                "--cal-limit",
                &cal_limit,
                "--out",
                &s(&cert),
                "--data-dir",
                &data_dir,
                "--device",
                &a.device,
            ]
            .iter()
            .map(|x| x.to_string())
            .collect(),
        )?;
        stage(
            &format!("verify the smoothing certificates of {name}"),
            [
                "verify",
                "--run",
                &s(&cert),
                "--model",
                &model,
                "--steps",
                &sm_steps,
                "--restarts",
                &sm_restarts,
                "--n-fresh",
                &sm_fresh,
                "--data-dir",
                &data_dir,
            ]
            .iter()
            .map(|x| x.to_string())
            .collect(),
        )?;
    }
    // "GReg gives larger certified radii", decided per image (paired: the same images in both
    // runs) for each certificate, and shown as the report's verdict table.
    let mut claims = Vec::new();
    for (kind, runs, certs) in [
        ("smoothing", "certify", ["radius", "radius_score"]),
        (
            "lipschitz",
            "lipschitz",
            ["radius_bound_prop", "radius_lipschitz"],
        ),
    ] {
        for cert in certs {
            let dir = a.out.join("claims").join(format!("{kind}-{cert}"));
            stage(
                &format!("paired claim: {cert} of greg against energy"),
                [
                    "claims",
                    "--baseline",
                    "energy",
                    "--arm",
                    "greg",
                    "--radius",
                    cert,
                    "--paired-baseline",
                    &s(&a.out.join(format!("{runs}-energy"))),
                    "--paired-arm",
                    &s(&a.out.join(format!("{runs}-greg"))),
                    "--out",
                    &s(&dir),
                ]
                .iter()
                .map(|x| x.to_string())
                .collect(),
            )?;
            claims.push(s(&dir.join("paired_claims.csv")));
        }
    }
    let report = a.out.join("report");
    let mut args: Vec<String> = vec![
        "report".into(),
        "--runs".into(),
        s(&a.out),
        "--out".into(),
        s(&report),
        "--claims".into(),
    ];
    args.extend(claims);
    stage("report", args)?;
    eprintln!(
        "oodcert reproduce: report in {} (and report.md)",
        report.join("index.html").display()
    );
    Ok(())
}

fn model_path(out: &Path, stage: &str) -> PathBuf {
    out.join(stage).join("model.safetensors")
}
