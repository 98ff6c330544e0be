//! The gradient penalty of GReg (Sharifi et al. 2024, eq. 5), by exact double backpropagation:
//! L_∇ = E_in ‖1{S(x_in) ≤ m_in}·∇ₓS(x_in)‖ + E_aux ‖1{S(x_aux) ≥ m_out}·∇ₓS(x_aux)‖,
//! or the authors' code's group-scaled form (each row scaled by 1/group size, then one mean).
//!
//! Needs second-order gradients (see `train::second_order`): the returned loss depends on the
//! weights through ∇ₓS.

use crate::error::{Error, Result};
use crate::model::{ForwardTrace, Model};
use candle_core::{DType, Tensor};

/// Where the penalty gets ∇ₓ Σ_i c_i S(x_i) (a row weighting c of the energies) from.
#[derive(Clone, Copy)]
pub enum InputGradient<'a> {
    /// A reverse pass of autograd from the energies to `x`, a variable (a leaf tracked by
    /// backprop) from which the energies were computed. Works for every model and device.
    Autograd(&'a Tensor),
    /// The explicit layer-by-layer input gradient of a traced forward pass
    /// ([`ForwardTrace::input_vjp`]; needs [`Model::has_explicit_input_vjp`]): the same tensor
    /// without the weight gradients of a full reverse pass. `id_classes` = K: the energy reads
    /// the first K logits (all of them, or all but an absent class).
    Explicit {
        model: &'a Model,
        trace: &'a ForwardTrace,
        id_classes: usize,
        temperature: f64,
    },
}

impl InputGradient<'_> {
    /// ∇ₓ Σ_i c_i S(x_i) for energies `s (n,)` and weights `c (n,)`, differentiable in the weights.
    pub fn weighted_energy_grad(&self, s: &Tensor, c: &Tensor) -> Result<Tensor> {
        match *self {
            InputGradient::Autograd(x) => {
                let h = (s * c)?.sum_all()?;
                h.backward()?.remove(x).ok_or_else(|| {
                    Error::Internal("gradient penalty: the energy does not depend on x".into())
                })
            }
            InputGradient::Explicit {
                model,
                trace,
                id_classes,
                temperature,
            } => {
                // S = −T·logsumexp(z_{<K}/T), so ∂S/∂z_k = −softmax(z_{<K}/T)_k for k < K, 0 beyond.
                let logits = &trace.logits;
                let (n, total) = logits.dims2()?;
                if id_classes == 0 || id_classes > total || c.dims() != [n] {
                    return Err(Error::Internal(format!(
                        "gradient penalty: {id_classes} ID classes of {total} logits, weights {:?}",
                        c.dims()
                    )));
                }
                let z = (logits.narrow(1, 0, id_classes)? / temperature)?;
                // (`softmax_last_dim` has no backward: the composed softmax does.)
                let p = candle_nn::ops::softmax(&z, candle_core::D::Minus1)?;
                let mut g = p.broadcast_mul(&c.reshape((n, 1))?)?.neg()?;
                if id_classes < total {
                    let pad = Tensor::zeros((n, total - id_classes), g.dtype(), g.device())?;
                    g = Tensor::cat(&[&g, &pad], 1)?;
                }
                trace.input_vjp(model, &g)
            }
        }
    }
}

/// Which average of the per-sample norms (method.md: paper vs authors' code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PenaltyForm {
    /// mean_in ‖m_i ∇S_i‖ + mean_aux ‖m_j ∇S_j‖ (the paper).
    PerSample,
    /// mean over all rows of ‖∂h/∂x_row‖ with h = −mean_in relu(m_in − S) + mean_aux relu(S − m_out)
    /// (the authors' code: each row carries 1/n_in or 1/n_aux).
    GroupScaled,
}

/// The norm of ∇ₓS in the penalty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PenaltyNorm {
    L2,
    L1,
}

impl PenaltyForm {
    /// Parses the config value (`per-sample`, `group-scaled`).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "per-sample" => Ok(Self::PerSample),
            "group-scaled" => Ok(Self::GroupScaled),
            o => Err(Error::BadInput(format!(
                "loss.penalty_form `{o}`: use per-sample or group-scaled"
            ))),
        }
    }
}

