//! `train_log.csv`: one row per logged step with the loss terms and the input-gradient norms.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One logged optimiser step (the columns of `train_log.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    /// Steps completed (1-based).
    pub step: usize,
    /// Fractional epoch reached.
    pub epoch: f64,
    pub lr: f64,
    /// Total loss L.
    pub loss: f64,
    /// Cross-entropy on the ID batch.
    pub ce: f64,
    /// λ_S-weighted energy-margin term (0 when λ_S = 0).
    pub loss_energy: f64,
    /// λ_∇-weighted gradient penalty (0 when λ_∇ = 0).
    pub loss_grad: f64,
    /// Share of the ID batch with S ≤ m_in (penalised by the gradient term).
    pub frac_in_masked: f64,
    /// Share of the auxiliary batch with S ≥ m_out (NaN without auxiliary data).
    pub frac_aux_masked: f64,
    /// Mean ‖∇ₓS‖₂ over the ID batch.
    pub grad_norm_in: f64,
    /// Mean ‖∇ₓS‖₂ over the auxiliary batch (NaN without auxiliary data).
    pub grad_norm_aux: f64,
    /// Training accuracy on the ID batch.
    pub acc: f64,
    /// β-weighted absent-class cross-entropy of the outliers (DOS): a 13th column, present only
    /// in runs with `loss.lambda_absent` > 0, so every other run's log is unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_absent: Option<f64>,
}

/// Appends rows to `train_log.csv`, flushing each one; on resume, keeps only rows before the
/// checkpoint's step so the log of a resumed run equals that of an uninterrupted one.
pub struct TrainLog {
    path: PathBuf,
    writer: csv::Writer<std::fs::File>,
}

impl TrainLog {
    /// Opens the log in `out`; rows with `step > keep_until` are dropped (0 drops all).
    pub fn open(out: &Path, keep_until: usize) -> Result<TrainLog> {
        Self::open_with(out, keep_until, false)
    }

    /// [`TrainLog::open`] with the `loss_absent` column when `absent_class` (DOS runs).
    pub fn open_with(out: &Path, keep_until: usize, absent_class: bool) -> Result<TrainLog> {
        let path = out.join("train_log.csv");
        let mut kept: Vec<LogRow> = vec![];
        if keep_until > 0 && path.exists() {
            let mut r =
                csv::Reader::from_path(&path).map_err(|e| Error::bad_file(&path, e.to_string()))?;
            for row in r.deserialize::<LogRow>() {
                let row = row.map_err(|e| Error::bad_file(&path, e.to_string()))?;
                if row.step <= keep_until {
                    kept.push(row);
                }
            }
        }
        // Rewrite what is kept atomically, then append.
        crate::evidence::write_csv_atomic(&path, |w| {
            if kept.is_empty() {
                let extra = if absent_class {
                    &["loss_absent"][..]
                } else {
                    &[]
                };
                w.write_record(HEADER.iter().chain(extra))
                    .map_err(|e| Error::Internal(e.to_string()))?;
            }
            for r in &kept {
                w.serialize(r).map_err(|e| Error::Internal(e.to_string()))?;
            }
            Ok(())
        })?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(file);
        Ok(TrainLog { path, writer })
    }

    /// Appends one row and flushes it to disk.
    pub fn write(&mut self, row: &LogRow) -> Result<()> {
        self.writer
            .serialize(row)
            .and_then(|_| self.writer.flush().map_err(csv::Error::from))
            .map_err(|e| Error::Internal(format!("writing {}: {e}", self.path.display())))
    }
}

const HEADER: [&str; 12] = [
    "step",
    "epoch",
    "lr",
    "loss",
    "ce",
    "loss_energy",
    "loss_grad",
    "frac_in_masked",
    "frac_aux_masked",
    "grad_norm_in",
    "grad_norm_aux",
    "acc",
];
