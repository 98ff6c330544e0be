//! Counter-based Gaussian noise streams: the noise of every noisy copy of every sample is a pure
//! function of (layout, seed, dataset name, sample index, copy index, coordinate), so results do
//! not depend on batch size, thread count or how samples are split into shards.
//!
//! Two layouts, each recorded in every manifest by its one-line description
//! ([`NoiseLayout::describe`]); `--noise-layout` picks one, v2 by default for new runs, v1 for
//! replaying runs made before v2 bit for bit.
//!
//! Layout v1 ([`NOISE_LAYOUT`]):
//! - key = SHA-256("oodcert/smoothing/noise/v1" ‖ seed as u64 LE ‖ len(name) as u64 LE ‖ name);
//!   a ChaCha20 generator (rand_chacha, 20 rounds) with that key and stream/nonce = sample index;
//! - a sample of d values uses P = ⌈d/2⌉ Gaussian pairs per copy; pair m of copy c consumes the
//!   two 64-bit words numbered 2(cP+m) and 2(cP+m)+1 of the stream (32-bit word position
//!   4(cP+m)), each word w giving the 53-bit uniform (w >> 11)·2⁻⁵³;
//! - Box–Muller: with u₁ = 1 - first uniform ∈ (0,1] and u₂ = second uniform ∈ [0,1),
//!   z₀ = √(-2 ln u₁)·cos(2πu₂) goes to value 2m, z₁ = √(-2 ln u₁)·sin(2πu₂) to value 2m+1
//!   (dropped when d is odd and 2m+1 = d), computed in f64 with the platform's libm.
//!
//! Layout v2 ([`NOISE_LAYOUT_V2`], `noise_v2`): Philox4x32-10 with counter (pair, copy, sample
//! index) and the branch-free Box–Muller of `box_muller`, in f64.
//!
//! Both layouts form x + σz in f64 from the f32 pixel x and round it once to f32.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

/// A one-line description of noise layout v1, recorded in manifests.
pub const NOISE_LAYOUT: &str = "v1: ChaCha20 key=SHA-256(\"oodcert/smoothing/noise/v1\"|seed u64 LE|len(name) u64 LE|name), stream=sample index; copy c pair m = u64 words 2(cP+m),2(cP+m)+1, P=ceil(d/2); 53-bit uniforms; Box-Muller (u1=1-U1, cos->even, sin->odd) in f64";

/// A one-line description of noise layout v2, recorded in manifests.
pub const NOISE_LAYOUT_V2: &str = "v2: Philox4x32-10 (Salmon et al. 2011) key=(k0,k1)=first 8 bytes as 2 u32 LE of SHA-256(\"oodcert/smoothing/noise/v2\"|seed u64 LE|len(name) u64 LE|name), counter=(pair m, copy c, index lo32, index hi32), P=ceil(d/2), c < 2^32; output words y0..y3, w1=y1<<32|y0, w2=y3<<32|y2; u1=1-(w1>>12)*2^-52 in (0,1], angle 2pi*(w2>>12)*2^-52; Box-Muller (cos->2m, sin->2m+1) in f64 with fdlibm-style polynomial ln and sincos from basic IEEE-754 ops (no FMA, no libm); x+sigma*z formed in f64, rounded once to f32";

/// Which noise layout a run uses (`--noise-layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum NoiseLayout {
    /// ChaCha20 and libm Box–Muller: runs made before v2.
    V1,
    /// Philox4x32-10 and a vectorised Box–Muller (the default).
    #[default]
    V2,
}

impl NoiseLayout {
    /// Its flag value: "v1" or "v2".
    pub fn name(self) -> &'static str {
        match self {
            NoiseLayout::V1 => "v1",
            NoiseLayout::V2 => "v2",
        }
    }

    /// The one-line description recorded in manifests.
    pub fn describe(self) -> &'static str {
        match self {
            NoiseLayout::V1 => NOISE_LAYOUT,
            NoiseLayout::V2 => NOISE_LAYOUT_V2,
        }
    }

    /// The layout a manifest's `noise_layout` line describes; any other line is bad input.
    pub fn from_description(line: &str) -> crate::error::Result<Self> {
        [NoiseLayout::V1, NoiseLayout::V2]
            .into_iter()
            .find(|l| l.describe() == line)
            .ok_or_else(|| {
                crate::error::Error::BadInput(format!(
                    "unknown noise layout \"{}\": replay it with the oodcert version that wrote it (this one knows v1 and v2)",
                    line.chars().take(40).collect::<String>()
                ))
            })
    }
}

/// The key of all noise streams of one dataset under one seed and layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoiseKey {
    key: [u8; 32],
    layout: NoiseLayout,
}

impl NoiseKey {
    /// Derives the layout-v1 key from a seed and a dataset's canonical name.
    pub fn new(seed: u64, dataset: &str) -> Self {
        Self::with_layout(seed, dataset, NoiseLayout::V1)
    }

