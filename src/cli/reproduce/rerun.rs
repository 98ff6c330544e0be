//! `oodcert reproduce --manifest FILE`: re-runs a recorded command (in its recorded working
//! directory, outputs redirected) and compares every recorded output's SHA-256.
//!
//! Train, eval and lipschitz runs record their command in `manifest.json`. Certify runs keep
//! `manifest.json` deterministic (a run and the merge of its shards write identical bytes), so
//! their command is in `provenance.json` beside it; given a certify `manifest.json`, the
//! provenance beside it is used. A certify shard is re-run as the shard it was (`--shard k/N`
//! pinned, whatever `env` resolved to); a merge is re-run as its shards, each from its own
//! recorded command, then merged (a Lipschitz merge records its shards in its own
//! `manifest.json`, `config.shards`). Documented wall-clock outputs (certify.csv's `time` column,
//! zero with `--no-timing`; lipschitz summary.csv's `seconds_*` rows) are compared apart from
//! those parts, against the original file when it still has its recorded SHA-256.

use crate::error::{Error, Result};
use crate::evidence::manifest::with_invocation;
use crate::evidence::{CsvTable, Manifest, sha256_file, write_csv_atomic};
use crate::smoothing::manifest::{FORMAT, PROVENANCE, WALL_CLOCK_COLUMN};
use crate::smoothing::noise::NoiseLayout;
use std::path::{Path, PathBuf};

/// How a reproduced output compares with the recorded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Same SHA-256.
    Identical,
    /// Identical once the file's documented wall-clock part ([`wall_clock`]) is set aside.
    IdenticalExceptTime,
    /// Different (or not written).
    Differs,
}

impl Verdict {
    /// The `identical` column of `reproduce_diff.csv`.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Identical => "yes",
            Verdict::IdenticalExceptTime => "yes-except-time",
            Verdict::Differs => "no",
        }
    }
}

/// One row of `reproduce_diff.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffRow {
    /// Output path relative to the reproduced folder.
    pub file: String,
    /// SHA-256 recorded by the original run.
    pub recorded: String,
    /// SHA-256 of the reproduced file (empty if not written).
    pub reproduced: String,
    /// The comparison.
    pub verdict: Verdict,
}

/// The recorded run behind `path`: its provenance file and the parsed record. A certify
/// `manifest.json` resolves to the `provenance.json` beside it.
pub fn recorded(path: &Path) -> Result<(PathBuf, Manifest)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("--manifest {}: reading", path.display()), e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(path, format!("not valid JSON: {e}")))?;
    if v["format"].as_str() == Some(FORMAT) {
        // A manifest of an unknown layout cannot be replayed by this version.
        if let Some(line) = v["noise_layout"].as_str() {
            NoiseLayout::from_description(line)
                .map_err(|e| Error::bad_file(path, e.to_string()))?;
        }
        let p = path.with_file_name(PROVENANCE);
        if !p.is_file() {
            return Err(Error::bad_file(
                path,
                format!(
                    "a certify manifest without {PROVENANCE} beside it (written before certify recorded its command line): re-run certify to record one"
                ),
            ));
        }
        return Ok((p.clone(), Manifest::read(&p)?));
    }
    Ok((path.to_path_buf(), Manifest::read(path)?))
}

/// Re-runs the run recorded in `manifest` into `out`, writes `reproduce_diff.csv` there and
/// fails (`CheckFailed`, exit 1) when any output differs.
pub fn rerun(manifest: &Path, out: &Path) -> Result<()> {
    let (prov, m) = recorded(manifest)?;
    let rec_dir = prov.parent().unwrap_or(Path::new(".")).to_path_buf();
    let out = std::path::absolute(out)
        .map_err(|e| Error::io(format!("--out {}: resolving", out.display()), e))?;
    if let (Ok(a), Ok(b)) = (std::fs::canonicalize(&out), std::fs::canonicalize(&rec_dir))
        && a == b
    {
        return Err(Error::BadInput(format!(
            "--out {}: is the recorded run's own folder; choose another",
            out.display()
        )));
    }
    let rows = match m.command.as_str() {
        "reproduce" => {
            return Err(Error::bad_file(
                &prov,
                "a reproduce manifest cannot be re-run by itself",
            ));
        }
        "merge" => rerun_merge(&prov, &m, &out)?,
        _ => {
            replay(&prov, &m, &out)?;
            let name = prov
                .file_name()
                .map_or("manifest.json".into(), |n| n.to_string_lossy().into_owned());
            let new = Manifest::read(&out.join(&name))?;
            diff(&m, &rec_dir, &new, &out, "")?
        }
    };
    report(&rows, &out)
}

