//! Outward rounding for sound f64 bound arithmetic.
//!
//! Every bound that decides soundness is widened here: a dot product of n terms computed in
//! f64 is within γ_n·Σ|aᵢbᵢ| of the exact value (Higham 2002, Thm 3.1 / eq. 3.5, γ_n = nu/(1-nu),
//! u = 2⁻⁵³). [`dot_err`] returns a generous multiple of it that also absorbs the few extra
//! roundings (adding the bias, subtracting the radius, computing the magnitude itself).

/// The next representable f64 above `x` (identity on +∞ and NaN).
pub fn next_up(x: f64) -> f64 {
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f64::from_bits(1);
    }
    let b = x.to_bits();
    f64::from_bits(if x > 0.0 { b + 1 } else { b - 1 })
}

/// The next representable f64 below `x` (identity on −∞ and NaN).
pub fn next_down(x: f64) -> f64 {
    -next_up(-x)
}

/// max(a, b), NaN when either is NaN (`f64::max` drops a NaN: a NaN bound must stay visible).
pub fn max_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// min(a, b), NaN when either is NaN.
pub fn min_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Relative error budget for a sum of `n` products and a bias: 4(n+4)u, u = 2⁻⁵³ (≥ 2γ_{n+4}).
pub fn dot_err(n: usize) -> f64 {
    2.0 * (n as f64 + 4.0) * f64::EPSILON
}

/// Absolute floor added to every widened bound (covers underflow of tiny products).
pub const ABS_FLOOR: f64 = 1e-290;

/// An upper bound of a non-negative quantity `x` known up to relative error `rel`: x(1+rel)+floor.
pub fn widen_up(x: f64, rel: f64) -> f64 {
    next_up(x * (1.0 + rel) + ABS_FLOOR)
}

/// x raised to [`ABS_FLOOR`] when 0 < x < ABS_FLOOR (a radius or magnitude: larger is sound).
pub fn lift(x: f64) -> f64 {
    if x > 0.0 && x < ABS_FLOOR {
        ABS_FLOOR
    } else {
        x
    }
}

/// A centre–radius pair (c′, r′) whose interval contains [c − r, c + r], with c′ = 0 or
/// |c′| ≥ [`ABS_FLOOR`] and r′ = 0 or r′ ≥ ABS_FLOOR: interval rules then multiply no subnormal
/// numbers, each of which costs a microcode assist on some CPUs (an Intel Xeon ran the branch
/// and bound's GEMMs 5–10× slower; BENCHMARKS.md, "2026-12-07, 13:25 UTC").
pub fn off_the_subnormals(c: f64, r: f64) -> (f64, f64) {
    if c != 0.0 && c.abs() < ABS_FLOOR {
        (0.0, lift(next_up(r + c.abs())))
    } else {
        (c, lift(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_the_subnormals_encloses_and_leaves_no_subnormal() {
        let tiny = f64::MIN_POSITIVE / 8.0;
        for (c, r) in [
            (tiny, 0.0),
            (-tiny, tiny),
            (1e-300, 1e-305),
            (0.5, tiny),
            (-2.0, 0.0),
            (0.0, 0.0),
            (3e-291, 1e-291),
        ] {
            let (c2, r2) = off_the_subnormals(c, r);
            assert!(
                c2 - r2 <= c - r && c2 + r2 >= c + r,
                "({c}, {r}) → ({c2}, {r2})"
            );
            assert!(
                !c2.is_subnormal() && !r2.is_subnormal(),
                "({c}, {r}) → ({c2}, {r2})"
            );
            assert!(c2 == 0.0 || c2.abs() >= ABS_FLOOR);
            assert!(r2 == 0.0 || r2 >= ABS_FLOOR);
        }
        assert_eq!(off_the_subnormals(0.5, 0.25), (0.5, 0.25));
        assert_eq!(lift(tiny), ABS_FLOOR);
        assert_eq!(lift(0.0), 0.0);
    }

    #[test]
    fn next_up_and_down_bracket() {
        for x in [0.0, 1.0, -1.0, 1e-300, -3.5e10, f64::MIN_POSITIVE] {
            assert!(next_up(x) > x && next_down(x) < x, "{x}");
            assert_eq!(next_down(next_up(x)), if x == 0.0 { 0.0 } else { x });
        }
        assert_eq!(next_up(f64::INFINITY), f64::INFINITY);
        assert_eq!(next_up(f64::MAX), f64::INFINITY);
    }

    #[test]
    fn nan_propagating_max_and_min() {
        assert!(max_nan(f64::NAN, 1.0).is_nan() && max_nan(1.0, f64::NAN).is_nan());
        assert!(min_nan(f64::NAN, 1.0).is_nan() && min_nan(1.0, f64::NAN).is_nan());
        assert_eq!((max_nan(1.0, 2.0), min_nan(1.0, 2.0)), (2.0, 1.0));
        assert!(f64::NAN.max(1.0) == 1.0, "the pitfall these helpers avoid");
    }

    #[test]
    fn dot_err_covers_a_bad_cancellation() {
        // Σ of n terms ±1 + 1e-16 style: the computed sum is within dot_err(n)·Σ|terms|.
        let v: Vec<f64> = (0..1000)
            .map(|i| {
                if i % 2 == 0 {
                    1.0 + 1e-16 * i as f64
                } else {
                    -1.0
                }
            })
            .collect();
        let s: f64 = v.iter().sum();
        let exact: f64 = (0..500).map(|i| 1e-16 * (2 * i) as f64).sum();
        let mag: f64 = v.iter().map(|x| x.abs()).sum();
        assert!((s - exact).abs() <= dot_err(1000) * mag);
    }
}
