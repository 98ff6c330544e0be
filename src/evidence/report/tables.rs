//! Summary tables: one per run kind, one row per run (train), per run × OOD set (eval), per
//! run × certificate (certify), per run × ε × OOD set × variant (guaranteed) or per run ×
//! quantity (lipschitz); each row starts with the run's
//! label, its path and the SHA-256 of its `manifest.json`.

use super::discover::{Run, RunKind};
use crate::error::{Error, Result};
use crate::evidence::CsvTable;
use crate::evidence::write_csv_atomic;
use std::path::{Path, PathBuf};

/// The provenance columns every summary row starts with.
pub const PROVENANCE: [&str; 3] = ["run", "path", "manifest_sha256"];

/// Columns of the eval table after the provenance columns (copied from `metrics.csv`).
pub const EVAL_COLUMNS: [&str; 12] = crate::evaluation::METRICS_COLUMNS;

/// Columns of the train table after the provenance columns (the last row of `train_log.csv`).
pub const TRAIN_COLUMNS: [&str; 10] = [
    "step",
    "epoch",
    "loss",
    "ce",
    "loss_energy",
    "loss_grad",
    "acc",
    "grad_norm_in",
    "grad_norm_aux",
    "n_logged",
];

/// Columns of the certify table after the provenance columns (from `curves.csv`, `certify.csv`
/// and the manifest). `*_r0` are the values at radius 0; `radius_half_*` is the largest grid
/// radius r with at least half of the ID (OOD) samples certified at radius ≥ r, a lower bound on
/// the median certified radius to within the grid step; empty when fewer than half are certified.
pub const CERTIFY_COLUMNS: [&str; 11] = [
    "certificate",
    "sigma",
    "n_id",
    "n_ood",
    "certified_id_rate_r0",
    "certified_ood_rate_r0",
    "guaranteed_fpr95_r0",
    "guaranteed_auroc_r0",
    "radius_half_id",
    "radius_half_ood",
    "max_radius",
];

/// Columns of the guaranteed table after the provenance columns (the rows of `guaranteed.csv`).
pub const GUARANTEED_COLUMNS: [&str; 8] = [
    "norm", "eps", "ood", "variant", "auroc", "fpr95", "n_id", "n_ood",
];

/// Columns of the lipschitz table after the provenance columns (`summary.csv` rows, with the
/// ball and ε from the manifest).
pub const LIPSCHITZ_COLUMNS: [&str; 6] = ["ball", "eps", "quantity", "n", "mean", "median"];

/// One row of a summary table.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    /// Index of the run in the discovered run list.
    pub run: usize,
    /// The run's CSV the row's numbers come from.
    pub source: PathBuf,
    /// Cells, as wide as the table's header.
    pub cells: Vec<String>,
}

/// A summary table of one run kind.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryTable {
    /// The run kind it summarises.
    pub kind: RunKind,
    /// Column names: [`PROVENANCE`] then the kind's columns.
    pub header: Vec<String>,
    /// Rows in run order.
    pub rows: Vec<SummaryRow>,
}

impl SummaryTable {
    /// The index of column `name` (a programming error if absent).
    pub fn col(&self, name: &str) -> Result<usize> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Error::Internal(format!("summary table has no column {name}")))
    }

    /// Writes the table as CSV, atomically.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        write_csv_atomic(path, |w| {
            let csv_err = |e: csv::Error| Error::Internal(format!("CSV {}: {e}", path.display()));
            w.write_record(&self.header).map_err(csv_err)?;
            for r in &self.rows {
                w.write_record(&r.cells).map_err(csv_err)?;
            }
            Ok(())
        })
    }
}

/// A number as the shortest text that reads back to the same f64 (`NaN`, `inf` as such).
pub fn fmt_num(x: f64) -> String {
    format!("{x}")
}

