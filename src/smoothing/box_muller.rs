//! The Box–Muller transform (Box & Muller 1958), z₀ = √(−2 ln u₁)·cos 2πu₂, z₁ = √(−2 ln u₁)·sin 2πu₂,
//! from two 52-bit uniforms, with branch-free polynomial ln and sincos built from IEEE-754 basic
//! operations only (+ − × ÷ √, no fused multiply-add, no libm): every lane vectorises and gives
//! the same bits on every platform and instruction set.
//!
//! The kernels follow the classic fdlibm reductions (Sun Microsystems, 1993; as in musl): ln by
//! ln m = 2 atanh(f/(2+f)) on m ∈ [√2/2, √2) with its minimax coefficients Lg1..Lg7 and ln 2 split
//! in two; sin/cos on |a| ≤ π/4 with the minimax kernels S1..S6, C1..C6 and an exact reduction
//! of the angle in turns. Their error against f64 libm is bounded in the tests below.

// The coefficients are written with fdlibm's published digits (each rounds to the same f64).
#![allow(clippy::excessive_precision)]

/// 2⁻⁵² as f64.
const EPS52: f64 = 1.0 / (1u64 << 52) as f64;
/// Bits of 1.0.
const ONE_BITS: u64 = 0x3FF0_0000_0000_0000;
/// Bits of 2⁵² (adding an integer below 2⁵² to its mantissa converts it exactly).
const TWO52_BITS: u64 = 0x4330_0000_0000_0000;
const TWO52: f64 = (1u64 << 52) as f64;
/// Bits of √2/2.
const SQRT_HALF_BITS: u64 = 0x3FE6_A09E_667F_3BCD;
const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
const LG1: f64 = 6.666_666_666_666_735_130e-1;
const LG2: f64 = 3.999_999_999_940_941_908e-1;
const LG3: f64 = 2.857_142_874_366_239_149e-1;
const LG4: f64 = 2.222_219_843_214_978_396e-1;
const LG5: f64 = 1.818_357_216_161_805_012e-1;
const LG6: f64 = 1.531_383_769_920_937_332e-1;
const LG7: f64 = 1.479_819_860_511_658_591e-1;
const S1: f64 = -1.666_666_666_666_663_243_48e-1;
const S2: f64 = 8.333_333_333_322_489_461_24e-3;
const S3: f64 = -1.984_126_982_985_794_931_34e-4;
const S4: f64 = 2.755_731_370_707_006_767_89e-6;
const S5: f64 = -2.505_076_025_340_686_341_95e-8;
const S6: f64 = 1.589_690_995_211_550_102_21e-10;
const C1: f64 = 4.166_666_666_666_660_190_37e-2;
const C2: f64 = -1.388_888_888_887_410_957_49e-3;
const C3: f64 = 2.480_158_728_947_672_941_78e-5;
const C4: f64 = -2.755_731_435_139_066_330_35e-7;
const C5: f64 = 2.087_572_321_298_174_827_90e-9;
const C6: f64 = -1.135_964_755_778_819_482_65e-11;

/// The uniform 1 − k·2⁻⁵² ∈ [2⁻⁵², 1] of the top 52 bits k of `w` (exact).
#[inline(always)]
pub fn unit_open_closed(w: u64) -> f64 {
    2.0 - f64::from_bits(ONE_BITS | (w >> 12))
}

/// ln u for a positive normal `u` ≤ 1 (branch-free; see the module doc).
#[inline(always)]
pub fn ln(u: f64) -> f64 {
    let bits = u.to_bits().wrapping_add(ONE_BITS - SQRT_HALF_BITS);
    let k = ((bits >> 52) as i32 - 0x3FF) as f64;
    let m = f64::from_bits((bits & 0x000F_FFFF_FFFF_FFFF) + SQRT_HALF_BITS);
    let f = m - 1.0;
    let hfsq = 0.5 * f * f;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG2 + w * (LG4 + w * LG6));
    let t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
    let r = t2 + t1;
    k * LN2_HI - ((hfsq - (s * (hfsq + r) + k * LN2_LO)) - f)
}

/// (cos 2πt, sin 2πt) for t = k·2⁻⁵², k the top 52 bits of `w` (branch-free): the quadrant
/// q = round(4t) and the remainder t − q/4 ∈ [−1/8, 1/8] are exact integer operations.
#[inline(always)]
pub fn cos_sin_turns(w: u64) -> (f64, f64) {
    let k = w >> 12;
    let shifted = k + (1 << 49);
    let q = shifted >> 50;
    let rem = shifted - (q << 50);
    // rem < 2⁵⁰: exact conversion through the mantissa of 2⁵², then exact re-centring.
    let t = (f64::from_bits(TWO52_BITS | rem) - TWO52) - (1u64 << 49) as f64;
    let a = t * (std::f64::consts::TAU * EPS52);
    let z = a * a;
    let sr = S2 + z * (S3 + z * (S4 + z * (S5 + z * S6)));
    let s = a + z * a * (S1 + z * sr);
    let cr = z * (C1 + z * (C2 + z * (C3 + z * (C4 + z * (C5 + z * C6)))));
    let hz = 0.5 * z;
    let one_minus = 1.0 - hz;
    let c = one_minus + (((1.0 - one_minus) - hz) + z * cr);
    // Rotate by q quarter turns: q = 1 → (−s, c), 2 → (−c, −s), 3 → (s, −c), 0 and 4 → (c, s).
    let swap = q & 1 == 1;
    let (cc, ss) = if swap { (s, c) } else { (c, s) };
    let neg_c = ((q + 1) & 2) << 62;
    let neg_s = (q & 2) << 62;
    (
        f64::from_bits(cc.to_bits() ^ neg_c),
        f64::from_bits(ss.to_bits() ^ neg_s),
    )
}

