//! Layout v2's exactness check of the float32 noise coupling (proofs/smoothing_floating_point.md,
//! "The fused check") fused into the vectorised generator: per pair a cheap bound η⁺ ≥
//! `noise_v2::cell_error` from the u₁ and radius the generator already has, and per coordinate a
//! branch-free sufficient test that implies `noise::rounds_to`; only the rare pairs it cannot settle
//! are decided by the scalar check `noise_v2::pair_is_exact`, so every pair gets the scalar check's
//! decision.

use super::box_muller::pair_with_radius;
use super::noise_v2::{CHUNK, counter};
use super::philox::words_n;
/// The cell width 2⁻⁵² of layout v2's uniforms.
const CELL: f64 = 1.0 / (1u64 << 52) as f64;

/// An upper bound on 1/t for a positive normal f64 `t`, without a division: with t = 2ᵉ·m,
/// m ∈ [1, 2), the convex 1/m lies below its chord (3 − m)/2 on [1, 2], so 1/t ≤ 2⁻ᵉ(3 − m)/2
/// (at most 12.5 % above 1/t, at m = √2). Every step is exact: 3 − m ∈ (1, 2] keeps m's
/// 2⁻⁵² grid, and the halving and the scaling by 2⁻ᵉ (a normal power of two) only move exponents.
#[inline(always)]
pub(super) fn recip_upper(t: f64) -> f64 {
    let bits = t.to_bits();
    let m = f64::from_bits((bits & 0x000F_FFFF_FFFF_FFFF) | 0x3FF0_0000_0000_0000);
    // 2⁻ᵉ for biased exponent E = e + 1023 has biased exponent 2046 − E.
    let inv_scale = f64::from_bits((2046 - (bits >> 52)) << 52);
    (3.0 - m) * 0.5 * inv_scale
}

/// An upper bound on `noise_v2::cell_error` of a pair whose computed uniform is `u1` = b and
/// radius `r` = fl(√(−2 ln b)), without divisions or square roots: with a = b − 2⁻⁵²,
/// r(a)² − r(b)² = 2 ln(b/a) ≤ 2⁻⁵¹/a = q, so D = r(a) − r(b) ≤ q / r(b), and cell_error ≤
/// (1 + 10⁻¹²)(D + 1.6·10⁻¹⁴·r(a)); we return 2D⁺ + 4·10⁻¹⁴·(r⁺ + D⁺) with D⁺ ≥ q / r(b) from
/// [`recip_upper`] (+∞ when the cell reaches u₁ = 0, as cell_error does, and when r = 0).
#[inline(always)]
pub(super) fn eta_upper(u1: f64, r: f64) -> f64 {
    let a = u1 - CELL;
    let r = r.abs();
    // q⁺ = 2⁻⁵¹·(1/a)⁺ ≥ q; 1/r(b) ≤ (1/|r|)⁺·(1 + 1.1·10⁻¹²) as r(b) ≥ |r|·(1 − 10⁻¹²).
    let q = (2.0 * CELL) * recip_upper(a);
    let d = q * recip_upper(r) * (1.0 + 2e-12);
    let eta = 2.0 * d + 4e-14 * (r * (1.0 + 1e-12) + d);
    if a > 0.0 && r > 0.0 {
        eta
    } else {
        f64::INFINITY
    }
}

/// A sufficient condition for `noise::rounds_to(x, σ, z, η, v)` with σ·η ≤ `spread`, where
/// `sz` = fl(σz), `c` = fl(x + sz) and `v` = fl₃₂(c): v is a normal f32 that is not a power of
/// two (so both neighbours lie 2h away, h = half its spacing) and |c − v| (exact, Sterbenz) plus a
/// bound Δ on how far rounds_to's interval ends reach from c stays below h (a NaN or negative
/// `spread` fails).
#[inline(always)]
pub(super) fn surely_rounds_to(x: f64, sz: f64, c: f64, v: f32, spread: f64) -> bool {
    let bits = v.to_bits();
    let e = (bits >> 23) & 0xff;
    let usable = (e.wrapping_sub(1) < 254) & ((bits & 0x7f_ffff) != 0);
    // h = 2^(e − 151): half the spacing of the f32 binade with biased exponent e.
    let h = f64::from_bits((e as u64 + 872) << 52);
    let delta = 1.02 * spread + 10.0 * f64::EPSILON * (x.abs() + sz.abs() + spread) + 1e-299;
    usable & (spread >= 0.0) & ((c - v as f64).abs() + delta < h)
}