    /// Derives the key of `layout` from a seed and a dataset's canonical name.
    pub fn with_layout(seed: u64, dataset: &str, layout: NoiseLayout) -> Self {
        let mut h = Sha256::new();
        h.update(match layout {
            NoiseLayout::V1 => b"oodcert/smoothing/noise/v1",
            NoiseLayout::V2 => b"oodcert/smoothing/noise/v2",
        });
        h.update(seed.to_le_bytes());
        h.update((dataset.len() as u64).to_le_bytes());
        h.update(dataset.as_bytes());
        NoiseKey {
            key: h.finalize().into(),
            layout,
        }
    }

    /// The layout of this key.
    pub fn layout(&self) -> NoiseLayout {
        self.layout
    }

    /// Checks that copies `..copies_end` of sample `index` with `d` values fit the layout's
    /// counters (v2: copy < 2³², ⌈d/2⌉ ≤ 2³²); v1 has no limit that a run can reach.
    pub fn check_range(&self, copies_end: u64, d: usize) -> crate::error::Result<()> {
        if self.layout == NoiseLayout::V2
            && (copies_end > 1u64 << 32 || d.div_ceil(2) as u64 > 1u64 << 32)
        {
            return Err(crate::error::Error::BadInput(format!(
                "noise layout v2 counts copies and value pairs in 32 bits: n0 + n = {copies_end} and d = {d} exceed it; use --noise-layout v1"
            )));
        }
        Ok(())
    }

    /// Fills `out` with the standard normal values of copy `copy` of sample `index`
    /// (v2: `copy` < 2³², see [`NoiseKey::check_range`]).
    pub fn fill_standard_normal(&self, index: u64, copy: u64, out: &mut [f64]) {
        if self.layout == NoiseLayout::V2 {
            super::noise_v2::fill(self.philox_key(), index, copy, out);
            return;
        }
        let d = out.len();
        let pairs = d.div_ceil(2) as u128;
        let mut rng = ChaCha20Rng::from_seed(self.key);
        rng.set_stream(index);
        rng.set_word_pos(4 * pairs * copy as u128);
        for pair in out.chunks_mut(2) {
            let (z0, z1) = box_muller(rng.next_u64(), rng.next_u64());
            pair[0] = z0;
            if let Some(v) = pair.get_mut(1) {
                *v = z1;
            }
        }
    }

    /// The Philox key of layout v2: the first 8 key bytes as two u32 LE.
    pub(super) fn philox_key(&self) -> [u32; 2] {
        let k = &self.key;
        [
            u32::from_le_bytes([k[0], k[1], k[2], k[3]]),
            u32::from_le_bytes([k[4], k[5], k[6], k[7]]),
        ]
    }

    /// Writes `x + σ·z` (z the noise of copy `copy` of sample `index`) into `out`, as f32.
    pub fn add_noise(&self, index: u64, copy: u64, sigma: f64, x: &[f32], out: &mut [f32]) {
        if self.layout == NoiseLayout::V2 {
            super::noise_v2::add_noise(self.philox_key(), index, copy, sigma, x, out);
            return;
        }
        let mut z = vec![0.0f64; x.len()];
        self.fill_standard_normal(index, copy, &mut z);
        for ((o, &xi), zi) in out.iter_mut().zip(x).zip(z) {
            *o = (xi as f64 + sigma * zi) as f32;
        }
    }
}

impl NoiseKey {
    /// [`Self::add_noise`], and whether the copy is *exact*: equal to fl₃₂(x + σZ) for the ideal
    /// Gaussian Z coupled to the stream (the continuous uniforms whose 53-bit truncations the
    /// words are, through exact Box–Muller). Checked per coordinate by interval arithmetic: every
    /// real value x + σZ can take given the words (cell width 2⁻⁵³, f64 rounding of ln, √, sin,
    /// cos and the products, ≤ 2 ulp each) rounds to the same f32 (proofs/smoothing_floating_point.md).
    pub fn add_noise_checked(
        &self,
        index: u64,
        copy: u64,
        sigma: f64,
        x: &[f32],
        out: &mut [f32],
    ) -> bool {
        if self.layout == NoiseLayout::V2 {
            return super::noise_v2_checked::add_noise_checked(
                self.philox_key(),
                index,
                copy,
                sigma,
                x,
                out,
            );
        }
        let d = x.len();
        let pairs = d.div_ceil(2) as u128;
        let mut rng = ChaCha20Rng::from_seed(self.key);
        rng.set_stream(index);
        rng.set_word_pos(4 * pairs * copy as u128);
        let mut exact = true;
        for (o, xs) in out.chunks_mut(2).zip(x.chunks(2)) {
            let (w1, w2) = (rng.next_u64(), rng.next_u64());
            let z = box_muller(w1, w2);
            for (j, (oj, &xj)) in o.iter_mut().zip(xs).enumerate() {
                *oj = (xj as f64 + sigma * if j == 0 { z.0 } else { z.1 }) as f32;
            }
            exact &= pair_is_exact(xs, o, sigma, z, box_muller_cell_error(w1));
        }
        exact
    }

