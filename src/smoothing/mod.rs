//! Randomized smoothing certificates (theory.md §3–4): Cohen et al. (2019)'s two-outcome smoothed
//! detector and the clipped smoothed energy with Hoeffding / CDF-based (Kumar et al. 2020) bounds
//! and the Φ⁻¹-Lipschitz lemma; counter-based noise streams; the Monte Carlo engine; run outputs
//! (certify.csv, curves.csv, manifest.json), shards and their merge.

pub mod binomial;
pub mod box_muller;
pub mod calibrate;
pub mod clip;
pub mod cohen;
pub mod coupling;
pub mod curves;
pub mod dense_mc;
pub mod engine;
pub mod lemma;
pub mod manifest;
pub mod mean_bounds;
pub mod merge;
pub mod noise;
pub mod noise_v2;
pub mod noise_v2_checked;
pub mod normal;
pub mod output;
pub mod philox;
pub mod record;
pub mod run;
pub mod sample;
pub mod shard;
