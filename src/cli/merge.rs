//! `oodcert merge`: joins the shard directories of one certify run into the output a single run
//! would have written (byte for byte), after checking their manifests and slices; `provenance.json`
//! records the merge command and each shard's own provenance (so `reproduce --manifest` can re-run
//! the shards and the merge).

use crate::error::Result;
use crate::evidence::Manifest;
use crate::smoothing::manifest::{CertifyManifest, PROVENANCE};
use std::path::PathBuf;

/// Flags of `oodcert merge`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Shard directories written by `oodcert certify --shard k/N`, one per k.
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
}

/// Runs `oodcert merge`.
pub fn run(a: Args) -> Result<()> {
    let t0 = std::time::Instant::now();
    crate::smoothing::merge::merge(&a.out, &a.shards)?;
    // Provenance of the merge: each shard's recorded command (null for a shard written before
    // certify recorded provenance), in the order given.
    let mut shards = Vec::with_capacity(a.shards.len());
    for dir in &a.shards {
        let p = dir.join(PROVENANCE);
        let recorded = if p.is_file() {
            Some(Manifest::read(&p)?)
        } else {
            eprintln!(
                "merge: {} has no {PROVENANCE}; the merge cannot be re-run by `reproduce --manifest`",
                dir.display()
            );
            None
        };
        shards.push(serde_json::json!({
            "dir": dir.display().to_string(),
            "provenance": recorded,
        }));
    }
    let merged = CertifyManifest::read(&a.out.join("manifest.json"))?;
    let config = serde_json::json!({ "run": &merged.config, "shards": shards });
    crate::cli::certify::write_provenance(&a.out, "merge", config, &merged, t0)?;
    eprintln!("merge: {} shards into {}", a.shards.len(), a.out.display());
    Ok(())
}
