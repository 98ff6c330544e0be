//! Writes a Lipschitz run's files: lipschitz.csv, summary.csv, global.json, then manifest.json
//! (which records the SHA-256 of the other three), each atomically.

use super::record::{self, LipschitzRecord};
use super::summary::{self, Timings};
use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::evidence::manifest::Manifest;
use std::path::Path;
use std::time::Instant;

/// The data files of a run, in the order the manifest lists them.
pub const DATA_FILES: [&str; 3] = ["lipschitz.csv", "summary.csv", "global.json"];

/// Writes `rows`, their summary with `times`, `global_json` and `man` into `dir`.
pub fn write_run(
    dir: &Path,
    rows: &[LipschitzRecord],
    times: &Timings,
    global_json: &str,
    mut man: Manifest,
    started: Instant,
) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    write_atomic(&dir.join("lipschitz.csv"), &record::to_csv_bytes(rows)?)?;
    write_atomic(
        &dir.join("summary.csv"),
        &summary::to_csv_bytes(rows, times)?,
    )?;
    write_atomic(&dir.join("global.json"), global_json.as_bytes())?;
    for f in DATA_FILES {
        man.add_output(dir, f)?;
    }
    man.elapsed_s = started.elapsed().as_secs_f64();
    man.write(dir)?;
    eprintln!(
        "oodcert lipschitz: wrote {}/{{lipschitz.csv,summary.csv,global.json,manifest.json}}",
        dir.display()
    );
    Ok(())
}
