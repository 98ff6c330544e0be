//! What a model is: architecture, input shape, classes and input normalisation, stored with the
//! weights (safetensors metadata) so a file is self-describing.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The architectures oodcert builds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Arch {
    /// Fully connected ReLU network on the flattened input; `hidden` widths in order.
    Mlp { hidden: Vec<usize> },
    /// LeNet-5 style CNN: conv5(6)-relu-pool2, conv5(16)-relu-pool2, fc120-relu, fc84-relu, fc.
    Lenet,
    /// ResNet-18, the 32×32 CIFAR variant (3×3 stem, no stem max-pool), BasicBlocks [2,2,2,2].
    Resnet18,
    /// An imported graph (`oodcert import --onnx`): its layer tree, after the input
    /// normalisation (the spec's mean/std), ending in the classifier's Linear.
    Graph {
        /// A name for reports (`--name`, default the ONNX file's stem).
        name: String,
        layers: Vec<super::arch::GraphLayer>,
    },
}

/// The most values one input may have (2²⁴: a 4096×4096 grey image; CIFAR's are 3 072), so a
/// damaged shape in a model file is an error, not an allocation that fails.
pub const MAX_INPUT: usize = 1 << 24;

/// Everything needed to rebuild a model and feed it pixels in [0,1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub arch: Arch,
    /// `[c, h, w]` of the inputs.
    pub input_shape: [usize; 3],
    pub num_classes: usize,
    /// Per-channel normalisation applied as the first layer: `(x - mean[c]) / std[c]`.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl ModelSpec {
    /// Validates the hyper-parameters (linfa style: an error, never a panic).
    pub fn check(&self) -> Result<()> {
        let [c, h, w] = self.input_shape;
        if c == 0 || h == 0 || w == 0 {
            return Err(Error::BadInput(format!(
                "model input shape {:?} has a zero dimension",
                self.input_shape
            )));
        }
        if c.checked_mul(h)
            .and_then(|v| v.checked_mul(w))
            .is_none_or(|n| n > MAX_INPUT)
        {
            return Err(Error::BadInput(format!(
                "model input shape {:?} has more than {MAX_INPUT} values",
                self.input_shape
            )));
        }
        if self.num_classes < 2 {
            return Err(Error::BadInput(format!(
                "model needs at least 2 classes, got {}",
                self.num_classes
            )));
        }
        if self.mean.len() != c || self.std.len() != c {
            return Err(Error::BadInput(format!(
                "normalisation needs one mean and one std per channel ({c}), got {} and {}",
                self.mean.len(),
                self.std.len()
            )));
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return Err(Error::BadInput(
                "normalisation std must be finite and > 0, mean finite".into(),
            ));
        }
        match &self.arch {
            Arch::Mlp { hidden } if hidden.contains(&0) => {
                Err(Error::BadInput("mlp hidden widths must be > 0".into()))
            }
            Arch::Lenet if h < 12 || w < 12 => Err(Error::BadInput(format!(
                "lenet needs inputs of at least 12×12, got {h}×{w}"
            ))),
            Arch::Resnet18 if h < 8 || w < 8 => Err(Error::BadInput(format!(
                "resnet18 needs inputs of at least 8×8, got {h}×{w}"
            ))),
            Arch::Graph { layers, .. } => {
                use super::arch::{Shape, output_shape};
                match output_shape(layers, Shape::Spatial(self.input_shape))? {
                    Shape::Flat(n) if n >= 2 => Ok(()),
                    other => Err(Error::BadInput(format!(
                        "model layers end in {other:?}, not in at least 2 logits: the model file is damaged or was not written by oodcert"
                    ))),
                }
            }
            _ => Ok(()),
        }
    }
}
