//! Float32 evaluation error of the score as `score.rs` computes it from f32 logits (candle's
//! log_sum_exp: max, subtract, exp, sum, ln, add back; proofs/f32_detector.md §3): with
//! |ẑ − z| ≤ e entrywise, |S₃₂(ẑ) − S(z)| ≤ T·max e (S is 1-Lipschitz in ℓ∞ of z/T, times T)
//! plus the rounding of every step, bounded as in Higham 2002 §3.

use super::f32_forward::{U32, gamma32};
use super::interval::Interval;
use super::round::{next_up, widen_up};
use crate::error::{Error, Result};
use crate::score::ScoreKind;

/// Relative error assumed for one f32 `exp` or `ln` (glibc's expf/logf are within 1 ulp, i.e.
/// 2u; we allow 4 ulp): the assumption of proofs/f32_detector.md §3, checked by the tests.
pub const LIBM_ULPS: f64 = 4.0;

fn max_nan(v: impl IntoIterator<Item = f64>) -> f64 {
    v.into_iter().fold(0.0, |m, x| {
        if m.is_nan() || x.is_nan() {
            f64::NAN
        } else {
            m.max(x)
        }
    })
}

/// Error of candle's f32 logsumexp of v̂ against the exact lse(v), given |v̂ − v| ≤ ev and the
/// box of v: ev + (relative error of the sum, ρ/(1 − ρ)) + ln's error + the final addition's.
fn lse_error(v: &Interval, ev: f64) -> f64 {
    let k = v.len();
    let c_libm = 2.0 * LIBM_ULPS * U32;
    // Each term e^{−a}(1 + η) with a = max − v̂_k ≥ 0: |η| ≤ ((1 + c)(1 + γ_{K−1}) − 1)·e^{au}
    // + (e^{au} − 1) (libm, the sum in any order, the rounding of the subtraction); weighted by
    // e^{−a} and summed, over σ = Σe^{−a} ≥ 1: Σ e^{−a}(e^{au} − 1) ≤ K·u/(e(1 − u)) and
    // Σ e^{−a}e^{au} ≤ σ + that; K·2⁻¹⁴⁰ for terms that underflow.
    let g = gamma32(k.saturating_sub(1).max(1));
    let sub = k as f64 * U32 * 0.368 / (1.0 - U32);
    let rho = ((1.0 + c_libm) * (1.0 + g) - 1.0) * (1.0 + sub) + sub + k as f64 * 2f64.powi(-140);
    let rho = next_up(rho * (1.0 + 16.0 * f64::EPSILON));
    if rho.is_nan() || rho >= 0.25 {
        return f64::INFINITY;
    }
    let log_sum = rho / (1.0 - rho);
    // |ln s| ≤ ln K + log_sum; the result ≈ max + ln s, |max| ≤ max|v| + ev.
    let ln_s = (k as f64).ln() + log_sum;
    let vmax = max_nan(v.abs_max());
    let ln_err = c_libm * ln_s;
    let add_err = U32 * (vmax + ev + ln_s + ln_err + log_sum);
    widen_up(ev + log_sum + ln_err + add_err, 64.0 * f64::EPSILON)
}

/// For logits in the box `z` (exact) computed in f32 with error ≤ `e` entrywise: a bound on
/// |S₃₂ − S| for the energy S = −T·logsumexp(z/T) of the K logits (`Energy`), or for DOS's
/// absent-class log-odds z_K + S(z_{<K}) (`AbsentClass`, absent class last). +∞ when an input
/// is infinite; NaN is an error.
pub fn score_error(z: &Interval, e: &[f64], kind: ScoreKind, t: f64) -> Result<f64> {
    if e.len() != z.len() || e.iter().any(|v| v.is_nan()) {
        return Err(Error::CheckFailed(
            "f32 score error: logit errors are NaN or mismatched".into(),
        ));
    }
    crate::score::check_temperature(t)?;
    let out = match kind {
        ScoreKind::Energy => energy_error(z, e, t),
        ScoreKind::AbsentClass => {
            let k = z.len() - 1;
            if k < 2 {
                return Err(Error::BadInput(
                    "absent-class score needs K + 1 ≥ 3 logits".into(),
                ));
            }
            let head = Interval {
                lo: z.lo[..k].to_vec(),
                hi: z.hi[..k].to_vec(),
            };
            let es = energy_error(&head, &e[..k], t);
            let zk = z.lo[k].abs().max(z.hi[k].abs());
            let sabs = max_nan(head.abs_max()) + t * (k as f64).ln();
            // fl(ẑ_K + Ŝ): both errors plus one rounding of the sum.
            widen_up(
                e[k] + es + U32 * (zk + e[k] + sabs + es),
                16.0 * f64::EPSILON,
            )
        }
        other => {
            return Err(Error::BadInput(format!(
                "no f32 error bound for score `{}`",
                other.name()
            )));
        }
    };
    if out.is_nan() {
        return Err(Error::CheckFailed("f32 score error bound is NaN".into()));
    }
    Ok(out)
}

/// The energy: at T = 1 `log_sum_exp(z).neg()`; else −fl32(T)·lse(ẑ·fl32(1/T)) (`affine`
/// multiplies by the scalar rounded to f32: two roundings each side).
fn energy_error(z: &Interval, e: &[f64], t: f64) -> f64 {
    let emax = max_nan(e.iter().copied());
    if t == 1.0 {
        return lse_error(z, emax);
    }
    if !(1e-30..=1e30).contains(&t) {
        return f64::INFINITY;
    }
    let inv = 1.0 / t;
    let g2 = gamma32(2);
    let v = Interval {
        lo: z.lo.iter().map(|x| x * inv).collect(),
        hi: z.hi.iter().map(|x| x * inv).collect(),
    };
    let zmax = max_nan(z.abs_max());
    // |v̂_k − z_k/T| ≤ (e/T)(1 + γ₂) + γ₂|z_k|/T.
    let ev = next_up((emax * inv * (1.0 + g2) + g2 * zmax * inv) * (1.0 + 8.0 * f64::EPSILON));
    let le = lse_error(&v, ev);
    let lse_abs = zmax * inv + ev + (z.len() as f64).ln() + le;
    widen_up(t * (1.0 + g2) * le + g2 * t * lse_abs, 16.0 * f64::EPSILON)
}
