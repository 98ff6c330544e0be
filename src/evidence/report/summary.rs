//! The report's opening summary (issue #14 item 6): the verdict tables of the claims files given
//! with `--claims` (written by `oodcert claims`: `claims.csv` across seeds, `paired_claims.csv` of a
//! paired radius comparison) and one headline figure, the certified rate vs
//! radius of every certify run on one axes (energy vs GReg when those are the runs), falling back
//! to the bound-propagation radii of the Lipschitz runs when there is no certify run.

use super::discover::{Run, RunKind};
use super::figure::{Figure, Segments, write_figure};
use super::html::escape;
use super::markdown::rel_link;
use super::plots::{PlotFile, segments};
use super::tables::{curves_file, read_curves};
use crate::error::{Error, Result};
use crate::evidence::CsvTable;
use crate::evidence::claims::RULE;
use crate::evidence::claims::paired::PAIRED_RULE;
use std::path::{Path, PathBuf};

/// Stem of the headline figure below the report folder.
pub const HEADLINE: &str = "plots/headline_certified_rate";

/// Columns a claims file must have (a subset of `evidence::claims::output::COLUMNS`).
pub const CLAIM_COLUMNS: [&str; 17] = [
    "ood",
    "metric",
    "baseline",
    "arm",
    "n_baseline",
    "baseline_mean",
    "baseline_lo",
    "baseline_hi",
    "n_arm",
    "arm_mean",
    "arm_lo",
    "arm_hi",
    "diff",
    "diff_lo",
    "diff_hi",
    "p_exact",
    "verdict",
];

/// Columns a paired claims file must have (a subset of
/// `evidence::claims::paired_output::CLAIM_COLUMNS`); told from a `claims.csv` by `signed_rank_p`
/// or `set`.
pub const PAIRED_CLAIM_COLUMNS: [&str; 15] = [
    "set",
    "column",
    "baseline",
    "arm",
    "n",
    "baseline_median",
    "arm_median",
    "diff_median",
    "diff_median_lo",
    "diff_median_hi",
    "larger",
    "smaller",
    "equal",
    "signed_rank_p",
    "verdict",
];

/// A claims file given with `--claims`, with the label it is shown under.
#[derive(Debug, Clone)]
pub struct ClaimsFile {
    /// The benchmark's name: the folder holding `claims/claims.csv` (else the file's folder).
    pub label: String,
    pub table: CsvTable,
    /// A paired radius comparison (`paired_claims.csv`) rather than a comparison across seeds.
    pub paired: bool,
}

impl ClaimsFile {
    /// Reads and checks a claims file; a missing column or a non-number is a `BadFile` error.
    pub fn read(path: &Path) -> Result<ClaimsFile> {
        let table = CsvTable::read(path)?;
        // A paired file names its image set `set`; a file across seeds names its OOD set `ood`.
        let paired = table.col("signed_rank_p").is_ok() || table.col("set").is_ok();
        let (columns, text): (&[&str], [&str; 5]) = if paired {
            (
                &PAIRED_CLAIM_COLUMNS,
                ["set", "column", "baseline", "arm", "verdict"],
            )
        } else {
            (
                &CLAIM_COLUMNS,
                ["ood", "metric", "baseline", "arm", "verdict"],
            )
        };
        for &c in columns {
            if !text.contains(&c) {
                table.require_numeric(c, false)?;
            } else {
                table.col(c)?;
            }
        }
        let cv = table.col("verdict")?;
        for r in 0..table.rows.len() {
            let v = table.cell(r, cv);
            if !matches!(v, "supported" | "contradicted" | "undecided") {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "row {}: verdict '{v}' is not supported, contradicted or undecided",
                        r + 2
                    ),
                ));
            }
        }
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
        let label = match parent {
            Some(p) if name(p).as_deref() == Some("claims") => p.parent().and_then(name),
            Some(p) => name(p),
            None => None,
        }
        .unwrap_or_else(|| path.display().to_string());
        Ok(ClaimsFile {
            label,
            table,
            paired,
        })
    }

    fn get(&self, r: usize, c: &str) -> &str {
        self.table.col(c).map_or("", |i| self.table.cell(r, i))
    }

    fn num(&self, r: usize, c: &str) -> f64 {
        self.get(r, c).parse().unwrap_or(f64::NAN)
    }
}

/// What the summary shows.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub claims: Vec<ClaimsFile>,
    /// The headline figure, when some run has certified radii.
    pub headline: Option<PlotFile>,
    /// What `oodcert verify` found for the runs it checked ([`super::verification::collect`]).
    pub verifications: Vec<super::verification::Verification>,
}

