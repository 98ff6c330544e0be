//! DOS's absent-class head (Jiang et al., "DOS: Diverse Outlier Sampling for Out-of-Distribution
//! Detection", ICLR 2024): a (K+1)-output classifier whose last output is a class for outliers.
//!
//! Two operations on the final `Linear` layer, each exact:
//! - [`Model::id_logits_view`] drops the absent row, giving the K-output network whose logits are
//!   the first K logits of the (K+1)-output one; its energy S(x) = −T·logsumexp(z_{<K}(x)/T) is the
//!   energy over the in-distribution logits, and every tool that takes a K-output model (eval,
//!   Lipschitz bounds, certify, smoothing, verify) applies to it unchanged.
//! - [`Model::absent_score_view`] turns DOS's own score into an energy: the K-output network with
//!   final rows w_k − w_K, b_k − b_K has energy −T·logsumexp((z_{<K} − z_K)/T) = z_K −
//!   T·logsumexp(z_{<K}/T), the absent-class log-odds score, so every certificate of an energy
//!   (Lipschitz bounds, smoothing) certifies DOS's detector through it.
//! - [`Model::with_absent_row`] extends a K-output model to K+1 outputs for fine-tuning: the K rows
//!   are copied and the absent row (weights and bias) is drawn with `nn.Linear`'s default
//!   initialisation, U(±1/√fan_in), from a seeded stream.

use super::Classifier;
use super::init::{Init, InitRng};
use super::network::Model;
use crate::error::{Error, Result};
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::Path;

impl Model {
    /// The K-output model of the in-distribution logits: the final layer without its absent row
    /// (for a model without an absent class, an identical copy).
    pub fn id_logits_view(&self) -> Result<Model> {
        if !self.has_absent_class() {
            return self.with_final_rows(|t| Ok(t.clone()), "<in-distribution logits>");
        }
        let k = self.id_classes();
        self.with_final_rows(
            |t| Ok(t.narrow(0, 0, k)?),
            "<in-distribution logits of an absent-class model>",
        )
    }

    /// The K-output model whose final weight and bias are `rows` of this model's (each maps the
    /// `(outputs, …)` tensor to K rows); every other tensor as it is.
    fn with_final_rows(
        &self,
        rows: impl Fn(&Tensor) -> Result<Tensor>,
        origin: &str,
    ) -> Result<Model> {
        let name = self.classifier().name().to_string();
        let mut tensors: HashMap<String, Tensor> = self.all_tensors().into_iter().collect();
        for key in [format!("{name}.weight"), format!("{name}.bias")] {
            if let Some(t) = tensors.remove(&key) {
                tensors.insert(key, rows(&t)?);
            }
        }
        let mut spec = self.spec().clone();
        spec.num_classes = self.id_classes();
        Model::from_tensors(
            spec,
            tensors,
            self.dtype(),
            self.device(),
            Path::new(origin),
        )
    }

    /// DOS's absent-class score as the energy of a K-output model: the final layer's rows become
    /// w_k − w_K and its biases b_k − b_K (k < K, K the absent class). At every temperature T its
    /// energy −T·logsumexp((z_{<K} − z_K)/T) equals z_K − T·logsumexp(z_{<K}/T), the score
    /// [`crate::score::absent_class_log_odds`] of this model (in exact arithmetic; tested to
    /// rounding). An error for a model without an absent class.
    pub fn absent_score_view(&self) -> Result<Model> {
        if !self.has_absent_class() {
            return Err(Error::BadInput(
                "score `absent-class` needs a DOS model (K+1 outputs, `model.absent_class = true`); \
                 this model has no absent class: use `--score energy`"
                    .into(),
            ));
        }
        let k = self.id_classes();
        // rows k < K minus row K, broadcast over the rows.
        self.with_final_rows(
            |t| Ok(t.narrow(0, 0, k)?.broadcast_sub(&t.narrow(0, k, 1)?)?),
            "<absent-class score of a DOS model>",
        )
    }

