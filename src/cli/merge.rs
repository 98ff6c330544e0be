//! `oodcert merge`: joins the shard directories of one certify or lipschitz run into the output a
//! single run would have written (byte for byte, apart from wall-clock parts), after checking their
//! manifests and slices. For certify, `provenance.json` records the merge command and each shard's
//! own provenance; for lipschitz, `manifest.json` does (`config.shards`); either way `reproduce
//! --manifest` can re-run the shards and the merge.

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
    /// Shard directories written by `oodcert certify --shard k/N` or `oodcert lipschitz --shard
    /// k/N`, one per k.
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
}

/// Runs `oodcert merge`.
pub fn run(a: Args) -> Result<()> {
    let lipschitz = a
        .shards
        .iter()
        .filter(|d| d.join("lipschitz.csv").is_file())
        .count();
    if lipschitz > 0 {
        if lipschitz != a.shards.len() {
            return Err(crate::error::Error::BadInput(
                "merge: some directories hold lipschitz.csv and some do not; merge the shards of one run".into(),
            ));
        }
        crate::lipschitz::merge::merge(&a.out, &a.shards)?;
        eprintln!(
            "merge: {} Lipschitz shards into {}",
            a.shards.len(),
            a.out.display()
        );
        return Ok(());
    }
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