/// The summary table of every kind that has at least one run, in [`RunKind::ALL`] order.
pub fn summary_tables(runs: &[Run]) -> Result<Vec<SummaryTable>> {
    let mut out = Vec::new();
    for kind in RunKind::ALL {
        let cols: &[&str] = match kind {
            RunKind::Train => &TRAIN_COLUMNS,
            RunKind::Eval => &EVAL_COLUMNS,
            RunKind::Certify => &CERTIFY_COLUMNS,
            RunKind::Guaranteed => &GUARANTEED_COLUMNS,
            RunKind::Lipschitz => &LIPSCHITZ_COLUMNS,
        };
        let mut rows = Vec::new();
        for (i, run) in runs.iter().enumerate().filter(|(_, r)| r.kind == kind) {
            let source = match kind {
                RunKind::Certify => curves_file(&run.dir),
                _ => run.dir.join(kind.main_csv()),
            };
            let body = match kind {
                RunKind::Train => vec![train_row(&CsvTable::read(&source)?)?],
                RunKind::Eval => eval_rows(&CsvTable::read(&source)?)?,
                RunKind::Certify => certify_rows(run, &CsvTable::read(&source)?)?,
                RunKind::Guaranteed => guaranteed_rows(&CsvTable::read(&source)?)?,
                RunKind::Lipschitz => lipschitz_rows(run, &CsvTable::read(&source)?)?,
            };
            for b in body {
                let mut cells = vec![
                    run.label.clone(),
                    run.dir.display().to_string(),
                    run.manifest_sha256.clone(),
                ];
                cells.extend(b);
                rows.push(SummaryRow {
                    run: i,
                    source: source.clone(),
                    cells,
                });
            }
        }
        if !runs.iter().any(|r| r.kind == kind) {
            continue;
        }
        let header = PROVENANCE
            .iter()
            .chain(cols)
            .map(|s| s.to_string())
            .collect();
        out.push(SummaryTable { kind, header, rows });
    }
    Ok(out)
}

fn train_row(t: &CsvTable) -> Result<Vec<String>> {
    let cols: Vec<usize> = TRAIN_COLUMNS[..9]
        .iter()
        .map(|c| t.require_numeric(c, false))
        .collect::<Result<_>>()?;
    let last = t
        .rows
        .len()
        .checked_sub(1)
        .ok_or_else(|| Error::bad_file(&t.path, "no logged steps (header only)"))?;
    let mut row: Vec<String> = cols.iter().map(|&c| t.cell(last, c).to_string()).collect();
    row.push(t.rows.len().to_string());
    Ok(row)
}

fn eval_rows(t: &CsvTable) -> Result<Vec<Vec<String>>> {
    let text = ["ood", "score", "convention"];
    let cols: Vec<usize> = EVAL_COLUMNS
        .iter()
        .map(|c| {
            if text.contains(c) {
                t.col(c)
            } else {
                // An unlabelled ID set has no accuracy: `oodcert eval` leaves the cell empty.
                t.require_numeric(c, *c == "id_accuracy")
            }
        })
        .collect::<Result<_>>()?;
    if t.rows.is_empty() {
        return Err(Error::bad_file(&t.path, "no OOD rows (header only)"));
    }
    Ok((0..t.rows.len())
        .map(|r| cols.iter().map(|&c| t.cell(r, c).to_string()).collect())
        .collect())
}

/// The richest curves file of a certify run: `curves_all.csv` when present, else `curves.csv`.
pub fn curves_file(dir: &std::path::Path) -> std::path::PathBuf {
    let all = dir.join("curves_all.csv");
    if all.exists() {
        all
    } else {
        dir.join("curves.csv")
    }
}

/// One row of `curves.csv` (src/smoothing/curves.rs); `None` = undefined (empty field).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    /// ℓ2 radius r.
    pub radius: f64,
    /// Share of ID samples certified ID at radius ≥ r.
    pub id_rate: Option<f64>,
    /// Share of OOD samples certified OOD at radius ≥ r.
    pub ood_rate: Option<f64>,
    /// Guaranteed (worst-case) FPR@95 at r.
    pub fpr95: Option<f64>,
    /// Guaranteed (worst-case) AUROC at r.
    pub auroc: Option<f64>,
}

/// One certificate's curve, sorted by radius.
pub type Curve = Vec<CurvePoint>;

