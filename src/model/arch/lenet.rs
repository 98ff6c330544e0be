//! LeNet-5 style CNN (LeCun et al. 1998, as in the PyTorch tutorials): conv5×5(6, pad 2)-relu-
//! maxpool2, conv5×5(16)-relu-maxpool2, flatten, fc120-relu, fc84-relu, fc K.
//! Parameter names `conv1`, `conv2`, `fc1`, `fc2`, `fc3`; penultimate features have 84 entries.

use crate::error::{Error, Result};
use crate::model::layers::{Conv2d, Layer, Linear, max_pool2_hw};
use crate::model::params::ParamStore;
use crate::model::spec::ModelSpec;

/// `(16, h', w')` flattened size after the two conv/pool stages for an `h × w` input.
pub fn lenet_flat_features(h: usize, w: usize) -> Option<usize> {
    // conv1 keeps h×w (5×5, pad 2); pool halves; conv2 (5×5, no pad) removes 4; pool halves.
    let (h1, w1) = max_pool2_hw(h, w);
    if h1 < 5 || w1 < 5 {
        return None;
    }
    let (h2, w2) = max_pool2_hw(h1 - 4, w1 - 4);
    if h2 == 0 || w2 == 0 {
        return None;
    }
    Some(16 * h2 * w2)
}

pub(super) fn build(
    spec: &ModelSpec,
    store: &mut ParamStore,
    layers: &mut Vec<Layer>,
) -> Result<()> {
    let [c, h, w] = spec.input_shape;
    let flat = lenet_flat_features(h, w)
        .ok_or_else(|| Error::BadInput(format!("lenet: input {h}×{w} is too small")))?;
    layers.push(Layer::Conv2d(Conv2d::build(
        store, "conv1", c, 6, 5, 1, 2, true,
    )?));
    layers.push(Layer::Relu);
    layers.push(Layer::MaxPool2);
    layers.push(Layer::Conv2d(Conv2d::build(
        store, "conv2", 6, 16, 5, 1, 0, true,
    )?));
    layers.push(Layer::Relu);
    layers.push(Layer::MaxPool2);
    layers.push(Layer::Flatten);
    layers.push(Layer::Linear(Linear::build(store, "fc1", flat, 120)?));
    layers.push(Layer::Relu);
    layers.push(Layer::Linear(Linear::build(store, "fc2", 120, 84)?));
    layers.push(Layer::Relu);
    layers.push(Layer::Linear(Linear::build(
        store,
        "fc3",
        84,
        spec.num_classes,
    )?));
    Ok(())
}
