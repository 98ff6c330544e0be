//! Noise layout v2 (`noise::NOISE_LAYOUT_V2`): value pair m of copy c of sample i is the
//! Box–Muller pair (`box_muller::pair`) of the Philox4x32-10 block with counter (m, c, i mod 2³²,
//! ⌊i/2³²⌋), so every value is computed on its own, in chunks of pairs without branches (AVX-512,
//! with Philox's rounds in intrinsics (`philox::words_x8_avx512`), or AVX2 when the CPU has it;
//! the arithmetic is the same either way, so are the bits).

use super::box_muller::pair;
use super::philox::{words, words_n};

/// Pairs per chunk.
pub(super) const CHUNK: usize = 32;

/// The Philox counter of value pair `m` of copy `copy` of sample `index`: (m, copy, index mod
/// 2³², ⌊index/2³²⌋).
#[inline(always)]
pub(super) fn counter(m: u32, copy: u32, index: u64) -> [u32; 4] {
    [m, copy, index as u32, (index >> 32) as u32]
}

/// The Box–Muller pairs of the words `w1s`, `w2s` into `z0` (cos) and `z1` (sin).
#[inline(always)]
fn pairs_of(w1s: &[u64; CHUNK], w2s: &[u64; CHUNK], z0: &mut [f64], z1: &mut [f64]) {
    for (j, (a, b)) in z0[..CHUNK].iter_mut().zip(&mut z1[..CHUNK]).enumerate() {
        (*a, *b) = pair(w1s[j], w2s[j]);
    }
}

/// The Gaussian pairs `first..first + CHUNK` of copy `copy` of sample `index`: cos values in
/// `z0`, sin values in `z1`.
#[inline(always)]
fn chunk_body(key: [u32; 2], index: u64, copy: u32, first: u32, z0: &mut [f64], z1: &mut [f64]) {
    let (w1s, w2s) = words_n::<CHUNK>(key, counter(first, copy, index));
    pairs_of(&w1s, &w2s, z0, z1);
}

/// [`chunk_body`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn chunk_avx2(
    key: [u32; 2],
    index: u64,
    copy: u32,
    first: u32,
    z0: &mut [f64],
    z1: &mut [f64],
) {
    chunk_body(key, index, copy, first, z0, z1)
}

/// [`chunk_body`] compiled for AVX-512 (F, DQ, VL).
///
/// # Safety
/// The CPU must support AVX-512 F, DQ and VL.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl")]
unsafe fn chunk_avx512(
    key: [u32; 2],
    index: u64,
    copy: u32,
    first: u32,
    z0: &mut [f64],
    z1: &mut [f64],
) {
    let (mut w1s, mut w2s) = ([0u64; CHUNK], [0u64; CHUNK]);
    let ctr = counter(first, copy, index);
    // SAFETY: this function's own target features include AVX-512 F.
    unsafe { super::philox::words_x8_avx512(key, ctr, &mut w1s, &mut w2s) };
    pairs_of(&w1s, &w2s, z0, z1);
}

