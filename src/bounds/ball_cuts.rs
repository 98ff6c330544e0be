//! Lower bounds of a linear function over an ℓ2 ball cut by halfspaces, by Lagrangian weak
//! duality (the split constraints of β-CROWN, Wang et al. 2021, eq. 5, on the input layer):
//! for y = x − x₀ in the cut set and μ ≥ 0, λᵀy ≥ (λ − Σμₖsₖaₖ)ᵀy − Σμₖsₖcₖ ≥ −ε‖λ − Σμₖsₖaₖ‖₂ −
//! Σμₖsₖcₖ. Any μ ≥ 0 gives a valid bound; μ is chosen by exact coordinate ascent in f64, and the
//! final value is evaluated with outward rounding. Proof: proofs/lipschitz_bab.md, "Split cuts".

use super::ball::{Ball, Norm, l2_up};
use super::interval::Interval;
use super::round::{ABS_FLOOR, dot_err, next_down, next_up};
use crate::model::layers::gemm::{Mat, gemm_into};

/// The halfspace s·(aᵀ(x − x₀) + c) ≥ 0 with a and c known as outward-rounded enclosures.
#[derive(Debug, Clone)]
pub struct Cut {
    pub a: Interval,
    pub c: (f64, f64),
    /// +1 or −1.
    pub s: f64,
}

/// Sweeps of the coordinate ascent on μ.
const SWEEPS: usize = 30;
/// Rounds of the smoothed ascent (each refreshes ρ), and sweeps per round.
const ROUNDS: usize = 20;
const INNER: usize = 4;

/// The ball B(x₀, ε) ∩ {x : every cut holds} (ℓ2 balls only use the cuts; the pixel box, if
/// any, enters as a second, independent lower bound as in [`Ball::min_linear_in`]).
pub struct CutBall<'a> {
    pub ball: &'a Ball,
    /// sₖ·mid(aₖ), row-major k × n.
    b: Vec<f64>,
    /// |sₖ·mid(aₖ)|, row-major k × n (for the rounding bound of the batched rule).
    b_abs: Vec<f64>,
    /// rad(aₖ) (rounded up), row-major k × n.
    rad: Vec<f64>,
    /// The input dimension n.
    n: usize,
    /// sₖ·mid(cₖ) for the search; the certified value uses the enclosures.
    gamma: Vec<f64>,
    c: Vec<(f64, f64)>,
    s: Vec<f64>,
    /// Gram matrix of the b rows, k × k.
    gram: Vec<f64>,
    unit_box: Option<Interval>,
}

