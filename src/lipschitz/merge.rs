//! Merging the shards of a Lipschitz run (`oodcert lipschitz --shard k/N`, then `oodcert merge`)
//! into the files a single run writes: lipschitz.csv and summary.csv byte-identical apart from
//! summary's `seconds_*` rows, global.json identical. Refused (exit 2): shards whose manifests
//! differ beyond the shard field, a missing or repeated shard, a shard whose rows are not exactly
//! its slice of the chosen samples.

use super::output::DATA_FILES;
use super::record::{self, LipschitzRecord};
use super::summary::{self, STAGES, Timings};
use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::evidence::manifest::Manifest;
use crate::smoothing::shard::Shard;
use std::path::{Path, PathBuf};

/// One shard directory, read.
struct Part<'a> {
    dir: &'a PathBuf,
    manifest: Manifest,
    shard: Shard,
    rows: Vec<LipschitzRecord>,
    global: Vec<u8>,
    times: Timings,
}

/// What must agree between shards: the manifest without the shard field and the wall clock.
fn identity(m: &Manifest) -> serde_json::Value {
    let mut config = m.config.clone();
    if let Some(c) = config.as_object_mut() {
        c.remove("shard");
    }
    serde_json::json!({
        "config": config, "seeds": m.seeds, "datasets": m.datasets, "model": m.model_sha256,
        "version": m.oodcert_version, "git": m.git_revision, "device": m.device,
    })
}

/// Seconds per stage of a shard, from its summary.csv's `seconds_*` rows (mean × n).
fn read_times(path: &Path) -> Result<Timings> {
    let t = crate::evidence::CsvTable::read(path)?;
    let (cq, cn, cm) = (t.col("quantity")?, t.col("n")?, t.col("mean")?);
    let mut out = Timings::default();
    for r in 0..t.rows.len() {
        let q = t.cell(r, cq);
        if q == "seconds_global_once" {
            out.global_once = t.num(r, cm)?;
        } else if let Some(k) = q
            .strip_prefix("seconds_per_sample_")
            .and_then(|name| STAGES.iter().position(|s| *s == name))
        {
            out.stages[k] = t.num(r, cm)? * t.num(r, cn)?;
        }
    }
    Ok(out)
}

fn read_part(dir: &PathBuf) -> Result<Part<'_>> {
    let mpath = dir.join("manifest.json");
    let manifest = Manifest::read(&mpath)?;
    crate::evidence::manifest::check_recorded_outputs(
        dir,
        "manifest.json",
        &manifest,
        &["lipschitz.csv", "global.json"],
    )?;
    if manifest.command != "lipschitz" {
        return Err(Error::BadInput(format!(
            "{}: not a `oodcert lipschitz` shard (its manifest records `{}`)",
            dir.display(),
            manifest.command
        )));
    }
    let shard: Shard = serde_json::from_value(manifest.config["shard"].clone()).map_err(|_| {
        Error::BadInput(format!(
            "{}: not a shard (its manifest has no shard field); run `oodcert lipschitz --shard k/N`",
            dir.display()
        ))
    })?;
    let global_path = dir.join("global.json");
    let global = std::fs::read(&global_path)
        .map_err(|e| Error::io(format!("reading {}", global_path.display()), e))?;
    let rows = record::read_csv(&dir.join("lipschitz.csv"))?;
    // A shard whose manifest records the pattern search must carry its column in every row (a
    // file with the column stripped would otherwise read as one from before it existed).
    if !manifest.config["pattern"].is_null() && rows.iter().any(|r| r.lower_pattern.is_none()) {
        return Err(Error::BadInput(format!(
            "{}: its manifest records the pattern search but lipschitz.csv lacks lower_pattern values; re-run the shard",
            dir.display()
        )));
    }
    Ok(Part {
        dir,
        shard,
        rows,
        times: read_times(&dir.join("summary.csv"))?,
        global,
        manifest,
    })
}

