//! Writing floats into CSV: the shortest text that parses back to the same f64, in plain decimal
//! for ordinary magnitudes and in exponent form for tiny or huge ones (Rust's `{}` would write
//! 1e-300 as 302 digits).

/// Shortest round-trip text of `x`: plain for 1e-5 ≤ |x| < 1e16 (and 0), else `{:e}`.
pub fn fmt_f64(x: f64) -> String {
    let a = x.abs();
    if x == 0.0 || !x.is_finite() || (1e-5..1e16).contains(&a) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::fmt_f64;

    #[test]
    fn round_trips_and_stays_short() {
        for x in [
            0.0,
            -0.0,
            1.0,
            0.1,
            1e-5,
            9.99e-6,
            1e-300,
            5e-324,
            1e16,
            123456.789,
            -2.5e-12,
            f64::MAX,
        ] {
            let s = fmt_f64(x);
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), x.to_bits(), "{x}: {s}");
            assert!(s.len() <= 24, "{x}: {s}");
        }
        assert_eq!(fmt_f64(0.25), "0.25");
        assert_eq!(fmt_f64(1e-300), "1e-300");
        assert_eq!(fmt_f64(f64::NAN), "NaN");
    }
}