/// Reads the claims files and the runs' verifications, and draws the headline figure into
/// `<out>/plots/`.
pub fn build(runs: &[Run], claims: &[PathBuf], out: &Path) -> Result<Summary> {
    let claims = claims
        .iter()
        .map(|p| ClaimsFile::read(p))
        .collect::<Result<Vec<_>>>()?;
    Ok(Summary {
        claims,
        headline: headline_plot(runs, out)?,
        verifications: super::verification::collect(runs)?,
    })
}

/// Share of a Lipschitz run's samples with bound-propagation radius ≥ r on 201 grid points.
fn radius_share(run: &Run) -> Result<Option<(bool, Vec<f64>)>> {
    let t = CsvTable::read(&run.dir.join("lipschitz.csv"))?;
    let (Ok(cb), Ok(ci)) = (t.col("radius_bound_prop"), t.col("is_id")) else {
        return Ok(None);
    };
    let mut r = Vec::new();
    for row in 0..t.rows.len() {
        if let Some(v) = t.opt_num(row, cb)?.filter(|v| v.is_finite() && *v >= 0.0) {
            r.push(v);
        }
    }
    if r.is_empty() {
        return Ok(None);
    }
    Ok(Some((matches!(t.cell(0, ci), "true" | "1"), r)))
}

fn headline_plot(runs: &[Run], out: &Path) -> Result<Option<PlotFile>> {
    let mut curves: Vec<(String, Segments, Segments)> = Vec::new();
    let (mut idx, mut sources) = (Vec::new(), Vec::new());
    let mut xmax = 0.0f64;
    for (i, run) in runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.kind == RunKind::Certify)
    {
        let src = curves_file(&run.dir);
        let parsed = read_curves(&CsvTable::read(&src)?)?;
        let Some((_, c)) = parsed
            .iter()
            .find(|(n, _)| n == "detector")
            .or_else(|| parsed.first())
        else {
            continue;
        };
        let f = |g: fn(&super::tables::CurvePoint) -> Option<f64>| {
            segments(c.iter().map(|p| (p.radius, g(p).unwrap_or(f64::NAN))))
        };
        xmax = c.iter().map(|p| p.radius).fold(xmax, f64::max);
        let sigma = run.manifest["config"]["sigma"]
            .as_f64()
            .map_or(String::new(), |s| format!(" (σ = {s})"));
        curves.push((
            format!("{}{sigma}", run.label),
            f(|p| p.id_rate),
            f(|p| p.ood_rate),
        ));
        idx.push(i);
        sources.push(src);
    }
    let title;
    if curves.is_empty() {
        // No smoothing certificates: the deterministic radii of the Lipschitz runs instead.
        let mut shares = Vec::new();
        for (i, run) in runs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.kind == RunKind::Lipschitz)
        {
            if let Some((is_id, r)) = radius_share(run)? {
                xmax = r.iter().copied().fold(xmax, f64::max);
                shares.push((i, run, is_id, r));
            }
        }
        if xmax <= 0.0 {
            return Ok(None);
        }
        for (i, run, is_id, r) in shares {
            let n = r.len() as f64;
            let pts = (0..=200).map(|k| {
                let x = xmax * k as f64 / 200.0;
                (
                    x,
                    r.iter().filter(|&&v| v >= x && v > 0.0).count() as f64 / n,
                )
            });
            let (on, off) = (segments(pts), Segments::new());
            let (id, ood) = if is_id { (on, off) } else { (off, on) };
            curves.push((run.label.clone(), id, ood));
            idx.push(i);
            sources.push(run.dir.join("lipschitz.csv"));
        }
        title =
            "Certified rate vs radius: bound-propagation radii of every Lipschitz run".to_string();
    } else {
        title = "Certified rate vs radius: randomized smoothing, every certify run".to_string();
    }
    if curves.is_empty() {
        return Ok(None);
    }
    let xmax = if xmax > 0.0 { xmax } else { 1.0 };
    write_figure(
        out,
        HEADLINE,
        &Figure::Certified {
            title: title.clone(),
            curves,
            xmax,
        },
    )?;
    Ok(Some(PlotFile {
        stem: HEADLINE.to_string(),
        title,
        runs: idx,
        sources,
    }))
}

fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

fn pp(x: f64) -> String {
    format!("{:+.2}", 100.0 * x)
}

