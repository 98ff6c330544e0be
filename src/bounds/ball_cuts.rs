//! Lower bounds of a linear function over an ℓ2 ball cut by halfspaces, by Lagrangian weak
//! duality (the split constraints of β-CROWN, Wang et al. 2021, eq. 5, on the input layer):
//! for y = x − x₀ in the cut set and μ ≥ 0, λᵀy ≥ (λ − Σμₖsₖaₖ)ᵀy − Σμₖsₖcₖ ≥ −ε‖λ − Σμₖsₖaₖ‖₂ −
//! Σμₖsₖcₖ. Any μ ≥ 0 gives a valid bound; μ is chosen by exact coordinate ascent in f64, and the
//! final value is evaluated with outward rounding. Proof: proofs/lipschitz_bab.md, "Split cuts".

use super::ball::{Ball, Norm};
use super::interval::Interval;
use super::round::{ABS_FLOOR, dot_err, next_down, next_up};

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
    b: Vec<Vec<f64>>,
    /// rad(aₖ) (rounded up).
    rad: Vec<Vec<f64>>,
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
        let mut b = Vec::with_capacity(cuts.len());
        let mut rad = Vec::with_capacity(cuts.len());
        for cut in cuts {
            let (m, r) = cut.a.center_radius();
            b.push(m.iter().map(|v| cut.s * v).collect::<Vec<f64>>());
            rad.push(r);
        }
        let k = b.len();
        let mut gram = vec![0.0; k * k];
        for i in 0..k {
            for j in i..k {
                let g: f64 = b[i].iter().zip(&b[j]).map(|(u, v)| u * v).sum();
                gram[i * k + j] = g;
                gram[j * k + i] = g;
            }
        }
        CutBall {
            ball,
            gamma: cuts
                .iter()
                .map(|c| c.s * (0.5 * c.c.0 + 0.5 * c.c.1))
                .collect(),
            c: cuts.iter().map(|c| c.c).collect(),
            s: cuts.iter().map(|c| c.s).collect(),
            b,
            rad,
            gram,
            unit_box: ball.unit_box.then(|| ball.to_box()),
        }
    }

    /// The number of cuts in use.
    pub fn len(&self) -> usize {
        self.b.len()
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

    /// μ ≥ 0 maximising −ε‖λ − Σμₖbₖ‖₂ − Σμₖγₖ (the bound without λᵀx₀), by exact maximisation
    /// over one coordinate at a time (f64; only [`Self::certified`] decides soundness).
    pub fn multipliers(&self, lam: &[f64]) -> Vec<f64> {
        let k = self.len();
        let eps = self.ball.eps;
        let p: Vec<f64> = self
            .b
            .iter()
            .map(|b| b.iter().zip(lam).map(|(u, v)| u * v).sum())
            .collect();
        let l2: f64 = lam.iter().map(|v| v * v).sum();
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
        let ek = dot_err(k + 1);
        let mut v = lam.to_vec();
        let mut mag: Vec<f64> = lam.iter().map(|x| x.abs()).collect();
        let mut spread = vec![0.0; n];
        for ((&m, b), r) in mu.iter().zip(&self.b).zip(&self.rad) {
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
        // |exact (λ − Σμsa)ᵢ − vᵢ| ≤ rounding of the sum + the enclosures' radii.
        let delta: Vec<f64> = mag
            .iter()
            .zip(&spread)
            .map(|(g, p)| next_up(ek * g + next_up(p * (1.0 + ek)) + ABS_FLOOR))
            .collect();
        let x0 = &self.ball.center;
        let en = dot_err(n);
        let dot: f64 = lam.iter().zip(x0).map(|(a, x)| a * x).sum();
        let dmag: f64 = lam.iter().zip(x0).map(|(a, x)| (a * x).abs()).sum();
        let eps = self.ball.eps;
        let nv = Norm::L2.dual_norm_up(&v);
        let nd = Norm::L2.dual_norm_up(&delta);
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
}
