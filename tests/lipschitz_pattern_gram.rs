// The ℓ2 pattern-Gram gradient bound (src/lipschitz/bab/pattern_gram.rs;
// proofs/lipschitz_pattern_gram.md) against brute force: on small MLPs with many sign-uncertain
// ReLUs, every activation pattern in the boxes' derivative sets (enumerated) and every vertex of
// the softmax box ∩ simplex gives a gradient −J_σᵀp whose ℓ2 norm must not exceed the bound, for
// the centre's reference pattern and for random ones; also at sampled points of the ball and on
// split domains of the branch and bound.

mod lipschitz_common;
mod recurjac_nets;
use lipschitz_common::*;
use recurjac_nets::dense;

use oodcert::bounds::ibp::Trace;
use oodcert::bounds::softmax::{simplex_tighten, softmax_box};
use oodcert::bounds::{Ball, Interval, Net, Node, Norm};
use oodcert::lipschitz::bab::DomainRows;
use oodcert::lipschitz::bab::box_quadratic_dual::box_quadratic_dual;
use oodcert::lipschitz::bab::domain::{ACTIVE, Domain, INACTIVE, Outcome, Problem};
use oodcert::lipschitz::bab::pattern_gram::{
    Expansion, Reference, pairwise_square_bound, pattern_gram_bound,
};
use oodcert::lipschitz::bab::point_grad::score_grad;
use oodcert::lipschitz::empirical::sample_ball;
use oodcert::lipschitz::local::grad_backward;
use rand::Rng;