/// The curves of `curves.csv` by certificate, in order of first appearance.
pub fn read_curves(t: &CsvTable) -> Result<Vec<(String, Curve)>> {
    // `curves.csv` holds the detector certificate alone; `curves_all.csv` labels every row.
    let cc = t.col("certificate").ok();
    let cr = t.require_numeric("radius", false)?;
    let ci = t.require_numeric("certified_id_rate", true)?;
    let co = t.require_numeric("certified_ood_rate", true)?;
    let cf = t.require_numeric("guaranteed_fpr95", true)?;
    let ca = t.require_numeric("guaranteed_auroc", true)?;
    let mut out: Vec<(String, Curve)> = Vec::new();
    for r in 0..t.rows.len() {
        let name = cc.map_or("detector".to_string(), |c| t.cell(r, c).to_string());
        let point = CurvePoint {
            radius: t.num(r, cr)?,
            id_rate: t.opt_num(r, ci)?,
            ood_rate: t.opt_num(r, co)?,
            fpr95: t.opt_num(r, cf)?,
            auroc: t.opt_num(r, ca)?,
        };
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => c.push(point),
            None => out.push((name, vec![point])),
        }
    }
    if out.is_empty() {
        return Err(Error::bad_file(&t.path, "no curve rows (header only)"));
    }
    for (_, c) in &mut out {
        c.sort_by(|a, b| a.radius.total_cmp(&b.radius));
    }
    Ok(out)
}

fn radius_half(curve: &Curve, rate: impl Fn(&CurvePoint) -> Option<f64>) -> String {
    curve
        .iter()
        .filter(|p| rate(p).is_some_and(|v| v >= 0.5))
        .map(|p| p.radius)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))))
        .map_or(String::new(), fmt_num)
}

fn certify_rows(run: &Run, curves: &CsvTable) -> Result<Vec<Vec<String>>> {
    let cert_path = run.dir.join("certify.csv");
    let cert = CsvTable::read(&cert_path)?;
    let cid = cert.require_numeric("is_id", false)?;
    let mut n_id = 0usize;
    for r in 0..cert.rows.len() {
        if cert.num(r, cid)? == 1.0 {
            n_id += 1;
        }
    }
    let n_ood = cert.rows.len() - n_id;
    let sigma = run.manifest["config"]["sigma"]
        .as_f64()
        .map_or(String::new(), fmt_num);
    let opt = |v: Option<f64>| v.map_or(String::new(), fmt_num);
    let mut rows = Vec::new();
    for (name, c) in read_curves(curves)? {
        let first = c[0];
        let max_r = c.last().map_or(0.0, |p| p.radius);
        rows.push(vec![
            name,
            sigma.clone(),
            n_id.to_string(),
            n_ood.to_string(),
            opt(first.id_rate),
            opt(first.ood_rate),
            opt(first.fpr95),
            opt(first.auroc),
            radius_half(&c, |p| p.id_rate),
            radius_half(&c, |p| p.ood_rate),
            fmt_num(max_r),
        ]);
    }
    Ok(rows)
}

/// The rows of `guaranteed.csv` (one per norm, ε, OOD set and variant), checked.
fn guaranteed_rows(t: &CsvTable) -> Result<Vec<Vec<String>>> {
    let cols: Vec<usize> = GUARANTEED_COLUMNS
        .iter()
        .map(|c| match *c {
            "norm" | "ood" | "variant" => t.col(c),
            _ => t.require_numeric(c, false),
        })
        .collect::<Result<_>>()?;
    if t.rows.is_empty() {
        return Err(Error::bad_file(&t.path, "no rows (header only)"));
    }
    Ok((0..t.rows.len())
        .map(|r| cols.iter().map(|&c| t.cell(r, c).to_string()).collect())
        .collect())
}

fn lipschitz_rows(run: &Run, t: &CsvTable) -> Result<Vec<Vec<String>>> {
    let cq = t.col("quantity")?;
    let cn = t.require_numeric("n", false)?;
    let cm = t.require_numeric("mean", true)?;
    let cd = t.require_numeric("median", true)?;
    let cfg = &run.manifest["config"];
    let ball = cfg["ball"].as_str().unwrap_or("").to_string();
    let eps = cfg["eps"].as_f64().map_or(String::new(), fmt_num);
    if t.rows.is_empty() {
        return Err(Error::bad_file(&t.path, "no quantities (header only)"));
    }
    // Quantities of methods the run did not request have n = 0 (mean and median NaN): no row.
    Ok((0..t.rows.len())
        .filter(|&r| t.cell(r, cn).trim() != "0")
        .map(|r| {
            vec![
                ball.clone(),
                eps.clone(),
                t.cell(r, cq).to_string(),
                t.cell(r, cn).to_string(),
                t.cell(r, cm).to_string(),
                t.cell(r, cd).to_string(),
            ]
        })
        .collect())
}
