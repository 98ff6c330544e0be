//! Finding run folders under the `--runs` directories and telling their kind from their files.
//!
//! A run folder holds `manifest.json` and one kind's output: `train_log.csv` (train),
//! `metrics.csv` (eval), `curves.csv` + `certify.csv` (certify), `guaranteed.csv` + `bounds.csv`
//! (guaranteed) or `lipschitz.csv` + `summary.csv` (lipschitz). A `--runs` directory that is not a run is searched (sorted, depth ≤ 4).

use crate::error::{Error, Result};
use crate::evidence::sha256_file;
use crate::smoothing::manifest::PROVENANCE;
use std::path::{Path, PathBuf};

/// How deep below a `--runs` directory run folders are searched for.
pub const MAX_DEPTH: usize = 4;

/// The kind of a run, told from the files it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RunKind {
    /// `oodcert train`: `train_log.csv`.
    Train,
    /// `oodcert eval`: `metrics.csv` (and usually `scores.csv`).
    Eval,
    /// `oodcert certify`: `certify.csv` and `curves.csv`.
    Certify,
    /// `oodcert guaranteed`: `guaranteed.csv` and `bounds.csv`.
    Guaranteed,
    /// `oodcert lipschitz`: `lipschitz.csv` and `summary.csv`.
    Lipschitz,
}

impl RunKind {
    /// All kinds, in report order.
    pub const ALL: [RunKind; 5] = [
        RunKind::Train,
        RunKind::Eval,
        RunKind::Certify,
        RunKind::Guaranteed,
        RunKind::Lipschitz,
    ];

    /// Lower-case name used in file names (`train`, `eval`, `certify`, `guaranteed`, `lipschitz`).
    pub fn name(self) -> &'static str {
        match self {
            RunKind::Train => "train",
            RunKind::Eval => "eval",
            RunKind::Certify => "certify",
            RunKind::Guaranteed => "guaranteed",
            RunKind::Lipschitz => "lipschitz",
        }
    }

    /// The CSV file of the run the report's numbers for this kind come from.
    pub fn main_csv(self) -> &'static str {
        match self {
            RunKind::Train => "train_log.csv",
            RunKind::Eval => "metrics.csv",
            RunKind::Certify => "curves.csv",
            RunKind::Guaranteed => "guaranteed.csv",
            RunKind::Lipschitz => "summary.csv",
        }
    }

    /// The file holding the run's certificates, the one `oodcert verify` attacks (None for runs
    /// without certificates).
    pub fn certificate_csv(self) -> Option<&'static str> {
        match self {
            RunKind::Lipschitz => Some("lipschitz.csv"),
            RunKind::Certify => Some("certify.csv"),
            RunKind::Guaranteed => Some("bounds.csv"),
            RunKind::Train | RunKind::Eval => None,
        }
    }

    /// The kind of the folder `dir` from its files, or `None` if it is not a run.
    pub fn detect(dir: &Path) -> Option<RunKind> {
        let has = |f: &str| dir.join(f).is_file();
        if !has("manifest.json") {
            return None;
        }
        if has("curves.csv") && has("certify.csv") {
            Some(RunKind::Certify)
        } else if has("guaranteed.csv") && has("bounds.csv") {
            Some(RunKind::Guaranteed)
        } else if has("lipschitz.csv") && has("summary.csv") {
            Some(RunKind::Lipschitz)
        } else if has("metrics.csv") {
            Some(RunKind::Eval)
        } else if has("train_log.csv") {
            Some(RunKind::Train)
        } else {
            None
        }
    }
}

/// A discovered run folder with the provenance fields of its manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// What the run computed.
    pub kind: RunKind,
    /// Its folder, as reached from the `--runs` argument (not canonicalised).
    pub dir: PathBuf,
    /// A short unique name: the path below the `--runs` directory (or the folder's name).
    pub label: String,
    /// SHA-256 of `manifest.json`'s bytes.
    pub manifest_sha256: String,
    /// `git_revision` of the manifest, or of provenance.json beside a certify manifest.
    pub git_revision: Option<String>,
    /// `git_dirty` of the manifest, when recorded.
    pub git_dirty: Option<bool>,
    /// `oodcert_version` of the manifest, when recorded.
    pub oodcert_version: Option<String>,
    /// The parsed manifest (any of the crate's manifest formats).
    pub manifest: serde_json::Value,
}