/// Reads, checks and merges the Lipschitz shard directories `shards` into `out`; the merged
/// manifest records command `merge`, the run's config (without `shard`) and, under
/// `config.shards`, every shard's directory and manifest. Returns the merged rows.
pub fn merge(out: &Path, shards: &[PathBuf]) -> Result<Vec<LipschitzRecord>> {
    let started = std::time::Instant::now();
    if shards.is_empty() {
        return Err(Error::BadInput(
            "merge needs at least one shard directory".into(),
        ));
    }
    crate::evidence::manifest::check_out_dir(out, "lipschitz")?;
    crate::evidence::manifest::check_out_not_a_shard(out, shards)?;
    let mut parts = shards.iter().map(read_part).collect::<Result<Vec<_>>>()?;
    let first = &parts[0];
    let (reference, count) = (identity(&first.manifest), first.shard.count);
    let mut seen: Vec<Option<&PathBuf>> = vec![None; count as usize];
    for p in &parts {
        if p.shard.count != count || p.shard.index >= count {
            return Err(Error::BadInput(format!(
                "{}: shard of {} slices, but {} has {count}; merge the shards of one run",
                p.dir.display(),
                p.shard.count,
                first.dir.display()
            )));
        }
        if identity(&p.manifest) != reference || p.global != first.global {
            return Err(Error::BadInput(format!(
                "{}: manifest or global.json differs from {}'s beyond the shard field (different config, data, model or version); merge the shards of one run",
                p.dir.display(),
                first.dir.display()
            )));
        }
        let slot = &mut seen[p.shard.index as usize];
        if let Some(other) = slot {
            return Err(Error::BadInput(format!(
                "shard {}/{count} given twice: {} and {}",
                p.shard.index,
                other.display(),
                p.dir.display()
            )));
        }
        *slot = Some(p.dir);
    }
    if let Some(k) = seen.iter().position(Option::is_none) {
        return Err(Error::BadInput(format!(
            "shard {k}/{count} is missing; give every shard directory of the run"
        )));
    }
    parts.sort_by_key(|p| p.shard.index);
    // The chosen samples: their number and the SHA-256 of their original indices.
    let total = first_dataset_n(&parts[0].manifest, parts[0].dir)?;
    let want_sha = parts[0].manifest.config["subsets"][0]["indices_sha256"]
        .as_str()
        .map(str::to_string);
    let mut rows = Vec::with_capacity(total);
    let mut times = Timings::default();
    for p in &parts {
        let r = p.shard.range(total as u64);
        if p.rows.len() as u64 != r.end - r.start {
            return Err(Error::BadInput(format!(
                "{}: lipschitz.csv holds {} rows, but slice {}/{count} of the run's {total} samples has {}",
                p.dir.display(),
                p.rows.len(),
                p.shard.index,
                r.end - r.start
            )));
        }
        rows.extend(p.rows.iter().cloned());
        for (t, s) in times.stages.iter_mut().zip(p.times.stages) {
            *t += s;
        }
        times.global_once = times.global_once.max(p.times.global_once);
    }
    let indices: Vec<usize> = rows.iter().map(|r| r.index).collect();
    if want_sha.is_some_and(|w| w != crate::data::subset::indices_sha256(&indices)) {
        return Err(Error::BadInput(format!(
            "the shards' rows are not the run's chosen samples in order (their indices do not match config.subsets in {}); re-run the shards",
            parts[0].dir.display()
        )));
    }
    let mut config = parts[0].manifest.config.clone();
    if let Some(c) = config.as_object_mut() {
        c.remove("shard");
        c.insert(
            "shards".into(),
            serde_json::Value::Array(
                parts
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "dir": p.dir.display().to_string(),
                            "provenance": p.manifest,
                        })
                    })
                    .collect(),
            ),
        );
    }
    let src = &parts[0].manifest;
    let mut man = Manifest::new("merge", config, &src.device);
    man.seeds = src.seeds.clone();
    man.datasets = src.datasets.clone();
    man.model_sha256 = src.model_sha256.clone();
    std::fs::create_dir_all(out)
        .map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
    write_atomic(&out.join("lipschitz.csv"), &record::to_csv_bytes(&rows)?)?;
    write_atomic(
        &out.join("summary.csv"),
        &summary::to_csv_bytes(&rows, &times)?,
    )?;
    write_atomic(&out.join("global.json"), &parts[0].global)?;
    for f in DATA_FILES {
        man.add_output(out, f)?;
    }
    man.elapsed_s = started.elapsed().as_secs_f64();
    man.write(out)?;
    Ok(rows)
}

/// The number of chosen samples of the run (its first dataset record).
fn first_dataset_n(m: &Manifest, dir: &Path) -> Result<usize> {
    m.datasets
        .first()
        .map(|d| d.n)
        .ok_or_else(|| Error::BadInput(format!("{}: manifest lists no datasets", dir.display())))
}
