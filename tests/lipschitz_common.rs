// Shared helpers for the lipschitz_* integration tests (included with `mod`).
#![allow(dead_code)]

use candle_core::{DType, Device};
use oodcert::bounds::net::{LinearOp, Node};
use oodcert::bounds::{Ball, Net, Norm};
use oodcert::lipschitz::empirical::{GradOracle, PgdConfig, extreme_score_by_pgd};
use oodcert::model::{Arch, Model, ModelSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// PGD's largest and smallest S over `ball` (`steps` steps, 3 restarts) lie in [lo, hi]: the
/// attack side of every test of a certified S enclosure.
pub fn assert_pgd_extremes_of_s_inside(
    oracle: &GradOracle,
    ball: &Ball,
    steps: usize,
    (lo, hi): (f64, f64),
    r: &mut ChaCha8Rng,
    what: &str,
) {
    let cfg = PgdConfig {
        steps,
        restarts: 3,
        ..Default::default()
    };
    let smax = extreme_score_by_pgd(oracle, ball, true, &cfg, r).unwrap();
    let smin = extreme_score_by_pgd(oracle, ball, false, &cfg, r).unwrap();
    assert!(
        lo <= smin && smax <= hi,
        "{what}: PGD [{smin}, {smax}] outside [{lo}, {hi}]"
    );
}

pub fn spec(arch: Arch, shape: [usize; 3], k: usize) -> ModelSpec {
    let c = shape[0];
    ModelSpec {
        arch,
        input_shape: shape,
        num_classes: k,
        mean: (0..c).map(|i| 0.4 + 0.05 * i as f32).collect(),
        std: (0..c).map(|i| 0.25 + 0.02 * i as f32).collect(),
    }
}

pub fn model(arch: Arch, shape: [usize; 3], k: usize, seed: u64) -> (Model, Net) {
    let m = Model::init(spec(arch, shape, k), &Device::Cpu, DType::F64, seed).unwrap();
    let net = Net::from_model(&m).unwrap();
    (m, net)
}

pub fn mlp(shape: [usize; 3], hidden: &[usize], k: usize, seed: u64) -> (Model, Net) {
    model(
        Arch::Mlp {
            hidden: hidden.to_vec(),
        },
        shape,
        k,
        seed,
    )
}

pub fn random_image(n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    (0..n).map(|_| rng.random::<f64>()).collect()
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

// Exact local constants of ReLU nets on 2 inputs by enumerating activation regions (polygons),
// for the BaB and pattern-search tests.

pub type Poly = Vec<[f64; 2]>;

/// The part of a convex polygon where s·(a·x + c) ≥ 0 (Sutherland–Hodgman).
pub fn clip(p: &Poly, a: [f64; 2], c: f64, s: f64) -> Poly {
    let f = |x: &[f64; 2]| s * (a[0] * x[0] + a[1] * x[1] + c);
    let mut out = Vec::new();
    for i in 0..p.len() {
        let (u, v) = (p[i], p[(i + 1) % p.len()]);
        let (fu, fv) = (f(&u), f(&v));
        if fu >= 0.0 {
            out.push(u);
        }
        if (fu >= 0.0) != (fv >= 0.0) {
            let t = fu / (fu - fv);
            out.push([u[0] + t * (v[0] - u[0]), u[1] + t * (v[1] - u[1])]);
        }
    }
    out
}

pub fn area(p: &Poly) -> f64 {
    let n = p.len();
    (0..n)
        .map(|i| p[i][0] * p[(i + 1) % n][1] - p[(i + 1) % n][0] * p[i][1])
        .sum::<f64>()
        .abs()
        / 2.0
}

/// Distance from x to a convex polygon (0 inside).
pub fn dist(p: &Poly, x: [f64; 2]) -> f64 {
    let n = p.len();
    let cross = |i: usize| {
        let (u, v) = (p[i], p[(i + 1) % n]);
        (v[0] - u[0]) * (x[1] - u[1]) - (v[1] - u[1]) * (x[0] - u[0])
    };
    let signs: Vec<f64> = (0..n).map(cross).collect();
    if signs.iter().all(|s| *s >= 0.0) || signs.iter().all(|s| *s <= 0.0) {
        return 0.0;
    }
    (0..n)
        .map(|i| {
            let (u, v) = (p[i], p[(i + 1) % n]);
            let d = [v[0] - u[0], v[1] - u[1]];
            let len2 = d[0] * d[0] + d[1] * d[1];
            let t = (((x[0] - u[0]) * d[0] + (x[1] - u[1]) * d[1]) / len2).clamp(0.0, 1.0);
            ((x[0] - u[0] - t * d[0]).powi(2) + (x[1] - u[1] - t * d[1]).powi(2)).sqrt()
        })
        .fold(f64::INFINITY, f64::min)
}

/// The exact local Lipschitz constant of S = −f (one logit) of a ReLU net on 2 inputs built of
/// dense and diagonal affine maps: its
/// activation regions are convex polygons, cut out of the ball's bounding square neuron by
/// neuron; on each piece of positive area that meets the open ball ∇S is constant, so the
/// constant is the largest ‖·‖_q over those pieces.
pub fn exact_constant(net: &Net, ball: &Ball) -> f64 {
    let (x, e) = (&ball.center, ball.eps);
    let square = vec![
        [x[0] - e, x[1] - e],
        [x[0] + e, x[1] - e],
        [x[0] + e, x[1] + e],
        [x[0] - e, x[1] + e],
    ];
    let mut pieces: Vec<(Poly, Vec<[f64; 2]>, Vec<f64>)> =
        vec![(square, vec![[1.0, 0.0], [0.0, 1.0]], vec![0.0, 0.0])];
    let tiny = 1e-18 * e * e;
    for node in &net.nodes {
        match node {
            Node::Affine(a) => {
                for (_, rows, c) in pieces.iter_mut() {
                    let (nr, nc): (Vec<[f64; 2]>, Vec<f64>) = match &a.op {
                        LinearOp::Dense(d) => (0..d.out)
                            .map(|o| {
                                let (mut r, mut cc) = ([0.0; 2], 0.0);
                                for (k, w) in d.row(o).iter().enumerate() {
                                    r[0] += w * rows[k][0];
                                    r[1] += w * rows[k][1];
                                    cc += w * c[k];
                                }
                                (r, cc)
                            })
                            .unzip(),
                        LinearOp::Diag(d) => d
                            .scale
                            .iter()
                            .enumerate()
                            .map(|(k, s)| ([s * rows[k][0], s * rows[k][1]], s * c[k]))
                            .unzip(),
                        _ => panic!("dense and diagonal affine maps and ReLU only"),
                    };
                    *rows = nr;
                    *c = nc;
                    if let Some(b) = &a.bias {
                        c.iter_mut().zip(b).for_each(|(c, b)| *c += b);
                    }
                }
            }
            Node::Relu => {
                let m = pieces[0].1.len();
                for j in 0..m {
                    let mut next = Vec::new();
                    for (p, rows, c) in pieces {
                        for s in [1.0, -1.0] {
                            let q = clip(&p, rows[j], c[j], s);
                            if q.len() >= 3 && area(&q) > tiny {
                                let (mut r2, mut c2) = (rows.clone(), c.clone());
                                if s < 0.0 {
                                    r2[j] = [0.0; 2];
                                    c2[j] = 0.0;
                                }
                                next.push((q, r2, c2));
                            }
                        }
                    }
                    pieces = next;
                }
            }
            _ => panic!("dense and diagonal affine maps and ReLU only"),
        }
    }
    pieces
        .iter()
        .filter(|(p, _, _)| ball.norm == Norm::Linf || dist(p, [x[0], x[1]]) < e)
        .map(|(_, rows, _)| ball.norm.dual_norm(&rows[0]))
        .fold(0.0, f64::max)
}