impl Run {
    /// The path of `manifest.json`.
    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }

    /// Reads the run in `dir` of kind `kind` with label `label`.
    pub fn load(dir: &Path, kind: RunKind, label: String) -> Result<Run> {
        let mp = dir.join("manifest.json");
        let text = std::fs::read_to_string(&mp)
            .map_err(|e| Error::io(format!("reading {}", mp.display()), e))?;
        let manifest: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(&mp, format!("not valid JSON: {e}")))?;
        if !manifest.is_object() {
            return Err(Error::bad_file(&mp, "not a manifest (not a JSON object)"));
        }
        // A certify manifest is deterministic (merged shards are byte-identical to one run), so
        // the revision and dirty flag of the build that ran it live in provenance.json beside it.
        let prov: serde_json::Value = std::fs::read_to_string(dir.join(PROVENANCE))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null);
        let field = |k: &str| {
            if manifest[k].is_null() {
                prov[k].clone()
            } else {
                manifest[k].clone()
            }
        };
        Ok(Run {
            kind,
            dir: dir.to_path_buf(),
            label,
            manifest_sha256: sha256_file(&mp)?,
            git_revision: field("git_revision").as_str().map(str::to_string),
            git_dirty: field("git_dirty").as_bool(),
            oodcert_version: field("oodcert_version").as_str().map(str::to_string),
            manifest,
        })
    }
}

/// All runs under `roots`, sorted by (kind, label); an absent root or no run at all is `BadInput`.
pub fn discover(roots: &[PathBuf]) -> Result<Vec<Run>> {
    if roots.is_empty() {
        return Err(Error::BadInput(
            "--runs: give at least one directory".into(),
        ));
    }
    let mut found: Vec<(PathBuf, RunKind, String)> = Vec::new();
    for root in roots {
        if !root.is_dir() {
            return Err(Error::BadInput(format!(
                "--runs {}: no such directory",
                root.display()
            )));
        }
        if let Some(kind) = RunKind::detect(root) {
            found.push((root.clone(), kind, dir_name(root)));
            continue;
        }
        walk(root, root, 1, &mut found)?;
    }
    if found.is_empty() {
        let list: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        return Err(Error::BadInput(format!(
            "--runs {}: no run folders found (a run has manifest.json and train_log.csv, metrics.csv, curves.csv+certify.csv, guaranteed.csv+bounds.csv or lipschitz.csv+summary.csv)",
            list.join(" ")
        )));
    }
    // Labels must be unique: fall back to the full path for any that collide.
    let mut labels: Vec<String> = found.iter().map(|f| f.2.clone()).collect();
    for i in 0..labels.len() {
        if found.iter().filter(|f| f.2 == found[i].2).count() > 1 {
            labels[i] = found[i].0.display().to_string();
        }
    }
    let mut runs = Vec::with_capacity(found.len());
    let mut seen = std::collections::BTreeSet::new();
    for ((dir, kind, _), label) in found.into_iter().zip(labels) {
        if seen.insert(label.clone()) {
            runs.push(Run::load(&dir, kind, label)?);
        }
    }
    runs.sort_by(|a, b| (a.kind, &a.label).cmp(&(b.kind, &b.label)));
    Ok(runs)
}

fn dir_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

fn walk(
    root: &Path,
    dir: &Path,
    depth: usize,
    out: &mut Vec<(PathBuf, RunKind, String)>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let rd =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    let mut subs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter(|p| !dir_name(p).starts_with('.'))
        .collect();
    subs.sort();
    for sub in subs {
        if let Some(kind) = RunKind::detect(&sub) {
            let rel = sub.strip_prefix(root).unwrap_or(&sub);
            let label = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((sub, kind, label));
        } else {
            walk(root, &sub, depth + 1, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_kinds_and_errors_on_empty() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("a/b");
        std::fs::create_dir_all(&r).unwrap();
        std::fs::write(r.join("manifest.json"), "{\"git_revision\":\"abc\"}").unwrap();
        assert_eq!(RunKind::detect(&r), None);
        std::fs::write(r.join("metrics.csv"), "ood\n").unwrap();
        assert_eq!(RunKind::detect(&r), Some(RunKind::Eval));
        let runs = discover(&[d.path().to_path_buf()]).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].label, "a/b");
        assert_eq!(runs[0].git_revision.as_deref(), Some("abc"));
        // A certify run: the revision comes from provenance.json when the manifest has none.
        let c = d.path().join("c");
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(c.join("manifest.json"), "{\"oodcert_version\":\"1\"}").unwrap();
        std::fs::write(
            c.join(PROVENANCE),
            "{\"git_revision\":\"def\",\"git_dirty\":true,\"oodcert_version\":\"2\"}",
        )
        .unwrap();
        let run = Run::load(&c, RunKind::Eval, "c".into()).unwrap();
        assert_eq!(run.git_revision.as_deref(), Some("def"));
        assert_eq!(run.git_dirty, Some(true));
        assert_eq!(run.oodcert_version.as_deref(), Some("1"));
        let empty = tempfile::tempdir().unwrap();
        let e = discover(&[empty.path().to_path_buf()]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("no run folders found"), "{e}");
    }
}
