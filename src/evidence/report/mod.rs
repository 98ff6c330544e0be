//! `oodcert report`: summary CSV tables, booktabs LaTeX tables, SVG/PNG figures, a Markdown
//! report with provenance links and the same as one HTML page, from run folders (issue 6, item
//! 2), with what `oodcert verify` found for them (verification.rs). The tables, LaTeX, figures and report.md are a pure function of the input files (same
//! inputs, same bytes); index.html and report_manifest.json also record the command line.
//! The folder is built beside `--out` and swapped in whole (folder.rs).

pub use crate::evidence::csv_table;
pub mod discover;
pub mod figure;
pub mod folder;
pub mod html;
pub mod latex;
pub mod markdown;
pub mod plots;
pub mod summary;
pub mod tables;
pub mod verification;

pub use discover::{Run, RunKind, discover};
pub use tables::{SummaryTable, summary_tables};

use crate::error::{Error, Result};
use crate::evidence::{Manifest, write_atomic};
use std::path::{Path, PathBuf};

/// Writes the report for the runs under `roots` into `out` (replacing an earlier report there,
/// see folder.rs); returns the files written, relative to `out` (`tables/*.csv`, `latex/*.tex`,
/// `plots/*.{svg,png}`, `report.md`, `index.html`, `report_manifest.json`).
/// `claims` are `claims.csv` and `paired_claims.csv` files of `oodcert claims`, shown as the
/// summary's verdict tables.
pub fn build_report(roots: &[PathBuf], claims: &[PathBuf], out: &Path) -> Result<Vec<String>> {
    let t0 = std::time::Instant::now();
    let runs = discover(roots)?;
    let tables = summary_tables(&runs)?;
    folder::check_replaceable(out)?;
    let stage = folder::staging(out)?;
    let dir = stage.path();
    let mut written = Vec::new();
    for t in &tables {
        let name = t.kind.name();
        let csv = format!("tables/{name}_summary.csv");
        t.write_csv(&dir.join(&csv))?;
        written.push(csv);
        let tex = format!("latex/{name}_summary.tex");
        write_atomic(&dir.join(&tex), latex::render(t)?.as_bytes())?;
        written.push(tex);
    }
    let plots = plots::write_plots(&runs, dir)?;
    for p in &plots {
        written.push(format!("{}.svg", p.stem));
        written.push(format!("{}.png", p.stem));
    }
    let summary = summary::build(&runs, claims, dir)?;
    let verified = &summary.verifications;
    if !verified.is_empty() {
        let csv = "tables/verify_summary.csv";
        verification::write_csv(verified, &runs, &dir.join(csv))?;
        written.push(csv.into());
        let tex = "latex/verify_summary.tex";
        write_atomic(
            &dir.join(tex),
            verification::latex(verified, &runs)?.as_bytes(),
        )?;
        written.push(tex.into());
    }
    if let Some(p) = &summary.headline {
        written.push(format!("{}.svg", p.stem));
        written.push(format!("{}.png", p.stem));
    }
    let md = markdown::render(dir, &runs, &tables, &plots, &summary, claims)?;
    write_atomic(&dir.join("report.md"), md.as_bytes())?;
    written.push("report.md".into());
    let roots_text: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    let runs_json: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| {
            serde_json::json!({
                "label": r.label,
                "kind": r.kind.name(),
                "dir": r.dir.display().to_string(),
                "manifest_sha256": r.manifest_sha256,
            })
        })
        .collect();
    let verified_json = summary
        .verifications
        .iter()
        .map(|v| {
            Ok(serde_json::json!({
                "path": v.path.display().to_string(),
                "sha256": crate::evidence::sha256_file(&v.path)?,
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    let claims_json = claims
        .iter()
        .map(|c| {
            Ok(serde_json::json!({
                "path": c.display().to_string(),
                "sha256": crate::evidence::sha256_file(c)?,
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut m = Manifest::new(
        "report",
        serde_json::json!({ "runs": roots_text, "found": runs_json, "claims": claims_json,
            "verifications": verified_json }),
        "cpu",
    );
    let page = html::render(dir, &runs, &tables, &plots, &m, &summary, claims)?;
    write_atomic(&dir.join("index.html"), page.as_bytes())?;
    written.push("index.html".into());
    for f in &written {
        m.add_output(dir, f)?;
    }
    m.elapsed_s = t0.elapsed().as_secs_f64();
    let text = serde_json::to_string_pretty(&m)
        .map_err(|e| Error::Internal(format!("serialising {}: {e}", folder::REPORT_MANIFEST)))?;
    write_atomic(&dir.join(folder::REPORT_MANIFEST), (text + "\n").as_bytes())?;
    written.push(folder::REPORT_MANIFEST.into());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io(format!("setting permissions of {}", dir.display()), e))?;
    }
    folder::swap_in(stage, out)?;
    Ok(written)
}