/// One chunk from its Philox words: `out` = fl₃₂(x + σz) for the 2·CHUNK values and `sure[j]`
/// whether both values of pair j pass [`surely_rounds_to`] with η⁺ = [`eta_upper`]. Two stages
/// after the words (Box–Muller with η⁺, then the rounding test) rather than one loop: shorter
/// dependency chains per stage, 10 % more Monte Carlo throughput on the MLP (BENCHMARKS.md,
/// 2026-12-07 07:20–07:32 UTC), the same bits.
#[inline(always)]
fn finish_body(
    w1s: &[u64; CHUNK],
    w2s: &[u64; CHUNK],
    sigma: f64,
    x: &[f32; 2 * CHUNK],
    out: &mut [f32; 2 * CHUNK],
    sure: &mut [bool; CHUNK],
) {
    let (mut z0, mut z1, mut eta) = ([0.0f64; CHUNK], [0.0f64; CHUNK], [0.0f64; CHUNK]);
    for j in 0..CHUNK {
        let (a, b, u1, r) = pair_with_radius(w1s[j], w2s[j]);
        (z0[j], z1[j], eta[j]) = (a, b, eta_upper(u1, r));
    }
    for j in 0..CHUNK {
        let spread = sigma * eta[j];
        let (x0, x1) = (x[2 * j] as f64, x[2 * j + 1] as f64);
        let (s0, s1) = (sigma * z0[j], sigma * z1[j]);
        let (c0, c1) = (x0 + s0, x1 + s1);
        let (v0, v1) = (c0 as f32, c1 as f32);
        out[2 * j] = v0;
        out[2 * j + 1] = v1;
        sure[j] =
            surely_rounds_to(x0, s0, c0, v0, spread) & surely_rounds_to(x1, s1, c1, v1, spread);
    }
}

/// One chunk of pairs `first..first + CHUNK` (the portable words and [`finish_body`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn chunk_body(
    key: [u32; 2],
    index: u64,
    copy: u32,
    first: u32,
    sigma: f64,
    x: &[f32; 2 * CHUNK],
    out: &mut [f32; 2 * CHUNK],
    sure: &mut [bool; CHUNK],
) {
    let (w1s, w2s) = words_n::<CHUNK>(key, counter(first, copy, index));
    finish_body(&w1s, &w2s, sigma, x, out, sure);
}

/// [`chunk_body`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn chunk_avx2(
    key: [u32; 2],
    index: u64,
    copy: u32,
    first: u32,
    sigma: f64,
    x: &[f32; 2 * CHUNK],
    out: &mut [f32; 2 * CHUNK],
    sure: &mut [bool; CHUNK],
) {
    chunk_body(key, index, copy, first, sigma, x, out, sure)
}

/// [`chunk_body`] compiled for AVX-512 (F, DQ, VL).
///
/// # Safety
/// The CPU must support AVX-512 F, DQ and VL.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl")]
#[allow(clippy::too_many_arguments)]
unsafe fn chunk_avx512(
    key: [u32; 2],
    index: u64,
    copy: u32,
    first: u32,
    sigma: f64,
    x: &[f32; 2 * CHUNK],
    out: &mut [f32; 2 * CHUNK],
    sure: &mut [bool; CHUNK],
) {
    let (mut w1s, mut w2s) = ([0u64; CHUNK], [0u64; CHUNK]);
    let ctr = counter(first, copy, index);
    // SAFETY: this function's own target features include AVX-512 F.
    unsafe { super::philox::words_x8_avx512(key, ctr, &mut w1s, &mut w2s) };
    finish_body(&w1s, &w2s, sigma, x, out, sure)
}

