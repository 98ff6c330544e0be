//! The report's figures, each as SVG and PNG (drawn by `figure.rs`) from the runs' CSVs:
//! certified detection rate vs radius, ID vs OOD score histograms, ‖∇ₓS‖₂ over training (cf. the
//! GReg paper's Figure 3) and Lipschitz bound tightness per method.

use super::discover::{Run, RunKind};
use super::figure::{Figure, Segments, write_figure};
use super::tables::{CurvePoint, read_curves};
use crate::error::{Error, Result};
use crate::evidence::CsvTable;
use std::path::{Path, PathBuf};

/// Number of histogram bins.
pub const BINS: usize = 60;
/// Lipschitz summary quantities drawn in the tightness figure (lower bounds, estimate, upper bounds).
pub const BOUND_QUANTITIES: [&str; 5] = [
    "lower_sample",
    "lower_pgd",
    "clever",
    "upper_local",
    "upper_global",
];

/// A written figure: `stem` (relative to the report folder, without extension) has `.svg` and `.png`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotFile {
    /// Path below the report folder without the extension, e.g. `plots/grad_norm_training`.
    pub stem: String,
    /// One-line description.
    pub title: String,
    /// Indices of the runs drawn.
    pub runs: Vec<usize>,
    /// The CSV files the figure was drawn from.
    pub sources: Vec<PathBuf>,
}

impl PlotFile {
    /// Each source CSV with the label of the run it belongs to (`?` if unknown) and its file name.
    pub fn labelled_sources<'a>(
        &'a self,
        runs: &'a [Run],
    ) -> impl Iterator<Item = (&'a str, String, &'a Path)> + 'a {
        self.sources.iter().enumerate().map(move |(k, s)| {
            let label = self
                .runs
                .get(k)
                .and_then(|&i| runs.get(i))
                .map_or("?", |r| r.label.as_str());
            let file = s
                .file_name()
                .map_or(String::new(), |f| f.to_string_lossy().into_owned());
            (label, file, s.as_path())
        })
    }
}

