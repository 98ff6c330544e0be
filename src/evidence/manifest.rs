//! `manifest.json`: everything needed to reproduce a run's numbers (version, git revision and dirty
//! flag, full config, seeds, dataset and model SHA-256s, device, threads, timings).

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A dataset as used by a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRecord {
    pub name: String,
    pub sha256: String,
    pub n: usize,
    pub role: String,
    /// The class filter (`NAME#CLASSES`) and the SHA-256 of the source indices it kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_filter: Option<crate::data::class_filter::ClassSelection>,
}

impl DatasetRecord {
    /// The record of `d` in `role`, `n` of its images used.
    pub fn of(d: &crate::data::Dataset, n: usize, role: &str) -> DatasetRecord {
        DatasetRecord {
            name: d.name.clone(),
            sha256: d.sha256.clone(),
            n,
            role: role.into(),
            class_filter: d.selection.clone(),
        }
    }
}

/// The provenance record written beside every run's outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub oodcert_version: String,
    pub git_revision: String,
    pub git_dirty: bool,
    /// The subcommand, e.g. `train`, `eval`.
    pub command: String,
    /// The full command line as given.
    pub argv: Vec<String>,
    /// The working directory the command ran in (relative paths in `argv` are relative to it).
    #[serde(default)]
    pub cwd: Option<String>,
    /// The command's full configuration (flags or the parsed config file).
    pub config: serde_json::Value,
    pub seeds: Vec<u64>,
    pub datasets: Vec<DatasetRecord>,
    pub model_sha256: Option<String>,
    pub device: String,
    pub threads: usize,
    /// RFC 3339 UTC start time.
    pub started: String,
    pub elapsed_s: f64,
    /// Files this run wrote (relative to its output dir) with their SHA-256.
    pub outputs: Vec<(String, String)>,
}

impl Manifest {
    /// A manifest for `command` with the current build and environment filled in.
    pub fn new(command: &str, config: serde_json::Value, device: &str) -> Manifest {
        let (git_revision, git_dirty) = git_state();
        Manifest {
            oodcert_version: env!("CARGO_PKG_VERSION").to_string(),
            git_revision,
            git_dirty,
            command: command.to_string(),
            argv: invocation(),
            cwd: std::env::current_dir()
                .ok()
                .map(|d| d.display().to_string()),
            config,
            seeds: vec![],
            datasets: vec![],
            model_sha256: None,
            device: device.to_string(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            started: now_rfc3339(),
            elapsed_s: 0.0,
            outputs: vec![],
        }
    }

    /// Records an output file of the run (its SHA-256 is read from disk).
    pub fn add_output(&mut self, dir: &Path, name: &str) -> Result<()> {
        let h = sha256_file(dir.join(name))?;
        self.outputs.push((name.to_string(), h));
        Ok(())
    }

    /// Writes `manifest.json` into `dir` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Internal(format!("serialising manifest: {e}")))?;
        write_atomic(&dir.join("manifest.json"), (text + "\n").as_bytes())
    }

    /// Reads a manifest file.
    pub fn read(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("not a manifest: {e}")))
    }
}

thread_local! {
    static INVOCATION: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// The command line a manifest records: the one set by [`with_invocation`] on this thread (a
/// subcommand run in-process by `reproduce`), else the process's own arguments.
pub fn invocation() -> Vec<String> {
    INVOCATION
        .with(|i| i.borrow().clone())
        .unwrap_or_else(|| std::env::args().collect())
}

/// Runs `f` with [`invocation`] returning `argv` on this thread, so that manifests written by an
/// in-process subcommand record that subcommand's own (re-runnable) command line.
pub fn with_invocation<T>(argv: Vec<String>, f: impl FnOnce() -> T) -> T {
    let old = INVOCATION.with(|i| i.replace(Some(argv)));
    let out = f();
    INVOCATION.with(|i| *i.borrow_mut() = old);
    out
}

/// The command whose run `dir` holds, if any: by the result files each command writes, else by
/// the `command` field of a provenance record (`provenance.json`, or a [`Manifest`]-form
/// `manifest.json`; only that field is read, so a record of another oodcert version counts too).
pub fn occupant(dir: &Path) -> Option<String> {
    const MARKERS: [(&str, &str); 5] = [
        ("certify.csv", "certify"),
        ("lipschitz.csv", "lipschitz"),
        ("guaranteed.csv", "guaranteed"),
        ("metrics.csv", "eval"),
        ("train_log.csv", "train"),
    ];
    for (file, command) in MARKERS {
        if dir.join(file).is_file() {
            return Some(command.to_string());
        }
    }
    ["provenance.json", "manifest.json"]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.is_file())
        .find_map(|p| {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
            v.get("command")?.as_str().map(str::to_string)
        })
}