fn l2(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// The sign-uncertain ReLU neurons (node, index) of a derivative view.
fn unstable(net: &Net, dt: &[Trace]) -> Vec<(usize, usize)> {
    let mut u = Vec::new();
    for (i, n) in net.nodes.iter().enumerate() {
        if let Node::Relu = n {
            let b = dt[i].input();
            for j in 0..b.len() {
                if b.lo[j] <= 0.0 && b.hi[j] >= 0.0 {
                    u.push((i, j));
                }
            }
        }
    }
    u
}

/// −J_σᵀp for the pattern that sets the listed neurons to `on` (others as their boxes say).
fn pattern_grad(net: &Net, dt: &[Trace], u: &[(usize, usize)], on: &[bool], p: &[f64]) -> Vec<f64> {
    let mut v = dt.to_vec();
    for (&(i, j), &s) in u.iter().zip(on) {
        if let Trace::Leaf(b) = &mut v[i] {
            if s {
                b.lo[j] = f64::MIN_POSITIVE;
                b.hi[j] = b.hi[j].max(b.lo[j]);
            } else {
                b.hi[j] = -f64::MIN_POSITIVE;
                b.lo[j] = b.lo[j].min(b.hi[j]);
            }
        }
    }
    let neg: Vec<f64> = p.iter().map(|x| -x).collect();
    let g = grad_backward(&net.nodes, &v, Interval::point(&neg)).unwrap();
    g.lo.iter().zip(&g.hi).map(|(a, b)| 0.5 * (a + b)).collect()
}

/// The vertices of {p : lo ≤ p ≤ hi, Σp = 1}: all coordinates but one at a bound.
fn vertices(p: &Interval) -> Vec<Vec<f64>> {
    let k = p.len();
    let mut out = Vec::new();
    for free in 0..k {
        for mask in 0..(1u32 << (k - 1)) {
            let (mut q, mut s, mut b) = (vec![0.0; k], 0.0, 0);
            for c in (0..k).filter(|&c| c != free) {
                q[c] = if mask >> b & 1 == 1 { p.hi[c] } else { p.lo[c] };
                s += q[c];
                b += 1;
            }
            q[free] = 1.0 - s;
            if q[free] >= p.lo[free] - 1e-12 && q[free] <= p.hi[free] + 1e-12 {
                out.push(q);
            }
        }
    }
    out
}

/// The largest ‖−J_σᵀp‖₂ over the patterns (all when ≤ 2¹¹, else 2048 random) and vertices.
fn brute(
    net: &Net,
    dt: &[Trace],
    logits: &Interval,
    t: f64,
    r: &mut rand_chacha::ChaCha8Rng,
) -> (f64, usize) {
    let u = unstable(net, dt);
    let p = simplex_tighten(&softmax_box(logits, t));
    let verts = vertices(&p);
    let pats: Vec<Vec<bool>> = if u.len() <= 11 {
        (0..1u32 << u.len())
            .map(|m| (0..u.len()).map(|b| m >> b & 1 == 1).collect())
            .collect()
    } else {
        (0..2048)
            .map(|_| (0..u.len()).map(|_| r.random::<bool>()).collect())
            .collect()
    };
    let mut best = 0.0f64;
    for on in &pats {
        for q in &verts {
            best = best.max(l2(&pattern_grad(net, dt, &u, on, q)));
        }
    }
    (best, u.len())
}

fn references(net: &Net, ball: &Ball, t: f64, r: &mut rand_chacha::ChaCha8Rng) -> Vec<Reference> {
    let mut refs = vec![Reference::at(net, &ball.center, t).unwrap()];
    refs.push(Reference::at(net, &sample_ball(ball, r), t).unwrap());
    // A random pattern and a random point of the simplex (not the centre's).
    let mut rr = Reference::at(net, &ball.center, t).unwrap();
    for s in rr.relu_positive.iter_mut().flatten() {
        for b in s.iter_mut() {
            *b = r.random::<bool>();
        }
    }
    let w: Vec<f64> = (0..net.num_classes).map(|_| r.random::<f64>()).collect();
    let t: f64 = w.iter().sum();
    rr.p = w.iter().map(|v| v / t).collect();
    refs.push(rr);
    refs
}

/// Every pattern × vertex gradient and every sampled point's gradient is within the bound, on
/// the root and on split children, for three reference choices; temperature 1.
#[test]
fn pattern_gram_bound_covers_every_pattern_and_vertex() {
    covers_every_pattern_and_vertex(1.0, 7);
}

/// The same at temperatures T ≠ 1 (∇S = −J_fᵀ softmax(f/T): the softmax box and the centre's
/// p⁰ depend on T).
#[test]
fn pattern_gram_bound_covers_every_pattern_and_vertex_at_other_temperatures() {
    covers_every_pattern_and_vertex(0.5, 17);
    covers_every_pattern_and_vertex(3.0, 27);
}

fn covers_every_pattern_and_vertex(temp: f64, seed0: u64) {
    let mut r = rng(seed0);
    let mut cases = 0;
    let mut worst: f64 = 0.0;
    let mut many_unstable = 0;
    for (seed, hidden, k, eps) in [
        (1u64, vec![6, 5], 3, 0.6),
        (2, vec![8], 4, 1.0),
        (3, vec![4, 4, 3], 3, 0.8),
        (4, vec![5, 5], 2, 1.5),
        (5, vec![10, 6], 4, 0.5),
        (6, vec![7, 7], 3, 2.0),
    ] {
        let net = mlp([1, 2, 2], &hidden, k, 40 + seed).1;
        for _ in 0..3 {
            let x = random_image(4, &mut r);
            let ball = Ball::new(x, eps, Norm::L2, false).unwrap();
            let prob = Problem::new(&net, &ball, temp, Some(4096), None, DomainRows::All).unwrap();
            let Outcome::Bounded(root) = prob.root().unwrap() else {
                panic!("root proven empty")
            };
            let mut domains: Vec<Domain> = vec![root.clone()];
            let u = unstable(&net, &prob.derivative_view(&root.splits, &root.traces));
            for &(i, j) in u.iter().take(2) {
                for st in [ACTIVE, INACTIVE] {
                    if let Outcome::Bounded(c) = prob.child(&root, i, j, st).unwrap() {
                        domains.push(c);
                    }
                }
            }
            for d in &domains {
                let dt = prob.derivative_view(&d.splits, &d.traces);
                let (b, nu) = brute(&net, &dt, &d.logits, temp, &mut r);
                many_unstable += usize::from(nu >= 6);
                for rf in references(&net, &ball, temp, &mut r) {
                    let ub = pattern_gram_bound(&net, &dt, &d.logits, temp, &rf)
                        .unwrap()
                        .unwrap()
                        .value;
                    assert!(
                        b <= ub * (1.0 + 1e-12),
                        "T {temp} seed {seed}: brute {b} > bound {ub}"
                    );
                    worst = worst.max(b / ub);
                    cases += 1;
                }
            }
            // Points of the ball against the root's bound.
            let dt = prob.derivative_view(&root.splits, &root.traces);
            let rf = Reference::at(&net, &ball.center, temp).unwrap();
            let ub = pattern_gram_bound(&net, &dt, &root.logits, temp, &rf)
                .unwrap()
                .unwrap()
                .value;
            for _ in 0..200 {
                let y = sample_ball(&ball, &mut r);
                let g = l2(&score_grad(&net, &y, temp).unwrap());
                assert!(g <= ub * (1.0 + 1e-12), "point gradient {g} > bound {ub}");
            }
        }
    }
    eprintln!(
        "{cases} cases, {many_unstable} domains with ≥ 6 unstable, max brute/bound {worst:.4}"
    );
    assert!(many_unstable >= 10, "{many_unstable}");
    // The bound is not vacuous: some case comes within 10 % of the brute-force maximum.
    assert!(worst > 0.9, "{worst}");
}

/// With every ReLU fixed and the logits a point, the bound is the gradient norm (to rounding).
#[test]
fn pattern_gram_bound_is_exact_on_a_fixed_pattern() {
    let mut r = rng(8);
    let net = mlp([1, 2, 2], &[6, 5], 3, 77).1;
    for _ in 0..10 {
        let x = random_image(4, &mut r);
        let ball = Ball::new(x.clone(), 1e-9, Norm::L2, false).unwrap();
        let prob = Problem::new(&net, &ball, 1.0, Some(4096), None, DomainRows::All).unwrap();
        let Outcome::Bounded(root) = prob.root().unwrap() else {
            panic!()
        };
        let dt = prob.derivative_view(&root.splits, &root.traces);
        let rf = Reference::at(&net, &x, 1.0).unwrap();
        let ub = pattern_gram_bound(&net, &dt, &root.logits, 1.0, &rf)
            .unwrap()
            .unwrap()
            .value;
        let g = l2(&score_grad(&net, &x, 1.0).unwrap());
        assert!(g <= ub && ub <= g * (1.0 + 1e-6), "{g} vs {ub}");
    }
}

/// With one logit (p = 1) and exactly one sign-uncertain neuron the quadratic has one variable,
/// so the bound is exact: it equals the larger of the two patterns' gradient norms (to 1e-9),
/// for a reference on either side of 0. Catches a wrong θ interval or a dropped term.
#[test]
fn pattern_gram_bound_is_exact_with_one_uncertain_neuron() {
    let mut r = rng(9);
    let mut checked = 0;
    for seed in 0..40u64 {
        let mut rr = rng(900 + seed);
        let hidden = [6usize, 4];
        let mut nodes = Vec::new();
        let mut inp = 3;
        for &h in &hidden[..1 + (seed as usize % 2)] {
            nodes.push(dense(inp, h, &mut rr));
            nodes.push(Node::Relu);
            inp = h;
        }
        nodes.push(dense(inp, 1, &mut rr));
        let net = Net {
            input_shape: [1, 1, 3],
            num_classes: 1,
            nodes,
        };
        let x = random_image(3, &mut r);
        // The smallest radius (on a grid) with one sign-uncertain neuron.
        for step in 1..200 {
            let eps = 0.01 * step as f64;
            let ball = Ball::new(x.clone(), eps, Norm::L2, false).unwrap();
            let prob = Problem::new(&net, &ball, 1.0, Some(4096), None, DomainRows::All).unwrap();
            let Outcome::Bounded(root) = prob.root().unwrap() else {
                panic!()
            };
            let dt = prob.derivative_view(&root.splits, &root.traces);
            let u = unstable(&net, &dt);
            if u.is_empty() {
                continue;
            }
            if u.len() > 1 {
                break;
            }
            let exact = (0..2)
                .map(|s| l2(&pattern_grad(&net, &dt, &u, &[s == 1], &[1.0])))
                .fold(0.0f64, f64::max);
            for on in [true, false] {
                let mut rf = Reference::at(&net, &x, 1.0).unwrap();
                rf.relu_positive[u[0].0].as_mut().unwrap()[u[0].1] = on;
                let ub = pattern_gram_bound(&net, &dt, &root.logits, 1.0, &rf)
                    .unwrap()
                    .unwrap()
                    .value;
                assert!(
                    exact <= ub && ub <= exact * (1.0 + 1e-9),
                    "seed {seed} ref {on}: exact {exact} bound {ub}"
                );
                checked += 1;
            }
            break;
        }
    }
    assert!(checked >= 30, "{checked}");
}

/// An expansion from explicit vectors (v_0 = g̃, then the columns) and θ boxes, its Gram matrix
/// enclosed with a relative slack of 1e-12.
fn expansion_of(v: &[Vec<f64>], ranges: Vec<(f64, f64)>) -> Expansion {
    let w = v.len();
    let (mut lo, mut hi) = (vec![0.0; w * w], vec![0.0; w * w]);
    for i in 0..w {
        for j in 0..w {
            let s: f64 = v[i].iter().zip(&v[j]).map(|(a, b)| a * b).sum();
            let g: f64 = v[i].iter().zip(&v[j]).map(|(a, b)| (a * b).abs()).sum();
            lo[i * w + j] = s - 1e-12 * g;
            hi[i * w + j] = s + 1e-12 * g;
        }
    }
    Expansion {
        neurons: (0..w - 1).map(|a| (1, a)).collect(),
        ranges,
        gram_lo: lo,
        gram_hi: hi,
        err_norm: 0.0,
    }
}

/// max over the box's vertices of ‖v_0 + Σ θ_a v_a‖² (the maximum of a convex function).
fn vertex_max(v: &[Vec<f64>], ranges: &[(f64, f64)]) -> f64 {
    let m = ranges.len();
    let mut best = 0.0f64;
    for mask in 0..1u32 << m {
        let mut g = v[0].clone();
        for a in 0..m {
            let t = if mask >> a & 1 == 1 {
                ranges[a].1
            } else {
                ranges[a].0
            };
            for (x, y) in g.iter_mut().zip(&v[a + 1]) {
                *x += t * y;
            }
        }
        best = best.max(g.iter().map(|x| x * x).sum());
    }
    best
}

/// Random vectors whose columns share a common direction with weight `common` (the coupled case
/// of trained nets) and random, sometimes one-sided, boxes.
fn random_quadratic(
    m: usize,
    n: usize,
    common: f64,
    r: &mut rand_chacha::ChaCha8Rng,
) -> (Vec<Vec<f64>>, Vec<(f64, f64)>) {
    let dir: Vec<f64> = (0..n).map(|_| r.random::<f64>() - 0.5).collect();
    let v: Vec<Vec<f64>> = (0..=m)
        .map(|_| {
            let s = r.random::<f64>() - 0.5;
            (0..n)
                .map(|k| (r.random::<f64>() - 0.5) + common * s * dir[k])
                .collect()
        })
        .collect();
    let ranges = (0..m)
        .map(|_| {
            let (a, b) = (r.random::<f64>() * 2.0 - 1.0, r.random::<f64>() * 2.0 - 1.0);
            match r.random_range(0..3) {
                0 => (a.min(0.0), 0.0),
                1 => (0.0, b.max(0.0)),
                _ => (a.min(b), a.max(b)),
            }
        })
        .collect();
    (v, ranges)
}

/// The diagonal dual bound is above the exact maximum over the box (all vertices enumerated) on
/// random quadratics, independent and coupled columns, 1–10 variables, one-sided and straddling
/// boxes; and close to it on some case (not vacuous).
#[test]
fn box_quadratic_dual_covers_every_vertex() {
    let mut r = rng(31);
    let mut worst: f64 = 0.0;
    for case in 0..300 {
        let m = 1 + case % 10;
        let common = [0.0, 1.0, 5.0][case % 3];
        let (v, ranges) = random_quadratic(m, 3 + case % 7, common, &mut r);
        let exact = vertex_max(&v, &ranges);
        let x = expansion_of(&v, ranges);
        let d = box_quadratic_dual(&x);
        assert!(
            exact <= d.value,
            "case {case}: exact {exact} > dual bound {}",
            d.value
        );
        assert_eq!(d.d.len(), m + 1);
        worst = worst.max(exact / d.value);
    }
    eprintln!("max exact/dual {worst:.4}");
    assert!(worst > 0.99, "{worst}");
}

/// The Gram matrix known only up to wide, off-centre enclosures (the true Gram at one end of each
/// entry's interval, the interval up to 20 % of the entry's magnitude): the dual bound must still
/// cover the true quadratic's vertex maximum, so it has to carry the enclosure radii through M's
/// error terms and Weyl's inequality (dropping them fails this test; the ±1e-12 enclosures of
/// the test above cannot tell).
#[test]
fn box_quadratic_dual_covers_every_vertex_with_wide_gram_enclosures() {
    let mut r = rng(33);
    let mut slack_used: f64 = 0.0;
    for case in 0..200 {
        let m = 1 + case % 8;
        let common = [0.0, 1.0, 5.0][case % 3];
        let (v, ranges) = random_quadratic(m, 3 + case % 5, common, &mut r);
        let exact = vertex_max(&v, &ranges);
        let mut x = expansion_of(&v, ranges);
        let w = v.len();
        let delta = 0.1 * r.random::<f64>();
        for i in 0..w {
            for j in i..w {
                let s: f64 = v[i].iter().zip(&v[j]).map(|(a, b)| a * b).sum();
                let g: f64 = v[i].iter().zip(&v[j]).map(|(a, b)| (a * b).abs()).sum();
                let down = r.random::<bool>();
                let (lo, hi) = if down {
                    (s - 2.0 * delta * g, s)
                } else {
                    (s, s + 2.0 * delta * g)
                };
                for k in [i * w + j, j * w + i] {
                    x.gram_lo[k] = lo;
                    x.gram_hi[k] = hi;
                }
            }
        }
        let d = box_quadratic_dual(&x);
        assert!(
            exact <= d.value,
            "case {case}: exact {exact} > dual bound {} (delta {delta})",
            d.value
        );
        slack_used = slack_used.max(exact / d.value);
    }
    eprintln!("max exact/dual with wide enclosures {slack_used:.4}");
}

/// On columns that share a common direction (positive and negative pair terms mixed) the joint
/// bound is below the pairwise one on most cases: the pair terms' worst signs cannot all hold.
#[test]
fn box_quadratic_dual_beats_the_pairwise_bound_on_coupled_columns() {
    let mut r = rng(32);
    let (mut tighter, mut ratio_sum) = (0, 0.0);
    let cases = 40;
    for _ in 0..cases {
        let (v, ranges) = random_quadratic(12, 20, 3.0, &mut r);
        let x = expansion_of(&v, ranges.clone());
        let (pw, _) = pairwise_square_bound(&x);
        let d = box_quadratic_dual(&x).value;
        let exact = vertex_max(&v, &ranges);
        assert!(exact <= d && exact <= pw * (1.0 + 1e-12));
        tighter += usize::from(d < pw);
        ratio_sum += d / pw;
    }
    eprintln!(
        "dual < pairwise on {tighter}/{cases}, mean dual/pairwise {:.3}",
        ratio_sum / cases as f64
    );
    assert!(tighter >= cases * 3 / 4, "{tighter}");
}