/// A run label made safe for a file name (`[A-Za-z0-9_-]`, others become `_`).
pub fn file_safe(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Splits (x, y) points into segments at non-finite y.
pub(super) fn segments(points: impl Iterator<Item = (f64, f64)>) -> Segments {
    let mut out: Segments = vec![Vec::new()];
    for (x, y) in points {
        if x.is_finite() && y.is_finite() {
            if let Some(last) = out.last_mut() {
                last.push((x, y));
            }
        } else if out.last().is_some_and(|l| !l.is_empty()) {
            out.push(Vec::new());
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Fraction of `v` in each of [`BINS`] equal bins over `lo..hi` (the top edge is in the last bin).
pub fn histogram(v: &[f64], lo: f64, hi: f64) -> Vec<f64> {
    let mut c = vec![0.0; BINS];
    let w = (hi - lo) / BINS as f64;
    for &x in v.iter().filter(|x| x.is_finite()) {
        let b = if w > 0.0 { ((x - lo) / w).floor() } else { 0.0 };
        let b = (b.max(0.0) as usize).min(BINS - 1);
        c[b] += 1.0;
    }
    let n = v.iter().filter(|x| x.is_finite()).count().max(1) as f64;
    c.iter().map(|k| k / n).collect()
}

/// Draws every figure the runs allow into `<out>/plots/` and lists them.
pub fn write_plots(runs: &[Run], out: &Path) -> Result<Vec<PlotFile>> {
    let mut files = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        match run.kind {
            RunKind::Certify => files.push(certified_plot(i, run, out)?),
            RunKind::Eval => {
                if let Some(p) = histogram_plot(i, run, out)? {
                    files.push(p);
                }
            }
            RunKind::Lipschitz => {
                if let Some(p) = lipschitz_radius_plot(i, run, out)? {
                    files.push(p);
                }
            }
            RunKind::Guaranteed => files.extend(guaranteed_plots(i, run, out)?),
            _ => {}
        }
    }
    if let Some(p) = grad_norm_plot(runs, out)? {
        files.push(p);
    }
    if let Some(p) = tightness_plot(runs, out)? {
        files.push(p);
    }
    Ok(files)
}

fn certified_plot(i: usize, run: &Run, out: &Path) -> Result<PlotFile> {
    let src = super::tables::curves_file(&run.dir);
    let t = CsvTable::read(&src)?;
    let parsed = read_curves(&t)?;
    let xmax = parsed
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.radius))
        .fold(0.0f64, f64::max);
    let xmax = if xmax > 0.0 { xmax } else { 1.0 };
    let curves = parsed
        .iter()
        .map(|(name, c)| {
            let f = |g: fn(&CurvePoint) -> Option<f64>| {
                segments(c.iter().map(|p| (p.radius, g(p).unwrap_or(f64::NAN))))
            };
            (name.clone(), f(|p| p.id_rate), f(|p| p.ood_rate))
        })
        .collect();
    let sigma = run.manifest["config"]["sigma"]
        .as_f64()
        .map_or(String::new(), |s| format!(", σ = {s}"));
    let title = format!("Certified detection rate vs radius: {}{sigma}", run.label);
    let stem = format!("plots/certified_rate_{}", file_safe(&run.label));
    write_figure(
        out,
        &stem,
        &Figure::Certified {
            title: title.clone(),
            curves,
            xmax,
        },
    )?;
    Ok(PlotFile {
        stem,
        title,
        runs: vec![i],
        sources: vec![src],
    })
}

/// Share of a Lipschitz run's samples whose certified radius is ≥ r, per route (Lipschitz,
/// bound propagation), drawn on the certified-rate axes (ID or OOD after the run's `is_id`).
/// None for a run without radius columns.
fn lipschitz_radius_plot(i: usize, run: &Run, out: &Path) -> Result<Option<PlotFile>> {
    let src = run.dir.join("lipschitz.csv");
    let t = CsvTable::read(&src)?;
    let (Ok(cl), Ok(cb), Ok(ci)) = (
        t.col("radius_lipschitz"),
        t.col("radius_bound_prop"),
        t.col("is_id"),
    ) else {
        return Ok(None);
    };
    if t.rows.is_empty() {
        return Ok(None);
    }
    let is_id = matches!(t.cell(0, ci).trim(), "true" | "1");
    let mut routes = Vec::new();
    for (name, c) in [("Lipschitz", cl), ("bound propagation", cb)] {
        let mut r = Vec::with_capacity(t.rows.len());
        for row in 0..t.rows.len() {
            match t.opt_num(row, c)? {
                Some(v) if v.is_finite() && v >= 0.0 => r.push(v),
                _ => {}
            }
        }
        if !r.is_empty() {
            routes.push((name, r));
        }
    }
    let xmax = routes
        .iter()
        .flat_map(|(_, r)| r.iter().copied())
        .fold(0.0f64, f64::max);
    if routes.is_empty() || xmax <= 0.0 {
        return Ok(None);
    }
    let curves = routes
        .into_iter()
        .map(|(name, r)| {
            let n = r.len() as f64;
            let pts = (0..=200).map(|k| {
                let x = xmax * k as f64 / 200.0;
                (
                    x,
                    r.iter().filter(|&&v| v >= x && v > 0.0).count() as f64 / n,
                )
            });
            let (on, off) = (segments(pts), Segments::new());
            if is_id {
                (name.to_string(), on, off)
            } else {
                (name.to_string(), off, on)
            }
        })
        .collect();
    let ball = run.manifest["config"]["ball"].as_str().unwrap_or("");
    let title = format!(
        "Share of samples with certified radius ≥ r (float32 detector): {}, {ball}",
        run.label
    );
    let stem = format!("plots/lipschitz_radius_{}", file_safe(&run.label));
    write_figure(
        out,
        &stem,
        &Figure::Certified {
            title: title.clone(),
            curves,
            xmax,
        },
    )?;
    Ok(Some(PlotFile {
        stem,
        title,
        runs: vec![i],
        sources: vec![src],
    }))
}

/// Guaranteed AUROC and guaranteed FPR95 vs ε of a guaranteed run: one figure each, a colour
/// per OOD set, solid for ID scored clean (`clean-id`), dashed for ID at its certified upper
/// bound (`certified-id`).
fn guaranteed_plots(i: usize, run: &Run, out: &Path) -> Result<Vec<PlotFile>> {
    let src = run.dir.join("guaranteed.csv");
    let t = CsvTable::read(&src)?;
    let (ce, co, cv) = (
        t.require_numeric("eps", false)?,
        t.col("ood")?,
        t.col("variant")?,
    );
    let norm = t
        .col("norm")
        .ok()
        .filter(|_| !t.rows.is_empty())
        .map_or(String::new(), |c| t.cell(0, c).to_string());
    let norm_text = match norm.as_str() {
        "linf" => "ℓ∞",
        "l2" => "ℓ2",
        o => o,
    };
    let mut oods: Vec<String> = Vec::new();
    let mut xmax = 0.0f64;
    for r in 0..t.rows.len() {
        let o = t.cell(r, co);
        if !oods.iter().any(|x| x == o) {
            oods.push(o.to_string());
        }
        xmax = xmax.max(t.num(r, ce)?);
    }
    let xmax = if xmax > 0.0 { xmax } else { 1.0 };
    let mut files = Vec::new();
    for (metric, label) in [("auroc", "guaranteed AUROC"), ("fpr95", "guaranteed FPR95")] {
        let cm = t.require_numeric(metric, false)?;
        let mut lines = Vec::new();
        for (k, o) in oods.iter().enumerate() {
            for (variant, dashed) in [("clean-id", false), ("certified-id", true)] {
                let mut pts: Vec<(f64, f64)> = Vec::new();
                for r in
                    (0..t.rows.len()).filter(|&r| t.cell(r, co) == o && t.cell(r, cv) == variant)
                {
                    pts.push((t.num(r, ce)?, t.num(r, cm)?));
                }
                if pts.is_empty() {
                    continue;
                }
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                lines.push((
                    format!("{o} ({variant})"),
                    k,
                    dashed,
                    segments(pts.into_iter()),
                ));
            }
        }
        let title = format!("{label} vs {norm_text} radius ε: {}", run.label);
        let stem = format!("plots/guaranteed_{metric}_{}", file_safe(&run.label));
        write_figure(
            out,
            &stem,
            &Figure::Lines {
                title: title.clone(),
                x_desc: format!("{norm_text} radius ε (pixel units)"),
                y_desc: label.to_string(),
                lines,
                xmax,
            },
        )?;
        files.push(PlotFile {
            stem,
            title,
            runs: vec![i],
            sources: vec![src.clone()],
        });
    }
    Ok(files)
}

fn histogram_plot(i: usize, run: &Run, out: &Path) -> Result<Option<PlotFile>> {
    let src = run.dir.join("scores.csv");
    if !src.is_file() {
        eprintln!(
            "oodcert report: {} has no scores.csv; no histogram",
            run.dir.display()
        );
        return Ok(None);
    }
    let t = CsvTable::read(&src)?;
    let (cd, cs, ci) = (
        t.col("dataset")?,
        t.require_numeric("score", false)?,
        t.require_numeric("is_id", false)?,
    );
    let mut groups: Vec<(String, bool, Vec<f64>)> = Vec::new();
    for r in 0..t.rows.len() {
        let (name, id, s) = (t.cell(r, cd), t.num(r, ci)? == 1.0, t.num(r, cs)?);
        match groups.iter_mut().find(|g| g.0 == name && g.1 == id) {
            Some(g) => g.2.push(s),
            None => groups.push((name.to_string(), id, vec![s])),
        }
    }
    groups.sort_by_key(|g| !g.1); // ID first, then OOD sets in file order (stable)
    let all = groups
        .iter()
        .flat_map(|g| g.2.iter().copied())
        .filter(|x| x.is_finite());
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    if !(lo.is_finite() && hi.is_finite()) {
        return Err(Error::bad_file(&src, "no finite scores"));
    }
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    };
    let sets = groups
        .iter()
        .map(|g| (g.0.clone(), g.1, histogram(&g.2, lo, hi)))
        .collect();
    let title = format!("ID vs OOD energy scores: {}", run.label);
    let stem = format!("plots/scores_{}", file_safe(&run.label));
    write_figure(
        out,
        &stem,
        &Figure::Histogram {
            title: title.clone(),
            lo,
            hi,
            sets,
        },
    )?;
    Ok(Some(PlotFile {
        stem,
        title,
        runs: vec![i],
        sources: vec![src],
    }))
}

