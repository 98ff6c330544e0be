//! One step's gradients and statistics, by candle's autograd graph: L = CE + λ_S·L_S + λ_OE·L_OE +
//! λ_∇·L_∇ (method.md) on an ID batch and its auxiliary outliers forwarded together (as in the
//! energy-OOD/GReg code), or DOS's L = CE_{K+1} + β·L_absent for an absent-class model. Dense ReLU
//! nets on the CPU have the same step in closed form (`train::dense_step`).

use crate::error::{Error, Result};
use crate::model::absent_class::id_logits;
use crate::model::{Classifier, Model};
use crate::score;
use crate::train::config::TrainConfig;
use crate::train::losses::{
    InputGradient, PenaltyForm, PenaltyNorm, cross_entropy, dos_objective, energy_margin,
    grad_penalty, outlier_exposure,
};
use crate::train::optim::Gradients;
use candle_core::backprop::GradStore;
use candle_core::{D, DType, Tensor, TensorId, Var};
use std::collections::HashMap;

/// The weighted loss terms of a run, parsed once.
#[derive(Debug, Clone, Copy)]
pub struct LossTerms {
    pub lambda_energy: f64,
    pub lambda_grad: f64,
    pub lambda_oe: f64,
    /// β of DOS's absent-class term (> 0 exactly when the model has an absent class).
    pub lambda_absent: f64,
    pub m_in: f64,
    pub m_out: f64,
    pub temperature: f64,
    pub form: PenaltyForm,
    pub norm: PenaltyNorm,
}

impl LossTerms {
    /// The `[loss]` section of a config.
    pub fn from_config(cfg: &TrainConfig) -> Result<Self> {
        let l = &cfg.loss;
        Ok(LossTerms {
            lambda_energy: l.lambda_energy,
            lambda_grad: l.lambda_grad,
            lambda_oe: l.lambda_oe,
            lambda_absent: l.lambda_absent,
            m_in: l.m_in,
            m_out: l.m_out,
            temperature: l.temperature,
            form: PenaltyForm::parse(&l.penalty_form)?,
            norm: PenaltyNorm::parse(&l.penalty_norm)?,
        })
    }
}

/// One step's batch: `x (n, c, h, w)` holds the `n_in` ID images, then `n_low` outliers that feed
/// the energy margin (and, unless two-way sampling split them off, the penalty), then `n_high`
/// outliers (two-way GReg+ only) that feed the penalty; `y (n_in,)` are the ID labels.
pub struct StepInput {
    pub x: Tensor,
    pub y: Tensor,
    pub n_in: usize,
    pub n_low: usize,
    pub n_high: usize,
}

impl StepInput {
    /// Rows in the batch.
    pub fn n(&self) -> usize {
        self.n_in + self.n_low + self.n_high
    }

    /// The outlier rows the gradient penalty covers: the high-energy picks of two-way GReg+,
    /// otherwise every outlier.
    pub fn penalised(&self) -> std::ops::Range<usize> {
        if self.n_high > 0 {
            self.n_in + self.n_low..self.n()
        } else {
            self.n_in..self.n()
        }
    }
}

/// The gradients of one step: autograd's store, or closed-form tensors keyed by variable.
pub enum StepGrads {
    Graph(GradStore),
    Closed(HashMap<TensorId, Tensor>),
}

impl Gradients for StepGrads {
    fn grad(&self, var: &Var) -> Option<Tensor> {
        match self {
            StepGrads::Graph(g) => g.grad(var),
            StepGrads::Closed(g) => g.grad(var),
        }
    }
}