impl<'a> CutBall<'a> {
    /// The cut ball; cuts are ignored on ℓ∞ balls (the bound falls back to the ball's).
    pub fn new(ball: &'a Ball, cuts: &[Cut]) -> CutBall<'a> {
        let cuts: &[Cut] = if ball.norm == Norm::L2 { cuts } else { &[] };
        let n = ball.center.len();
        // A cut of another dimension cannot be used: it is dropped (fewer cuts, a looser but
        // valid bound).
        let cuts: Vec<&Cut> = cuts.iter().filter(|c| c.a.len() == n).collect();
        let mut b = Vec::with_capacity(cuts.len() * n);
        let mut rad = Vec::with_capacity(cuts.len() * n);
        for cut in &cuts {
            let (m, r) = cut.a.center_radius();
            b.extend(m.iter().map(|v| cut.s * v));
            rad.extend(r);
        }
        let k = cuts.len();
        let row = |i: usize| &b[i * n..(i + 1) * n];
        let mut gram = vec![0.0; k * k];
        for i in 0..k {
            for j in i..k {
                let g: f64 = row(i).iter().zip(row(j)).map(|(u, v)| u * v).sum();
                gram[i * k + j] = g;
                gram[j * k + i] = g;
            }
        }
        let b_abs = b.iter().map(|v: &f64| v.abs()).collect();
        CutBall {
            ball,
            gamma: cuts
                .iter()
                .map(|c| c.s * (0.5 * c.c.0 + 0.5 * c.c.1))
                .collect(),
            c: cuts.iter().map(|c| c.c).collect(),
            s: cuts.iter().map(|c| c.s).collect(),
            b,
            b_abs,
            rad,
            n,
            gram,
            unit_box: ball.unit_box.then(|| ball.to_box()),
        }
    }

    /// The number of cuts in use.
    pub fn len(&self) -> usize {
        self.gamma.len()
    }

    /// True when no cut is in use.
    pub fn is_empty(&self) -> bool {
        self.b.is_empty()
    }

    /// A certified lower bound of min λᵀx over the cut ball: the larger of the ball's own bound
    /// and the Lagrangian bound with the multipliers found by [`Self::multipliers`].
    pub fn min_linear(&self, lam: &[f64]) -> f64 {
        let plain = self.ball.min_linear_in(lam, self.unit_box.as_ref());
        // A non-finite λ (a corrupted bound upstream) gets the ball's own bound, which carries
        // the NaN or infinity on to the caller's check.
        if self.is_empty() || !lam.iter().all(|v| v.is_finite()) {
            return plain;
        }
        let mu = self.multipliers(lam);
        if mu.iter().all(|m| *m == 0.0) {
            return plain;
        }
        let v = self.certified(lam, &mu);
        if v.is_nan() { plain } else { plain.max(v) }
    }

    /// [`Self::min_linear`] of every row of `lams` (row-major, `rows` rows of the input
    /// dimension): the products of the rows with the cuts run as GEMMs (each entry a sum of k
    /// products in some order, within the rounding bound [`Self::certified`] allows), the rest
    /// row by row. NaN for every row when the lengths do not match.
    pub fn min_linear_many(&self, lams: &[f64], rows: usize) -> Vec<f64> {
        let (n, k) = (self.n, self.len());
        if lams.len() != rows * n || n == 0 {
            return vec![f64::NAN; rows];
        }
        let plain: Vec<f64> = lams
            .chunks_exact(n)
            .map(|l| self.ball.min_linear_in(l, self.unit_box.as_ref()))
            .collect();
        if k == 0 || rows == 0 {
            return plain;
        }
        self.min_linear_gemm(lams, rows, plain)
            .unwrap_or_else(|_| lams.chunks_exact(n).map(|l| self.min_linear(l)).collect())
    }

    fn min_linear_gemm(
        &self,
        lams: &[f64],
        rows: usize,
        mut out: Vec<f64>,
    ) -> candle_core::Result<Vec<f64>> {
        let (n, k) = (self.n, self.len());
        let bm = Mat::row_major(&self.b, k, n);
        // p = Λ Bᵀ: only the multipliers' search reads it.
        let mut p = vec![0.0; rows * k];
        gemm_into(&mut p, Mat::row_major(lams, rows, n), bm.t(), false, false)?;
        // The rows whose multipliers are not all 0, and their multipliers.
        let mut live = Vec::new();
        let mut mus = Vec::new();
        for (r, lam) in lams.chunks_exact(n).enumerate() {
            if !lam.iter().all(|v| v.is_finite()) {
                continue;
            }
            let l2: f64 = lam.iter().map(|v| v * v).sum();
            let mu = self.multipliers_from(&p[r * k..(r + 1) * k], l2);
            if mu.iter().all(|m| *m == 0.0) || !mu.iter().all(|m| m.is_finite() && *m >= 0.0) {
                continue;
            }
            live.push(r);
            mus.extend(mu);
        }
        let l = live.len();
        if l == 0 {
            return Ok(out);
        }
        let mm = Mat::row_major(&mus, l, k);
        let (mut mb, mut mag, mut spread) = (vec![0.0; l * n], vec![0.0; l * n], vec![0.0; l * n]);
        gemm_into(&mut mb, mm, bm, false, false)?;
        gemm_into(
            &mut mag,
            mm,
            Mat::row_major(&self.b_abs, k, n),
            false,
            false,
        )?;
        gemm_into(
            &mut spread,
            mm,
            Mat::row_major(&self.rad, k, n),
            false,
            false,
        )?;
        for (t, &r) in live.iter().enumerate() {
            let lam = &lams[r * n..(r + 1) * n];
            let row = t * n..(t + 1) * n;
            // v = λ − Σμb and mag = |λ| + Σμ|b|: one more rounding each on the GEMM's sum.
            let v: Vec<f64> = lam
                .iter()
                .zip(&mb[row.clone()])
                .map(|(a, b)| a - b)
                .collect();
            let g: Vec<f64> = lam
                .iter()
                .zip(&mag[row.clone()])
                .map(|(a, b)| a.abs() + b)
                .collect();
            let mu = &mus[t * k..(t + 1) * k];
            let c = self.certified_parts(lam, mu, &v, &g, &spread[row]);
            if !c.is_nan() {
                out[r] = out[r].max(c);
            }
        }
        Ok(out)
    }

    /// μ ≥ 0 maximising −ε‖λ − Σμₖbₖ‖₂ − Σμₖγₖ (the bound without λᵀx₀), by exact maximisation
    /// over one coordinate at a time (f64; only [`Self::certified`] decides soundness).
    pub fn multipliers(&self, lam: &[f64]) -> Vec<f64> {
        let p: Vec<f64> = self
            .b
            .chunks_exact(self.n.max(1))
            .map(|b| b.iter().zip(lam).map(|(u, v)| u * v).sum())
            .collect();
        let l2: f64 = lam.iter().map(|v| v * v).sum();
        self.multipliers_from(&p, l2)
    }

    /// [`Self::multipliers`] from pₖ = bₖᵀλ and ‖λ‖₂² (estimates: any values give valid μ ≥ 0).
    fn multipliers_from(&self, p: &[f64], l2: f64) -> Vec<f64> {
        let k = self.len();
        let eps = self.ball.eps;
        let mut mu = vec![0.0; k];
        // Running Gμ, μᵀGμ and μᵀp: one coordinate update costs O(k).
        let mut gmu = vec![0.0; k];
        let (mut mgm, mut mp) = (0.0f64, 0.0f64);
        // The largest multiplier tried: large enough to certify emptiness (the bound then grows
        // without limit), small enough to keep the f64 arithmetic meaningful.
        let gmax = self.gram.iter().fold(1e-300f64, |a, g| a.max(g.abs()));
        let cap = 1e6 * (l2.sqrt() + 1.0) / gmax.sqrt();
        let mut converged = false;
        for _ in 0..SWEEPS {
            let mut moved = 0.0f64;
            for j in 0..k {
                let a = self.gram[j * k + j];
                if a <= 0.0 || !a.is_finite() {
                    continue;
                }
                let m = mu[j];
                // ‖v‖² as a function of t = μⱼ: a t² + 2 bb t + cc.
                let gm = gmu[j] - a * m; // Σ_{l≠j} G_jl μ_l
                let quad = mgm - 2.0 * m * gmu[j] + a * m * m; // the part without j
                let lin = mp - m * p[j];
                let bb = gm - p[j];
                let cc = (l2 - 2.0 * lin + quad).max(0.0);
                // f(t) = −ε√(a t² + 2 bb t + cc) − γⱼ t; f′ = 0 where (a t + bb)/√q = r.
                let r = -self.gamma[j] / eps;
                let t = if r * r >= a && r > 0.0 {
                    cap
                } else {
                    let d = (cc - bb * bb / a).max(0.0);
                    let at0 = if cc > 0.0 {
                        bb / cc.sqrt()
                    } else {
                        -f64::INFINITY
                    };
                    if r <= at0 {
                        0.0
                    } else {
                        let u = r * (d / (a * (a - r * r))).sqrt();
                        (u - bb / a).clamp(0.0, cap)
                    }
                };
                if !t.is_finite() || t == m {
                    continue;
                }
                let dt = t - m;
                moved = moved.max(dt.abs() / (t.abs() + m.abs()));
                mgm = quad + 2.0 * t * gm + a * t * t;
                mp = lin + t * p[j];
                for (l, g) in gmu.iter_mut().enumerate() {
                    *g += dt * self.gram[l * k + j];
                }
                mu[j] = t;
            }
            if moved < 1e-9 {
                converged = true;
                break;
            }
        }
        // Converged away from v = 0, where the norm is smooth: coordinate-wise optimal there is
        // optimal (a concave function, differentiable at the point, box constraints).
        if converged && l2 - 2.0 * mp + mgm > 1e-4 * l2 {
            return mu;
        }
        // Where the maximiser has λ = Σμₖbₖ (a vertex of the cuts inside the ball) the norm is
        // not smooth and the exact steps stall: continue on the smooth majorant
        // ε(‖v‖²/(2ρ) + ρ/2) ≥ ε‖v‖ with ρ = ‖v‖ refreshed each round (alternating maximisation of
        // a jointly concave function), keeping the best μ seen.
        let value = |mgm: f64, mp: f64, mu: &[f64]| {
            let g: f64 = mu.iter().zip(&self.gamma).map(|(m, g)| m * g).sum();
            -eps * (l2 - 2.0 * mp + mgm).max(0.0).sqrt() - g
        };
        let mut best = (value(mgm, mp, &mu), mu.clone());
        let floor = 1e-12 * l2.sqrt().max(1e-300);
        for _ in 0..ROUNDS {
            let rho = (l2 - 2.0 * mp + mgm).max(0.0).sqrt().max(floor);
            for _ in 0..INNER {
                for j in 0..k {
                    let a = self.gram[j * k + j];
                    if a <= 0.0 || !a.is_finite() {
                        continue;
                    }
                    let m = mu[j];
                    let gm = gmu[j] - a * m;
                    let quad = mgm - 2.0 * m * gmu[j] + a * m * m;
                    let lin = mp - m * p[j];
                    let bb = gm - p[j];
                    // max over t ≥ 0 of −ε/(2ρ)(a t² + 2 bb t) − γⱼ t.
                    let t = (-(bb + self.gamma[j] * rho / eps) / a).clamp(0.0, cap);
                    if !t.is_finite() || t == m {
                        continue;
                    }
                    let dt = t - m;
                    mgm = quad + 2.0 * t * gm + a * t * t;
                    mp = lin + t * p[j];
                    for (l, g) in gmu.iter_mut().enumerate() {
                        *g += dt * self.gram[l * k + j];
                    }
                    mu[j] = t;
                }
            }
            let f = value(mgm, mp, &mu);
            if f > best.0 {
                best = (f, mu.clone());
            }
        }
        best.1
    }

    /// The Lagrangian bound λᵀx₀ − ε‖λ − Σμₖsₖaₖ‖₂ − Σμₖsₖcₖ for every aₖ, cₖ in their
    /// enclosures, rounded down; −∞ unless every μₖ is finite and ≥ 0 (weak duality needs
    /// μ ≥ 0) and there is one per cut.
    pub fn certified(&self, lam: &[f64], mu: &[f64]) -> f64 {
        let n = lam.len();
        let k = self.len();
        if mu.len() != k || !mu.iter().all(|m| m.is_finite() && *m >= 0.0) {
            return f64::NEG_INFINITY;
        }
        if n != self.n {
            return f64::NEG_INFINITY;
        }
        let mut v = lam.to_vec();
        let mut mag: Vec<f64> = lam.iter().map(|x| x.abs()).collect();
        let mut spread = vec![0.0; n];
        for ((&m, b), r) in mu
            .iter()
            .zip(self.b.chunks_exact(n.max(1)))
            .zip(self.rad.chunks_exact(n.max(1)))
        {
            if m == 0.0 {
                continue;
            }
            for i in 0..n {
                let t = m * b[i];
                v[i] -= t;
                mag[i] += t.abs();
                spread[i] += m * r[i];
            }
        }
        self.certified_parts(lam, mu, &v, &mag, &spread)
    }

    /// The rest of [`Self::certified`] given v ≈ λ − Σμₖbₖ, mag ≈ |λ| + Σμₖ|bₖ| and spread ≈
    /// Σμₖrad(aₖ), each computed in f64 by a sum of at most k + 1 terms in any order (so within
    /// γ_{k+1}·mag of its exact value, and mag at least (1 − γ_{k+1}) of its own).
    fn certified_parts(
        &self,
        lam: &[f64],
        mu: &[f64],
        v: &[f64],
        mag: &[f64],
        spread: &[f64],
    ) -> f64 {
        let n = lam.len();
        let k = self.len();
        let ek = dot_err(k + 1);
        let [v2, g2, p2, dot, dmag] = row_sums(lam, &self.ball.center, v, mag, spread);
        let en = dot_err(n);
        let eps = self.ball.eps;
        let nv = l2_up(v2, n);
        // |exact (λ − Σμsa)ᵢ − vᵢ| ≤ δᵢ = ek·magᵢ + (1 + ek)·spreadᵢ (the sum's rounding and the
        // enclosures' radii) + a floor for underflow; ‖δ‖₂ by the triangle inequality.
        let floor = next_up((n as f64).sqrt() * 1.000_001 * ABS_FLOOR);
        let nd =
            next_up(next_up(ek * l2_up(g2, n)) + next_up(next_up(1.0 + ek) * l2_up(p2, n)) + floor);
        let ball = next_up(next_up(eps * nv) + next_up(eps * nd));
        // Σμₖsₖcₖ ≤ Σ μₖ·(cₖ.hi if sₖ > 0 else −cₖ.lo).
        let (mut cs, mut cmag) = (0.0, 0.0);
        for ((m, c), sj) in mu.iter().zip(&self.c).zip(&self.s) {
            let t = if *sj > 0.0 { m * c.1 } else { -(m * c.0) };
            cs += t;
            cmag += t.abs();
        }
        let cup = next_up(cs + ek * cmag + ABS_FLOOR);
        let raw = dot - ball - cup;
        next_down(raw - en * dmag - 2.0 * f64::EPSILON * (dot.abs() + ball + cup.abs()) - ABS_FLOOR)
    }
}

/// Σvᵢ², Σgᵢ², Σpᵢ², Σλᵢxᵢ and Σ|λᵢxᵢ| in one pass, four partial sums each (so the loop
/// vectorises; the rounding bounds used on them hold for any order of summation).
#[allow(clippy::needless_range_loop)] // five slices read at one index: plainer than a 5-way zip
fn row_sums(lam: &[f64], x: &[f64], v: &[f64], g: &[f64], p: &[f64]) -> [f64; 5] {
    let n = lam
        .len()
        .min(x.len())
        .min(v.len())
        .min(g.len())
        .min(p.len());
    let mut acc = [[0.0f64; 4]; 5];
    let full = n / 4 * 4;
    for b in (0..full).step_by(4) {
        for l in 0..4 {
            let i = b + l;
            let ax = lam[i] * x[i];
            acc[0][l] += v[i] * v[i];
            acc[1][l] += g[i] * g[i];
            acc[2][l] += p[i] * p[i];
            acc[3][l] += ax;
            acc[4][l] += ax.abs();
        }
    }
    for i in full..n {
        let ax = lam[i] * x[i];
        acc[0][0] += v[i] * v[i];
        acc[1][0] += g[i] * g[i];
        acc[2][0] += p[i] * p[i];
        acc[3][0] += ax;
        acc[4][0] += ax.abs();
    }
    acc.map(|a| (a[0] + a[1]) + (a[2] + a[3]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(a: &[f64], c: f64, s: f64) -> Cut {
        Cut {
            a: Interval::point(a),
            c: (c, c),
            s,
        }
    }

    /// Review findings: a NaN λ gets the ball's own bound instead of a panic (the multipliers'
    /// cap would be NaN), `certified` refuses negative or non-finite multipliers (weak duality
    /// needs μ ≥ 0: μ = −1 would claim −0.5 for min −x₁ over the disc cut by x₁ ≥ 0.5, where the
    /// minimum is −1), and a λ whose squares underflow still gets a bound below the exact one.
    #[test]
    fn nan_lambda_negative_multipliers_and_tiny_lambda() {
        let ball = Ball::new(vec![0.0, 0.0], 1.0, Norm::L2, false).unwrap();
        let cb = CutBall::new(&ball, &[cut(&[1.0, 0.0], -0.5, 1.0)]);
        assert!(cb.min_linear(&[f64::NAN, 1.0]).is_nan());
        assert_eq!(cb.certified(&[-1.0, 0.0], &[-1.0]), f64::NEG_INFINITY);
        assert_eq!(cb.certified(&[-1.0, 0.0], &[f64::NAN]), f64::NEG_INFINITY);
        assert_eq!(cb.certified(&[-1.0, 0.0], &[]), f64::NEG_INFINITY);
        assert!(cb.certified(&[-1.0, 0.0], &[0.5]) <= -1.0);
        let lam = [1e-160, 1e-160];
        let plain = ball.min_linear_in(&lam, None);
        assert!(plain <= -(2f64.sqrt()) * 1e-160, "{plain:e}");
        let cb = CutBall::new(&ball, &[cut(&[1.0, 0.0], 0.5, 1.0)]); // x₁ ≥ −0.5
        let v = cb.min_linear(&lam);
        assert!(v <= -(0.5 + 0.75f64.sqrt()) * 1e-160, "{v:e}");
    }

    /// Unit disc at 0, cut x₁ ≥ 0.5 (s = +1, a = e₁, c = −0.5): the minimum of x₁ over the cut
    /// disc is 0.5 (the ball alone gives −1); of x₂ it is −√0.75 (the chord's end; the ball alone
    /// gives −1); of −x₁ − x₂ it is −√2 and of −x₁ it is −1 (the optima satisfy the cut). The
    /// bound is sound and within 1e-9 of each exact value.
    #[test]
    fn one_cut_on_the_unit_disc_is_exact() {
        let ball = Ball::new(vec![0.0, 0.0], 1.0, Norm::L2, false).unwrap();
        let cb = CutBall::new(&ball, &[cut(&[1.0, 0.0], -0.5, 1.0)]);
        for (lam, exact) in [
            ([1.0, 0.0], 0.5),
            ([0.0, 1.0], -(0.75f64.sqrt())),
            ([-1.0, -1.0], -(2f64.sqrt())),
            ([-1.0, 0.0], -1.0),
        ] {
            let v = cb.min_linear(&lam);
            assert!(v <= exact && v >= exact - 1e-9, "{lam:?}: {v} vs {exact}");
        }
        // A direction where the cut binds partly: min of x₂ − x₁… exact by a fine scan of the arc.
        let lam = [-1.0, 1.0];
        let exact = (0..=200_000)
            .map(|i| {
                let t = -std::f64::consts::PI + 2.0 * std::f64::consts::PI * i as f64 / 200_000.0;
                (t.cos(), t.sin())
            })
            .filter(|(x, _)| *x >= 0.5)
            .map(|(x, y)| -x + y)
            .fold(f64::INFINITY, f64::min)
            .min(-0.5 - (0.75f64).sqrt()); // chord endpoint
        let v = cb.min_linear(&lam);
        assert!(v <= exact + 1e-12 && v >= exact - 1e-6, "{v} vs {exact}");
    }

    /// Two contradictory cuts (x₁ ≥ 0.3 and x₁ ≤ −0.3): the bound exceeds any value (the set is
    /// empty), so it is far above the ball's own minimum; on ℓ∞ balls the cuts are ignored.
    #[test]
    fn contradictory_cuts_push_the_bound_up_and_linf_ignores_cuts() {
        let ball = Ball::new(vec![0.0, 0.0], 1.0, Norm::L2, false).unwrap();
        let cuts = [cut(&[1.0, 0.0], -0.3, 1.0), cut(&[1.0, 0.0], 0.3, -1.0)];
        let cb = CutBall::new(&ball, &cuts);
        assert!(cb.min_linear(&[0.0, 1.0]) > 10.0);
        let linf = Ball::new(vec![0.0, 0.0], 1.0, Norm::Linf, false).unwrap();
        let cb = CutBall::new(&linf, &cuts);
        assert_eq!(
            cb.min_linear(&[0.0, 1.0]),
            linf.min_linear_in(&[0.0, 1.0], None)
        );
    }

    /// The batched rule against the row-by-row one and against sampled points of the cut ball:
    /// on random balls (ℓ2, n = 7, with and without the pixel box), 3 random cuts through the
    /// ball with enclosure radii, and 9 rows (one all zero, one with a NaN entry), every batched
    /// bound is within 1e-9 relative of `min_linear`'s and below λᵀx at every sampled point that
    /// satisfies every cut for every cut vector in its enclosure's centre; NaN stays NaN.
    #[test]
    fn min_linear_many_matches_the_row_rule_and_is_sound() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let n = 7;
        for trial in 0..40 {
            let center: Vec<f64> = (0..n).map(|_| rng.random_range(0.2..0.8)).collect();
            let ball = Ball::new(center.clone(), 0.3, Norm::L2, trial % 2 == 0).unwrap();
            let cuts: Vec<Cut> = (0..3)
                .map(|_| {
                    let a: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
                    let r: Vec<f64> = (0..n).map(|_| rng.random_range(0.0..1e-3)).collect();
                    let c = rng.random_range(-0.1..0.1);
                    Cut {
                        a: Interval {
                            lo: a.iter().zip(&r).map(|(a, r)| a - r).collect(),
                            hi: a.iter().zip(&r).map(|(a, r)| a + r).collect(),
                        },
                        c: (c - 1e-4, c + 1e-4),
                        s: if rng.random_bool(0.5) { 1.0 } else { -1.0 },
                    }
                })
                .collect();
            let cb = CutBall::new(&ball, &cuts);
            let rows = 9;
            let mut lams: Vec<f64> = (0..rows * n).map(|_| rng.random_range(-2.0..2.0)).collect();
            lams[n..2 * n].fill(0.0);
            lams[2 * n + 3] = f64::NAN;
            let many = cb.min_linear_many(&lams, rows);
            assert_eq!(many.len(), rows);
            for (r, lam) in lams.chunks_exact(n).enumerate() {
                let one = cb.min_linear(lam);
                if one.is_nan() {
                    assert!(many[r].is_nan(), "row {r}: {} vs NaN", many[r]);
                    continue;
                }
                let tol = 1e-9 * (1.0 + one.abs());
                assert!(
                    (many[r] - one).abs() <= tol,
                    "trial {trial} row {r}: {} vs {one}",
                    many[r]
                );
            }
            // Sampled points of the cut ball (with the enclosures' centres).
            for _ in 0..2000 {
                let d: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
                let nd = d.iter().map(|v| v * v).sum::<f64>().sqrt();
                let t = 0.3 * rng.random_range(0.0f64..1.0).powf(1.0 / n as f64) / nd;
                let x: Vec<f64> = center.iter().zip(&d).map(|(c, d)| c + t * d).collect();
                if ball.unit_box && x.iter().any(|v| !(0.0..=1.0).contains(v)) {
                    continue;
                }
                let inside = cuts.iter().all(|cut| {
                    let (m, _) = cut.a.center_radius();
                    let z: f64 = m
                        .iter()
                        .zip(&x)
                        .zip(&center)
                        .map(|((a, x), c)| a * (x - c))
                        .sum();
                    cut.s * (z + 0.5 * (cut.c.0 + cut.c.1)) >= 0.0
                });
                if !inside {
                    continue;
                }
                for (r, lam) in lams.chunks_exact(n).enumerate() {
                    if many[r].is_nan() {
                        continue;
                    }
                    let v: f64 = lam.iter().zip(&x).map(|(a, b)| a * b).sum();
                    assert!(
                        many[r] <= v + 1e-12,
                        "trial {trial} row {r}: bound {} above {v}",
                        many[r]
                    );
                }
            }
        }
        // Rows of the wrong length: NaN for every row, no panic.
        let ball = Ball::new(vec![0.5; n], 0.3, Norm::L2, false).unwrap();
        let cb = CutBall::new(&ball, &[]);
        assert!(cb.min_linear_many(&[1.0; 5], 1).iter().all(|v| v.is_nan()));
    }
}
