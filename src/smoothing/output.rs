//! Writes a run directory: `certify.csv`, `curves.csv` (detector certificate), `curves_all.csv`
//! (every certificate) and `manifest.json`, each atomically,
//! all three pure functions of (records, manifest) so a merge reproduces a single run exactly.

use super::curves::{curve_csv_bytes, curves, curves_csv_bytes};
use super::manifest::CertifyManifest;
use super::record::{CertifyRecord, to_csv_bytes};
use crate::error::Result;
use crate::evidence::write_atomic;
use std::path::Path;

/// Writes the three output files of `records` under `manifest` into `dir`.
pub fn write_run(dir: &Path, records: &[CertifyRecord], manifest: &CertifyManifest) -> Result<()> {
    let rows = curves(records, manifest.config.sigma, manifest.config.radius_step)?;
    write_atomic(&dir.join("certify.csv"), &to_csv_bytes(records)?)?;
    // curves.csv is the contract (the detector certificate); curves_all.csv adds the score ones.
    write_atomic(
        &dir.join("curves.csv"),
        &curve_csv_bytes(&rows, "detector")?,
    )?;
    write_atomic(&dir.join("curves_all.csv"), &curves_csv_bytes(&rows)?)?;
    write_atomic(&dir.join("manifest.json"), &manifest.to_bytes()?)
}
