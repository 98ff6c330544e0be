//! The report folder is exact: a report is built in a staging folder beside `--out` and swapped
//! in, so `--out` holds exactly the files of the latest report (no stale plots or tables from an
//! earlier run over other runs). Only files a report wrote are ever removed: an existing `--out`
//! must be empty, or a report folder (with `report_manifest.json`, or a report made before it
//! existed, recognised by its file names) holding nothing but report files.

use crate::error::{Error, Result};
use crate::evidence::Manifest;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The report's own provenance file (an `evidence::Manifest` with command `report`), listing
/// every file it wrote with its SHA-256.
pub const REPORT_MANIFEST: &str = "report_manifest.json";

/// Every file under `dir`, relative to it, with `/` separators, sorted.
pub fn files_under(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let rd = std::fs::read_dir(&abs)
            .map_err(|e| Error::io(format!("listing {}", abs.display()), e))?;
        for e in rd {
            let e = e.map_err(|e| Error::io(format!("listing {}", abs.display()), e))?;
            let r = rel.join(e.file_name());
            let ft = e
                .file_type()
                .map_err(|err| Error::io(format!("reading {}", e.path().display()), err))?;
            if ft.is_dir() {
                stack.push(r);
            } else {
                out.push(r.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether `file` (relative) is named like a file of a report made before `report_manifest.json`.
fn legacy_report_file(file: &str) -> bool {
    let plain = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    };
    match file.split_once('/') {
        None => file == "report.md",
        Some(("tables", f)) => plain(f) && f.ends_with("_summary.csv"),
        Some(("latex", f)) => plain(f) && f.ends_with("_summary.tex"),
        Some(("plots", f)) => plain(f) && (f.ends_with(".svg") || f.ends_with(".png")),
        _ => false,
    }
}

/// Checks that `out` may be replaced by a new report: absent, empty, or a report folder holding
/// only files a report wrote. Otherwise a `BadInput` error naming the first foreign file.
pub fn check_replaceable(out: &Path) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(Error::BadInput(format!(
            "--out {}: exists and is not a directory",
            out.display()
        )));
    }
    let files = files_under(out)?;
    if files.is_empty() {
        return Ok(());
    }
    let mp = out.join(REPORT_MANIFEST);
    let owned: BTreeSet<String> = if mp.is_file() {
        let m = Manifest::read(&mp)?;
        if m.command != "report" {
            return Err(Error::bad_file(&mp, "not a report manifest"));
        }
        m.outputs
            .into_iter()
            .map(|(f, _)| f)
            .chain([REPORT_MANIFEST.to_string()])
            .collect()
    } else if files.iter().any(|f| f == "report.md") && files.iter().all(|f| legacy_report_file(f))
    {
        files.iter().cloned().collect()
    } else {
        return Err(Error::BadInput(format!(
            "--out {}: a non-empty folder that is not an oodcert report folder (no {REPORT_MANIFEST}); refusing to replace it",
            out.display()
        )));
    };
    if let Some(f) = files.iter().find(|f| !owned.contains(*f)) {
        return Err(Error::BadInput(format!(
            "--out {}: holds {f}, which no report wrote; move it away or choose another --out",
            out.display()
        )));
    }
    Ok(())
}

/// A staging folder beside `out` (same parent, hidden name); removed on drop unless swapped in.
pub fn staging(out: &Path) -> Result<tempfile::TempDir> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent)
        .map_err(|e| Error::io(format!("--out {}: creating the parent", out.display()), e))?;
    tempfile::Builder::new()
        .prefix(".oodcert-report-")
        .tempdir_in(parent)
        .map_err(|e| {
            Error::io(
                format!(
                    "--out {}: creating a staging folder beside it",
                    out.display()
                ),
                e,
            )
        })
}

/// Moves the finished `stage` to `out`, replacing the old report (checked by
/// [`check_replaceable`] first): old → hidden name, stage → `out`, then the old one is deleted.
pub fn swap_in(stage: tempfile::TempDir, out: &Path) -> Result<()> {
    check_replaceable(out)?;
    let stage = stage.keep();
    let io = |what: &str, e| Error::io(format!("--out {}: {what}", out.display()), e);
    if !out.exists() {
        return std::fs::rename(&stage, out).map_err(|e| io("moving the new report in", e));
    }
    let parent = stage.parent().unwrap_or(Path::new("."));
    let old = tempfile::Builder::new()
        .prefix(".oodcert-report-old-")
        .tempdir_in(parent)
        .map_err(|e| io("creating a folder for the old report", e))?
        .keep();
    std::fs::remove_dir(&old).map_err(|e| io("preparing the old report's place", e))?;
    std::fs::rename(out, &old).map_err(|e| io("moving the old report aside", e))?;
    if let Err(e) = std::fs::rename(&stage, out) {
        // Put the old report back; the new one stays in its staging folder.
        let _ = std::fs::rename(&old, out);
        return Err(io(
            &format!("moving the new report in (it is in {})", stage.display()),
            e,
        ));
    }
    std::fs::remove_dir_all(&old).map_err(|e| {
        io(
            &format!("removing the old report (moved to {})", old.display()),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_names_are_recognised_and_nothing_else() {
        for f in [
            "report.md",
            "tables/eval_summary.csv",
            "latex/certify_summary.tex",
            "plots/scores_eval-ce.svg",
            "plots/bound_tightness.png",
        ] {
            assert!(legacy_report_file(f), "{f}");
        }
        for f in [
            "notes.txt",
            "tables/mine.csv",
            "plots/x.pdf",
            "plots/.hidden.svg",
            "plots/sub/x.svg",
            "latex/paper.tex",
        ] {
            assert!(!legacy_report_file(f), "{f}");
        }
    }
}
