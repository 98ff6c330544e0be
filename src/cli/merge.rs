//! `oodcert merge`: joins the shard directories of one certify run into the output a single run
//! would have written (byte for byte), after checking their manifests and slices.

use crate::error::Result;
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
    crate::smoothing::merge::merge(&a.out, &a.shards)?;
    eprintln!("merge: {} shards into {}", a.shards.len(), a.out.display());
    Ok(())
}