    /// The coordinates of a copy `out` = [`Self::add_noise`]`(index, copy, σ, x)` whose coupled
    /// value fl₃₂(x_k + σZ_k) is not certainly `out[k]` but certainly one of a few adjacent f32
    /// values: `(k, values)` with out[k] among them ([`candidates`], with the z and η of the
    /// exactness check, regenerated by the scalar path). `None` when some coordinate is not
    /// settled that way (η = ∞, a range of more than `max` values) or the product of the
    /// ambiguous coordinates' counts (the candidate inputs) exceeds `max`. An exact copy gives
    /// `Some(vec![])`.
    pub fn ambiguities(
        &self,
        index: u64,
        copy: u64,
        sigma: f64,
        x: &[f32],
        out: &[f32],
        max: usize,
    ) -> Option<Vec<(usize, Vec<f32>)>> {
        let d = x.len().min(out.len());
        if self.layout == NoiseLayout::V2 {
            // Only the pairs whose lists can be more than [out[k]] (the others add nothing).
            let key = self.philox_key();
            let pairs = super::noise_v2_checked::pairs_to_examine(key, index, copy, sigma, x, out);
            let scan = pairs.into_iter().map(|m| {
                let (z, eta) = super::noise_v2::pair_z_eta(key, index, copy, m as u32);
                (m, z, eta)
            });
            return ambiguous_values(scan, sigma, &x[..d], &out[..d], max);
        }
        let mut rng = ChaCha20Rng::from_seed(self.key);
        rng.set_stream(index);
        rng.set_word_pos(4 * d.div_ceil(2) as u128 * copy as u128);
        let scan = (0..d.div_ceil(2)).map(|m| {
            let (w1, w2) = (rng.next_u64(), rng.next_u64());
            (m, box_muller(w1, w2), box_muller_cell_error(w1))
        });
        ambiguous_values(scan, sigma, &x[..d], &out[..d], max)
    }
}

/// [`NoiseKey::ambiguities`] from the scalar z and η of the pairs `scan` yields (in increasing
/// pair order): per value of each pair its [`candidates`], which must hold `out[k]`; the values
/// with several, while the product of their counts stays ≤ `max`.
fn ambiguous_values(
    scan: impl Iterator<Item = (usize, (f64, f64), f64)>,
    sigma: f64,
    x: &[f32],
    out: &[f32],
    max: usize,
) -> Option<Vec<(usize, Vec<f32>)>> {
    let (mut found, mut inputs) = (Vec::new(), 1usize);
    for (m, z, eta) in scan {
        for k in 2 * m..(2 * m + 2).min(x.len()) {
            let zk = if k == 2 * m { z.0 } else { z.1 };
            let c = candidates(x[k] as f64, sigma, zk, eta, max)?;
            c.iter()
                .any(|v| v.to_bits() == out[k].to_bits())
                .then_some(())?;
            if c.len() > 1 {
                inputs = inputs.saturating_mul(c.len());
                (inputs <= max).then_some(())?;
                found.push((k, c));
            }
        }
    }
    Some(found)
}

/// Whether every real x + σ·ζ with |ζ − z| ≤ η rounds to the f32 `v` (round to nearest is
/// monotone: it suffices that both ends of an enclosing interval do).
pub(super) fn rounds_to(x: f64, sigma: f64, z: f64, eta: f64, v: f32) -> bool {
    let (lo, hi) = enclosure(x, sigma, z, eta);
    lo as f32 == v && hi as f32 == v
}

/// An interval [lo, hi] that contains every real x + σ·ζ with |ζ − z| ≤ η: the centre
/// fl(x + fl(σz)) widened by σ·η and by the f64 rounding of σz and of the sum, outward.
fn enclosure(x: f64, sigma: f64, z: f64, eta: f64) -> (f64, f64) {
    use crate::bounds::round::{next_down, next_up};
    let spread = sigma * eta;
    let centre = x + sigma * z;
    // f64 rounding of σz and of the sum: ≤ 2 ulp of the magnitudes involved.
    let slack = 4.0 * f64::EPSILON * (x.abs() + (sigma * z).abs() + spread) + 1e-300;
    (
        next_down(centre - spread - slack),
        next_up(centre + spread + slack),
    )
}

