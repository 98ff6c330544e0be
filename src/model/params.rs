//! Named parameters: one place that creates every weight of a model, either from the seeded
//! initialiser or from tensors read out of a file, checking names, shapes and finiteness.

use super::init::{Init, InitRng};
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use std::collections::HashMap;
use std::path::PathBuf;

/// Whether a tensor is learned by gradient descent or is a buffer (BatchNorm running statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Updated by the optimiser.
    Trainable,
    /// Updated by the forward pass in training mode only (running mean/variance).
    Buffer,
}

/// One named tensor of a model, PyTorch-style name (`layer1.0.bn1.running_mean`).
#[derive(Debug, Clone)]
pub struct NamedParam {
    pub name: String,
    pub var: Var,
    pub kind: ParamKind,
}

enum Source {
    Init(Box<InitRng>),
    Tensors {
        map: HashMap<String, Tensor>,
        origin: PathBuf,
    },
}

/// Hands out the parameters an architecture asks for, in the order it asks (deterministic).
pub(crate) struct ParamStore {
    source: Source,
    dtype: DType,
    device: Device,
    params: Vec<NamedParam>,
}

impl ParamStore {
    /// Fresh parameters drawn with PyTorch's default initialisation from `seed`.
    pub fn init(seed: u64, dtype: DType, device: &Device) -> Self {
        Self {
            source: Source::Init(Box::new(InitRng::new(seed))),
            dtype,
            device: device.clone(),
            params: Vec::new(),
        }
    }

    /// Parameters taken from `map` (converted to `dtype`); errors name `origin`.
    pub fn from_tensors(
        map: HashMap<String, Tensor>,
        origin: PathBuf,
        dtype: DType,
        device: &Device,
    ) -> Self {
        Self {
            source: Source::Tensors { map, origin },
            dtype,
            device: device.clone(),
            params: Vec::new(),
        }
    }

    /// The parameter `name` of shape `shape`: drawn by `init`, or taken from the tensors.
    pub fn take(
        &mut self,
        name: &str,
        shape: &[usize],
        init: Init,
        kind: ParamKind,
    ) -> Result<Var> {
        let numel: usize = shape.iter().product();
        let tensor = match &mut self.source {
            Source::Init(rng) => Tensor::from_vec(rng.sample(init, numel), shape, &self.device)?
                .to_dtype(self.dtype)?,
            Source::Tensors { map, origin } => {
                let t = map.remove(name).ok_or_else(|| {
                    Error::bad_file(
                        &*origin,
                        format!("missing tensor `{name}` (expected shape {shape:?})"),
                    )
                })?;
                if t.dims() != shape {
                    return Err(Error::bad_file(
                        &*origin,
                        format!(
                            "tensor `{name}` has shape {:?}, the model spec needs {shape:?}",
                            t.dims()
                        ),
                    ));
                }
                let values = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
                if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
                    return Err(Error::bad_file(
                        &*origin,
                        format!("tensor `{name}` contains a non-finite value ({bad})"),
                    ));
                }
                if kind == ParamKind::Buffer
                    && name.ends_with("running_var")
                    && values.iter().any(|v| *v < 0.0)
                {
                    return Err(Error::bad_file(
                        &*origin,
                        format!("tensor `{name}` (a variance) has a negative entry"),
                    ));
                }
                t.to_device(&self.device)?
                    .to_dtype(self.dtype)?
                    .contiguous()?
            }
        };
        // A fresh copy so that the Var owns its storage (Var::set must not alias a file buffer).
        let var = Var::from_tensor(&tensor.copy()?)?;
        self.params.push(NamedParam {
            name: name.to_string(),
            var: var.clone(),
            kind,
        });
        Ok(var)
    }

    /// The dtype every parameter is created in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device every parameter is created on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// All parameters in creation order; an error if the tensors held names nobody asked for.
    pub fn finish(self) -> Result<Vec<NamedParam>> {
        if let Source::Tensors { map, origin } = &self.source
            && !map.is_empty()
        {
            let mut names: Vec<&String> = map.keys().collect();
            names.sort();
            let shown: Vec<&str> = names.iter().take(5).map(|s| s.as_str()).collect();
            return Err(Error::bad_file(
                origin,
                format!(
                    "{} unexpected tensor(s) not used by the model spec: {}{}",
                    names.len(),
                    shown.join(", "),
                    if names.len() > 5 { ", …" } else { "" }
                ),
            ));
        }
        Ok(self.params)
    }
}
