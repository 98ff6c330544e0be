//! `oodcert merge`: joins shard directories into the output a single run would have written,
//! refusing shards whose manifests differ (beyond the shard field), a missing or repeated shard,
//! or a shard whose rows are not exactly its slice of the sample list.

use super::manifest::{CertifyManifest, PROVENANCE};
use super::output::write_run;
use super::record::{CertifyRecord, read_csv};
use crate::error::{Error, Result};
use crate::evidence::manifest::check_recorded_outputs;
use std::path::{Path, PathBuf};

/// Reads, checks and merges `shards` into `out`.
pub fn merge(out: &Path, shards: &[PathBuf]) -> Result<()> {
    if shards.is_empty() {
        return Err(Error::BadInput(
            "merge needs at least one shard directory".into(),
        ));
    }
    crate::evidence::manifest::check_out_dir(out, "certify")?;
    crate::evidence::manifest::check_out_not_a_shard(out, shards)?;
    let mut parts: Vec<(CertifyManifest, Vec<CertifyRecord>, &PathBuf)> = Vec::new();
    for dir in shards {
        // A shard of an older version has no provenance record, so nothing to check it against.
        let record = dir.join(PROVENANCE);
        if record.is_file() {
            let recorded = crate::evidence::Manifest::read(&record)?;
            check_recorded_outputs(
                dir,
                PROVENANCE,
                &recorded,
                &["certify.csv", "manifest.json"],
            )?;
        }
        let m = CertifyManifest::read(&dir.join("manifest.json"))?;
        let r = read_csv(&dir.join("certify.csv"))?;
        parts.push((m, r, dir));
    }
    let reference = {
        let mut m = parts[0].0.clone();
        m.shard = None;
        m
    };
    let count = match parts[0].0.shard {
        Some(s) => s.count,
        None => {
            return Err(Error::BadInput(format!(
                "{}: not a shard (its manifest has no shard field)",
                parts[0].2.display()
            )));
        }
    };
    let mut seen = vec![None::<&PathBuf>; count as usize];
    for (m, _, dir) in &parts {
        let s = m.shard.ok_or_else(|| {
            Error::BadInput(format!(
                "{}: not a shard (its manifest has no shard field)",
                dir.display()
            ))
        })?;
        if s.count != count {
            return Err(Error::BadInput(format!(
                "{}: shard of {} slices, but {} has {count}",
                dir.display(),
                s.count,
                parts[0].2.display()
            )));
        }
        let mut plain = m.clone();
        plain.shard = None;
        if plain.noise_layout != reference.noise_layout {
            let short = |l: &str| l.split(':').next().unwrap_or("?").to_string();
            return Err(Error::BadInput(format!(
                "{}: manifest differs from {}'s in its noise layout ({} vs {}): re-run the shards with one --noise-layout",
                dir.display(),
                parts[0].2.display(),
                short(&plain.noise_layout),
                short(&reference.noise_layout)
            )));
        }
        if plain.coupling != reference.coupling {
            let name = |c: Option<super::coupling::Coupling>| {
                c.unwrap_or(super::coupling::Coupling::CountAgainst).name()
            };
            return Err(Error::BadInput(format!(
                "{}: manifest differs from {}'s in its coupling rule ({} vs {}): re-run the shards with one --coupling",
                dir.display(),
                parts[0].2.display(),
                name(plain.coupling),
                name(reference.coupling)
            )));
        }
        if plain != reference {
            return Err(Error::BadInput(format!(
                "{}: manifest differs from {}'s beyond the shard field (different config, data, model, calibration or version)",
                dir.display(),
                parts[0].2.display()
            )));
        }
        let slot = &mut seen[s.index as usize];
        if let Some(other) = slot {
            return Err(Error::BadInput(format!(
                "shard {}/{count} given twice: {} and {}",
                s.index,
                other.display(),
                dir.display()
            )));
        }
        *slot = Some(dir);
    }
    if let Some(k) = seen.iter().position(Option::is_none) {
        return Err(Error::BadInput(format!("shard {k}/{count} is missing")));
    }
    parts.sort_by_key(|(m, _, _)| m.shard.map_or(0, |s| s.index));
    let list = reference.sample_list();
    if list.len() as u64 != reference.total_samples {
        return Err(Error::BadInput(format!(
            "{}: manifest lists {} samples but total_samples is {}",
            shards[0].display(),
            list.len(),
            reference.total_samples
        )));
    }
    let mut records = Vec::with_capacity(list.len());
    for (m, rows, dir) in parts {
        let range = m.shard.map_or(0..0, |s| s.range(reference.total_samples));
        let want = &list[range.start as usize..range.end as usize];
        let ok = rows.len() == want.len()
            && rows
                .iter()
                .zip(want)
                .all(|(r, &(d, i))| r.idx == i && r.dataset == reference.datasets[d].name);
        if !ok {
            return Err(Error::BadInput(format!(
                "{}: certify.csv does not hold exactly samples {}..{} of the run ({} rows)",
                dir.display(),
                range.start,
                range.end,
                rows.len()
            )));
        }
        records.extend(rows);
    }
    write_run(out, &records, &reference)
}
