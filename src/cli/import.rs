//! `oodcert import --onnx`: an ONNX classifier → an oodcert model file (see [`crate::onnx`]).

use crate::error::Result;
use crate::model::Classifier;
use crate::onnx::{ImportOptions, import_to_file};
use std::path::PathBuf;

/// Flags of `oodcert import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ONNX file (opset ≥ 11), e.g. from `torch.onnx.export(model, x, "m.onnx")`.
    #[arg(long)]
    pub onnx: PathBuf,
    /// The model file to write (safetensors with the layer graph in its metadata).
    #[arg(long)]
    pub out: PathBuf,
    /// The number of classes expected (checked against the graph's logits).
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// A name for the model in reports (default: the ONNX file's stem).
    #[arg(long)]
    pub name: Option<String>,
}

/// Runs `oodcert import`.
pub fn run(a: Args) -> Result<()> {
    let opts = ImportOptions {
        num_classes: a.num_classes,
        name: a.name,
    };
    let m = import_to_file(&a.onnx, &a.out, &opts)?;
    let [c, h, w] = m.spec().input_shape;
    eprintln!(
        "import: {} → {} ({c}×{h}×{w} input, {} classes, {} parameters)",
        a.onnx.display(),
        a.out.display(),
        m.spec().num_classes,
        m.num_trainable()
    );
    Ok(())
}
