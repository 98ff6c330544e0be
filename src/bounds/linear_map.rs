//! The interface every linear layer offers to bound propagation, and the two interval rules that
//! work for any of them: the image of a box (IBP, Gowal et al. 2018) and the adjoint image of a
//! box (the backward step of FastLip, Weng et al. 2018), both rounded outward.

use super::interval::Interval;
use super::round::{ABS_FLOOR, dot_err, lift, next_down, next_up, off_the_subnormals};
use crate::error::{Error, Result};

/// A linear map A: R^in → R^out that can apply A, |A| (entrywise absolute value) and their
/// transposes to a vector.
pub trait LinearMap {
    /// Input dimension.
    fn in_dim(&self) -> usize;
    /// Output dimension.
    fn out_dim(&self) -> usize;
    /// A·x, or |A|·x when `abs`.
    fn apply(&self, x: &[f64], abs: bool) -> Vec<f64>;
    /// Aᵀ·y, or |A|ᵀ·y when `abs`.
    fn apply_t(&self, y: &[f64], abs: bool) -> Vec<f64>;
    /// The most non-zero terms in one entry of A·x (the n of the rounding-error bound).
    fn fan_in(&self) -> usize;
    /// The most non-zero terms in one entry of Aᵀ·y.
    fn fan_out(&self) -> usize;
}

fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::Internal(format!(
            "{what}: vector of length {got}, map expects {want}"
        )));
    }
    Ok(())
}

/// Shared body of the two interval rules: centre/radius form, y_c ± (|A| r + err·|A|(|c|+r)).
fn interval_image(
    iv: &Interval,
    bias: Option<&[f64]>,
    n_terms: usize,
    apply: impl Fn(&[f64], bool) -> Vec<f64>,
) -> Interval {
    let (c, r): (Vec<f64>, Vec<f64>) = {
        let (c, r) = iv.center_radius();
        c.into_iter()
            .zip(r)
            .map(|(c, r)| off_the_subnormals(c, r))
            .unzip()
    };
    let yc = apply(&c, false);
    let yr = apply(&r, true);
    let mag_in: Vec<f64> = c
        .iter()
        .zip(&r)
        .map(|(c, r)| lift(next_up(c.abs() + r)))
        .collect();
    let mag = apply(&mag_in, true);
    let e = dot_err(n_terms + 1);
    let m = yc.len();
    let mut lo = Vec::with_capacity(m);
    let mut hi = Vec::with_capacity(m);
    for i in 0..m {
        let b = bias.map_or(0.0, |b| b[i]);
        let slack = e * (mag[i] + b.abs()) + ABS_FLOOR;
        let centre = yc[i] + b;
        lo.push(next_down(centre - yr[i] - slack));
        hi.push(next_up(centre + yr[i] + slack));
    }
    Interval { lo, hi }
}

/// {A x + b : x ∈ box} ⊆ the returned box (IBP rule of an affine layer, rounded outward).
pub fn affine_image(map: &dyn LinearMap, bias: Option<&[f64]>, iv: &Interval) -> Result<Interval> {
    check_len("affine image", iv.len(), map.in_dim())?;
    if let Some(b) = bias {
        check_len("affine bias", b.len(), map.out_dim())?;
    }
    Ok(interval_image(iv, bias, map.fan_in(), |v, a| {
        map.apply(v, a)
    }))
}

/// {Aᵀ g : g ∈ box} ⊆ the returned box (backward rule of a gradient bound, rounded outward).
pub fn adjoint_image(map: &dyn LinearMap, iv: &Interval) -> Result<Interval> {
    check_len("adjoint image", iv.len(), map.out_dim())?;
    Ok(interval_image(iv, None, map.fan_out(), |v, a| {
        map.apply_t(v, a)
    }))
}
