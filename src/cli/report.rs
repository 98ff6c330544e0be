//! `oodcert report --runs DIR… --out DIR`: tables, LaTeX, plots and `report.md` from run folders.

use crate::error::Result;
use crate::evidence::report::build_report;
use std::path::PathBuf;

/// Flags of `oodcert report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run folders, or parents holding run folders (searched up to 4 levels deep).
    #[arg(long, required = true, num_args = 1..)]
    pub runs: Vec<PathBuf>,
    /// Output folder (created; files in it are replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
}

/// Builds the report and prints the path of `report.md` on stdout.
pub fn run(a: Args) -> Result<()> {
    let files = build_report(&a.runs, &a.out)?;
    eprintln!(
        "oodcert report: wrote {} files under {}",
        files.len(),
        a.out.display()
    );
    println!("{}", a.out.join("report.md").display());
    Ok(())
}