/// Refuses to write a `command` run into `dir` when `dir` holds the run of another command (its
/// files would stay beside the new ones, and `verify`, `merge` or `report` would read a mixed
/// directory). A missing or empty directory, or one holding an earlier run of `command`
/// (which is overwritten), is fine.
pub fn check_out_dir(dir: &Path, command: &str) -> Result<()> {
    // Checked now, not when the results are written at the end of the work.
    if dir.exists() && !dir.is_dir() {
        return Err(Error::BadInput(format!(
            "--out {} is a file, not a folder; give `oodcert {command}` another --out",
            dir.display()
        )));
    }
    match occupant(dir) {
        Some(other) if other != command => Err(Error::BadInput(format!(
            "{} holds the output of `oodcert {other}`; give `oodcert {command}` another --out",
            dir.display()
        ))),
        _ => Ok(()),
    }
}

/// Whether `a` and `b` both exist and name the same file or folder (links and `..` resolved).
pub fn same_path(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Refuses a merge whose `out` is one of its `shards` (the merged run would replace that
/// shard's files while they are read).
pub fn check_out_not_a_shard(out: &Path, shards: &[std::path::PathBuf]) -> Result<()> {
    match shards.iter().find(|s| same_path(out, s)) {
        Some(s) => Err(Error::BadInput(format!(
            "--out {} is the shard {}; merge into a new folder",
            out.display(),
            s.display()
        ))),
        None => Ok(()),
    }
}

/// Checks that the files `names` in `dir` still have the SHA-256 that the run's record
/// `recorded` (read from `dir/record`) lists among its outputs: merging a shard whose result
/// file was edited or damaged after its run would pass the damage on into the merged "single
/// run". Files the record does not list are not checked.
pub fn check_recorded_outputs(
    dir: &Path,
    record: &str,
    recorded: &Manifest,
    names: &[&str],
) -> Result<()> {
    for (name, want) in &recorded.outputs {
        if names.contains(&name.as_str()) && sha256_file(dir.join(name))? != *want {
            return Err(Error::BadInput(format!(
                "{}: {name} is not the file its run wrote (its SHA-256 differs from the one {record} records): re-run this shard",
                dir.display()
            )));
        }
    }
    Ok(())
}

pub use crate::data::bytes::sha256_file;

/// The git revision of the source tree this binary was built from, and whether it had changes.
fn git_state() -> (String, bool) {
    let dir = env!("CARGO_MANIFEST_DIR");
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "HEAD"]) {
        Some(rev) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            (rev, dirty)
        }
        None => ("unknown".into(), false),
    }
}

/// Current UTC time as RFC 3339 (seconds), without a date crate.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_shape() {
        let s = now_rfc3339();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.starts_with("20") && s.ends_with('Z'));
    }

    #[test]
    fn manifest_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), "x\n1\n").unwrap();
        let mut m = Manifest::new("eval", serde_json::json!({"k": 1}), "cpu");
        m.add_output(dir.path(), "a.csv").unwrap();
        m.write(dir.path()).unwrap();
        let back = Manifest::read(&dir.path().join("manifest.json")).unwrap();
        assert_eq!(back, m);
        // sha256 of "x\n1\n"
        assert_eq!(back.outputs[0].1.len(), 64);
    }
}
