//! ResNet-18, CIFAR variant (He et al. 2016; kuangliu/pytorch-cifar, as used by the energy-OOD
//! and GReg code): conv3×3(64) stem + BN + ReLU, no max-pool, BasicBlocks [2,2,2,2] of widths
//! 64/128/256/512 with strides 1/2/2/2, global average pool, `linear` (penultimate 512).
//! Global (adaptive) average pooling equals kuangliu's `avg_pool2d(out, 4)` on 32×32 inputs and
//! also works for other input sizes.

use crate::error::Result;
use crate::model::layers::{BasicBlock, BatchNorm2d, Conv2d, Layer, Linear};
use crate::model::params::ParamStore;
use crate::model::spec::ModelSpec;

/// `(width, stride of the first block)` of layer1 … layer4.
pub const RESNET18_STAGES: [(usize, usize); 4] = [(64, 1), (128, 2), (256, 2), (512, 2)];

pub(super) fn build(
    spec: &ModelSpec,
    store: &mut ParamStore,
    layers: &mut Vec<Layer>,
) -> Result<()> {
    let c = spec.input_shape[0];
    layers.push(Layer::Conv2d(Conv2d::build(
        store, "conv1", c, 64, 3, 1, 1, false,
    )?));
    layers.push(Layer::BatchNorm2d(BatchNorm2d::build(store, "bn1", 64)?));
    layers.push(Layer::Relu);
    let mut width = 64;
    for (stage, &(out, stride)) in RESNET18_STAGES.iter().enumerate() {
        for block in 0..2 {
            let name = format!("layer{}.{block}", stage + 1);
            let s = if block == 0 { stride } else { 1 };
            let block = BasicBlock::build(store, &name, width, out, s)?;
            layers.push(Layer::BasicBlock(Box::new(block)));
            width = out;
        }
    }
    layers.push(Layer::GlobalAvgPool);
    layers.push(Layer::Linear(Linear::build(
        store,
        "linear",
        width,
        spec.num_classes,
    )?));
    Ok(())
}
