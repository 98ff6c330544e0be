//! ReLU rules: interval image (IBP), the derivative set on a pre-activation box ({0}, {1} or
//! [0, 1]) applied to a gradient box (FastLip), and the linear relaxation (CROWN, Zhang et al. 2018).

use super::interval::Interval;

/// {relu(z) : z ∈ box} = [max(lo,0), max(hi,0)] (exact).
pub fn ibp(z: &Interval) -> Interval {
    Interval {
        lo: z
            .lo
            .iter()
            .map(|&v| super::round::max_nan(v, 0.0))
            .collect(),
        hi: z
            .hi
            .iter()
            .map(|&v| super::round::max_nan(v, 0.0))
            .collect(),
    }
}

/// The Clarke derivative set of relu on [l, u]: {1} if l > 0, {0} if u < 0, else [0, 1].
pub fn derivative_set(l: f64, u: f64) -> (f64, f64) {
    if l > 0.0 {
        (1.0, 1.0)
    } else if u < 0.0 {
        (0.0, 0.0)
    } else {
        (0.0, 1.0)
    }
}

/// {d ⊙ g : d ∈ derivative set of the pre-activation box, g ∈ gradient box} (exact).
pub fn grad_back(pre: &Interval, g: &Interval) -> Interval {
    let n = g.len();
    let mut lo = Vec::with_capacity(n);
    let mut hi = Vec::with_capacity(n);
    for i in 0..n {
        match derivative_set(pre.lo[i], pre.hi[i]) {
            (1.0, 1.0) => {
                lo.push(g.lo[i]);
                hi.push(g.hi[i]);
            }
            (0.0, 0.0) => {
                lo.push(0.0);
                hi.push(0.0);
            }
            _ => {
                lo.push(g.lo[i].min(0.0));
                hi.push(g.hi[i].max(0.0));
            }
        }
    }
    Interval { lo, hi }
}

/// CROWN's relaxation of relu on [l, u]: `(a_lo, a_up, b_up)` with
/// a_lo·z ≤ relu(z) ≤ a_up·z + b_up for every z ∈ [l, u]. Stable neurons are exact; for an
/// unstable one the upper line is the chord u(z − l)/(u − l) and the lower slope is 1 if u ≥ −l
/// else 0 (the adaptive choice of CROWN).
pub fn relaxation(l: f64, u: f64) -> (f64, f64, f64) {
    if l >= 0.0 {
        (1.0, 1.0, 0.0)
    } else if u <= 0.0 {
        (0.0, 0.0, 0.0)
    } else {
        let s = u / (u - l);
        // Round the chord up: the line s·z − s·l must stay above relu on [l, u]; the slack
        // (covered by widening b) is at most a few ulps of u.
        let b = -s * l;
        let lo_slope = if u >= -l { 1.0 } else { 0.0 };
        (
            lo_slope,
            s,
            super::round::next_up(b * (1.0 + 4.0 * f64::EPSILON)),
        )
    }
}

/// Whether the lower line of [`relaxation`] with upper slope `a_up` may take any slope in
/// [0, 1] (α-CROWN): the entry is unstable (0 < a_up < 1); stable entries are exact.
pub fn lower_slope_is_free(a_up: f64) -> bool {
    a_up > 0.0 && a_up < 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxation_brackets_relu_on_a_grid() {
        for (l, u) in [
            (-1.0, 2.0),
            (-3.0, 0.5),
            (0.1, 4.0),
            (-2.0, -0.1),
            (-1e-3, 1e3),
        ] {
            let (al, au, bu) = relaxation(l, u);
            for k in 0..=1000 {
                let z = l + (u - l) * k as f64 / 1000.0;
                let r = z.max(0.0);
                assert!(al * z <= r + 1e-15 && r <= au * z + bu, "l={l} u={u} z={z}");
            }
        }
    }

    #[test]
    fn derivative_sets() {
        assert_eq!(derivative_set(0.5, 1.0), (1.0, 1.0));
        assert_eq!(derivative_set(-2.0, -1.0), (0.0, 0.0));
        assert_eq!(derivative_set(0.0, 1.0), (0.0, 1.0));
        assert_eq!(derivative_set(-1.0, 0.0), (0.0, 1.0));
    }
}