/// One verdict row's cells as text, in [`VERDICT_HEAD`] order.
fn verdict_cells(f: &ClaimsFile, r: usize) -> [String; 9] {
    let mean = |arm: &str, m: &str| {
        format!(
            "{} {} [{}, {}]",
            f.get(r, arm),
            pct(f.num(r, &format!("{m}_mean"))),
            pct(f.num(r, &format!("{m}_lo"))),
            pct(f.num(r, &format!("{m}_hi"))),
        )
    };
    let metric = super::super::claims::output::metric_label(f.get(r, "metric")).to_string();
    let count = match (f.get(r, "p_count"), f.get(r, "p_total")) {
        ("", _) | (_, "") => String::new(),
        (c, t) => format!(" ({c}/{t})"),
    };
    [
        f.label.clone(),
        f.get(r, "ood").to_string(),
        metric,
        format!("{} / {}", f.get(r, "n_baseline"), f.get(r, "n_arm")),
        mean("baseline", "baseline"),
        mean("arm", "arm"),
        format!(
            "{} [{}, {}]",
            pp(f.num(r, "diff")),
            pp(f.num(r, "diff_lo")),
            pp(f.num(r, "diff_hi"))
        ),
        format!("{:.4}{count}", f.num(r, "p_exact")),
        f.get(r, "verdict").to_string(),
    ]
}

/// The verdict table's columns.
pub const VERDICT_HEAD: [&str; 9] = [
    "benchmark",
    "OOD set",
    "metric",
    "seeds",
    "baseline: mean [95 % CI] (%)",
    "arm: mean [95 % CI] (%)",
    "arm − baseline [95 % Welch CI] (pp)",
    "exact p",
    "verdict",
];

/// A radius in pixel units.
fn radius(x: f64) -> String {
    format!("{x:.4}")
}