/// One chunk, with AVX-512 or AVX2 when available.
fn chunk(key: [u32; 2], index: u64, copy: u32, first: u32, z0: &mut [f64], z1: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
    {
        // SAFETY: AVX-512 F, DQ and VL support was just detected.
        unsafe { chunk_avx512(key, index, copy, first, z0, z1) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 support was just detected.
        unsafe { chunk_avx2(key, index, copy, first, z0, z1) };
        return;
    }
    chunk_body(key, index, copy, first, z0, z1)
}

/// Calls `visit(v, z)` for each chunk of the ⌈d/2⌉ pairs of copy `copy` of sample `index`, z
/// holding values v.. in coordinate order (cos of pair m at 2m, sin at 2m+1; it may run past d).
fn for_each_chunk(
    key: [u32; 2],
    index: u64,
    copy: u64,
    d: usize,
    mut visit: impl FnMut(usize, &[f64]),
) {
    assert!(
        copy < 1 << 32 && d.div_ceil(2) as u64 <= 1 << 32,
        "noise layout v2: counters out of range (NoiseKey::check_range guards every run)"
    );
    let (mut z0, mut z1) = ([0.0f64; CHUNK], [0.0f64; CHUNK]);
    let mut z = [0.0f64; 2 * CHUNK];
    for m in (0..d.div_ceil(2)).step_by(CHUNK) {
        chunk(key, index, copy as u32, m as u32, &mut z0, &mut z1);
        for ((pair, &c), &s) in z.chunks_exact_mut(2).zip(&z0).zip(&z1) {
            pair[0] = c;
            pair[1] = s;
        }
        visit(2 * m, &z);
    }
}

/// Fills `out` with the standard normal values of copy `copy` of sample `index`.
pub fn fill(key: [u32; 2], index: u64, copy: u64, out: &mut [f64]) {
    let d = out.len();
    for_each_chunk(key, index, copy, d, |v, z| {
        let span = &mut out[v..(v + 2 * CHUNK).min(d)];
        let len = span.len();
        span.copy_from_slice(&z[..len]);
    });
}

/// Writes `x + σ·z` (z the noise of copy `copy` of sample `index`) into `out`: formed in f64,
/// rounded once to f32.
pub fn add_noise(key: [u32; 2], index: u64, copy: u64, sigma: f64, x: &[f32], out: &mut [f32]) {
    let d = x.len().min(out.len());
    for_each_chunk(key, index, copy, d, |v, z| {
        let end = (v + 2 * CHUNK).min(d);
        for ((o, &xi), &zi) in out[v..end].iter_mut().zip(&x[v..end]).zip(z) {
            *o = (xi as f64 + sigma * zi) as f32;
        }
    });
}

/// [`add_noise`], and whether the copy is *exact*: equal to fl₃₂(x + σZ) for the ideal Gaussian
/// Z coupled to the Philox words (the continuous uniforms whose 52-bit truncations they are,
/// through exact Box–Muller), checked per coordinate as for layout v1
/// (`NoiseKey::add_noise_checked`; proofs/smoothing_floating_point.md). The scalar reference of
/// the fused check `noise_v2_checked::add_noise_checked`, which decides every pair alike.
pub fn add_noise_checked_scalar(
    key: [u32; 2],
    index: u64,
    copy: u64,
    sigma: f64,
    x: &[f32],
    out: &mut [f32],
) -> bool {
    add_noise(key, index, copy, sigma, x, out);
    let d = x.len().min(out.len());
    let mut exact = true;
    for (m, (o, xs)) in out[..d].chunks(2).zip(x[..d].chunks(2)).enumerate() {
        exact &= pair_is_exact(key, index, copy, m as u32, sigma, xs, o);
    }
    exact
}

/// Whether value pair `m` of copy `copy` of sample `index`, written as `vs` = fl₃₂(`xs` + σz)
/// (one or two coordinates), is exact: the words regenerated by scalar Philox, z by [`pair`],
/// |Z − z| ≤ [`cell_error`], every coordinate checked by `noise::rounds_to`.
pub(super) fn pair_is_exact(
    key: [u32; 2],
    index: u64,
    copy: u64,
    m: u32,
    sigma: f64,
    xs: &[f32],
    vs: &[f32],
) -> bool {
    let (z, eta) = pair_z_eta(key, index, copy, m);
    super::noise::pair_is_exact(xs, vs, sigma, z, eta)
}

/// The scalar z of value pair `m` of copy `copy` of sample `index` (Philox words, [`pair`]) and
/// the bound [`cell_error`] on |Z − z|, as [`pair_is_exact`] uses them.
pub(super) fn pair_z_eta(key: [u32; 2], index: u64, copy: u64, m: u32) -> ((f64, f64), f64) {
    let (w1, w2) = words(counter(m, copy as u32, index), key);
    (pair(w1, w2), cell_error(w1))
}

/// A bound η on |Z − z| for the ideal Gaussian Z of the words' cell and the computed z of
/// [`pair`]: the ideal u₁ lies in (u₁ − 2⁻⁵², u₁] (u₁ = 1 − k·2⁻⁵² exactly), the ideal angle within
/// one 2π·2⁻⁵² step of the computed one (reduced exactly in turns). Transform errors: the
/// polynomial ln within 1 ulp of libm's and sincos within 1e-15 of libm's (tested in
/// `box_muller::tests`), libm within 1 ulp; the bound allows 4× those (8ε relative for ln,
/// 4·10⁻¹⁵ absolute for sin/cos).
pub(super) fn cell_error(w1: u64) -> f64 {
    super::noise::box_muller_eta(
        super::box_muller::unit_open_closed(w1),
        1.0 / (1u64 << 52) as f64,
        8.0 * f64::EPSILON,
        4e-15,
        4.0 * f64::EPSILON,
    )
}

#[cfg(test)]
mod tests {
    use super::super::philox::philox4x32_10;
    use super::*;

    /// The v2 cell bound at the word level: a value tuned onto an f32 rounding midpoint is never
    /// called exact, and for values called exact every corner of the words' cell (ideal uniforms
    /// through libm Box–Muller) rounds to the same f32. Tails (u₁ near 0) are drawn on purpose.
    #[test]
    fn v2_cell_error_flags_midpoints_and_covers_the_cell() {
        use rand::{RngCore, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
        let cell = 1.0 / (1u64 << 52) as f64;
        let (mut exact, mut tuned_flagged) = (0, 0);
        for t in 0..40_000u64 {
            let w1 = if t % 4 == 0 {
                u64::MAX - (rng.next_u64() >> (12 + (t / 4 % 40)))
            } else {
                rng.next_u64()
            };
            let w2 = rng.next_u64();
            let (z0, _) = pair(w1, w2);
            let x = ((rng.next_u64() >> 40) as f32) / (1u64 << 24) as f32;
            let mut sigma = [0.12, 0.25, 0.5, 1.0][(t % 4) as usize];
            let tuned = t % 3 == 0 && z0.abs() > 0.1;
            if tuned {
                sigma = super::super::noise::sigma_onto_midpoint(x, sigma, z0);
            }
            let v = (x as f64 + sigma * z0) as f32;
            let eta = cell_error(w1);
            if !(eta.is_finite() && super::super::noise::rounds_to(x as f64, sigma, z0, eta, v)) {
                tuned_flagged += usize::from(tuned);
                continue;
            }
            assert!(!tuned, "a value on a rounding midpoint was called exact");
            exact += 1;
            let u1 = super::super::box_muller::unit_open_closed(w1);
            let a = (w2 >> 12) as f64 * cell;
            for (du, da) in [(0.0, 0.0), (-cell, 0.0), (0.0, cell), (-cell, cell)] {
                let u = u1 + du;
                if u <= 0.0 {
                    continue;
                }
                let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * (a + da)).cos();
                assert_eq!((x as f64 + sigma * z) as f32, v, "word {t}");
            }
        }
        assert!(
            exact > 20_000 && tuned_flagged > 3_000,
            "{exact} exact, {tuned_flagged} tuned"
        );
    }

    /// The AVX-512, AVX2 and portable builds of a chunk give the same bits (those the CPU has).
    #[test]
    fn vector_and_portable_chunks_agree() {
        type Chunk = fn(&mut [f64], &mut [f64], u64, u32, u32);
        let mut builds: Vec<(&str, Chunk)> =
            vec![("dispatched", |a, b, i, c, f| chunk(KEY, i, c, f, a, b))];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 support was just detected.
                builds.push(("avx2", |a, b, i, c, f| unsafe {
                    chunk_avx2(KEY, i, c, f, a, b)
                }));
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                // SAFETY: AVX-512 support was just detected.
                builds.push(("avx512", |a, b, i, c, f| unsafe {
                    chunk_avx512(KEY, i, c, f, a, b)
                }));
            }
        }
        let cases = [
            (0u64, 0u32, 0u32),
            (u64::MAX, u32::MAX, u32::MAX - 3),
            (12, 7, 96),
        ];
        for (index, copy, first) in cases {
            let (mut b0, mut b1) = ([0.0; CHUNK], [0.0; CHUNK]);
            chunk_body(KEY, index, copy, first, &mut b0, &mut b1);
            for (name, f) in &builds {
                let (mut a0, mut a1) = ([0.0; CHUNK], [0.0; CHUNK]);
                f(&mut a0, &mut a1, index, copy, first);
                assert_eq!(a0.map(f64::to_bits), b0.map(f64::to_bits), "{name}");
                assert_eq!(a1.map(f64::to_bits), b1.map(f64::to_bits), "{name}");
            }
        }
    }

    const KEY: [u32; 2] = [0x1234_5678, 0x9abc_def0];

    /// Value j is the same whatever d (no offset depends on d, unlike v1), pair m is the
    /// Box–Muller pair of Philox block (m, c, i), and add_noise is x + σz rounded once.
    #[test]
    fn values_are_pure_functions_of_their_coordinates() {
        let mut long = vec![0.0; 201];
        fill(KEY, 5, 3, &mut long);
        for d in [1, 2, 63, 64, 65, 200] {
            let mut short = vec![0.0; d];
            fill(KEY, 5, 3, &mut short);
            assert_eq!(short, long[..d]);
        }
        let y = philox4x32_10([70, 3, 5, 0], KEY);
        let (z0, z1) = pair(
            ((y[1] as u64) << 32) | y[0] as u64,
            ((y[3] as u64) << 32) | y[2] as u64,
        );
        assert_eq!((long[140], long[141]), (z0, z1));
        let mut other = vec![0.0; 201];
        fill(KEY, 5, 4, &mut other);
        assert!(other.iter().zip(&long).all(|(a, b)| a != b));
        fill(KEY, (1 << 32) + 5, 3, &mut other);
        assert!(other.iter().zip(&long).all(|(a, b)| a != b));
        let x: Vec<f32> = (0..201).map(|i| i as f32 / 201.0).collect();
        let mut out = vec![0.0f32; 201];
        add_noise(KEY, 5, 3, 0.25, &x, &mut out);
        for ((o, xi), z) in out.iter().zip(&x).zip(&long) {
            assert_eq!(*o, (*xi as f64 + 0.25 * z) as f32);
        }
    }
}
