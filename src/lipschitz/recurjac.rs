//! RecurJac (Zhang, Zhang & Hsieh, AAAI 2019): the certified local Lipschitz bound of S on a ball
//! for ReLU networks with dense and convolutional layers, max-pools and residual blocks, from the recursive Jacobian boxes of [`super::jacobian_recursion`]
//! with the energy head ∇ₓS = −Jᵀp (theory.md §2): the energy row (t = −p, p in the softmax
//! box ∩ simplex) and the class rows (t = e_k, combined by the box ∩ simplex head), intersected
//! with FastLip's box; ‖·‖_q of the box, and for ℓ∞ balls the paper's signed ℓ1 merge
//! (Σ|g_r| over coordinates of known sign s is sᵀg = g_0ᵀ(A_0 s): one more recursion). The
//! reported value is the minimum over the sound rules, with the winner recorded.
//! Proof: proofs/lipschitz_recurjac.md.

pub use super::jacobian_recursion::unsupported;
use super::jacobian_recursion::{Plan, Recursion, Top};
use crate::bounds::crown::tighten;
use crate::bounds::round::{ABS_FLOOR, dot_err, next_up, widen_up};
use crate::bounds::softmax::{max_linear_box_simplex, simplex_tighten, softmax_box};
use crate::bounds::{Ball, Interval, Net, Norm};
use crate::error::{Error, Result};
use crate::lipschitz::local::{Head, PreBounds, box_dual_norm, fastlip_on, pre_bounds};
use serde::Serialize;

/// Which sound rule gave the reported local bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecurJacRule {
    /// ‖·‖_q of the RecurJac gradient box.
    Recurjac,
    /// ℓ1 with the known-sign coordinates merged into one more recursion (ℓ∞ balls).
    RecurjacSignedL1,
    /// FastLip (box ∩ simplex head) was not beaten.
    Fastlip,
    /// The local product of restricted layer norms was not beaten.
    LocalProduct,
}

impl RecurJacRule {
    /// The name written to CSV files.
    pub fn name(self) -> &'static str {
        match self {
            RecurJacRule::Recurjac => "recurjac",
            RecurJacRule::RecurjacSignedL1 => "recurjac-signed-l1",
            RecurJacRule::Fastlip => "fastlip",
            RecurJacRule::LocalProduct => "local-product",
        }
    }
}

/// A certified local bound by RecurJac, with FastLip on the same pre-activation boxes.
#[derive(Debug, Clone)]
pub struct RecurJacBound {
    /// min(RecurJac, FastLip, local product): the certified bound on sup ‖∇ₓS‖_q over the ball.
    pub value: f64,
    /// RecurJac alone (norm of its box, and for ℓ∞ the signed ℓ1 merge when smaller).
    pub recurjac_value: f64,
    /// FastLip (box ∩ simplex head, local product included) on the same boxes.
    pub fastlip_value: f64,
    /// ‖·‖_q of the energy-row box ∩ FastLip's (diagnostic: which RecurJac head helps).
    pub energy_row_value: f64,
    /// ‖·‖_q of the class-rows box (combined by the box ∩ simplex head) ∩ FastLip's.
    pub class_rows_value: f64,
    /// The rule that gave `value`.
    pub rule: RecurJacRule,
    /// The box of ∇ₓS (RecurJac ∩ FastLip).
    pub grad: Interval,
    /// Gradient-box entries bounded by the recursion, per top row.
    pub recursed_entries: usize,
    /// Levels left to FastLip's step by the cost guard (`max_work`).
    pub skipped_levels: usize,
}

/// The RecurJac local Lipschitz bound of S on the ball, recursing at every level; BadInput for
/// unsupported networks (see [`unsupported`]).
pub fn recurjac_with(
    net: &Net,
    ball: &Ball,
    temperature: f64,
    pre: PreBounds,
) -> Result<RecurJacBound> {
    recurjac_limited(net, ball, temperature, pre, f64::INFINITY)
}

