//! `oodcert metrics`: detection metrics (FPR@TPR, AUROC, AUPR-In/Out, detection error) from a
//! CSV of energy scores. Results go to stdout as `metric,value`; the convention goes to stderr.

use crate::error::{Error, Result};
use crate::metrics::{FprConvention, FprRule, detection_metrics};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Named FPR@TPR conventions (see `metrics::FprConvention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Convention {
    /// ID positive, score -S, first threshold with TPR ≥ t (sklearn roc_curve).
    First,
    /// ID positive, score -S, recall nearest t (energy-OOD/GReg code).
    Nearest,
    /// OOD positive, score S, TPR over OOD (OpenOOD).
    OodPositive,
}

impl From<Convention> for FprConvention {
    fn from(c: Convention) -> Self {
        match c {
            Convention::First => FprConvention::First,
            Convention::Nearest => FprConvention::Nearest,
            Convention::OodPositive => FprConvention::OodPositive,
        }
    }
}

/// Flags of `oodcert metrics`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// CSV with header columns `score` (energy S, larger = more OOD) and `is_id` (1 or 0);
    /// other columns are ignored, in any order.
    #[arg(long, value_name = "FILE.csv")]
    pub scores: PathBuf,
    /// How FPR at the TPR level is read off the ROC curve.
    #[arg(long, value_enum, default_value = "first")]
    pub convention: Convention,
    /// The TPR level t in (0, 1] (0.95 gives FPR@95).
    #[arg(long, default_value_t = 0.95)]
    pub tpr: f64,
}

/// Reads the scores, computes the metrics and prints `metric,value` rows to stdout.
pub fn run(args: Args) -> Result<()> {
    if !(args.tpr > 0.0 && args.tpr <= 1.0) {
        return Err(Error::BadInput(format!(
            "--tpr {}: the TPR level must lie in (0, 1]",
            args.tpr
        )));
    }
    let (scores, is_id) = read_scores_csv(&args.scores)?;
    let n_id = is_id.iter().filter(|&&b| b).count();
    let n_ood = is_id.len() - n_id;
    if n_id == 0 || n_ood == 0 {
        let only = if n_id == 0 {
            "OOD (is_id=0)"
        } else {
            "ID (is_id=1)"
        };
        return Err(Error::bad_file(
            &args.scores,
            format!("only {only} rows; need both ID and OOD samples"),
        ));
    }
    let rule = FprRule {
        convention: args.convention.into(),
        tpr: args.tpr,
    };
    let m = detection_metrics(&scores, &is_id, rule)?;
    eprintln!(
        "oodcert metrics: {n_id} ID + {n_ood} OOD scores from {}; {} = FPR at t = {} ({}); \
         AUROC, AUPR and detection error do not depend on the convention",
        args.scores.display(),
        fpr_label(args.tpr),
        args.tpr,
        rule.convention.describe()
    );
    let out = format!(
        "metric,value\n{},{}\nauroc,{}\naupr_in,{}\naupr_out,{}\ndetection_error,{}\n",
        fpr_label(args.tpr),
        m.fpr_at_tpr,
        m.auroc,
        m.aupr_in,
        m.aupr_out,
        m.detection_error
    );
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .map_err(|e| Error::io("writing the metrics to stdout", e))
}

/// Row name of the FPR: `fpr95` for t = 0.95, `fpr97.5` for t = 0.975.
fn fpr_label(t: f64) -> String {
    format!("fpr{}", (t * 1e11).round() / 1e9)
}

/// Position of the column called `name` in the header; errors if absent or repeated.
fn column(path: &Path, header: &csv::StringRecord, name: &str) -> Result<usize> {
    let mut found = header.iter().enumerate().filter(|(_, h)| *h == name);
    match (found.next(), found.next()) {
        (Some((i, _)), None) => Ok(i),
        (Some(_), Some(_)) => Err(Error::bad_file(
            path,
            format!("column `{name}` appears more than once in the header"),
        )),
        (None, _) => Err(Error::bad_file(
            path,
            format!(
                "missing column `{name}` (header: {})",
                header.iter().collect::<Vec<_>>().join(",")
            ),
        )),
    }
}

/// Reads (score, is_id) pairs; every malformed value is a one-line error naming file and line.
pub fn read_scores_csv(path: &Path) -> Result<(Vec<f64>, Vec<bool>)> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(std::io::BufReader::new(file));
    let csv_error = |e: csv::Error| Error::bad_file(path, e.to_string().replace('\n', " "));
    let header = reader.headers().map_err(csv_error)?.clone();
    let score_col = column(path, &header, "score")?;
    let id_col = column(path, &header, "is_id")?;
    let (mut scores, mut is_id) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |col: usize, name: &str| {
            record
                .get(col)
                .ok_or_else(|| Error::bad_file(path, format!("line {line}: no `{name}` value")))
        };
        let raw = field(score_col, "score")?;
        let score: f64 = raw.parse().map_err(|_| {
            Error::bad_file(path, format!("line {line}: score `{raw}` is not a number"))
        })?;
        if !score.is_finite() {
            return Err(Error::bad_file(
                path,
                format!("line {line}: score is {score}; scores must be finite"),
            ));
        }
        let flag = match field(id_col, "is_id")? {
            "1" => true,
            "0" => false,
            other => {
                return Err(Error::bad_file(
                    path,
                    format!("line {line}: is_id `{other}` must be 1 (ID) or 0 (OOD)"),
                ));
            }
        };
        scores.push(score);
        is_id.push(flag);
    }
    Ok((scores, is_id))
}