/// Re-runs the command recorded in `m` (read from `prov`) with `--out` set to `out` (absolute),
/// in the recorded working directory; a certify shard keeps its recorded slice.
fn replay(prov: &Path, m: &Manifest, out: &Path) -> Result<()> {
    let Some(cmd) = m.argv.get(1) else {
        return Err(Error::bad_file(prov, "records no command line"));
    };
    if cmd != &m.command {
        return Err(Error::bad_file(
            prov,
            format!(
                "records command {} but the command line runs `{cmd}` (a run started in-process by an older `reproduce`); re-run it to record its own command line",
                m.command
            ),
        ));
    }
    let shard = match &m.config["shard"] {
        serde_json::Value::Null => None,
        s => match (s["index"].as_u64(), s["count"].as_u64()) {
            (Some(k), Some(n)) => Some(format!("{k}/{n}")),
            _ => return Err(Error::bad_file(prov, "config.shard is not {index, count}")),
        },
    };
    let mut args = replay_args(&m.argv[1..], out, shard.as_deref());
    if needs_first_k(&args, &m.config) {
        args.extend(["--subset".to_string(), "first".to_string()]);
    }
    if m.command == "certify" {
        pin_noise_layout(prov, &m.config, &mut args)?;
        pin_coupling(prov, &m.config, &mut args)?;
    }
    if let Some(cwd) = &m.cwd {
        std::env::set_current_dir(cwd)
            .map_err(|e| Error::io(format!("entering the recorded working directory {cwd}"), e))?;
    }
    eprintln!("oodcert reproduce: re-running `oodcert {}`", args.join(" "));
    super::subcommand(&args)
}

/// The recorded arguments (after the binary) with `--out` replaced by `out` and, for a shard,
/// `--shard` pinned to `shard`.
pub fn replay_args(argv: &[String], out: &Path, shard: Option<&str>) -> Vec<String> {
    let mut args = Vec::with_capacity(argv.len() + 4);
    let mut it = argv.iter();
    let drop = |flag: &str| flag == "--out" || (shard.is_some() && flag == "--shard");
    while let Some(x) = it.next() {
        if drop(x) {
            it.next();
        } else if !x
            .split_once('=')
            .is_some_and(|(flag, _)| x.starts_with("--") && drop(flag))
        {
            args.push(x.clone());
        }
    }
    args.extend(["--out".to_string(), out.display().to_string()]);
    if let Some(s) = shard {
        args.extend(["--shard".to_string(), s.to_string()]);
    }
    args
}

/// Whether a recorded eval/lipschitz/certify command line `args` must be replayed with
/// `--subset first`: its `config` records no stratified subset (a run made before `--subset`
/// existed took the first K images, as does a certify run recorded without `run.subset`) and the
/// command line does not choose a rule itself.
pub fn needs_first_k(args: &[String], config: &serde_json::Value) -> bool {
    let has_subset_flag = args
        .iter()
        .any(|x| x == "--subset" || x.starts_with("--subset="));
    let records_subset = !config["subset"].is_null() || !config["run"]["subset"].is_null();
    matches!(
        args.first().map(String::as_str),
        Some("eval" | "lipschitz" | "certify")
    ) && !has_subset_flag
        && !records_subset
}

/// The noise layout a recorded certify run used: its provenance's `config.noise_layout`, v1 when
/// absent (runs made before layout v2 recorded none).
pub fn recorded_layout(prov: &Path, config: &serde_json::Value) -> Result<NoiseLayout> {
    match &config["noise_layout"] {
        serde_json::Value::Null => Ok(NoiseLayout::V1),
        v => [NoiseLayout::V1, NoiseLayout::V2]
            .into_iter()
            .find(|l| v.as_str() == Some(l.name()))
            .ok_or_else(|| {
                Error::bad_file(
                    prov,
                    format!("records noise layout {v}, which this oodcert does not know (v1, v2): reproduce it with the oodcert version that wrote it"),
                )
            }),
    }
}

