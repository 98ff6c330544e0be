//! `report.md`: the runs with their provenance (manifest SHA-256, git revision, dirty flag), each
//! summary table with every number linked (relative path) to the CSV it was read from and each
//! row to its run's `manifest.json`, the conventions stated once, and the figures.

use super::discover::{Run, RunKind};
use super::latex::{Fmt, spec};
use super::plots::PlotFile;
use super::tables::SummaryTable;
use crate::error::{Error, Result};
use std::path::{Component, Path, PathBuf};

/// The relative link from the folder `from` to the existing file `to`, percent-encoded.
pub fn rel_link(from: &Path, to: &Path) -> Result<String> {
    let canon = |p: &Path| {
        std::fs::canonicalize(p).map_err(|e| Error::io(format!("resolving {}", p.display()), e))
    };
    let (a, b) = (canon(from)?, canon(to)?);
    let ac: Vec<Component> = a.components().collect();
    let bc: Vec<Component> = b.components().collect();
    let common = ac.iter().zip(&bc).take_while(|(x, y)| x == y).count();
    let mut rel = PathBuf::new();
    for _ in common..ac.len() {
        rel.push("..");
    }
    for c in &bc[common..] {
        rel.push(c.as_os_str());
    }
    let s = rel.to_string_lossy().replace('\\', "/");
    Ok(encode(&s))
}

/// Percent-encodes every byte outside `[A-Za-z0-9/._~-]` (so links survive spaces, `|`, `(`).
pub fn encode(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"/._~-".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// Text safe inside a Markdown table cell or list item (no pipes, emphasis or HTML).
pub(super) fn cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('*', "\\*")
        .replace('<', "&lt;")
        .replace('\n', " ")
}

/// A number for reading: rates with 4 decimals, others with 4 significant digits.
pub(super) fn show(raw: &str, fmt: Fmt) -> String {
    match raw.parse::<f64>() {
        Ok(x) if x.is_finite() => match fmt {
            Fmt::Pct => format!("{x:.4}"),
            Fmt::Int if x.fract() == 0.0 => format!("{x:.0}"),
            _ if x == 0.0 => "0".into(),
            _ if (1e-3..1e5).contains(&x.abs()) => {
                let d = (3 - x.abs().log10().floor() as i32).max(0) as usize;
                format!("{x:.d$}")
            }
            _ => format!("{x:.3e}"),
        },
        Ok(x) => format!("{x}"),
        Err(_) => cell(raw),
    }
}

/// The section heading of a run kind's table.
pub(super) fn heading(kind: RunKind) -> &'static str {
    match kind {
        RunKind::Train => "Training (last logged step of each run)",
        RunKind::Eval => "Detection (one row per run and OOD set)",
        RunKind::Certify => "Randomized-smoothing certificates (radius 0, and r½)",
        RunKind::Guaranteed => "Guaranteed AUROC / FPR95 vs ε from deterministic bounds",
        RunKind::Lipschitz => "Lipschitz bounds of S",
    }
}