/// A p-value: four decimals, or two significant digits below 10⁻³.
fn p_value(p: f64) -> String {
    if p > 0.0 && p < 1e-3 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

/// One paired claim's cells as text, in [`PAIRED_HEAD`] order.
fn paired_cells(f: &ClaimsFile, r: usize) -> Vec<String> {
    let median = |m: &str| {
        format!(
            "{} {}",
            f.get(r, m),
            radius(f.num(r, &format!("{m}_median")))
        )
    };
    vec![
        f.label.clone(),
        f.get(r, "set").to_string(),
        f.get(r, "column").to_string(),
        f.get(r, "n").to_string(),
        median("baseline"),
        median("arm"),
        format!(
            "{} [{}, {}]",
            radius(f.num(r, "diff_median")),
            radius(f.num(r, "diff_median_lo")),
            radius(f.num(r, "diff_median_hi"))
        ),
        format!(
            "{} / {} / {}",
            f.get(r, "larger"),
            f.get(r, "smaller"),
            f.get(r, "equal")
        ),
        p_value(f.num(r, "signed_rank_p")),
        f.get(r, "verdict").to_string(),
    ]
}

/// The paired verdict table's columns.
pub const PAIRED_HEAD: [&str; 10] = [
    "comparison",
    "images",
    "certificate",
    "pairs",
    "baseline: median radius",
    "arm: median radius",
    "arm − baseline: median [95 % sign-test CI]",
    "arm larger / smaller / equal",
    "signed-rank p",
    "verdict",
];

/// The rows of one kind of claims file: (link to the file, cells), the first cell linked, the
/// last the verdict.
fn verdict_rows(
    out: &Path,
    s: &Summary,
    claims_paths: &[PathBuf],
    paired: bool,
) -> Result<Vec<(String, Vec<String>)>> {
    let mut rows = Vec::new();
    for (f, path) in s.claims.iter().zip(claims_paths) {
        if f.paired != paired {
            continue;
        }
        let link = rel_link(out, path)?;
        for r in 0..f.table.rows.len() {
            let cells = if paired {
                paired_cells(f, r)
            } else {
                verdict_cells(f, r).to_vec()
            };
            rows.push((link.clone(), cells));
        }
    }
    Ok(rows)
}

/// A verdict table in HTML: the first three columns and the verdict as text, the rest as numbers.
fn verdict_table_html(head: &[&str], rows: &[(String, Vec<String>)]) -> String {
    let last = head.len() - 1;
    let mut o = String::from("<table class=\"verdicts\">\n<thead><tr>");
    for (k, h) in head.iter().enumerate() {
        let class = if k < 3 || k == last {
            " class=\"t\""
        } else {
            ""
        };
        o.push_str(&format!("<th{class}>{}</th>", escape(h)));
    }
    o.push_str("</tr></thead>\n<tbody>\n");
    for (link, c) in rows {
        let v = &c[last];
        let verdict = if v == "undecided" {
            escape(v)
        } else {
            format!("<strong>{}</strong>", escape(v))
        };
        o.push_str(&format!(
            "<tr><td class=\"t\"><a href=\"{}\">{}</a></td><td class=\"t\">{}</td><td class=\"t\">{}</td>",
            escape(link),
            escape(&c[0]),
            escape(&c[1]),
            escape(&c[2]),
        ));
        for x in &c[3..last] {
            o.push_str(&format!("<td class=\"n\">{}</td>", escape(x)));
        }
        o.push_str(&format!(
            "<td class=\"t {}\">{verdict}</td></tr>\n",
            escape(v)
        ));
    }
    o.push_str("</tbody>\n</table>\n");
    o
}

/// The summary as the first `<section>` of `index.html`.
pub fn html(out: &Path, runs: &[Run], s: &Summary, claims_paths: &[PathBuf]) -> Result<String> {
    let mut o = String::from("<section id=\"summary\">\n<h2>Summary</h2>\n");
    if let Some(v) = super::verification::sentence(&s.verifications, runs)? {
        o.push_str(&format!(
            "<p>{} <a href=\"#{}\">Verification by attack</a>.</p>\n",
            super::html::escape(&v),
            super::verification::SECTION_ID
        ));
    }
    if s.claims.is_empty() {
        o.push_str("<p>No claims file was given (<code>oodcert report --claims claims.csv</code>, written by <code>oodcert claims</code>), so no verdicts are shown.</p>\n");
    } else {
        let seeds = verdict_rows(out, s, claims_paths, false)?;
        if !seeds.is_empty() {
            o.push_str(&format!("<p>Verdict rule: {}</p>\n", escape(RULE)));
            o.push_str(&verdict_table_html(&VERDICT_HEAD, &seeds));
        }
        let paired = verdict_rows(out, s, claims_paths, true)?;
        if !paired.is_empty() {
            o.push_str(&format!(
                "<p>Paired radius claims (one pair of radii per image). Verdict rule: {}</p>\n",
                escape(PAIRED_RULE)
            ));
            o.push_str(&verdict_table_html(&PAIRED_HEAD, &paired));
        }
        let all: Vec<&str> = s
            .claims
            .iter()
            .flat_map(|f| (0..f.table.rows.len()).map(move |r| f.get(r, "verdict")))
            .collect();
        let n = |v: &str| all.iter().filter(|x| **x == v).count();
        o.push_str(&format!(
            "<p>{} claims: {} supported, {} contradicted, {} undecided.</p>\n",
            all.len(),
            n("supported"),
            n("contradicted"),
            n("undecided")
        ));
    }
    match &s.headline {
        Some(p) => o.push_str(&super::html::figure(out, runs, p)?),
        None => o.push_str(
            "<p>No certify or Lipschitz run with certified radii: no headline figure.</p>\n",
        ),
    }
    o.push_str("</section>\n");
    Ok(o)
}

/// The summary as the first section of `report.md`.
pub fn markdown(out: &Path, runs: &[Run], s: &Summary, claims_paths: &[PathBuf]) -> Result<String> {
    let cell = |t: &str| {
        t.replace('|', "\\|")
            .replace('*', "\\*")
            .replace('<', "&lt;")
    };
    let mut o = String::from("## Summary\n\n");
    if let Some(v) = super::verification::sentence(&s.verifications, runs)? {
        o.push_str(&format!(
            "{} See *Verification by attack*.\n\n",
            super::markdown::cell(&v)
        ));
    }
    if s.claims.is_empty() {
        o.push_str("No claims file was given (`oodcert report --claims claims.csv`), so no verdicts are shown.\n\n");
    } else {
        let table = |o: &mut String, head: &[&str], rows: &[(String, Vec<String>)]| {
            let last = head.len() - 1;
            o.push_str(&format!(
                "| {} |\n|{}\n",
                head.join(" | "),
                "---|".repeat(head.len())
            ));
            for (link, c) in rows {
                let v = if c[last] == "undecided" {
                    c[last].clone()
                } else {
                    format!("**{}**", c[last])
                };
                let mid: Vec<String> = c[1..last].iter().map(|x| cell(x)).collect();
                o.push_str(&format!(
                    "| [{}]({link}) | {} | {v} |\n",
                    cell(&c[0]),
                    mid.join(" | ")
                ));
            }
            o.push('\n');
        };
        let seeds = verdict_rows(out, s, claims_paths, false)?;
        if !seeds.is_empty() {
            o.push_str(&format!("Verdict rule: {RULE}\n\n"));
            table(&mut o, &VERDICT_HEAD, &seeds);
        }
        let paired = verdict_rows(out, s, claims_paths, true)?;
        if !paired.is_empty() {
            o.push_str(&format!(
                "Paired radius claims (one pair of radii per image). Verdict rule: {PAIRED_RULE}\n\n"
            ));
            table(&mut o, &PAIRED_HEAD, &paired);
        }
    }
    if let Some(p) = &s.headline {
        let mut src = Vec::new();
        for (label, file, f) in p.labelled_sources(runs) {
            src.push(format!("[{} {}]({})", cell(label), file, rel_link(out, f)?));
        }
        o.push_str(&format!(
            "![{}]({}.svg)\n\n[PNG]({}.png) · from {}\n\n",
            cell(&p.title),
            p.stem,
            p.stem,
            src.join(", ")
        ));
    }
    Ok(o)
}