/// Appends `--noise-layout` of the recorded layout to a certify command line `args` (whose
/// default may have changed since), refusing a command line that names another layout.
fn pin_noise_layout(prov: &Path, config: &serde_json::Value, args: &mut Vec<String>) -> Result<()> {
    let layout = recorded_layout(prov, config)?;
    let given = args.iter().enumerate().find_map(|(i, x)| {
        if x == "--noise-layout" {
            args.get(i + 1).cloned()
        } else {
            x.strip_prefix("--noise-layout=").map(str::to_string)
        }
    });
    match given {
        None => args.extend(["--noise-layout".to_string(), layout.name().to_string()]),
        Some(g) if g == layout.name() => {}
        Some(g) => {
            return Err(Error::bad_file(
                prov,
                format!(
                    "records noise layout {} but its command line says --noise-layout {g}: edit the command line to --noise-layout {}",
                    layout.name(),
                    layout.name()
                ),
            ));
        }
    }
    Ok(())
}

/// Appends `--coupling` of the recorded rule to a certify command line `args`: the provenance's
/// `config.coupling`, count-against when absent (runs made before the flag), refusing a command
/// line that names another rule or a rule this version does not know.
fn pin_coupling(prov: &Path, config: &serde_json::Value, args: &mut Vec<String>) -> Result<()> {
    use crate::smoothing::coupling::Coupling;
    let rule = match &config["coupling"] {
        serde_json::Value::Null => Coupling::CountAgainst,
        v => [Coupling::CountAgainst, Coupling::Candidates]
            .into_iter()
            .find(|c| v.as_str() == Some(c.name()))
            .ok_or_else(|| {
                Error::bad_file(
                    prov,
                    format!("records coupling rule {v}, which this oodcert does not know (count-against, candidates): reproduce it with the oodcert version that wrote it"),
                )
            })?,
    };
    let given = args.iter().enumerate().find_map(|(i, x)| {
        if x == "--coupling" {
            args.get(i + 1).cloned()
        } else {
            x.strip_prefix("--coupling=").map(str::to_string)
        }
    });
    match given {
        None => args.extend(["--coupling".to_string(), rule.name().to_string()]),
        Some(g) if g == rule.name() => {}
        Some(g) => {
            return Err(Error::bad_file(
                prov,
                format!(
                    "records coupling rule {} but its command line says --coupling {g}: edit the command line to --coupling {}",
                    rule.name(),
                    rule.name()
                ),
            ));
        }
    }
    Ok(())
}

/// Re-runs each shard of a recorded merge from its own provenance into `out/shards/<i>`, merges
/// them into `out`, and compares the shards' and the merge's outputs.
fn rerun_merge(prov: &Path, m: &Manifest, out: &Path) -> Result<Vec<DiffRow>> {
    let Some(list) = m.config["shards"].as_array() else {
        return Err(Error::bad_file(
            prov,
            "a merge provenance without config.shards",
        ));
    };
    let mut rows = Vec::new();
    let mut dirs = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        let dir = s["dir"].as_str().unwrap_or("?");
        let sm: Manifest = match &s["provenance"] {
            serde_json::Value::Null => {
                return Err(Error::bad_file(
                    prov,
                    format!("shard {dir} recorded no provenance, so it cannot be re-run"),
                ));
            }
            v => serde_json::from_value(v.clone()).map_err(|e| {
                Error::bad_file(prov, format!("shard {dir}: provenance unreadable: {e}"))
            })?,
        };
        let new_dir = out.join("shards").join(i.to_string());
        replay(prov, &sm, &new_dir)?;
        let new = Manifest::read(&new_dir.join(record_file(&sm.command)))?;
        // The shard's original folder is resolved against the merge's working directory.
        let orig = m
            .cwd
            .as_deref()
            .map_or(PathBuf::from(dir), |c| Path::new(c).join(dir));
        rows.extend(diff(&sm, &orig, &new, &new_dir, &format!("shards/{i}/"))?);
        dirs.push(new_dir.display().to_string());
    }
    let mut args = vec![
        "merge".to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(dirs);
    eprintln!("oodcert reproduce: re-running `oodcert {}`", args.join(" "));
    super::subcommand(&args)?;
    let name = prov.file_name().map_or(PROVENANCE.into(), |n| n.to_owned());
    let new = Manifest::read(&out.join(name))?;
    let orig = prov.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut top = diff(m, &orig, &new, out, "")?;
    top.extend(rows);
    Ok(top)
}

/// The file a run of `command` records its command line in: certify's `provenance.json` (its
/// manifest.json stays deterministic), every other command's `manifest.json`.
fn record_file(command: &str) -> &'static str {
    if command == "certify" {
        PROVENANCE
    } else {
        "manifest.json"
    }
}