/// The conventions stated once at the top of the report.
pub(super) fn conventions(runs: &[Run]) -> Vec<String> {
    let mut c = vec![
        "Score: the energy S(x) = −T·logsumexp(f(x)/T); larger S = more OOD, ID iff S ≤ threshold.".to_string(),
        "Rates (FPR95, AUROC, AUPR, accuracies, certified rates) are fractions in [0, 1]; the LaTeX tables print them in percent.".to_string(),
        "AUPR-In takes ID as the positive class, AUPR-Out takes OOD as positive.".to_string(),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for r in runs {
        if let Some(t) = r.manifest["config"]["convention_text"].as_str() {
            seen.insert(format!("FPR95 and detection error (eval runs): {t}."));
        }
        if let Some(list) = r.manifest["conventions"].as_array() {
            for t in list.iter().filter_map(|v| v.as_str()) {
                seen.insert(format!("Certify runs: {t}."));
            }
        }
    }
    c.extend(seen);
    if runs.iter().any(|r| r.kind == RunKind::Train) {
        c.push("‖∇ₓS‖₂ in training logs: mean over the logged ID (grad_norm_in) or auxiliary OOD (grad_norm_aux) batch; NaN = no auxiliary data.".into());
    }
    if runs.iter().any(|r| r.kind == RunKind::Certify) {
        c.push("r½ (radius_half_*): largest radius on the curve grid with at least half of the ID (OOD) samples certified, a lower bound on the median certified radius to within the grid step; empty = fewer than half certified.".into());
    }
    if runs.iter().any(|r| r.kind == RunKind::Guaranteed) {
        c.push("Guaranteed runs (GOOD's guaranteed AUC and its FPR95 analogue): every OOD sample scored by a certified lower bound of S over B_p(x, ε) ∩ [0,1]^n; ID samples by their clean score (clean-id) or a certified upper bound (certified-id); ε = 0 is the clean metric. No perturbation within ε makes the detector do worse than these numbers.".into());
    }
    if runs.iter().any(|r| r.kind == RunKind::Lipschitz) {
        c.push("Lipschitz summaries: mean and median over samples; lower_* are attained lower bounds, clever an estimate, upper_* certified upper bounds; tightness_* = upper / PGD lower bound (1 = tight).".into());
    }
    c
}

/// The text of `report.md` in `out`, which already holds `tables/`, `latex/` and `plots/`.
pub fn render(
    out: &Path,
    runs: &[Run],
    tables: &[SummaryTable],
    plots: &[PlotFile],
    summary: &super::summary::Summary,
    claims_paths: &[PathBuf],
) -> Result<String> {
    let mut o = String::from("# oodcert report\n\n");
    o.push_str(&format!(
        "{} runs. Every number below links to the CSV it was read from; the last column of each row links to the run's `manifest.json`, whose git revision and dirty flag are listed under *Runs*.\n\n",
        runs.len()
    ));
    o.push_str(&super::summary::markdown(out, runs, summary, claims_paths)?);
    o.push_str("## Conventions\n\n");
    for c in conventions(runs) {
        o.push_str(&format!("- {}\n", cell(&c)));
    }
    o.push_str("\n## Runs\n\n| run | kind | folder | manifest | manifest SHA-256 | git revision | dirty | oodcert |\n|---|---|---|---|---|---|---|---|\n");
    for r in runs {
        let dirty = r
            .git_dirty
            .map_or("not recorded".to_string(), |d| d.to_string());
        o.push_str(&format!(
            "| {} | {} | [{}]({}) | [manifest.json]({}) | `{}` | {} | {} | {} |\n",
            cell(&r.label),
            r.kind.name(),
            cell(&r.dir.display().to_string()),
            rel_link(out, &r.dir)?,
            rel_link(out, &r.manifest_path())?,
            r.manifest_sha256,
            r.git_revision
                .as_deref()
                .map_or("not recorded".to_string(), |g| format!("`{g}`")),
            dirty,
            cell(r.oodcert_version.as_deref().unwrap_or("not recorded")),
        ));
    }
    o.push_str(&super::verification::markdown(
        out,
        &summary.verifications,
        runs,
    )?);
    for t in tables {
        let name = t.kind.name();
        o.push_str(&format!(
            "\n## {}\n\nFull table: [{name}_summary.csv](tables/{name}_summary.csv) · LaTeX: [{name}_summary.tex](latex/{name}_summary.tex)\n\n",
            heading(t.kind)
        ));
        let (cols, _) = spec(t.kind);
        let idx: Vec<usize> = cols.iter().map(|c| t.col(c.0)).collect::<Result<_>>()?;
        let head: Vec<&str> = cols.iter().map(|c| c.0).collect();
        o.push_str(&format!("| {} | source |\n", head.join(" | ")));
        o.push_str(&format!("|{}---|\n", "---|".repeat(cols.len())));
        for row in &t.rows {
            let run = runs
                .get(row.run)
                .ok_or_else(|| Error::Internal("summary row of an unknown run".into()))?;
            let src = rel_link(out, &row.source)?;
            let cells: Vec<String> = cols
                .iter()
                .zip(&idx)
                .map(|(c, &i)| {
                    let raw = &row.cells[i];
                    if c.2 == Fmt::Text || raw.is_empty() {
                        cell(raw)
                    } else {
                        format!("[{}]({src})", show(raw, c.2))
                    }
                })
                .collect();
            o.push_str(&format!(
                "| {} | [manifest.json]({}) |\n",
                cells.join(" | "),
                rel_link(out, &run.manifest_path())?
            ));
        }
    }
    if !plots.is_empty() {
        o.push_str("\n## Figures\n");
    }
    for p in plots {
        let mut src = Vec::new();
        for (label, file, s) in p.labelled_sources(runs) {
            src.push(format!("[{} {}]({})", cell(label), file, rel_link(out, s)?));
        }
        o.push_str(&format!(
            "\n### {}\n\n![{}]({}.svg)\n\n[PNG]({}.png) · from {}\n",
            cell(&p.title),
            cell(&p.title),
            p.stem,
            p.stem,
            src.join(", ")
        ));
    }
    Ok(o)
}