/// One chunk, with AVX-512 or AVX2 when available (same arithmetic, same bits).
#[allow(clippy::too_many_arguments)]
fn chunk(
    key: [u32; 2],
    index: u64,
    copy: u32,
    first: u32,
    sigma: f64,
    x: &[f32; 2 * CHUNK],
    out: &mut [f32; 2 * CHUNK],
    sure: &mut [bool; CHUNK],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
    {
        // SAFETY: AVX-512 F, DQ and VL support was just detected.
        unsafe { chunk_avx512(key, index, copy, first, sigma, x, out, sure) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 support was just detected.
        unsafe { chunk_avx2(key, index, copy, first, sigma, x, out, sure) };
        return;
    }
    chunk_body(key, index, copy, first, sigma, x, out, sure)
}

/// Writes `x + σ·z` into `out` exactly as `noise_v2::add_noise` does and passes `decide(m, ok)`
/// for every value pair m: ok is the decision of the scalar check `noise_v2::pair_is_exact`,
/// taken from the vectorised sufficient test when it passes and from the scalar check otherwise.
fn add_noise_deciding(
    key: [u32; 2],
    index: u64,
    copy: u64,
    sigma: f64,
    x: &[f32],
    out: &mut [f32],
    mut decide: impl FnMut(usize, bool),
) {
    let d = x.len().min(out.len());
    let pairs = d.div_ceil(2);
    assert!(
        copy < 1 << 32 && pairs as u64 <= 1 << 32,
        "noise layout v2: counters out of range (NoiseKey::check_range guards every run)"
    );
    let (mut xb, mut ob, mut sure) = ([0.0f32; 2 * CHUNK], [0.0f32; 2 * CHUNK], [false; CHUNK]);
    for m0 in (0..pairs).step_by(CHUNK) {
        let (v0, v1) = (2 * m0, (2 * (m0 + CHUNK)).min(d));
        let full = (&x[v0..v1])
            .try_into()
            .ok()
            .zip((&mut out[v0..v1]).try_into().ok());
        if let Some((xs, os)) = full {
            // A whole chunk: straight from x into out.
            chunk(key, index, copy as u32, m0 as u32, sigma, xs, os, &mut sure);
        } else {
            // The last, partial chunk goes through zero-padded buffers.
            let len = v1 - v0;
            xb[..len].copy_from_slice(&x[v0..v1]);
            xb[len..].fill(0.0);
            chunk(
                key,
                index,
                copy as u32,
                m0 as u32,
                sigma,
                &xb,
                &mut ob,
                &mut sure,
            );
            out[v0..v1].copy_from_slice(&ob[..len]);
        }
        let n = CHUNK.min(pairs - m0);
        // The loop below decides an all-sure chunk the same way; this tight path for the common
        // case keeps the scalar check out of it (7 % of the noise loop, `cargo bench --bench
        // noise -- v2_checked`, interleaved A/B on 2026-12-07).
        if sure[..n].iter().all(|&s| s) {
            (m0..m0 + n).for_each(|m| decide(m, true));
            continue;
        }
        for (j, &s) in sure[..n].iter().enumerate() {
            let m = m0 + j;
            // A padded second value (odd d) only makes the sufficient test stricter.
            let ok = s || {
                let e = (2 * m + 2).min(d);
                super::noise_v2::pair_is_exact(
                    key,
                    index,
                    copy,
                    m as u32,
                    sigma,
                    &x[2 * m..e],
                    &out[2 * m..e],
                )
            };
            decide(m, ok);
        }
    }
}

/// `noise_v2::add_noise`, and whether the copy is *exact* — the decision of
/// `noise_v2::add_noise_checked_scalar`, pair by pair, at the cost of the vectorised generator.
pub fn add_noise_checked(
    key: [u32; 2],
    index: u64,
    copy: u64,
    sigma: f64,
    x: &[f32],
    out: &mut [f32],
) -> bool {
    let mut exact = true;
    add_noise_deciding(key, index, copy, sigma, x, out, |_, ok| exact &= ok);
    exact
}

/// The value pairs of a copy whose candidate lists (`noise::candidates`, with the scalar check's
/// z and η) can differ from `[out[k]]`, in ascending order: every pair the scalar check does not
/// call exact, and every pair with a value that is ±0, not finite, or not this copy's own noisy
/// value. Any other pair has both enclosure ends rounding to its nonzero finite value v (the
/// scalar check's `rounds_to`), so its list is exactly `[v]` and `NoiseKey::ambiguities` skips it
/// without changing its answer: the scalar regeneration then runs on a handful of pairs instead
/// of all of them.
pub fn pairs_to_examine(
    key: [u32; 2],
    index: u64,
    copy: u64,
    sigma: f64,
    x: &[f32],
    out: &[f32],
) -> Vec<usize> {
    let d = x.len().min(out.len());
    let mut own = vec![0.0f32; d];
    let mut examine = Vec::new();
    add_noise_deciding(key, index, copy, sigma, &x[..d], &mut own, |m, ok| {
        if !ok {
            examine.push(m);
        }
    });
    let plain = |k: usize| {
        let v = out[k];
        v.is_finite() && v != 0.0 && v.to_bits() == own[k].to_bits()
    };
    let mut all = Vec::with_capacity(examine.len());
    let mut flagged = examine.into_iter().peekable();
    for m in 0..d.div_ceil(2) {
        let bad = flagged.next_if_eq(&m).is_some();
        if bad || !(2 * m..(2 * m + 2).min(d)).all(plain) {
            all.push(m);
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::super::box_muller::unit_open_closed;
    use super::super::noise::sigma_onto_midpoint;
    use super::super::noise_v2::{add_noise, cell_error, pair_is_exact};
    use super::*;
    use rand::{RngCore, SeedableRng};

    const KEY: [u32; 2] = [0x0dd_cafe, 0x5eed_0015];

    /// One copy through the fused loop and through the scalar check: the same bits, the scalar
    /// check's decision for every pair in order, and the same verdict from `add_noise_checked`.
    /// Returns the scalar verdict and how many pairs the scalar check rejected.
    fn fused_matches_scalar(index: u64, copy: u64, sigma: f64, x: &[f32]) -> (bool, usize) {
        let d = x.len();
        let (mut out_f, mut out_s) = (vec![0.0f32; d], vec![0.0f32; d]);
        let exact_s = super::super::noise_v2::add_noise_checked_scalar(
            KEY, index, copy, sigma, x, &mut out_s,
        );
        let (mut seen, mut rejected) = (Vec::new(), 0);
        add_noise_deciding(KEY, index, copy, sigma, x, &mut out_f, |m, ok| {
            let e = (2 * m + 2).min(d);
            let want = pair_is_exact(
                KEY,
                index,
                copy,
                m as u32,
                sigma,
                &x[2 * m..e],
                &out_s[2 * m..e],
            );
            assert_eq!(ok, want, "d {d} copy {copy} pair {m} σ {sigma}");
            rejected += usize::from(!want);
            seen.push(m);
        });
        assert_eq!(seen, (0..d.div_ceil(2)).collect::<Vec<_>>(), "d {d}");
        assert_eq!(
            out_f.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            out_s.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "d {d} copy {copy}"
        );
        assert_eq!(
            add_noise_checked(KEY, index, copy, sigma, x, &mut out_f),
            exact_s,
            "d {d} copy {copy}"
        );
        (exact_s, rejected)
    }

    /// The fused check and the scalar one decide ≥ 10⁶ pairs alike, one by one, and write the
    /// same bits. Copies mix MNIST-like pixels (zeros, ones, grey levels), and σ is tuned per copy
    /// so that one value sits on, or a chosen number of f64 ulps off, an f32 rounding midpoint —
    /// the decision boundary of both checks; the test also insists that the scalar check rejects
    /// many of those and that the sufficient test leaves a few to the scalar path.
    #[test]
    fn fused_and_scalar_checks_agree_pair_by_pair() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(15);
        let d = 785; // odd: the last pair has one value
        let mut x = vec![0.0f32; d];
        let mut z = vec![0.0f64; d];
        let (mut pairs, mut rejected, mut fallbacks, mut copies_inexact) = (0usize, 0, 0, 0);
        for copy in 0..2600u64 {
            let index = copy % 7 + (copy % 3) * (1 << 33);
            for xi in x.iter_mut() {
                let w = rng.next_u64();
                *xi = match w % 4 {
                    0 => 0.0,
                    1 => 1.0,
                    _ => ((w >> 40) as f32) / (1u64 << 24) as f32,
                };
            }
            let mut sigma = [0.12, 0.25, 0.5, 1.0][(copy % 4) as usize];
            let t = (copy / 4) % 5;
            if t > 0 {
                // Tune σ so that value i lands on (t = 1) or near (t = 2..4) a rounding midpoint.
                super::super::noise_v2::fill(KEY, index, copy, &mut z);
                let i = (rng.next_u64() % d as u64) as usize;
                if z[i].abs() > 0.05 {
                    let s_mid = sigma_onto_midpoint(x[i], sigma, z[i]);
                    let ulps = [0.0, 0.0, 8.0, 30.0, 90.0][t as usize];
                    let c = x[i] as f64 + s_mid * z[i];
                    let sign = if rng.next_u64() % 2 == 0 { 1.0 } else { -1.0 };
                    sigma = s_mid + sign * ulps * c.abs() * f64::EPSILON / z[i];
                }
            }
            let (exact_s, r) = fused_matches_scalar(index, copy, sigma, &x);
            pairs += d.div_ceil(2);
            rejected += r;
            copies_inexact += usize::from(!exact_s);
            // Pairs that the sufficient test leaves to the scalar check.
            let mut xb = [0.0f32; 2 * CHUNK];
            let (mut ob, mut sure) = ([0.0f32; 2 * CHUNK], [false; CHUNK]);
            for m0 in (0..d.div_ceil(2)).step_by(CHUNK) {
                let (v0, v1) = (2 * m0, (2 * (m0 + CHUNK)).min(d));
                xb[..v1 - v0].copy_from_slice(&x[v0..v1]);
                xb[v1 - v0..].fill(0.0);
                chunk_body(
                    KEY,
                    index,
                    copy as u32,
                    m0 as u32,
                    sigma,
                    &xb,
                    &mut ob,
                    &mut sure,
                );
                fallbacks += sure
                    .iter()
                    .take(d.div_ceil(2) - m0)
                    .filter(|s| !**s)
                    .count();
            }
        }
        assert!(pairs >= 1_000_000, "{pairs}");
        assert!(
            rejected >= 300 && copies_inexact >= 300,
            "{rejected} {copies_inexact}"
        );
        assert!(fallbacks > rejected, "{fallbacks} {rejected}");
        assert!(fallbacks < pairs / 200, "{fallbacks} of {pairs}");
    }

    /// Every input length cuts the copy into whole chunks (taken straight from x into out) and
    /// at most one partial, padded chunk: lengths below, at and around the chunk's 64 values,
    /// odd and even, give the scalar check's bits and pair-by-pair decisions, with σ tuned onto
    /// a rounding midpoint in some copies so that both decisions occur.
    #[test]
    fn every_length_gives_the_scalar_bits_and_decisions() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(18);
        let (mut pairs, mut rejected) = (0usize, 0usize);
        for d in [0usize, 1, 2, 63, 64, 65, 127, 128, 129, 192] {
            let mut z = vec![0.0f64; d];
            for copy in 0..400u64 {
                let x: Vec<f32> = (0..d)
                    .map(|_| ((rng.next_u64() >> 40) as f32) / (1u64 << 24) as f32)
                    .collect();
                let mut sigma = 0.25;
                if copy % 2 == 1 && d > 0 {
                    super::super::noise_v2::fill(KEY, 9, copy, &mut z);
                    let i = (rng.next_u64() % d as u64) as usize;
                    if z[i].abs() > 0.05 {
                        sigma = sigma_onto_midpoint(x[i], sigma, z[i]);
                    }
                }
                rejected += fused_matches_scalar(9, copy, sigma, &x).1;
                pairs += d.div_ceil(2);
            }
        }
        assert!(pairs > 100_000 && rejected >= 100, "{pairs} {rejected}");
    }

    /// η⁺ bounds the scalar cell bound for every kind of u₁: next to 1 (r ≈ 0), in the far tail
    /// (u₁ a few cells, r ≈ 8.5), on every binade edge and at random.
    #[test]
    fn eta_upper_bounds_the_cell_error() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
        let top = (1u64 << 52) - 1;
        let mut ks: Vec<u64> = (0..200_000).chain(top - 200_000..=top).collect();
        for b in 0..52 {
            for o in 0..64 {
                ks.push(((1u64 << b) + o).saturating_sub(32).min(top));
            }
        }
        ks.extend((0..1_000_000).map(|_| rng.next_u64() >> 12));
        let (mut worst, mut loosest, mut checked) = (f64::INFINITY, 0.0f64, 0usize);
        for k in ks {
            let w1 = k << 12 | (rng.next_u64() & 0xfff);
            let u1 = unit_open_closed(w1);
            let (_, _, u, r) = pair_with_radius(w1, rng.next_u64());
            assert_eq!(u, u1);
            let (s, f) = (cell_error(w1), eta_upper(u1, r));
            // u₁ = 1 (r = 0, probability 2⁻⁵²) is left to the scalar check.
            if s.is_infinite() || r == 0.0 {
                assert!(f.is_infinite(), "k {k}");
                continue;
            }
            assert!(f >= s, "k {k}: η⁺ {f} < cell_error {s}");
            worst = worst.min(f / s);
            loosest = loosest.max(f / s);
            checked += 1;
        }
        // η⁺ stays within a small factor (the fallbacks stay rare).
        assert!(
            worst >= 1.0 && loosest <= 8.0 && checked > 1_400_000,
            "{worst} {loosest} {checked}"
        );
    }

    /// recip_upper(t) ≥ 1/t exactly (the sign of the fused t·r − 1 is exact) and within the
    /// chord's 12.5 %, over every binade η⁺ uses, at binade edges, at √2 and at random.
    #[test]
    fn recip_upper_bounds_the_reciprocal() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(19);
        let mut ts = vec![
            1.0,
            2.0f64.sqrt(),
            2.0f64.sqrt().next_up(),
            8.5,
            CELL,
            1.0 - CELL,
        ];
        for e in -60..4 {
            let p = 2.0f64.powi(e);
            ts.extend([
                p,
                p.next_up(),
                (2.0 * p).next_down(),
                p * 1.5,
                p * 2.0f64.sqrt(),
            ]);
            ts.extend((0..20_000).map(|_| p * (1.0 + (rng.next_u64() >> 12) as f64 * CELL)));
        }
        let mut loosest = 0.0f64;
        for t in ts {
            let r = recip_upper(t);
            assert!(r.mul_add(t, -1.0) >= 0.0, "t {t:e}: {r:e} < 1/t");
            loosest = loosest.max(r * t);
        }
        assert!((1.12..=1.125 + 1e-15).contains(&loosest), "{loosest}");
    }

    /// The sufficient test implies the scalar rounds_to at the word level, with adversarial words
    /// (tails, u₁ next to 1) and values on or a few ulps off rounding midpoints, for unit and
    /// 0–255 pixel scales and σ down to 0.01 (where the f64 rounding slack dominates σ·η).
    #[test]
    fn surely_rounds_to_implies_rounds_to() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        let (mut sure, mut tuned_sure) = (0usize, 0usize);
        for t in 0..1_000_000u64 {
            let w1 = match t % 5 {
                0 => u64::MAX - (rng.next_u64() >> (12 + (t / 5 % 40))),
                1 => rng.next_u64() >> (12 + (t / 5 % 40)),
                _ => rng.next_u64(),
            };
            let (z0, _, u1, r) = pair_with_radius(w1, rng.next_u64());
            // Pixels in [0, 1] and, where the f64 rounding slack outweighs σ·η, in [0, 256).
            let x = match t % 3 {
                0 => 0.0,
                1 => ((rng.next_u64() >> 40) as f32) / (1u64 << 24) as f32,
                _ => ((rng.next_u64() >> 40) as f32) / (1u64 << 16) as f32,
            };
            let mut sigma = [0.12, 0.25, 0.5, 1.0, 0.01][(t / 7 % 5) as usize];
            let tuned = t % 2 == 0 && z0.abs() > 1e-3;
            if tuned {
                let s = sigma_onto_midpoint(x, sigma, z0);
                let c = x as f64 + s * z0;
                let ulps = (rng.next_u64() % 200) as f64 - 100.0;
                sigma = s + ulps * c.abs() * f64::EPSILON / z0;
            }
            let (sz, eta) = (sigma * z0, eta_upper(u1, r));
            let c = x as f64 + sz;
            let v = c as f32;
            if surely_rounds_to(x as f64, sz, c, v, sigma * eta) {
                let e = cell_error(w1);
                assert!(
                    e.is_finite() && super::super::noise::rounds_to(x as f64, sigma, z0, e, v),
                    "w1 {w1:#x} x {x} σ {sigma}"
                );
                sure += 1;
                tuned_sure += usize::from(tuned);
            }
        }
        assert!(sure > 400_000 && tuned_sure > 20_000, "{sure} {tuned_sure}");
    }

    /// The AVX-512, AVX2 and portable chunks give the same values and decisions.
    #[test]
    fn vector_and_portable_chunks_agree() {
        let x: [f32; 2 * CHUNK] = std::array::from_fn(|i| (i % 7) as f32 / 6.0);
        let (mut ob, mut sb) = ([0.0f32; 2 * CHUNK], [false; CHUNK]);
        for (index, copy, first) in [(0u64, 0u32, 0u32), (u64::MAX, u32::MAX, 96), (12, 7, 32)] {
            chunk_body(KEY, index, copy, first, 0.25, &x, &mut ob, &mut sb);
            let (mut o, mut s) = ([0.0f32; 2 * CHUNK], [false; CHUNK]);
            chunk(KEY, index, copy, first, 0.25, &x, &mut o, &mut s);
            assert_eq!(o.map(f32::to_bits), ob.map(f32::to_bits));
            assert_eq!(s, sb);
            if first == 0 {
                let mut plain = [0.0f32; 2 * CHUNK];
                add_noise(KEY, index, copy as u64, 0.25, &x, &mut plain);
                assert_eq!(o.map(f32::to_bits), plain.map(f32::to_bits));
            }
        }
    }
}
