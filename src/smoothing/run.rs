//! Certifies a run's sample list (or one shard of it): datasets in order, the chosen images of
//! each (the first `limit`, or a `--subset` list of original indices), sample i of dataset D with
//! the noise stream (seed, D's name, i), i being the ORIGINAL index in D.

use super::engine::{BatchScorer, clean_scores};
use super::noise::NoiseKey;
use super::record::CertifyRecord;
use super::sample::{SampleRef, SmoothingParams, Thresholds, certify_sample};
use super::shard::Shard;
use crate::data::Dataset;
use crate::error::{Error, Result};
use indicatif::ProgressBar;
use std::time::Instant;

/// A dataset to certify and whether it is in-distribution.
#[derive(Debug, Clone, Copy)]
pub struct CertifySet<'a> {
    /// The images.
    pub data: &'a Dataset,
    /// Role of every sample in it.
    pub is_id: bool,
}

/// Number of images used from a dataset of `size` under `limit`.
pub fn used(size: usize, limit: Option<u64>) -> u64 {
    limit.map_or(size as u64, |l| l.min(size as u64))
}

/// The records of the samples in `shard`'s slice (all samples when `None`), in order: the first
/// `limit` images of each set.
#[allow(clippy::too_many_arguments)]
pub fn certify_sets(
    scorer: &dyn BatchScorer,
    p: &SmoothingParams,
    th: &Thresholds,
    seed: u64,
    sets: &[CertifySet<'_>],
    limit: Option<u64>,
    shard: Option<Shard>,
    timing: bool,
    progress: &ProgressBar,
) -> Result<Vec<CertifyRecord>> {
    let chosen: Vec<Vec<u64>> = sets
        .iter()
        .map(|s| (0..used(s.data.len(), limit)).collect())
        .collect();
    certify_subsets(scorer, p, th, seed, sets, &chosen, shard, timing, progress)
}

/// The records of the samples in `shard`'s slice (all samples when `None`), in order:
/// `chosen[k]` lists the original indices certified from `sets[k]` (ascending, as
/// `data::subset` chooses them); records carry those indices and their noise streams.
#[allow(clippy::too_many_arguments)]
pub fn certify_subsets(
    scorer: &dyn BatchScorer,
    p: &SmoothingParams,
    th: &Thresholds,
    seed: u64,
    sets: &[CertifySet<'_>],
    chosen: &[Vec<u64>],
    shard: Option<Shard>,
    timing: bool,
    progress: &ProgressBar,
) -> Result<Vec<CertifyRecord>> {
    p.check()?;
    if chosen.len() != sets.len() {
        return Err(Error::Internal(format!(
            "{} index lists for {} datasets",
            chosen.len(),
            sets.len()
        )));
    }
    for (s, idx) in sets.iter().zip(chosen) {
        if let Some(&bad) = idx.iter().find(|&&i| i >= s.data.len() as u64) {
            return Err(Error::BadInput(format!(
                "dataset {}: index {bad} is beyond its {} images",
                s.data.name,
                s.data.len()
            )));
        }
    }
    let list: Vec<(usize, u64)> = chosen
        .iter()
        .enumerate()
        .flat_map(|(k, idx)| idx.iter().map(move |&i| (k, i)))
        .collect();
    let range = shard.map_or(0..list.len() as u64, |s| s.range(list.len() as u64));
    let keys: Vec<NoiseKey> = sets
        .iter()
        .map(|s| NoiseKey::with_layout(seed, &s.data.name, p.noise))
        .collect();
    let mut out = Vec::with_capacity((range.end - range.start) as usize);
    for &(k, i) in &list[range.start as usize..range.end as usize] {
        let set = sets[k];
        if set.data.dim() != scorer.dim() {
            return Err(Error::BadInput(format!(
                "dataset {} has images of shape {:?}, the model expects {} values",
                set.data.name,
                set.data.shape,
                scorer.dim()
            )));
        }
        let started = Instant::now();
        let x = set.data.image(i as usize);
        let clean = clean_scores(scorer, x, 1)?[0];
        let sample = SampleRef {
            dataset: &set.data.name,
            key: &keys[k],
            index: i,
            label: set.data.labels[i as usize],
            is_id: set.is_id,
            x,
            clean_score: clean,
        };
        let mut rec = certify_sample(scorer, p, th, sample, progress)?;
        if timing {
            rec.time = started.elapsed().as_secs_f64();
        }
        out.push(rec);
    }
    Ok(out)
}
