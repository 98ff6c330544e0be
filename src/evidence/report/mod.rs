//! `oodcert report`: summary CSV tables, booktabs LaTeX tables, SVG/PNG figures and a Markdown
//! report with provenance links, from run folders (issue 6, item 2). Output is a pure function of
//! the input files: same inputs, same bytes.

pub use crate::evidence::csv_table;
pub mod discover;
pub mod figure;
pub mod latex;
pub mod markdown;
pub mod plots;
pub mod tables;

pub use discover::{Run, RunKind, discover};
pub use tables::{SummaryTable, summary_tables};

use crate::error::{Error, Result};
use crate::evidence::write_atomic;
use std::path::{Path, PathBuf};

/// Writes the report for the runs under `roots` into `out`; returns the files written, relative
/// to `out` (`tables/*.csv`, `latex/*.tex`, `plots/*.{svg,png}`, `report.md`).
pub fn build_report(roots: &[PathBuf], out: &Path) -> Result<Vec<String>> {
    let runs = discover(roots)?;
    let tables = summary_tables(&runs)?;
    std::fs::create_dir_all(out).map_err(|e| {
        Error::io(
            format!("--out {}: creating the directory", out.display()),
            e,
        )
    })?;
    let mut written = Vec::new();
    for t in &tables {
        let name = t.kind.name();
        let csv = format!("tables/{name}_summary.csv");
        t.write_csv(&out.join(&csv))?;
        written.push(csv);
        let tex = format!("latex/{name}_summary.tex");
        write_atomic(&out.join(&tex), latex::render(t)?.as_bytes())?;
        written.push(tex);
    }
    let plots = plots::write_plots(&runs, out)?;
    for p in &plots {
        written.push(format!("{}.svg", p.stem));
        written.push(format!("{}.png", p.stem));
    }
    let md = markdown::render(out, &runs, &tables, &plots)?;
    write_atomic(&out.join("report.md"), md.as_bytes())?;
    written.push("report.md".into());
    Ok(written)
}