/// The wall-clock parts of an output, set aside when comparing a re-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WallClock {
    /// A whole column (certify.csv's `time`).
    Column(&'static str),
    /// Rows whose `column` starts with `prefix` (lipschitz summary.csv's `seconds_*` rows).
    Rows {
        column: &'static str,
        prefix: &'static str,
    },
}

/// The documented wall-clock part of output `file` of a `command` run, if it has one.
pub fn wall_clock(command: &str, file: &str) -> Option<WallClock> {
    match (command, file) {
        ("certify" | "merge", "certify.csv") => Some(WallClock::Column(WALL_CLOCK_COLUMN)),
        ("lipschitz" | "merge", "summary.csv") => Some(WallClock::Rows {
            column: "quantity",
            prefix: "seconds_",
        }),
        _ => None,
    }
}

/// Compares the outputs recorded in `rec` (original folder `rec_dir`) with those in `new`
/// (written to `new_dir`); file names get `prefix`.
fn diff(
    rec: &Manifest,
    rec_dir: &Path,
    new: &Manifest,
    new_dir: &Path,
    prefix: &str,
) -> Result<Vec<DiffRow>> {
    let mut rows = Vec::with_capacity(rec.outputs.len());
    for (name, sha) in &rec.outputs {
        let got = new
            .outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, h)| h.clone());
        let verdict = match (got.as_ref() == Some(sha), wall_clock(&rec.command, name)) {
            (true, _) => Verdict::Identical,
            (false, Some(w))
                if got.is_some()
                    && same_apart_from(w, &rec_dir.join(name), sha, &new_dir.join(name))? =>
            {
                Verdict::IdenticalExceptTime
            }
            _ => Verdict::Differs,
        };
        rows.push(DiffRow {
            file: format!("{prefix}{name}"),
            recorded: sha.clone(),
            reproduced: got.unwrap_or_default(),
            verdict,
        });
    }
    Ok(rows)
}

/// Whether the original `orig` (still holding the recorded bytes, SHA-256 `sha`) and `new` are
/// the same CSV apart from the wall-clock part `w`. False when the original is gone or changed.
fn same_apart_from(w: WallClock, orig: &Path, sha: &str, new: &Path) -> Result<bool> {
    if !orig.is_file() || sha256_file(orig)? != sha {
        eprintln!(
            "oodcert reproduce: {} is gone or changed since it was recorded; compared by SHA-256 only",
            orig.display()
        );
        return Ok(false);
    }
    let (a, b) = (CsvTable::read(orig)?, CsvTable::read(new)?);
    if a.header != b.header || a.rows.len() != b.rows.len() {
        return Ok(false);
    }
    Ok(match w {
        WallClock::Column(name) => {
            let t = a.col(name)?;
            a.rows.iter().zip(&b.rows).all(|(x, y)| {
                x.len() == y.len()
                    && x.iter()
                        .zip(y)
                        .enumerate()
                        .all(|(c, (p, q))| c == t || p == q)
            })
        }
        WallClock::Rows { column, prefix } => {
            let k = a.col(column)?;
            a.rows.iter().zip(&b.rows).all(|(x, y)| {
                x.get(k) == y.get(k) && (x.get(k).is_some_and(|v| v.starts_with(prefix)) || x == y)
            })
        }
    })
}

/// Writes `reproduce_diff.csv`, prints one line per output and fails if any differs.
fn report(rows: &[DiffRow], out: &Path) -> Result<()> {
    let path = out.join("reproduce_diff.csv");
    write_csv_atomic(&path, |w| {
        let e = |e: csv::Error| Error::Internal(e.to_string());
        w.write_record(["file", "recorded_sha256", "reproduced_sha256", "identical"])
            .map_err(e)?;
        for r in rows {
            w.write_record([&r.file, &r.recorded, &r.reproduced, r.verdict.label()])
                .map_err(e)?;
        }
        Ok(())
    })?;
    for r in rows {
        let v = match r.verdict {
            Verdict::Identical => "identical",
            Verdict::IdenticalExceptTime => "identical apart from its wall-clock timings",
            Verdict::Differs => "DIFFERS",
        };
        println!("{}: {v}", r.file);
    }
    let differ: Vec<&str> = rows
        .iter()
        .filter(|r| r.verdict == Verdict::Differs)
        .map(|r| r.file.as_str())
        .collect();
    if differ.is_empty() {
        let timed = rows
            .iter()
            .filter(|r| r.verdict == Verdict::IdenticalExceptTime)
            .count();
        if timed == 0 {
            println!("all {} recorded outputs reproduced bit for bit", rows.len());
        } else {
            println!(
                "all {} recorded outputs reproduced: {} bit for bit, {timed} apart from wall-clock timings (certify --no-timing writes a bit-for-bit certify.csv)",
                rows.len(),
                rows.len() - timed
            );
        }
        Ok(())
    } else {
        Err(Error::CheckFailed(format!(
            "{} of {} outputs differ from the recorded run ({}); see {}",
            differ.len(),
            rows.len(),
            differ.join(", "),
            path.display()
        )))
    }
}