fn grad_norm_plot(runs: &[Run], out: &Path) -> Result<Option<PlotFile>> {
    let mut drawn = Vec::new();
    let mut idx = Vec::new();
    let mut sources = Vec::new();
    for (i, run) in runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.kind == RunKind::Train)
    {
        let src = run.dir.join("train_log.csv");
        let t = CsvTable::read(&src)?;
        let cs = t.require_numeric("step", false)?;
        let cin = t.require_numeric("grad_norm_in", false)?;
        let caux = t.require_numeric("grad_norm_aux", false)?;
        let col = |c: usize| -> Result<Segments> {
            let pts: Vec<(f64, f64)> = (0..t.rows.len())
                .map(|r| Ok((t.num(r, cs)?, t.num(r, c)?)))
                .collect::<Result<_>>()?;
            Ok(segments(pts.into_iter()))
        };
        drawn.push((run.label.clone(), col(cin)?, col(caux)?));
        idx.push(i);
        sources.push(src);
    }
    if drawn.is_empty() {
        return Ok(None);
    }
    let stem = "plots/grad_norm_training".to_string();
    write_figure(out, &stem, &Figure::GradNorm { runs: drawn })?;
    let title = "‖∇ₓS‖₂ over training, ID (solid) and auxiliary OOD (dashed) batches".to_string();
    Ok(Some(PlotFile {
        stem,
        title,
        runs: idx,
        sources,
    }))
}