    /// The model whose *energy* is the score `kind` names, for the tools that certify an energy
    /// (Lipschitz bounds, smoothing verification): the file's K in-distribution logits for
    /// `energy`, [`Self::absent_score_view`] of the full file for `absent-class`. Other scores
    /// have no such model: an error naming the flag.
    pub fn load_energy_of(
        path: impl AsRef<Path>,
        device: &candle_core::Device,
        kind: crate::score::ScoreKind,
        flag: &str,
    ) -> Result<Model> {
        Self::load_energy_of_as(path, device, kind, flag, candle_core::DType::F32)
    }

    /// [`Self::load_energy_of`] in `dtype`: the file is converted before the absent-class view
    /// is formed, so in f64 its rows w_k − w_K are exact differences of the f32 weights (formed
    /// in f32 they would be rounded, and the bounds would not be those of the detector).
    pub fn load_energy_of_as(
        path: impl AsRef<Path>,
        device: &candle_core::Device,
        kind: crate::score::ScoreKind,
        flag: &str,
        dtype: candle_core::DType,
    ) -> Result<Model> {
        use crate::score::ScoreKind;
        match kind {
            ScoreKind::Energy => Model::load(path, device)?.to_dtype(dtype),
            ScoreKind::AbsentClass => Model::load_full(path, device)?
                .to_dtype(dtype)?
                .absent_score_view(),
            other => Err(Error::BadInput(format!(
                "{flag} {}: only `energy` and `absent-class` (DOS's score, certified as the \
                 energy of a K-output view) have certificates here",
                other.name()
            ))),
        }
    }

    /// This K-output model extended to K+1 outputs with an absent class: the K rows of the final
    /// layer are copied, the absent row's weights and bias are drawn from U(±1/√fan_in) (PyTorch's
    /// `nn.Linear` default) under `seed`. Its first K logits equal this model's logits.
    pub fn with_absent_row(&self, seed: u64) -> Result<Model> {
        if self.has_absent_class() {
            return Err(Error::BadInput(
                "the model already has an absent class (K+1 outputs)".into(),
            ));
        }
        let lin = self.classifier();
        let (name, fan_in) = (lin.name().to_string(), lin.in_features());
        let mut rng = InitRng::new(seed);
        let w_row = rng.sample(Init::KaimingUniformSqrt5 { fan_in }, fan_in);
        let b_row = rng.sample(Init::BiasUniform { fan_in }, 1);
        let mut tensors: HashMap<String, Tensor> = self.all_tensors().into_iter().collect();
        let dev = self.device().clone();
        let dtype = self.dtype();
        let extend = |t: Tensor, row: Vec<f64>, shape: &[usize]| -> Result<Tensor> {
            let r = Tensor::from_vec(row, shape, &dev)?.to_dtype(dtype)?;
            Ok(Tensor::cat(&[&t, &r], 0)?)
        };
        let wkey = format!("{name}.weight");
        let w = tensors
            .remove(&wkey)
            .ok_or_else(|| Error::Internal(format!("the model has no tensor {wkey}")))?;
        tensors.insert(wkey, extend(w, w_row, &[1, fan_in])?);
        let bkey = format!("{name}.bias");
        if let Some(b) = tensors.remove(&bkey) {
            tensors.insert(bkey, extend(b, b_row, &[1])?);
        }
        let mut spec = self.spec().clone();
        spec.num_classes += 1;
        Model::from_tensors(
            spec,
            tensors,
            dtype,
            self.device(),
            Path::new("<model extended with an absent class>"),
        )?
        .into_absent_class()
    }
}

/// Narrows logits `(n, K+1)` of an absent-class model to the K in-distribution logits; other
/// logits pass through.
pub fn id_logits(logits: &Tensor, has_absent_class: bool) -> Result<Tensor> {
    if !has_absent_class {
        return Ok(logits.clone());
    }
    let k1 = logits.dim(1)?;
    if k1 < 3 {
        return Err(Error::BadInput(format!(
            "absent-class logits need K + 1 ≥ 3 columns, got {k1}"
        )));
    }
    Ok(logits.narrow(1, 0, k1 - 1)?)
}