/// The f32 values fl₃₂(x + σζ) can take for |ζ − z| ≤ η: round-to-nearest is monotone, so
/// fl₃₂ of every point of [`enclosure`] lies in [a, b] = [fl₃₂(lo), fl₃₂(hi)], and we return every
/// f32 in that range (ascending, both zeros where it crosses 0; one value when the coordinate is
/// exact). `None` when η = ∞, an end is not finite, or the range holds more than `max` values.
pub(super) fn candidates(x: f64, sigma: f64, z: f64, eta: f64, max: usize) -> Option<Vec<f32>> {
    if !eta.is_finite() {
        return None;
    }
    let (lo, hi) = enclosure(x, sigma, z, eta);
    let (a, b) = (lo as f32, hi as f32);
    if !(a.is_finite() && b.is_finite()) {
        return None;
    }
    // Bits, not ==: −0 and +0 are two candidates.
    if a.to_bits() == b.to_bits() {
        return Some(vec![a]);
    }
    let mut out = vec![a];
    let mut v = a;
    while v.to_bits() != b.to_bits() {
        // The next f32 up (v finite, below b): −0 → +0 → the smallest subnormal, so both zeros
        // are candidates; otherwise one step of the magnitude's bits.
        let bits = v.to_bits();
        v = if bits == (-0.0f32).to_bits() {
            0.0
        } else if v.is_sign_negative() {
            f32::from_bits(bits - 1)
        } else {
            f32::from_bits(bits + 1)
        };
        out.push(v);
        if out.len() > max {
            return None;
        }
    }
    Some(out)
}

/// Whether the noisy values `vs` = fl₃₂(x + σz) of one Box–Muller pair z (one or two
/// coordinates) are all exact, given |Z − z| ≤ η for the coupled ideal pair Z ([`rounds_to`]).
pub(super) fn pair_is_exact(xs: &[f32], vs: &[f32], sigma: f64, z: (f64, f64), eta: f64) -> bool {
    eta.is_finite()
        && xs
            .iter()
            .zip(vs)
            .enumerate()
            .all(|(j, (&x, &v))| rounds_to(x as f64, sigma, if j == 0 { z.0 } else { z.1 }, eta, v))
}

/// A bound on |Z_computed − Z_ideal| for both values of a Box–Muller pair whose ideal uniforms
/// range over cells of width `cell`: u₁ ∈ (`u1` − cell, `u1`] and the angle within one 2π·cell
/// step (+∞ when the cell reaches u₁ = 0, where r is unbounded). The computed transform is
/// allowed `ln_rel` relative error in ln (and in the products), `sc_abs` absolute error in
/// sin/cos and `prod_rel` relative error in the final product r·cos θ.
pub(super) fn box_muller_eta(u1: f64, cell: f64, ln_rel: f64, sc_abs: f64, prod_rel: f64) -> f64 {
    let u1_min = u1 - cell;
    if u1_min <= 0.0 {
        return f64::INFINITY;
    }
    // r(u) = √(−2 ln u) is decreasing: r ∈ [r(u1), r(u1_min)], each evaluated with slack.
    let r = |u: f64| (-2.0 * u.ln()).max(0.0).sqrt();
    // ln and the product are within `ln_rel` relative (ln's error is relative to its result,
    // which is what −2 ln u scales); √ is correctly rounded (½ ulp): 2·ln_rel covers both.
    let r_hi = r(u1_min) * (1.0 + 2.0 * ln_rel);
    let r_lo = (r(u1) * (1.0 - 2.0 * ln_rel)).max(0.0);
    // θ over a cell, plus the rounding of TAU (relative) and of TAU·u₂ (≤ ulp(2π)/2 = 2ε).
    let d_theta = std::f64::consts::TAU * cell * (1.0 + ln_rel) + 8.0 * f64::EPSILON;
    // |r cos θ − r' cos θ'| ≤ |r − r'| + r_hi |θ − θ'| + r_hi·(sin/cos error) + the product's
    // rounding.
    let dr = r_hi - r_lo;
    let eta = dr + r_hi * (d_theta + sc_abs) + r_hi * prod_rel;
    eta * (1.0 + 1e-12)
}

/// [`box_muller_eta`] for layout v1: 53-bit cells, u₁ = 1 − U(w₁), libm within 2 ulp per call
/// (glibc: < 1 ulp), i.e. 4ε relative, and sin/cos within 8ε absolute.
fn box_muller_cell_error(w1: u64) -> f64 {
    let lib = 4.0 * f64::EPSILON;
    box_muller_eta(
        1.0 - unit(w1),
        1.0 / (1u64 << 53) as f64,
        lib,
        2.0 * lib,
        lib,
    )
}

/// A σ near `sigma` such that x + σ·z₀ sits on the midpoint between two f32 values (tests of the
/// exactness checks: such a value must never be called exact).
#[cfg(test)]
pub(super) fn sigma_onto_midpoint(x: f32, sigma: f64, z0: f64) -> f64 {
    let f = (x as f64 + sigma * z0) as f32;
    let next = f32::from_bits(if f >= 0.0 {
        f.to_bits() + 1
    } else {
        f.to_bits() - 1
    });
    (0.5 * (f as f64 + next as f64) - x as f64) / z0
}