impl PenaltyNorm {
    /// Parses the config value (`l2`, `l1`).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "l2" => Ok(Self::L2),
            "l1" => Ok(Self::L1),
            o => Err(Error::BadInput(format!(
                "loss.penalty_norm `{o}`: use l2 or l1"
            ))),
        }
    }
}

/// The penalty and what it masked.
pub struct PenaltyTerms {
    /// L_∇ (differentiable w.r.t. the weights).
    pub loss: Tensor,
    /// Share of ID rows with S ≤ m_in.
    pub frac_in_masked: f64,
    /// Share of auxiliary rows with S ≥ m_out.
    pub frac_aux_masked: f64,
}

/// L_∇ for a batch whose first `n_in` rows are ID and whose rows `aux` are the auxiliary outliers
/// to penalise (rows in between, e.g. two-way GReg+'s low-energy picks that only feed L_S, are left
/// out).
///
/// `s` (n,) are the energies of the batch `input` was computed from (see [`InputGradient`]).
#[allow(clippy::too_many_arguments)]
pub fn grad_penalty(
    input: InputGradient<'_>,
    s: &Tensor,
    n_in: usize,
    aux: std::ops::Range<usize>,
    m_in: f64,
    m_out: f64,
    form: PenaltyForm,
    norm: PenaltyNorm,
) -> Result<PenaltyTerms> {
    let n = s.dim(0)?;
    if n_in > aux.start || aux.end > n {
        return Err(Error::Internal(format!(
            "gradient penalty: {n_in} ID rows, aux rows {aux:?} of {n}"
        )));
    }
    let n_aux = aux.len();
    let host = s.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    // The masks are constants: which samples are "already correct".
    let mask: Vec<f64> = host
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let hit = if i < n_in {
                v <= m_in
            } else {
                aux.contains(&i) && v >= m_out
            };
            f64::from(u8::from(hit))
        })
        .collect();
    let scale: Vec<f64> = mask
        .iter()
        .enumerate()
        .map(|(i, &m)| match form {
            PenaltyForm::PerSample => m,
            PenaltyForm::GroupScaled => m / if i < n_in { n_in } else { n_aux.max(1) } as f64,
        })
        .collect();
    let dev = s.device();
    let scale_t = Tensor::from_vec(scale, n, dev)?.to_dtype(s.dtype())?;
    let mask_t = Tensor::from_vec(mask.clone(), n, dev)?.to_dtype(s.dtype())?;
    let g = input.weighted_energy_grad(s, &scale_t)?;
    if g.dim(0)? != n {
        return Err(Error::Internal(format!(
            "gradient penalty: the input gradient has {} rows, the energies {n}",
            g.dim(0)?
        )));
    }
    let flat = g.reshape((n, ()))?;
    // mask·sqrt(Σg² + 1e-12): differentiable at g = 0 (‖mask·g‖ would give NaN; candle-notes).
    let rows = match norm {
        PenaltyNorm::L2 => (flat.sqr()?.sum(1)? + 1e-12)?.sqrt()?,
        PenaltyNorm::L1 => flat.abs()?.sum(1)?,
    };
    let rows = (rows * &mask_t)?;
    let id_rows = rows.narrow(0, 0, n_in)?;
    let aux_rows = rows.narrow(0, aux.start, n_aux)?;
    let loss = match form {
        // One mean over every penalised row (ID and the aux range).
        PenaltyForm::GroupScaled => {
            ((id_rows.sum_all()? + aux_rows.sum_all()?)? / (n_in + n_aux).max(1) as f64)?
        }
        PenaltyForm::PerSample => {
            let mut total = Tensor::zeros((), s.dtype(), dev)?;
            if n_in > 0 {
                total = (total + id_rows.mean_all()?)?;
            }
            if n_aux > 0 {
                total = (total + aux_rows.mean_all()?)?;
            }
            total
        }
    };
    let frac = |r: std::ops::Range<usize>| {
        if r.is_empty() {
            f64::NAN
        } else {
            let len = r.len() as f64;
            mask[r].iter().sum::<f64>() / len
        }
    };
    Ok(PenaltyTerms {
        loss,
        frac_in_masked: frac(0..n_in),
        frac_aux_masked: frac(aux),
    })
}
