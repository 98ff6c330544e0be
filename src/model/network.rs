//! [`Model`]: a spec, its explicit layer sequence and its named weights (PyTorch-style names).

use super::Classifier;
use super::arch;
use super::layers::{Layer, Linear};
use super::params::{NamedParam, ParamKind, ParamStore};
use super::spec::ModelSpec;
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use std::collections::HashMap;
use std::path::Path;

/// A classifier built from a [`ModelSpec`]: `Normalize → … → Linear`, weights in `Var`s.
pub struct Model {
    spec: ModelSpec,
    layers: Vec<Layer>,
    params: Vec<NamedParam>,
    varmap: VarMap,
    dtype: DType,
    device: Device,
    /// DOS (Jiang et al., ICLR 2024): the last of the `spec.num_classes` outputs is the absent
    /// class K, trained on outliers; the first K are the in-distribution classes.
    absent_class: bool,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("spec", &self.spec)
            .field("dtype", &self.dtype)
            .field("absent_class", &self.absent_class)
            .field("tensors", &self.params.len())
            .finish()
    }
}

fn check_dtype(dtype: DType) -> Result<()> {
    match dtype {
        DType::F32 | DType::F64 => Ok(()),
        other => Err(Error::BadInput(format!(
            "models are built in f32 or f64, not {other:?}"
        ))),
    }
}

impl Model {
    /// A fresh model with PyTorch's default initialisation, deterministic under `seed`.
    pub fn init(spec: ModelSpec, device: &Device, dtype: DType, seed: u64) -> Result<Model> {
        check_dtype(dtype)?;
        let mut store = ParamStore::init(seed, dtype, device);
        let layers = arch::build(&spec, &mut store)?;
        Self::assemble(spec, layers, store.finish()?, dtype, device)
    }

    /// A model whose tensors are taken from `tensors` (our names), converted to `dtype`; every
    /// name, shape and value is checked (errors name `origin`).
    pub fn from_tensors(
        spec: ModelSpec,
        tensors: HashMap<String, Tensor>,
        dtype: DType,
        device: &Device,
        origin: &Path,
    ) -> Result<Model> {
        check_dtype(dtype)?;
        spec.check()
            .map_err(|e| Error::bad_file(origin, format!("model spec: {e}")))?;
        let mut store = ParamStore::from_tensors(tensors, origin.to_path_buf(), dtype, device);
        let layers = arch::build(&spec, &mut store)?;
        Self::assemble(spec, layers, store.finish()?, dtype, device)
    }

    fn assemble(
        spec: ModelSpec,
        layers: Vec<Layer>,
        params: Vec<NamedParam>,
        dtype: DType,
        device: &Device,
    ) -> Result<Model> {
        if !matches!(layers.last(), Some(Layer::Linear(_))) {
            return Err(Error::Internal(
                "an architecture must end in a Linear layer".into(),
            ));
        }
        let varmap = VarMap::new();
        {
            let mut data = varmap
                .data()
                .lock()
                .map_err(|_| Error::Internal("VarMap lock poisoned".into()))?;
            for p in params.iter().filter(|p| p.kind == ParamKind::Trainable) {
                data.insert(p.name.clone(), p.var.clone());
            }
        }
        Ok(Model {
            spec,
            layers,
            params,
            varmap,
            dtype,
            device: device.clone(),
            absent_class: false,
        })
    }

    /// A copy of this model in another dtype (f32 or f64), running statistics included.
    pub fn to_dtype(&self, dtype: DType) -> Result<Model> {
        let tensors = self.all_tensors().into_iter().collect();
        let m = Self::from_tensors(
            self.spec.clone(),
            tensors,
            dtype,
            &self.device,
            Path::new("<in-memory model>"),
        )?;
        if self.absent_class {
            m.into_absent_class()
        } else {
            Ok(m)
        }
    }

    /// Marks the last output as DOS's absent class (Jiang et al., ICLR 2024): K = `num_classes` − 1
    /// in-distribution classes plus one class for outliers. Needs K ≥ 2.
    pub fn into_absent_class(mut self) -> Result<Model> {
        if self.spec.num_classes < 3 {
            return Err(Error::BadInput(format!(
                "an absent-class model needs K + 1 ≥ 3 outputs (K ≥ 2 classes plus the absent one), got {}",
                self.spec.num_classes
            )));
        }
        self.absent_class = true;
        Ok(self)
    }

    /// Number of in-distribution classes K: `num_classes`, less the absent class if there is one.
    pub fn id_classes(&self) -> usize {
        self.spec.num_classes - usize::from(self.absent_class)
    }

    /// The layers in order: `Normalize` first, the classifier `Linear` last.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The final `Linear` (its input is the penultimate feature vector).
    pub fn classifier(&self) -> &Linear {
        match self.layers.last() {
            Some(Layer::Linear(l)) => l,
            // `assemble` guarantees the last layer is Linear.
            _ => unreachable!("a Model always ends in a Linear layer"),
        }
    }

    /// All named tensors in creation (module) order, with their kind.
    pub fn params(&self) -> &[NamedParam] {
        &self.params
    }

    /// The trainable variables, sorted by name (BatchNorm running statistics excluded).
    pub fn trainable_vars(&self) -> Vec<(String, Var)> {
        let mut v: Vec<(String, Var)> = self
            .params
            .iter()
            .filter(|p| p.kind == ParamKind::Trainable)
            .map(|p| (p.name.clone(), p.var.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Every tensor (weights and running statistics), sorted by name, detached.
    pub fn all_tensors(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .params
            .iter()
            .map(|p| (p.name.clone(), p.var.as_detached_tensor()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The trainable variables as a `candle_nn::VarMap` (for candle's optimisers).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Number of trainable scalars.
    pub fn num_trainable(&self) -> usize {
        self.params
            .iter()
            .filter(|p| p.kind == ParamKind::Trainable)
            .map(|p| p.var.elem_count())
            .sum()
    }

    /// The dtype of every weight.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device every weight lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    pub(crate) fn check_input(&self, x: &Tensor) -> Result<()> {
        let d = x.dims();
        let [c, h, w] = self.spec.input_shape;
        if d.len() != 4 || d[1..] != [c, h, w] || d[0] == 0 {
            return Err(Error::BadInput(format!(
                "model expects inputs of shape (n ≥ 1, {c}, {h}, {w}), got {d:?}"
            )));
        }
        Ok(())
    }
}

impl Classifier for Model {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn as_model(&self) -> Option<&Model> {
        Some(self)
    }

    fn has_absent_class(&self) -> bool {
        self.absent_class
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        self.check_input(x)?;
        let mut h = if x.dtype() == self.dtype {
            x.clone()
        } else {
            x.to_dtype(self.dtype)?
        };
        let last = self.layers.len() - 1;
        for layer in &self.layers[..last] {
            h = layer.forward(&h, train)?;
        }
        let logits = self.layers[last].forward(&h, train)?;
        Ok((h, logits))
    }

    fn logits_no_grad(&self, x: &Tensor) -> Result<Tensor> {
        self.check_input(x)?;
        let x = if x.dtype() == self.dtype {
            x.clone()
        } else {
            x.to_dtype(self.dtype)?
        };
        crate::model::layers::infer_layers(&self.layers, &x)
    }
}
