//! `oodcert report --runs DIR… --out DIR`: tables, LaTeX, plots, `report.md` and `index.html`
//! from run folders.

use crate::error::Result;
use crate::evidence::report::build_report;
use std::path::PathBuf;

/// Flags of `oodcert report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run folders, or parents holding run folders (searched up to 4 levels deep).
    #[arg(long, required = true, num_args = 1..)]
    pub runs: Vec<PathBuf>,
    /// Files of `oodcert claims`: claims.csv (across seeds, one per benchmark) and
    /// paired_claims.csv (paired radii, `--paired-baseline/--paired-arm`): the verdict tables that
    /// open the report.
    #[arg(long, num_args = 1..)]
    pub claims: Vec<PathBuf>,
    /// Output folder: built beside it and swapped in whole, so it holds exactly this report. An
    /// existing folder must be empty or an earlier report holding only report files.
    #[arg(long)]
    pub out: PathBuf,
}

/// Builds the report and prints the path of `index.html` on stdout.
pub fn run(a: Args) -> Result<()> {
    let files = build_report(&a.runs, &a.claims, &a.out)?;
    eprintln!(
        "oodcert report: wrote {} files under {}",
        files.len(),
        a.out.display()
    );
    println!("{}", a.out.join("index.html").display());
    Ok(())
}