/// [`recurjac_with`] with a cost guard: a level whose recursion would cost more than `max_work`
/// multiply-adds per top row (its entries × a dense forward pass of the rest of the network)
/// uses FastLip's step instead (sound, looser; counted in `skipped_levels`).
pub fn recurjac_limited(
    net: &Net,
    ball: &Ball,
    temperature: f64,
    pre: PreBounds,
    max_work: f64,
) -> Result<RecurJacBound> {
    crate::lipschitz::local::check_query(net, ball, temperature)?;
    if let Some(why) = unsupported(net) {
        return Err(Error::BadInput(format!("RecurJac does not support {why}")));
    }
    let (traces, logits) = pre_bounds(net, ball, pre)?;
    recurjac_on(net, &traces, logits, ball.norm, temperature, max_work)
}

/// [`recurjac_limited`] on given pre-activation traces and logit box (from [`pre_bounds`], or a
/// branch-and-bound domain's clamped boxes): only the traces' derivative sets, max-pool
/// candidates and the logit box enter the bound.
pub fn recurjac_on(
    net: &Net,
    traces: &[crate::bounds::Trace],
    logits: Interval,
    norm: Norm,
    temperature: f64,
    max_work: f64,
) -> Result<RecurJacBound> {
    if let Some(why) = unsupported(net) {
        return Err(Error::BadInput(format!("RecurJac does not support {why}")));
    }
    let p = simplex_tighten(&softmax_box(&logits, temperature));
    let fl = fastlip_on(net, traces, logits, norm, temperature, Head::Simplex)?;
    let plan = Plan::new(net, traces)?;
    let k = net.num_classes;
    let energy = Recursion::new(&plan, Top::Energy(&p), max_work)?;
    let rows = (0..k)
        .map(|c| Recursion::new(&plan, Top::Class(c), max_work))
        .collect::<Result<Vec<_>>>()?;
    // Class rows J_k combined by the box ∩ simplex head: ∇S_i = −Σ_k p_k J_ki.
    let n = net.input_dim();
    let (mut lo, mut hi) = (vec![0.0; n], vec![0.0; n]);
    for i in 0..n {
        let ca: Vec<f64> = rows.iter().map(|r| -r.input.lo[i]).collect();
        let cb: Vec<f64> = rows.iter().map(|r| r.input.hi[i]).collect();
        hi[i] = max_linear_box_simplex(&ca, &p);
        lo[i] = -max_linear_box_simplex(&cb, &p);
    }
    let g_rows = tighten(&Interval { lo, hi }, &fl.grad)?;
    let g_energy = tighten(&energy.input, &fl.grad)?;
    let grad = tighten(&g_energy, &g_rows)?;
    let box_value = box_dual_norm(&grad, norm);
    let signed = match norm {
        Norm::Linf => signed_l1(&grad, &energy, &rows, &p),
        Norm::L2 => f64::INFINITY,
    };
    let recurjac_value = box_value.min(signed);
    let product = fl.product_value.unwrap_or(f64::INFINITY);
    let (value, rule) = tightest(product, fl.value, box_value, signed);
    Ok(RecurJacBound {
        value,
        recurjac_value,
        fastlip_value: fl.value,
        energy_row_value: box_dual_norm(&g_energy, norm),
        class_rows_value: box_dual_norm(&g_rows, norm),
        rule,
        grad,
        recursed_entries: energy.recursed,
        skipped_levels: energy.skipped,
    })
}

/// The smallest of the sound bounds and the rule that gave it; ties go to the earlier rule, so
/// RecurJac is named only when strictly tighter.
fn tightest(product: f64, fastlip: f64, box_value: f64, signed: f64) -> (f64, RecurJacRule) {
    [
        (product, RecurJacRule::LocalProduct),
        (fastlip, RecurJacRule::Fastlip),
        (box_value, RecurJacRule::Recurjac),
        (signed, RecurJacRule::RecurjacSignedL1),
    ]
    .into_iter()
    .fold((f64::INFINITY, RecurJacRule::Fastlip), |best, cur| {
        if cur.0 < best.0 { cur } else { best }
    })
}