/// The Box–Muller pair of two 64-bit words: u₁ = [`unit_open_closed`]`(w1)`, angle 2π·k₂·2⁻⁵².
#[inline(always)]
pub fn pair(w1: u64, w2: u64) -> (f64, f64) {
    let (z0, z1, _, _) = pair_with_radius(w1, w2);
    (z0, z1)
}

/// [`pair`] (the same bits), with the u₁ and the computed radius r = √(−2 ln u₁) it used.
#[inline(always)]
pub fn pair_with_radius(w1: u64, w2: u64) -> (f64, f64, f64, f64) {
    let u1 = unit_open_closed(w1);
    let r = (-2.0 * ln(u1)).sqrt();
    let (c, s) = cos_sin_turns(w2);
    (r * c, r * s, u1, r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn ulps(a: f64, b: f64) -> f64 {
        (a - b).abs() / (b.abs().max(f64::MIN_POSITIVE) * f64::EPSILON)
    }

    /// ln within 1 ulp of libm's over the whole domain the transform uses, and exact at 1.
    #[test]
    fn ln_matches_libm_within_one_ulp() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut worst = 0.0f64;
        let edge = [
            EPS52,
            2.0 * EPS52,
            0.5,
            std::f64::consts::FRAC_1_SQRT_2,
            f64::from_bits(std::f64::consts::FRAC_1_SQRT_2.to_bits() - 1),
            f64::from_bits(std::f64::consts::FRAC_1_SQRT_2.to_bits() + 1),
            1.0 - EPS52,
        ];
        let draws = (0..1_000_000).map(|_| unit_open_closed(rng.random()));
        for u in edge.into_iter().chain(draws) {
            worst = worst.max(ulps(ln(u), u.ln()));
        }
        assert_eq!(ln(1.0), 0.0);
        assert!(worst <= 1.0, "worst ln error {worst} ulp");
    }

    /// cos/sin within 2.5·10⁻¹⁶ (absolute) of libm's on the exactly reduced angle 2π(t − q/4),
    /// rotated by q quarter turns, and within 10⁻¹⁵ of libm's sin/cos of the rounded angle
    /// fl(2πt) (whose own rounding reaches 4.5·10⁻¹⁶), including the quadrant boundaries and both
    /// ends of [0, 1).
    #[test]
    fn sincos_matches_libm() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let (mut kernel, mut whole) = (0.0f64, 0.0f64);
        let edge = [
            0u64,
            1,
            (1 << 49) - 1,
            1 << 49,
            (1 << 50) - 1,
            1 << 50,
            3 << 49,
            (1 << 52) - 1,
        ];
        let words = edge
            .map(|k| k << 12)
            .into_iter()
            .chain((0..1_000_000).map(|_| rng.random()));
        for w in words {
            let k = w >> 12;
            let q = (k + (1 << 49)) >> 50;
            let reduced = (k as i64 - (q << 50) as i64) as f64 * EPS52;
            let (s0, c0) = (std::f64::consts::TAU * reduced).sin_cos();
            let (c_ref, s_ref) = match q & 3 {
                0 => (c0, s0),
                1 => (-s0, c0),
                2 => (-c0, -s0),
                _ => (s0, -c0),
            };
            let (c, s) = cos_sin_turns(w);
            kernel = kernel.max((c - c_ref).abs()).max((s - s_ref).abs());
            let (s_lib, c_lib) = (std::f64::consts::TAU * (k as f64 * EPS52)).sin_cos();
            whole = whole.max((c - c_lib).abs()).max((s - s_lib).abs());
        }
        assert!(kernel <= 2.5e-16, "worst sincos kernel error {kernel}");
        assert!(whole <= 1e-15, "worst sincos error against libm {whole}");
    }

    /// The whole pair within 10⁻¹⁴ (absolute; radii reach 8.5) of the same Box–Muller evaluated
    /// with libm.
    #[test]
    fn pair_matches_libm_box_muller() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut worst = 0.0f64;
        for _ in 0..1_000_000 {
            let (w1, w2): (u64, u64) = (rng.random(), rng.random());
            let (z0, z1) = pair(w1, w2);
            let r = (-2.0 * unit_open_closed(w1).ln()).sqrt();
            let (s, c) = (std::f64::consts::TAU * ((w2 >> 12) as f64 * EPS52)).sin_cos();
            worst = worst.max((z0 - r * c).abs()).max((z1 - r * s).abs());
        }
        // The largest radius, at u₁ = 2⁻⁵²: √(104 ln 2).
        let (z0, _) = pair(u64::MAX, 0);
        assert!(
            (z0 - (104.0 * std::f64::consts::LN_2).sqrt()).abs() < 1e-14,
            "{z0}"
        );
        assert!(worst <= 1e-14, "worst pair error {worst}");
    }
}