/// Runs `f` recording `argv` (with the binary name first) as the command line of the manifests
/// it writes.
pub fn recording<T>(args: &[String], f: impl FnOnce() -> T) -> T {
    let argv = std::iter::once("oodcert".to_string())
        .chain(args.iter().cloned())
        .collect();
    with_invocation(argv, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn replay_args_redirect_out_and_pin_the_shard() {
        let out = Path::new("/new");
        let argv = v(&["certify", "--out", "old", "--shard", "env", "--n", "10"]);
        assert_eq!(
            replay_args(&argv, out, Some("1/3")),
            v(&["certify", "--n", "10", "--out", "/new", "--shard", "1/3"])
        );
        let argv = v(&["eval", "--out=old", "--shard", "x"]);
        assert_eq!(
            replay_args(&argv, out, None),
            v(&["eval", "--shard", "x", "--out", "/new"])
        );
    }

    #[test]
    fn runs_recorded_before_subsets_replay_with_first_k() {
        let old = serde_json::json!({"limit": 5});
        assert!(needs_first_k(&v(&["eval", "--limit", "5"]), &old));
        assert!(needs_first_k(
            &v(&["certify", "--limit", "5"]),
            &serde_json::json!({"run": {"limit": 5}, "shard": null})
        ));
        let new = serde_json::json!({"subset": {"rule": "stratified", "seed": 0}});
        assert!(!needs_first_k(&v(&["lipschitz", "--limit", "5"]), &new));
        assert!(!needs_first_k(
            &v(&["certify"]),
            &serde_json::json!({"run": {"subset": {"rule": "stratified", "seed": 1}}})
        ));
        assert!(!needs_first_k(&v(&["eval", "--subset", "first"]), &old));
        assert!(!needs_first_k(&v(&["eval", "--subset=stratified"]), &old));
        assert!(!needs_first_k(&v(&["train", "--config", "x"]), &old));
    }

    #[test]
    fn wall_clock_parts_and_nothing_else_are_set_aside() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.csv"), d.path().join("b.csv"));
        let check = |x: &str, y: &str, w: WallClock| {
            std::fs::write(&a, x).unwrap();
            std::fs::write(&b, y).unwrap();
            let sha = sha256_file(&a).unwrap();
            same_apart_from(w, &a, &sha, &b).unwrap()
        };
        let rows = wall_clock("lipschitz", "summary.csv").unwrap();
        let base = "quantity,n,mean\nlower_pgd,3,1.5\nseconds_global_once,1,0.25\n";
        assert!(check(base, &base.replace("0.25", "0.5"), rows));
        assert!(!check(base, &base.replace("1.5", "1.6"), rows));
        assert!(!check(base, &base.replace("seconds_global", "x"), rows));
        let col = wall_clock("merge", "certify.csv").unwrap();
        let base = "idx,time,radius\n0,0.1,0.5\n";
        assert!(check(base, &base.replace("0.1", "0.2"), col));
        assert!(!check(base, &base.replace("0.5", "0.6"), col));
        assert_eq!(wall_clock("eval", "metrics.csv"), None);
        // An original that no longer has its recorded bytes is compared by SHA-256 only.
        std::fs::write(&a, base).unwrap();
        assert!(!same_apart_from(col, &a, &"0".repeat(64), &a).unwrap());
    }

    #[test]
    fn recording_sets_the_manifest_command_line_on_this_thread_only() {
        let inner = recording(&v(&["certify", "--n", "5"]), || {
            Manifest::new("certify", serde_json::Value::Null, "cpu").argv
        });
        assert_eq!(inner, v(&["oodcert", "certify", "--n", "5"]));
        let after = Manifest::new("x", serde_json::Value::Null, "cpu").argv;
        assert_eq!(after, std::env::args().collect::<Vec<_>>());
    }
}
