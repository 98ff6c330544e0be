//! Models: the [`Classifier`] trait, the architectures, layers candle lacks or gets wrong, and
//! safetensors I/O (ours and PyTorch's).

pub mod absent_class;
pub mod arch;
pub mod double_backprop;
pub mod init;
pub mod input_vjp;
pub mod io;
pub mod layers;
mod network;
pub mod params;
pub mod pytorch;
mod spec;

pub use double_backprop::{DOUBLE_BACKPROP_ENV, double_backprop_enabled, double_backprop_probe};
pub use input_vjp::ForwardTrace;
pub use io::sha256_file;
pub use layers::Layer;
pub use network::Model;
pub use params::{NamedParam, ParamKind};
pub use spec::{Arch, ModelSpec};

use crate::error::Result;
use candle_core::Tensor;

/// A classifier on pixels in [0,1]: normalisation is its first layer.
pub trait Classifier: Send + Sync {
    /// The architecture, input shape and normalisation.
    fn spec(&self) -> &ModelSpec;
    /// True when the last logit is DOS's absent (outlier) class, not an in-distribution class.
    fn has_absent_class(&self) -> bool {
        false
    }
    /// `(penultimate features (n, d), logits (n, K))` for inputs `(n, c, h, w)` in [0,1].
    /// `train` selects batch statistics in BatchNorm (and updates the running statistics).
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)>;
    /// Logits in evaluation mode.
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_t(x, false)?.1)
    }
    /// [`Self::logits`] as values only (PyTorch's `no_grad`): the same numbers, but no gradient
    /// flows back through them, so an implementation may free activations early and overwrite
    /// its own buffers. For scoring, certification and evaluation, never for training.
    fn logits_no_grad(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.logits(x)?.detach())
    }
    /// The concrete [`Model`], when this classifier is one (fast paths that read its layers).
    fn as_model(&self) -> Option<&Model> {
        None
    }
}
