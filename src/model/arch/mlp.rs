//! Multi-layer perceptron: flatten → [Linear + ReLU]* → Linear. Parameter names `fc1` … `fc{L+1}`
//! (PyTorch: `self.fc1 = nn.Linear(…)`, …; the last one is the classifier).

use crate::error::Result;
use crate::model::layers::{Layer, Linear};
use crate::model::params::ParamStore;
use crate::model::spec::ModelSpec;

pub(super) fn build(
    spec: &ModelSpec,
    hidden: &[usize],
    store: &mut ParamStore,
    layers: &mut Vec<Layer>,
) -> Result<()> {
    let [c, h, w] = spec.input_shape;
    layers.push(Layer::Flatten);
    let mut width = c * h * w;
    for (i, &next) in hidden.iter().enumerate() {
        layers.push(Layer::Linear(Linear::build(
            store,
            &format!("fc{}", i + 1),
            width,
            next,
        )?));
        layers.push(Layer::Relu);
        width = next;
    }
    let last = format!("fc{}", hidden.len() + 1);
    layers.push(Layer::Linear(Linear::build(
        store,
        &last,
        width,
        spec.num_classes,
    )?));
    Ok(())
}