/// What one step computed: the gradients and the loss terms (λ-weighted), with the per-row
/// statistics the log reads.
pub struct StepResult {
    pub grads: StepGrads,
    pub loss: f64,
    pub ce: f64,
    pub loss_energy: f64,
    pub loss_grad: f64,
    /// β-weighted absent-class term (absent-class models only).
    pub loss_absent: Option<f64>,
    /// S(x) of every row (over the K ID logits).
    pub energies: Vec<f64>,
    /// ‖∇ₓS‖₂ of every row, when asked for (or free).
    pub grad_norms: Option<Vec<f64>>,
    /// ID rows whose argmax over the K ID logits is the label, when asked for.
    pub correct: Option<usize>,
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Whether [`graph_step`] differentiates a reverse pass (the penalty's ∇ₓS by autograd: a model
/// without an explicit input gradient), i.e. needs candle's second-order gradients
/// (`train::second_order`). Every other step is first order: the explicit input gradient is a
/// chain of forward ops, and logged ‖∇ₓS‖ are detached.
pub fn needs_second_order(t: &LossTerms, model: &Model) -> bool {
    t.lambda_grad > 0.0 && !model.has_explicit_input_vjp()
}

/// The step by autograd (every model, every device); `stats` asks for ‖∇ₓS‖ and the accuracy.
pub fn graph_step(t: &LossTerms, model: &Model, b: &StepInput, stats: bool) -> Result<StepResult> {
    let (x, y, n_in, n_low) = (&b.x, &b.y, b.n_in, b.n_low);
    let n = b.n();
    let n_aux = n - n_in;
    let penalised = b.penalised();
    // The input is a variable only when autograd must deliver ∇ₓS (penalty, or ‖∇ₓS‖ on logged
    // steps) and the model has no explicit input gradient: a variable input costs a backward pass
    // through the first layer in every reverse pass.
    let explicit = model.has_explicit_input_vjp();
    let xv = if (stats || t.lambda_grad > 0.0) && !explicit {
        Some(Var::from_tensor(x)?)
    } else {
        None
    };
    let input = xv.as_ref().map_or(x, |v| v.as_tensor());
    let trace = model.forward_traced(input, true)?;
    let logits = trace.logits.clone();
    // (The config admits an absent-class model exactly when λ_absent > 0.)
    let absent = model.has_absent_class();
    // The in-distribution logits: all of them, or the first K of an absent-class model.
    let logits_k = id_logits(&logits, absent)?;
    let s = score::energy(&logits_k, t.temperature)?;
    let (ce, l_absent) = if absent && n_aux > 0 {
        let (ce, term) = dos_objective(&logits, y, n_in, t.lambda_absent)?;
        (ce, Some(term))
    } else {
        (cross_entropy(&logits.narrow(0, 0, n_in)?, y)?, None)
    };
    let mut loss = ce.clone();
    let loss_absent = match &l_absent {
        Some(term) => {
            loss = (loss + term)?;
            Some(scalar(term)?)
        }
        None => absent.then_some(0.0),
    };
    // Where ∇ₓS comes from: the explicit input gradient (MLP, LeNet, ResNet-18 on the CPU; the
    // same tensor as autograd's, tests/train_penalty.rs) or a reverse pass of autograd.
    let source = || -> Result<InputGradient<'_>> {
        Ok(if explicit {
            InputGradient::Explicit {
                model,
                trace: &trace,
                id_classes: logits_k.dim(1)?,
                temperature: t.temperature,
            }
        } else {
            InputGradient::Autograd(
                xv.as_ref()
                    .map(|v| v.as_tensor())
                    .ok_or_else(|| Error::Internal("∇ₓS without an input variable".into()))?,
            )
        })
    };
    let (mut l_energy, mut l_grad) = (0.0, 0.0);
    if n_aux > 0 {
        let s_in = s.narrow(0, 0, n_in)?;
        let s_aux = s.narrow(0, n_in, n_low)?;
        if t.lambda_energy > 0.0 {
            let term = (energy_margin(&s_in, &s_aux, t.m_in, t.m_out)? * t.lambda_energy)?;
            l_energy = scalar(&term)?;
            loss = (loss + term)?;
        }
        if t.lambda_oe > 0.0 {
            let term = (outlier_exposure(&logits.narrow(0, n_in, n_aux)?)? * t.lambda_oe)?;
            loss = (loss + term)?;
        }
        if t.lambda_grad > 0.0 {
            let p = grad_penalty(
                source()?,
                &s,
                n_in,
                penalised,
                t.m_in,
                t.m_out,
                t.form,
                t.norm,
            )?;
            let term = (p.loss * t.lambda_grad)?;
            l_grad = scalar(&term)?;
            loss = (loss + term)?;
        }
    }
    let loss_v = scalar(&loss)?;
    let grads = if loss_v.is_finite() {
        StepGrads::Graph(loss.backward()?)
    } else {
        // The caller stops the run; no gradient is needed.
        StepGrads::Closed(HashMap::new())
    };
    let (grad_norms, correct) = if stats {
        let ones = Tensor::ones(n, s.dtype(), s.device())?;
        let g = source()?.weighted_energy_grad(&s, &ones)?.detach();
        let pred = logits_k
            .narrow(0, 0, n_in)?
            .argmax(D::Minus1)?
            .to_dtype(DType::U32)?;
        let correct = pred
            .eq(y)?
            .to_dtype(DType::F64)?
            .sum_all()?
            .to_scalar::<f64>()?;
        (
            Some(score::per_sample_norm(&g, 2.0)?),
            Some(correct.round() as usize),
        )
    } else {
        (None, None)
    };
    Ok(StepResult {
        grads,
        loss: loss_v,
        ce: scalar(&ce)?,
        loss_energy: l_energy,
        loss_grad: l_grad,
        loss_absent,
        energies: s.to_dtype(DType::F64)?.to_vec1::<f64>()?,
        grad_norms,
        correct,
    })
}
