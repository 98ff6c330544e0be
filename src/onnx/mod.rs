//! `oodcert import --onnx`: an ONNX classifier (opset ≥ 11) → an oodcert model whose safetensors
//! metadata holds its layer tree ([`Arch::Graph`]). The protobuf is decoded by hand-declared
//! `prost` messages ([`proto`]), constants become weights, and the graph must be a
//! series-parallel tree of the supported operators ([`graph::SUPPORTED_OPS`]); anything else is
//! one line naming the node, and nothing is written.

mod constants;
mod graph;
mod normalisation;
mod ops;
pub mod proto;
mod series_parallel;

pub use graph::SUPPORTED_OPS;

use crate::error::{Error, Result};
use crate::model::arch::GraphLayer;
use crate::model::{Arch, Classifier, Model, ModelSpec};
use candle_core::{DType, Device, Tensor};
use graph::{OnnxGraph, Shape, label};
use std::path::Path;

/// Options of an import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The number of classes the caller expects (checked against the graph's output width).
    pub num_classes: Option<usize>,
    /// The model's name; default the file stem.
    pub name: Option<String>,
}

/// The lowest default-domain opset read.
pub const MIN_OPSET: i64 = 11;

/// Reads `path` as an ONNX model and builds the equivalent oodcert model (f32, CPU).
pub fn import_onnx(path: &Path, opts: &ImportOptions) -> Result<Model> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let bad = |msg: String| Error::bad_file(path, msg);
    let model = proto::decode_model(&bytes)
        .map_err(|e| bad(format!("not an ONNX model (protobuf decoding failed: {e})")))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version);
    match opset {
        Some(v) if v >= MIN_OPSET => {}
        other => {
            return Err(bad(format!(
                "default-domain opset {other:?} is not supported; export with \
                 opset_version ≥ {MIN_OPSET}"
            )));
        }
    }
    let g = model
        .graph
        .as_ref()
        .ok_or_else(|| bad("the model has no graph".into()))?;
    let mut og = OnnxGraph::new(g).map_err(|e| bad(e.to_string()))?;
    let (input, shape) = graph_input(g, &og).map_err(|e| bad(e.to_string()))?;
    let outputs: Vec<&str> = g
        .output
        .iter()
        .map(|o| o.name.as_deref().unwrap_or(""))
        .collect();
    let [output] = outputs[..] else {
        return Err(bad(format!(
            "the graph has {} outputs; a classifier has one (the logits)",
            outputs.len()
        )));
    };
    og.output = output.to_string();
    let norm = og
        .normalisation(&input, shape[0])
        .map_err(|e| bad(e.to_string()))?;
    let (layers, out_shape) = og
        .layers_to_output(&norm.output, Shape::Map(shape))
        .map_err(|e| bad(e.to_string()))?;
    let (mean, std) = (norm.mean, norm.std);
    if let Some(i) = og.done.iter().position(|d| !d) {
        return Err(bad(format!(
            "{} is not on the path from the input to the output; such graphs are not supported",
            label(og.nodes, i)
        )));
    }
    let k = match (layers.last(), out_shape) {
        (Some(GraphLayer::Linear { out_features, .. }), Shape::Flat(k)) if *out_features == k => k,
        _ => {
            return Err(bad(
                "the graph must end in its classifier: a Gemm or MatMul (+ Add) giving the \
                 logits (a Softmax or other operator after it is not supported)"
                    .into(),
            ));
        }
    };
    if let Some(want) = opts.num_classes
        && want != k
    {
        return Err(bad(format!(
            "the graph gives {k} logits, --num-classes says {want}"
        )));
    }
    let name = opts.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "onnx".into())
    });
    let spec = ModelSpec {
        arch: Arch::Graph { name, layers },
        input_shape: shape,
        num_classes: k,
        mean,
        std,
    };
    let tensors = std::mem::take(&mut og.tensors);
    let m = Model::from_tensors(spec, tensors, DType::F32, &Device::Cpu, path)?;
    // One forward pass checks the layer tree end to end.
    let x = Tensor::zeros((1, shape[0], shape[1], shape[2]), DType::F32, &Device::Cpu)?;
    let logits = m
        .logits(&x)
        .map_err(|e| bad(format!("the imported layers do not compute: {e}")))?;
    if logits.dims() != [1, k] {
        return Err(Error::Internal(format!(
            "imported model gives logits of shape {:?}, expected [1, {k}]",
            logits.dims()
        )));
    }
    Ok(m)
}

/// Imports `onnx` and writes the model to `out` atomically; returns the model.
pub fn import_to_file(onnx: &Path, out: &Path, opts: &ImportOptions) -> Result<Model> {
    if crate::evidence::manifest::same_path(onnx, out) {
        return Err(Error::BadInput(format!(
            "--out {} is the ONNX file being imported; write the model to another file",
            out.display()
        )));
    }
    let m = import_onnx(onnx, opts)?;
    m.save(out)?;
    Ok(m)
}

/// The single computed graph input and its `(c, h, w)` (the batch axis may be symbolic).
fn graph_input(g: &proto::GraphProto, og: &OnnxGraph) -> Result<(String, [usize; 3])> {
    let inputs: Vec<&proto::ValueInfoProto> = g
        .input
        .iter()
        .filter(|v| !og.is_const(v.name.as_deref().unwrap_or("")))
        .collect();
    let [v] = inputs[..] else {
        return Err(Error::BadInput(format!(
            "the graph has {} inputs besides its weights; a classifier has one (the image \
             batch)",
            inputs.len()
        )));
    };
    let name = v.name.clone().unwrap_or_default();
    let tt = v.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    if let Some(e) = tt
        .and_then(|t| t.elem_type)
        .filter(|&e| e != proto::data_type::FLOAT)
    {
        return Err(Error::BadInput(format!(
            "input `{name}` has element type {e}; float32 (1) is supported"
        )));
    }
    let dims: Vec<Option<usize>> = tt
        .and_then(|t| t.shape.as_ref())
        .map(|s| {
            s.dim
                .iter()
                .map(|d| {
                    d.dim_value
                        .and_then(|v| usize::try_from(v).ok())
                        .filter(|&v| v > 0)
                })
                .collect()
        })
        .unwrap_or_default();
    match dims[..] {
        [_, Some(c), Some(h), Some(w)] => Ok((name, [c, h, w])),
        _ => Err(Error::BadInput(format!(
            "input `{name}` must have shape (N, C, H, W) with fixed C, H, W (got {dims:?})"
        ))),
    }
}