/// RecurJac's energy row alone (t = −p, p in the softmax box ∩ simplex) ∩ FastLip's box, on
/// given traces and logit box: the same sound rules as [`recurjac_on`] without the K class-row
/// recursions (about K + 1 times cheaper; a branch-and-bound domain's bound). `value` is the
/// minimum of the energy-row box norm (and for ℓ∞ its signed ℓ1 merge), FastLip and the local
/// product; `class_rows_value` is ∞ (not computed).
pub fn recurjac_energy_on(
    net: &Net,
    traces: &[crate::bounds::Trace],
    logits: Interval,
    norm: Norm,
    temperature: f64,
    max_work: f64,
) -> Result<RecurJacBound> {
    if let Some(why) = unsupported(net) {
        return Err(Error::BadInput(format!("RecurJac does not support {why}")));
    }
    let p = simplex_tighten(&softmax_box(&logits, temperature));
    let fl = fastlip_on(net, traces, logits, norm, temperature, Head::Simplex)?;
    let plan = Plan::new(net, traces)?;
    let energy = Recursion::new(&plan, Top::Energy(&p), max_work)?;
    let grad = tighten(&energy.input, &fl.grad)?;
    let box_value = box_dual_norm(&grad, norm);
    let signed = match norm {
        Norm::Linf => signed_l1(&grad, &energy, &[], &p),
        Norm::L2 => f64::INFINITY,
    };
    let product = fl.product_value.unwrap_or(f64::INFINITY);
    let (value, rule) = tightest(product, fl.value, box_value, signed);
    Ok(RecurJacBound {
        value,
        recurjac_value: box_value.min(signed),
        fastlip_value: fl.value,
        energy_row_value: box_value,
        class_rows_value: f64::INFINITY,
        rule,
        grad,
        recursed_entries: energy.recursed,
        skipped_levels: energy.skipped,
    })
}

/// ‖g‖₁ bound: Σ over sign-uncertain coordinates of max(|lo|, |hi|), plus sᵀg for the others
/// (s their signs) bounded by one recursion of the column A_0 s — the smaller of the energy row
/// and the class rows combined by the box ∩ simplex head. ∞ when no coordinate has a known sign.
fn signed_l1(grad: &Interval, energy: &Recursion, rows: &[Recursion], p: &Interval) -> f64 {
    let n = grad.len();
    let mut s = vec![0.0; n];
    let mut rest = Vec::new();
    for ((si, lo), hi) in s.iter_mut().zip(&grad.lo).zip(&grad.hi) {
        if *lo >= 0.0 {
            *si = 1.0;
        } else if *hi <= 0.0 {
            *si = -1.0;
        } else {
            rest.push(lo.abs().max(hi.abs()));
        }
    }
    if rest.len() == n {
        return f64::INFINITY;
    }
    let unknown = widen_up(rest.iter().sum::<f64>(), dot_err(rest.len()));
    let via_energy = energy.ub_input(s.clone());
    // sᵀ∇S = −Σ_k p_k (J_k s) ≤ max_p Σ_k p_k (−lower(J_k s)).
    let neg_s: Vec<f64> = s.iter().map(|v| -v).collect();
    let neg_low: Vec<f64> = rows.iter().map(|r| r.ub_input(neg_s.clone())).collect();
    // No class rows (the energy-row-only bound): the energy row alone.
    let via_rows = if rows.is_empty() {
        f64::INFINITY
    } else {
        max_linear_box_simplex(&neg_low, p)
    };
    let known = via_energy.min(via_rows);
    next_up(known + unknown + 4.0 * f64::EPSILON * (known.abs() + unknown) + ABS_FLOOR)
}