fn tightness_plot(runs: &[Run], out: &Path) -> Result<Option<PlotFile>> {
    let mut per_run = Vec::new();
    let mut idx = Vec::new();
    let mut sources = Vec::new();
    for (i, run) in runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.kind == RunKind::Lipschitz)
    {
        let src = run.dir.join("summary.csv");
        let t = CsvTable::read(&src)?;
        let (cq, cm) = (t.col("quantity")?, t.require_numeric("median", true)?);
        let mut v = Vec::new();
        for q in BOUND_QUANTITIES {
            let m = match (0..t.rows.len()).find(|&r| t.cell(r, cq) == q) {
                Some(r) => t.opt_num(r, cm)?.filter(|x| x.is_finite() && *x > 0.0),
                None => None,
            };
            v.push(m);
        }
        per_run.push((run.label.clone(), v));
        idx.push(i);
        sources.push(src);
    }
    // Keep only methods some run measured.
    let keep: Vec<usize> = (0..BOUND_QUANTITIES.len())
        .filter(|&m| per_run.iter().any(|r| r.1[m].is_some()))
        .collect();
    if keep.is_empty() {
        return Ok(None);
    }
    let names = keep
        .iter()
        .map(|&m| BOUND_QUANTITIES[m].to_string())
        .collect();
    let runs_v = per_run
        .into_iter()
        .map(|(l, v)| (l, keep.iter().map(|&m| v[m]).collect()))
        .collect();
    let stem = "plots/bound_tightness".to_string();
    write_figure(
        out,
        &stem,
        &Figure::Tightness {
            names,
            runs: runs_v,
        },
    )?;
    let title =
        "Lipschitz bounds of S per method: lower bounds, CLEVER estimate, certified upper bounds"
            .to_string();
    Ok(Some(PlotFile {
        stem,
        title,
        runs: idx,
        sources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_sums_to_one_and_segments_split_at_nan() {
        let h = histogram(&[0.0, 0.5, 1.0, 1.0], 0.0, 1.0);
        assert!((h.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(h[BINS - 1], 0.5);
        let s = segments([(0.0, 1.0), (1.0, f64::NAN), (2.0, 2.0), (3.0, 3.0)].into_iter());
        assert_eq!(s, vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]);
        assert_eq!(file_safe("a/b c"), "a_b_c");
    }
}