/// The 53-bit uniform in [0,1) of a 64-bit word.
fn unit(w: u64) -> f64 {
    (w >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Box–Muller on two words: u₁ = 1 - U(w₁) ∈ (0,1], u₂ = U(w₂) ∈ [0,1).
fn box_muller(w1: u64, w2: u64) -> (f64, f64) {
    let u1 = 1.0 - unit(w1);
    let u2 = unit(w2);
    let r = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
    (r * c, r * s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ideal uniforms' cell of value pair `m` of a copy of `d` values: (u₁, u₂ in turns, cell
    /// width), the ideal u₁ in (u₁ − cell, u₁] and u₂ in [u₂, u₂ + cell).
    fn pair_cell(k: &NoiseKey, index: u64, copy: u64, m: usize, d: usize) -> (f64, f64, f64) {
        if k.layout == NoiseLayout::V2 {
            let ctr = super::super::noise_v2::counter(m as u32, copy as u32, index);
            let (w1, w2) = super::super::philox::words(ctr, k.philox_key());
            let cell = 1.0 / (1u64 << 52) as f64;
            let u1 = super::super::box_muller::unit_open_closed(w1);
            (u1, (w2 >> 12) as f64 * cell, cell)
        } else {
            let mut rng = ChaCha20Rng::from_seed(k.key);
            rng.set_stream(index);
            rng.set_word_pos(4 * d.div_ceil(2) as u128 * copy as u128 + 4 * m as u128);
            let (w1, w2) = (rng.next_u64(), rng.next_u64());
            (1.0 - unit(w1), unit(w2), 1.0 / (1u64 << 53) as f64)
        }
    }

    /// The candidate claim (proofs/smoothing_floating_point.md, "Candidate inputs"): for copies
    /// with σ tuned so that one value sits on (or a few ulps off) an f32 rounding midpoint, every
    /// point of the words' cell (its four corners and 12 interior points, ideal uniforms through
    /// libm Box–Muller) rounds, per coordinate, to `out[k]` where `ambiguities` leaves k out and
    /// into the listed values where it lists k; and both ends are reached on many cells.
    #[test]
    fn candidate_pairs_contain_every_cell_point() {
        use rand::Rng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
        let d = 64;
        let (mut listed, mut both_hit, mut unresolved, mut max_values) =
            (0usize, 0usize, 0usize, 0usize);
        for layout in [NoiseLayout::V1, NoiseLayout::V2] {
            let k = NoiseKey::with_layout(13, "candidates", layout);
            let mut z = vec![0.0f64; d];
            let mut out = vec![0.0f32; d];
            for copy in 0..3000u64 {
                let x: Vec<f32> = (0..d)
                    .map(|_| match rng.random_range(0..3) {
                        0 => 0.0,
                        1 => 1.0,
                        _ => rng.random_range(0.0f32..1.0),
                    })
                    .collect();
                k.fill_standard_normal(5, copy, &mut z);
                let i = rng.random_range(0..d);
                let mut sigma = [0.12, 0.25, 0.5, 1.0][(copy % 4) as usize];
                if z[i].abs() > 0.05 {
                    let s = sigma_onto_midpoint(x[i], sigma, z[i]);
                    let c = x[i] as f64 + s * z[i];
                    let ulps = [0.0, 0.0, 3.0, -3.0, 20.0][(copy % 5) as usize];
                    sigma = s + ulps * c.abs() * f64::EPSILON / z[i];
                }
                k.add_noise(5, copy, sigma, &x, &mut out);
                let Some(amb) = k.ambiguities(5, copy, sigma, &x, &out, 1 << 20) else {
                    unresolved += 1;
                    continue;
                };
                listed += amb.len();
                max_values = max_values.max(amb.iter().map(|(_, c)| c.len()).max().unwrap_or(0));
                let mut hit = vec![(false, false); amb.len()];
                for m in 0..d / 2 {
                    let (u1, t, cell) = pair_cell(&k, 5, copy, m, d);
                    let mut points = vec![(0.0, 0.0), (-cell, 0.0), (0.0, cell), (-cell, cell)];
                    points.extend((0..12).map(|_| {
                        (
                            -cell * rng.random_range(0.0..1.0),
                            cell * rng.random_range(0.0..1.0),
                        )
                    }));
                    for (du, dt) in points {
                        let u = u1 + du;
                        if u <= 0.0 {
                            continue;
                        }
                        let r = (-2.0 * u.ln()).sqrt();
                        let (sn, cs) = (std::f64::consts::TAU * (t + dt)).sin_cos();
                        for (j, zj) in [r * cs, r * sn].into_iter().enumerate() {
                            let kk = 2 * m + j;
                            let y = (x[kk] as f64 + sigma * zj) as f32;
                            match amb.iter().position(|(p, _)| *p == kk) {
                                None => assert_eq!(y, out[kk], "{layout:?} copy {copy} value {kk}"),
                                Some(q) => {
                                    let c = &amb[q].1;
                                    assert!(
                                        c.iter().any(|v| v.to_bits() == y.to_bits()),
                                        "{layout:?} copy {copy} value {kk}: {y} not in {c:?}"
                                    );
                                    hit[q].0 |= y == c[0];
                                    hit[q].1 |= y == c[c.len() - 1];
                                }
                            }
                        }
                    }
                }
                both_hit += hit.iter().filter(|h| h.0 && h.1).count();
            }
        }
        eprintln!(
            "ambiguous {listed} (≤ {max_values} values), both ends reached {both_hit}, unresolved {unresolved}"
        );
        assert!(
            listed >= 2000 && both_hit >= 500 && unresolved <= 10,
            "{listed} {both_hit} {unresolved}"
        );
    }

    /// Layout v2's `ambiguities` looks only at `noise_v2_checked::pairs_to_examine`; it answers
    /// exactly as the scan of every pair (scalar z and η, `candidates` per value) it replaced, on
    /// copies with σ tuned onto and near rounding midpoints (ambiguous pairs), zero pixels, a
    /// value forced to ±0, to ∞ or to its f32 neighbour (a row that is not the copy's own), and
    /// small `max` (refusals).
    #[test]
    fn v2_ambiguities_equal_the_full_scan() {
        use rand::Rng;
        let full = |k: &NoiseKey, copy: u64, sigma: f64, x: &[f32], out: &[f32], max: usize| {
            let scan = (0..x.len().div_ceil(2)).map(|m| {
                let (z, eta) =
                    super::super::noise_v2::pair_z_eta(k.philox_key(), 5, copy, m as u32);
                (m, z, eta)
            });
            ambiguous_values(scan, sigma, x, out, max)
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(23);
        let k = NoiseKey::with_layout(13, "ambiguities", NoiseLayout::V2);
        let (mut listed, mut refused, mut same) = (0usize, 0usize, 0usize);
        for copy in 0..4000u64 {
            let d = [1usize, 7, 64, 129][(copy % 4) as usize];
            let x: Vec<f32> = (0..d)
                .map(|_| match rng.random_range(0..3) {
                    0 => 0.0,
                    1 => 1.0,
                    _ => rng.random_range(0.0f32..1.0),
                })
                .collect();
            let mut z = vec![0.0f64; d];
            k.fill_standard_normal(5, copy, &mut z);
            let i = rng.random_range(0..d);
            let mut sigma = [0.12, 0.25, 0.5, 1.0][(copy / 4 % 4) as usize];
            if copy % 3 != 0 && z[i].abs() > 0.05 {
                let s = sigma_onto_midpoint(x[i], sigma, z[i]);
                let c = x[i] as f64 + s * z[i];
                let ulps = [0.0, 3.0, -3.0, 20.0][(copy / 16 % 4) as usize];
                sigma = s + ulps * c.abs() * f64::EPSILON / z[i];
            }
            let mut out = vec![0.0f32; d];
            k.add_noise(5, copy, sigma, &x, &mut out);
            let j = rng.random_range(0..d);
            match copy % 7 {
                0 => out[j] = 0.0,
                1 => out[j] = -0.0,
                2 => out[j] = f32::INFINITY,
                3 => out[j] = out[j].next_up(),
                _ => {}
            }
            let max = [1usize, 2, 16, 1 << 20][(copy / 7 % 4) as usize];
            let want = full(&k, copy, sigma, &x, &out, max);
            let got = k.ambiguities(5, copy, sigma, &x, &out, max);
            assert_eq!(got, want, "copy {copy} d {d} σ {sigma} max {max}");
            match got {
                Some(a) if !a.is_empty() => listed += 1,
                Some(_) => same += 1,
                None => refused += 1,
            }
        }
        eprintln!("listed {listed}, refused {refused}, plain {same}");
        assert!(
            listed >= 300 && refused >= 300 && same >= 300,
            "{listed} {refused} {same}"
        );
    }

    /// `candidates` near 0, where the f32 grid is finer than the enclosure and a coordinate has
    /// several candidates: 201 points of [z − η, z + η] (ends included) each round into the list,
    /// and a list longer than `max` is refused.
    #[test]
    fn candidates_cover_the_enclosure_near_zero() {
        use rand::Rng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(22);
        let (mut multi, mut longest) = (0usize, 0usize);
        for t in 0..20_000 {
            let x = [0.0f32, 1e-7, -3e-8][t % 3];
            let z = rng.random_range(-1e-6..1e-6) * 10f64.powi(-((t % 4) as i32));
            let (sigma, eta) = (0.25, [1e-14, 3e-15, 1e-16][t / 3 % 3]);
            let Some(c) = candidates(x as f64, sigma, z, eta, 64) else {
                continue;
            };
            assert!(c.windows(2).all(|w| w[0] <= w[1]), "{c:?}");
            for i in 0..=200 {
                let zeta = z - eta + 2.0 * eta * i as f64 / 200.0;
                let y = (x as f64 + sigma * zeta) as f32;
                assert!(
                    c.iter().any(|v| v.to_bits() == y.to_bits()),
                    "x {x} z {z} η {eta}: {y} not in {c:?}"
                );
            }
            multi += usize::from(c.len() > 2);
            longest = longest.max(c.len());
            if c.len() > 2 {
                assert!(candidates(x as f64, sigma, z, eta, c.len() - 1).is_none());
            }
        }
        assert!(multi > 1000 && longest > 4, "{multi} {longest}");
        // An enclosure that rounds to −0 below and +0 above lists both zeros.
        let c = candidates(0.0, 1e-46, 0.0, 1.0, 64).unwrap();
        let bits: Vec<u32> = c.iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, vec![(-0.0f32).to_bits(), 0.0f32.to_bits()]);
    }

    #[test]
    fn copies_are_random_access_and_distinct() {
        let k = NoiseKey::new(7, "toy:test");
        let mut a = vec![0.0; 5];
        let mut b = vec![0.0; 5];
        k.fill_standard_normal(3, 2, &mut a);
        k.fill_standard_normal(3, 2, &mut b);
        assert_eq!(a, b);
        k.fill_standard_normal(3, 1, &mut b);
        assert_ne!(a, b);
        k.fill_standard_normal(4, 2, &mut b);
        assert_ne!(a, b);
        let mut c = vec![0.0; 5];
        NoiseKey::new(8, "toy:test").fill_standard_normal(3, 2, &mut c);
        assert_ne!(a, c);
        NoiseKey::new(7, "toy:val").fill_standard_normal(3, 2, &mut c);
        assert_ne!(a, c);
    }

    #[test]
    fn consecutive_copies_tile_one_stream() {
        // With an even d, copies 0 and 1 are the first 2d values of one long draw.
        let k = NoiseKey::new(1, "x");
        let mut long = vec![0.0; 8];
        k.fill_standard_normal(0, 0, &mut long);
        let mut second = vec![0.0; 4];
        k.fill_standard_normal(0, 1, &mut second);
        assert_eq!(&long[4..], &second[..]);
    }

    #[test]
    fn checked_noise_is_add_noise() {
        let x: Vec<f32> = (0..101).map(|i| (i as f32) / 100.0).collect();
        let (mut a, mut b) = (vec![0.0f32; 101], vec![0.0f32; 101]);
        for layout in [NoiseLayout::V1, NoiseLayout::V2] {
            let k = NoiseKey::with_layout(5, "check", layout);
            let mut exact = 0;
            for copy in 0..20 {
                k.add_noise(3, copy, 0.25, &x, &mut a);
                exact += usize::from(k.add_noise_checked(3, copy, 0.25, &x, &mut b));
                assert_eq!(a, b, "{layout:?}");
            }
            // Almost every copy is provably exact on both layouts.
            assert!(exact >= 18, "{layout:?}: {exact} of 20 exact");
        }
    }

    /// Layout v2's exactness check: every corner of a pair's cell (the extreme ideal uniforms,
    /// evaluated in f64 libm) rounds to the f32 the copy holds whenever the copy is called exact.
    #[test]
    fn v2_exact_copies_agree_on_the_cell_corners() {
        let k = NoiseKey::with_layout(11, "cells", NoiseLayout::V2);
        let x: Vec<f32> = (0..64).map(|i| (i as f32) / 63.0).collect();
        let mut out = vec![0.0f32; 64];
        let key = k.philox_key();
        let cell = 1.0 / (1u64 << 52) as f64;
        let mut checked = 0;
        for copy in 0..300u64 {
            if !k.add_noise_checked(7, copy, 0.5, &x, &mut out) {
                continue;
            }
            checked += 1;
            for m in 0..32usize {
                let (w1, w2) = super::super::philox::words([m as u32, copy as u32, 7, 0], key);
                let u1 = super::super::box_muller::unit_open_closed(w1);
                let t = (w2 >> 12) as f64 * cell;
                for (du, dt) in [(0.0, 0.0), (-cell, 0.0), (0.0, cell), (-cell, cell)] {
                    let u = u1 + du;
                    if u <= 0.0 {
                        continue;
                    }
                    let r = (-2.0 * u.ln()).sqrt();
                    let (s, c) = (std::f64::consts::TAU * (t + dt)).sin_cos();
                    for (j, z) in [r * c, r * s].into_iter().enumerate() {
                        let i = 2 * m + j;
                        assert_eq!(
                            (x[i] as f64 + 0.5 * z) as f32,
                            out[i],
                            "copy {copy} value {i}"
                        );
                    }
                }
            }
        }
        assert!(checked > 250, "{checked}");
    }

    /// Exact copies: every corner of the words' cell (the extreme ideal uniforms) gives the same
    /// f32; tails (u₁ tiny, where r moves a lot within a cell) and values tuned onto an f32
    /// rounding midpoint are flagged.
    #[test]
    fn exact_copies_agree_on_the_whole_cell() {
        use rand::Rng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let cell = 1.0 / (1u64 << 53) as f64;
        let (mut exact, mut flagged, mut tuned_flagged) = (0, 0, 0);
        for t in 0..40_000u64 {
            // A quarter of the draws in the tails: unit(w1) close to 1, u1 = 1 − unit tiny.
            let w1 = if t % 4 == 0 {
                u64::MAX - (rng.next_u64() >> (11 + (t / 4 % 42)))
            } else {
                rng.next_u64()
            };
            let w2 = rng.next_u64();
            let (z0, _) = box_muller(w1, w2);
            let x = ((rng.next_u64() >> 40) as f32) / (1u64 << 24) as f32;
            let mut sigma = [0.12, 0.25, 0.5, 1.0][(t % 4) as usize];
            let tuned = t % 3 == 0 && z0.abs() > 0.1;
            if tuned {
                sigma = sigma_onto_midpoint(x, sigma, z0);
            }
            let v = (x as f64 + sigma * z0) as f32;
            let eta = box_muller_cell_error(w1);
            if !(eta.is_finite() && rounds_to(x as f64, sigma, z0, eta, v)) {
                flagged += 1;
                tuned_flagged += usize::from(tuned);
                continue;
            }
            assert!(!tuned, "a value on a rounding midpoint was called exact");
            exact += 1;
            let u1 = 1.0 - unit(w1);
            let u2 = unit(w2);
            for (a, b) in [
                (u1, u2),
                (u1 - cell, u2),
                (u1, u2 + cell),
                (u1 - cell, u2 + cell),
            ] {
                if a <= 0.0 {
                    continue;
                }
                let r = (-2.0 * a.ln()).sqrt();
                let z = r * (std::f64::consts::TAU * b).cos();
                assert_eq!(
                    (x as f64 + sigma * z) as f32,
                    v,
                    "w1 {w1:#x} w2 {w2:#x} σ {sigma}"
                );
            }
            let _ = rng.random::<u8>();
        }
        assert!(
            exact > 20_000 && tuned_flagged > 3_000,
            "{exact} {flagged} {tuned_flagged}"
        );
    }

    #[test]
    fn moments_are_standard_normal() {
        let k = NoiseKey::new(42, "moments");
        let mut z = vec![0.0; 200_001];
        k.fill_standard_normal(0, 0, &mut z);
        let n = z.len() as f64;
        let mean = z.iter().sum::<f64>() / n;
        let var = z.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let kurt = z.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / n / (var * var);
        // Standard errors: mean 1/√n ≈ 0.0022, var √(2/n) ≈ 0.0032, kurtosis √(24/n) ≈ 0.011.
        assert!(mean.abs() < 0.012, "{mean}");
        assert!((var - 1.0).abs() < 0.016, "{var}");
        assert!((kurt - 3.0).abs() < 0.06, "{kurt}");
        let tail = z.iter().filter(|v| v.abs() > 1.959_963_984_540_054).count() as f64 / n;
        assert!((tail - 0.05).abs() < 0.0025, "{tail}");
    }
}

#[cfg(test)]
mod golden {
    use super::*;

    /// Both layouts are frozen: these values (bits printed at the time each layout was made;
    /// v1 by main's ChaCha20 code, unchanged) must never change, or recorded runs stop replaying.
    #[test]
    fn layouts_are_frozen() {
        for (layout, want) in [(NoiseLayout::V1, V1_GOLDEN), (NoiseLayout::V2, V2_GOLDEN)] {
            let mut z = [0.0; 5];
            NoiseKey::with_layout(2026, "mnist:test", layout).fill_standard_normal(12, 345, &mut z);
            let bits = z.map(f64::to_bits);
            assert_eq!(bits, want, "{layout:?}: {z:?}");
        }
    }

    /// Layout v2 counts copies and pairs in 32 bits: beyond, a run is refused (exit 2), not
    /// wrapped into repeated noise; v1 has no such limit.
    #[test]
    fn v2_counter_range_is_checked() {
        let v2 = NoiseKey::with_layout(0, "x", NoiseLayout::V2);
        assert!(v2.check_range(1 << 32, 784).is_ok());
        let e = v2.check_range((1 << 32) + 1, 784).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--noise-layout v1"), "{e}");
        assert!(NoiseKey::new(0, "x").check_range(u64::MAX, 784).is_ok());
    }

    const V1_GOLDEN: [u64; 5] = [
        4603846932942335889,
        4604943888718158715,
        13823370485021633413,
        13805845802230660275,
        13825727058505762252,
    ];
    const V2_GOLDEN: [u64; 5] = [
        13828475494969691196,
        13813379528828998147,
        13827708347282254953,
        4604387253132294238,
        4606764797654479798,
    ];
}
