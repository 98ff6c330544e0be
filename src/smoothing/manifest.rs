//! `manifest.json` of a certification run: everything the numbers depend on and nothing else
//! (no clock, host or path), so a single run and a merge of its shards write identical bytes.

use super::calibrate::Calibration;
use super::shard::Shard;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Format tag of this manifest.
pub const FORMAT: &str = "oodcert-certify/1";
/// The candle version this crate is built against (checked against Cargo.lock by a test).
pub const CANDLE_VERSION: &str = "0.11.1";

/// The non-deterministic provenance file beside a certify (or merge) output: the command line,
/// working directory, git state, clock and the outputs' SHA-256 (an `evidence::Manifest`). Kept
/// apart from `manifest.json`, which must be identical for a run and the merge of its shards.
pub const PROVENANCE: &str = "provenance.json";
/// The files a certify run or a merge writes, in the order their SHA-256s are recorded.
pub const OUTPUT_FILES: [&str; 4] = [
    "certify.csv",
    "curves.csv",
    "curves_all.csv",
    "manifest.json",
];
/// The column of `certify.csv` that holds wall-clock seconds (0 with `--no-timing`).
pub const WALL_CLOCK_COLUMN: &str = "time";

/// The run's configuration as it affects results (batch size and threads do not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub sigma: f64,
    pub n0: u64,
    pub n: u64,
    pub alpha: f64,
    pub seed: u64,
    pub limit: Option<u64>,
    pub score: String,
    pub temperature: f64,
    pub radius_step: f64,
    pub cal_n: u64,
    pub cal_limit: Option<u64>,
    pub clip_quantiles: (f64, f64),
    pub tpr: f64,
    /// False when the `time` column was written as 0 (`--no-timing`).
    pub timing: bool,
    /// The `--subset` rule and seed of `limit` and `cal_limit` when stratified; absent for the
    /// first-K rule (so first-K runs keep the manifest bytes of runs made before `--subset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<crate::data::subset::SubsetSpec>,
}

/// A dataset in the run, in sample-list order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetEntry {
    pub name: String,
    pub sha256: String,
    /// "id", "ood", "id-val" or "aux-val".
    pub role: String,
    /// Images in the dataset.
    pub size: u64,
    /// Images used: the first `used`, or those in `indices`.
    pub used: u64,
    /// Original indices of the certified images (ascending) under a stratified subset; absent
    /// means the first `used`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indices: Option<Vec<u64>>,
    /// SHA-256 of a validation set's stratified subset (`data::subset::indices_sha256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indices_sha256: Option<String>,
    /// The class filter (`NAME#CLASSES`) and the SHA-256 of the source indices it kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_filter: Option<crate::data::class_filter::ClassSelection>,
}

/// The manifest of a certify run or shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertifyManifest {
    pub format: String,
    pub oodcert_version: String,
    pub candle_version: String,
    pub config: RunConfig,
    pub calibration: Calibration,
    /// Certified datasets ("id"/"ood") in sample-list order, then validation sets.
    pub datasets: Vec<DatasetEntry>,
    pub model_sha256: String,
    pub model_spec: serde_json::Value,
    pub device: String,
    pub noise_layout: String,
    /// The rule for copies that fail the coupling check; absent = count-against (runs made
    /// before the field, whose bytes it keeps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupling: Option<super::coupling::Coupling>,
    pub conventions: Vec<String>,
    /// Samples in the whole run (all shards).
    pub total_samples: u64,
    /// The slice this directory holds; `null` for a whole run (or a merge).
    pub shard: Option<Shard>,
}

/// Statements of every convention used in the outputs.
pub fn conventions() -> Vec<String> {
    [
        "score: larger = more OOD; base detector ID iff S(x) <= gamma; decisions coded 1 = ID, 0 = OOD, -1 = abstain",
        "noise: delta ~ N(0, sigma^2 I) in pixel units of [0,1] images, not clipped; radii are l2 in pixel units",
        "predict/radius/p_lo/count: Cohen et al. 2019 CERTIFY (copies 0..n0 select, n0..n0+n estimate); predict_test: PREDICT on the n estimation counts",
        "h = (clip(S, a, b) - a)/(b - a); score_lo/score_hi, h_lo/h_hi: one-sided (1-alpha) CDF bounds (DKW, Massart); *_hoeffding: Hoeffding",
        "radius_score: radius of the sample's true role decision (ID: h_hi < t; OOD: h_lo > t) by the Phi^-1-Lipschitz lemma; -1 = not certified",
        "curves: worst case over the l2 ball of each radius; abstained or uncertified samples count as wrong; ID positive; FPR at first TPR >= 0.95",
        "shards: contiguous slices [floor(kM/N), floor((k+1)M/N)) of the sample list (datasets in order, first `used` of each)",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl CertifyManifest {
    /// The pretty-printed JSON bytes (with a final newline).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Internal(format!("serialising manifest: {e}")))?;
        Ok((text + "\n").into_bytes())
    }

    /// Reads `manifest.json`.
    pub fn read(path: &Path) -> Result<CertifyManifest> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let m: CertifyManifest = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("not a certify manifest: {e}")))?;
        if m.format != FORMAT {
            return Err(Error::bad_file(
                path,
                format!("format {} is not {FORMAT}", m.format),
            ));
        }
        Ok(m)
    }

    /// The certified (dataset index, original sample index) list in order, from the dataset
    /// entries: each entry's `indices`, or its first `used` images.
    pub fn sample_list(&self) -> Vec<(usize, u64)> {
        self.datasets
            .iter()
            .enumerate()
            .filter(|(_, d)| d.role == "id" || d.role == "ood")
            .flat_map(|(k, d)| match &d.indices {
                Some(idx) => idx.iter().map(|&i| (k, i)).collect::<Vec<_>>(),
                None => (0..d.used).map(|i| (k, i)).collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn candle_version_matches_cargo_lock() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
        let want = format!(
            "name = \"candle-core\"\nversion = \"{}\"",
            super::CANDLE_VERSION
        );
        assert!(
            lock.contains(&want),
            "update CANDLE_VERSION to the candle-core in Cargo.lock"
        );
    }
}
