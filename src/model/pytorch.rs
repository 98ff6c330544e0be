//! Import of PyTorch `state_dict`s exported with `safetensors.torch.save_file` (never pickles).
//!
//! Expected names (ours; identical to the PyTorch modules in analysis/reference/export_pytorch.py):
//! - MLP: `fc1.weight`, `fc1.bias`, …, `fc{L+1}.{weight,bias}` (`self.fc1 = nn.Linear(…)`, …).
//! - LeNet: `conv1`, `conv2` (with bias), `fc1`, `fc2`, `fc3` (`.weight`, `.bias`).
//! - ResNet-18 (kuangliu/pytorch-cifar): `conv1.weight`, `bn1.*`, `layer{1..4}.{0,1}.conv{1,2}.weight`,
//!   `layer{i}.{j}.bn{1,2}.*`, `layer{i}.0.shortcut.{0.weight,1.*}`, `linear.{weight,bias}`, where
//!   `bn.*` = `weight`, `bias`, `running_mean`, `running_var`.
//!
//! Aliases applied before matching: a leading `module.` (DataParallel) is dropped;
//! `*.num_batches_tracked` is ignored; for ResNet-18 the torchvision-style `fc.` → `linear.` and
//! `.downsample.` → `.shortcut.`. Float tensors may be F16/BF16/F32/F64; the model is F64 when
//! every tensor is F64, else F32.

use super::io::{parse_safetensors, read_safetensors_bytes};
use super::network::Model;
use super::spec::{Arch, ModelSpec};
use crate::error::{Error, Result};
use candle_core::{DType, Device};
use std::collections::HashMap;
use std::path::Path;

/// Our name for a PyTorch `state_dict` key, or `None` for keys that carry no weights.
pub fn pytorch_name_to_ours(name: &str, arch: &Arch) -> Option<String> {
    let name = name.strip_prefix("module.").unwrap_or(name);
    if name.ends_with("num_batches_tracked") {
        return None;
    }
    let mut out = name.to_string();
    if matches!(arch, Arch::Resnet18) {
        if let Some(rest) = out.strip_prefix("fc.") {
            out = format!("linear.{rest}");
        }
        out = out.replace(".downsample.", ".shortcut.");
    }
    Some(out)
}

impl Model {
    /// Imports a PyTorch `state_dict` saved with `safetensors.torch.save_file` for `spec`.
    pub fn load_pytorch(path: impl AsRef<Path>, spec: ModelSpec, device: &Device) -> Result<Model> {
        let path = path.as_ref();
        let bytes = read_safetensors_bytes(path)?;
        let (_, tensors) = parse_safetensors(path, &bytes)?;
        let mut map = HashMap::new();
        let mut all_f64 = true;
        for (name, st_dtype, t) in tensors {
            let Some(ours) = pytorch_name_to_ours(&name, &spec.arch) else {
                continue;
            };
            if st_dtype == safetensors::Dtype::I64 {
                return Err(Error::bad_file(
                    path,
                    format!("tensor `{name}` is an integer tensor; weights must be floating point"),
                ));
            }
            all_f64 &= st_dtype == safetensors::Dtype::F64;
            if map.insert(ours.clone(), t).is_some() {
                return Err(Error::bad_file(
                    path,
                    format!("two tensors map to `{ours}` (after the alias `{name}`)"),
                ));
            }
        }
        let dtype = if all_f64 && !map.is_empty() {
            DType::F64
        } else {
            DType::F32
        };
        Model::from_tensors(spec, map, dtype, device, path)
    }
}
