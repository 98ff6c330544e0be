//! The architectures, each a function from a [`ModelSpec`] to an explicit layer sequence whose
//! last layer is the classifier's final `Linear` (its input = the penultimate features).

mod graph;
mod lenet;
mod mlp;
mod resnet18;

pub use graph::{GraphLayer, MAX_ACTIVATION, Shape, output_shape};
pub use lenet::lenet_flat_features;
pub use resnet18::RESNET18_STAGES;

use super::layers::{Layer, Normalize};
use super::params::ParamStore;
use super::spec::{Arch, ModelSpec};
use crate::error::Result;

/// Builds the layers of `spec.arch`, asking `store` for each parameter in module order.
pub(crate) fn build(spec: &ModelSpec, store: &mut ParamStore) -> Result<Vec<Layer>> {
    spec.check()?;
    let (dtype, device) = (store.dtype(), store.device().clone());
    let mut layers = vec![Layer::Normalize(Normalize::new(
        &spec.mean, &spec.std, dtype, &device,
    )?)];
    match &spec.arch {
        Arch::Mlp { hidden } => mlp::build(spec, hidden, store, &mut layers)?,
        Arch::Lenet => lenet::build(spec, store, &mut layers)?,
        Arch::Resnet18 => resnet18::build(spec, store, &mut layers)?,
        Arch::Graph { layers: graph, .. } => graph::build(graph, store, &mut layers)?,
    }
    Ok(layers)
}
