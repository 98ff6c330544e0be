//! Bounds on p = softmax(z/T) from logit bounds l ≤ z ≤ u (theory.md §1):
//! p_k ≥ e^{l_k/T} / (e^{l_k/T} + Σ_{j≠k} e^{u_j/T}),  p_k ≤ e^{u_k/T} / (e^{u_k/T} + Σ_{j≠k} e^{l_j/T}),
//! then Σ p = 1 on top of the box (box ∩ simplex), and linear optimisation over that set.

use super::interval::Interval;
use super::round::{next_down, next_up};

/// Relative slack for exp/ln/division roundings (libm's exp is within 1 ulp; we allow 64).
const SOFT_REL: f64 = 64.0 * f64::EPSILON;

/// The box bound on softmax(z/T) for z ∈ [l, u], rounded outward.
pub fn softmax_box(z: &Interval, t: f64) -> Interval {
    let k = z.len();
    let mut lo = Vec::with_capacity(k);
    let mut hi = Vec::with_capacity(k);
    for i in 0..k {
        // p_i ≥ 1 / (1 + Σ_{j≠i} exp((u_j − l_i)/T))
        let s_lo: f64 = (0..k)
            .filter(|&j| j != i)
            .map(|j| ((z.hi[j] - z.lo[i]) / t).exp())
            .sum();
        let s_hi: f64 = (0..k)
            .filter(|&j| j != i)
            .map(|j| ((z.lo[j] - z.hi[i]) / t).exp())
            .sum();
        let pl = 1.0 / (1.0 + s_lo * (1.0 + SOFT_REL));
        let ph = 1.0 / (1.0 + s_hi * (1.0 - SOFT_REL));
        lo.push(next_down(pl * (1.0 - SOFT_REL)).max(0.0));
        hi.push(next_up(ph * (1.0 + SOFT_REL)).min(1.0));
    }
    Interval { lo, hi }
}

/// Tightens a box around the simplex: p_k ≥ 1 − Σ_{j≠k} hi_j and p_k ≤ 1 − Σ_{j≠k} lo_j.
pub fn simplex_tighten(p: &Interval) -> Interval {
    let k = p.len();
    let s_hi: f64 = p.hi.iter().sum();
    let s_lo: f64 = p.lo.iter().sum();
    let slack = (k as f64 + 2.0) * f64::EPSILON * 2.0;
    let mut out = p.clone();
    for i in 0..k {
        let lo = next_down(1.0 - (s_hi - p.hi[i]) - slack);
        let hi = next_up(1.0 - (s_lo - p.lo[i]) + slack);
        out.lo[i] = out.lo[i].max(lo);
        out.hi[i] = out.hi[i].min(hi);
    }
    out
}

/// An upper bound of max cᵀp over {p : lo ≤ p ≤ hi, Σ p = 1} (a fractional knapsack: start at
/// lo and pour the remaining mass into the largest c first). The set must be non-empty.
#[allow(clippy::needless_range_loop)]
pub fn max_linear_box_simplex(c: &[f64], p: &Interval) -> f64 {
    let k = c.len();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| c[b].total_cmp(&c[a]));
    let mut budget = 1.0 - p.lo.iter().sum::<f64>();
    let mut val = 0.0;
    let mut mag = 0.0;
    for i in 0..k {
        val += c[i] * p.lo[i];
        mag += (c[i] * p.lo[i]).abs();
    }
    for &i in &order {
        if budget <= 0.0 {
            break;
        }
        let add = (p.hi[i] - p.lo[i]).min(budget);
        val += c[i] * add;
        mag += (c[i] * add).abs();
        budget -= add;
    }
    // Rounding of the budget (≤ (k+2)·eps of mass) times the largest |c|, plus the sum's error.
    let cmax = c.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    next_up(
        val + (2.0 * k as f64 + 4.0) * f64::EPSILON * (mag + 2.0 * cmax) + super::round::ABS_FLOOR,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn softmax(z: &[f64], t: f64) -> Vec<f64> {
        let m = z.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
        let e: Vec<f64> = z.iter().map(|v| ((v - m) / t).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    #[test]
    fn sampled_softmax_stays_in_box_and_simplex_box() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for trial in 0..200 {
            let k = 2 + trial % 6;
            let t = [0.5, 1.0, 3.0][trial % 3];
            let l: Vec<f64> = (0..k).map(|_| rng.random_range(-10.0..10.0)).collect();
            let u: Vec<f64> = l.iter().map(|v| v + rng.random_range(0.0..3.0)).collect();
            let z = Interval::new(l.clone(), u.clone()).unwrap();
            let b = simplex_tighten(&softmax_box(&z, t));
            for _ in 0..200 {
                let x: Vec<f64> = (0..k).map(|i| rng.random_range(l[i]..=u[i])).collect();
                let p = softmax(&x, t);
                assert!(b.contains(&p), "{p:?} not in {b:?}");
                let c: Vec<f64> = (0..k).map(|_| rng.random_range(-2.0..2.0)).collect();
                let v: f64 = c.iter().zip(&p).map(|(c, p)| c * p).sum();
                assert!(v <= max_linear_box_simplex(&c, &b));
            }
        }
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn box_is_tight_at_the_corners() {
        // With l = u the box is a point: the softmax itself.
        let z = Interval::point(&[1.0, 2.0, 3.0]);
        let b = softmax_box(&z, 1.0);
        let p = softmax(&[1.0, 2.0, 3.0], 1.0);
        for i in 0..3 {
            assert!((b.lo[i] - p[i]).abs() < 1e-13 && (b.hi[i] - p[i]).abs() < 1e-13);
        }
    }
}
