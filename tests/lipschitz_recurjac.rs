//! Soundness and usefulness of the RecurJac local bound (src/lipschitz/recurjac.rs): brute force
//! on tiny MLPs, conv + ReLU + max-pool nets and residual nets (gradient grid or dense sampling,
//! difference quotients, enumeration of activation and max-pool selection patterns) never
//! exceeds it; sampling/PGD lower ≤ RecurJac ≤ FastLip on random MLPs, LeNets and residual nets;
//! RecurJac is strictly tighter than FastLip on some samples of each; the cost guard is sound;
//! unsupported networks are refused clearly.

mod recurjac_nets;
use recurjac_nets::*;

mod lipschitz_common;
use lipschitz_common::*;

use oodcert::bounds::net::{LinearOp, Node};
use oodcert::bounds::{Ball, Net, Norm};
use oodcert::error::Error;
use oodcert::lipschitz::empirical::sample_ball;
use oodcert::lipschitz::empirical::{GradOracle, PgdConfig, lower_by_pgd, lower_by_sampling};
use oodcert::lipschitz::local::{Head, PreBounds, fastlip_with, pre_bounds};
use oodcert::lipschitz::recurjac::{recurjac_limited, recurjac_with, unsupported};
use oodcert::model::Arch;
use rand::Rng;

const PRES: [PreBounds; 2] = [PreBounds::Ibp, PreBounds::Crown { max_dim: 10_000 }];

/// Tiny MLPs (2 inputs): a 300×300 grid of gradient norms and 20 000 difference quotients never
/// exceed the RecurJac value itself (not only the min with FastLip).
#[test]
fn tiny_mlp_grid_never_exceeds_recurjac() {
    for seed in 0..5u64 {
        let (m, net) = mlp([1, 1, 2], &[5, 4], 3, 70 + seed);
        let oracle = GradOracle {
            model: &m,
            temperature: 1.0,
            batch: 4096,
        };
        let mut r = rng(seed);
        let x = random_image(2, &mut r);
        for norm in [Norm::L2, Norm::Linf] {
            for eps in [0.05, 0.5, 2.0] {
                let ball = Ball::new(x.clone(), eps, norm, false).unwrap();
                let rj = recurjac_with(&net, &ball, 1.0, PRES[(seed % 2) as usize]).unwrap();
                let bound = rj.recurjac_value;
                let g = 300;
                let mut pts = Vec::new();
                for i in 0..=g {
                    for j in 0..=g {
                        let p = vec![
                            x[0] - eps + 2.0 * eps * i as f64 / g as f64,
                            x[1] - eps + 2.0 * eps * j as f64 / g as f64,
                        ];
                        if ball.contains(&p) {
                            pts.push(p);
                        }
                    }
                }
                let sg = oracle.score_grads(&pts).unwrap();
                for (p, (_, gr)) in pts.iter().zip(&sg) {
                    assert!(
                        rj.grad.contains(gr),
                        "seed {seed} {norm:?} eps {eps}: ∇S{p:?} = {gr:?} outside {:?}",
                        rj.grad
                    );
                }
                let max_grad = sg
                    .iter()
                    .map(|(_, g)| norm.dual_norm(g))
                    .fold(0.0, f64::max);
                assert!(
                    max_grad <= bound,
                    "seed {seed} {norm:?} eps {eps}: grid grad {max_grad} > RecurJac {bound}"
                );
                let mut worst = 0.0f64;
                for _ in 0..20_000 {
                    let a = r.random_range(0..pts.len());
                    let b = r.random_range(0..pts.len());
                    let dx: Vec<f64> = pts[a].iter().zip(&pts[b]).map(|(u, v)| u - v).collect();
                    let dist = norm.norm(&dx);
                    if dist > 1e-6 {
                        worst = worst.max((sg[a].0 - sg[b].0).abs() / dist);
                    }
                }
                assert!(
                    worst <= bound * (1.0 + 1e-9),
                    "seed {seed} {norm:?} eps {eps}: quotient {worst} > RecurJac {bound}"
                );
            }
        }
    }
}

fn softmax(z: &[f64]) -> Vec<f64> {
    let m = z.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
    let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// −Jᵀp for the MLP `net` with ReLU derivative pattern `d` (one 0/1 vector per hidden layer).
fn grad_for_pattern(net: &Net, d: &[Vec<f64>], p: &[f64]) -> Vec<f64> {
    let mut g: Vec<f64> = p.iter().map(|v| -v).collect();
    let mut layer = d.len();
    for node in net.nodes.iter().rev() {
        match node {
            Node::Affine(a) => match &a.op {
                LinearOp::Dense(w) => {
                    let mut x = vec![0.0; w.inp];
                    for (o, go) in g.iter().enumerate() {
                        for (i, xi) in x.iter_mut().enumerate() {
                            *xi += w.w[o * w.inp + i] * go;
                        }
                    }
                    g = x;
                }
                LinearOp::Diag(s) => g = g.iter().zip(&s.scale).map(|(g, s)| g * s).collect(),
                _ => panic!("MLP only"),
            },
            Node::Relu => {
                layer -= 1;
                g = g.iter().zip(&d[layer]).map(|(g, d)| g * d).collect();
            }
            _ => panic!("MLP only"),
        }
    }
    g
}

/// Activation-region enumeration on tiny MLPs (3 inputs): every 0/1 derivative pattern allowed
/// by the pre-activation boxes, with p = softmax at corners and random points of the logit box,
/// gives a gradient −Jᵀp inside the RecurJac box and with ‖·‖_q below the RecurJac value. This
/// covers the whole relaxation, not only the patterns the ball realises.
#[test]
fn tiny_mlp_pattern_enumeration_stays_inside_recurjac() {
    let mut checked = 0usize;
    for seed in 0..8u64 {
        let (_m, net) = mlp([1, 1, 3], &[4, 4], 3, 90 + seed);
        let mut r = rng(200 + seed);
        let x = random_image(3, &mut r);
        for norm in [Norm::L2, Norm::Linf] {
            for eps in [0.1, 0.6] {
                let ball = Ball::new(x.clone(), eps, norm, seed % 2 == 0).unwrap();
                let pre = PRES[(seed / 2 % 2) as usize];
                let rj = recurjac_with(&net, &ball, 1.0, pre).unwrap();
                let (traces, logits) = pre_bounds(&net, &ball, pre).unwrap();
                let sets: Vec<Vec<(f64, f64)>> = net
                    .nodes
                    .iter()
                    .zip(&traces)
                    .filter(|(n, _)| matches!(n, Node::Relu))
                    .map(|(_, t)| {
                        let b = t.input();
                        (0..b.len())
                            .map(|j| oodcert::bounds::relu::derivative_set(b.lo[j], b.hi[j]))
                            .collect()
                    })
                    .collect();
                let free: Vec<(usize, usize)> = sets
                    .iter()
                    .enumerate()
                    .flat_map(|(l, s)| {
                        s.iter()
                            .enumerate()
                            .filter(|(_, d)| d.0 != d.1)
                            .map(move |(j, _)| (l, j))
                    })
                    .collect();
                assert!(free.len() <= 12);
                let k = logits.len();
                let mut ps: Vec<Vec<f64>> = (0..(1 << k))
                    .map(|mask: usize| {
                        let z: Vec<f64> = (0..k)
                            .map(|i| {
                                if mask >> i & 1 == 1 {
                                    logits.hi[i]
                                } else {
                                    logits.lo[i]
                                }
                            })
                            .collect();
                        softmax(&z)
                    })
                    .collect();
                for _ in 0..20 {
                    let z: Vec<f64> = (0..k)
                        .map(|i| r.random_range(logits.lo[i]..=logits.hi[i]))
                        .collect();
                    ps.push(softmax(&z));
                }
                for mask in 0..(1usize << free.len()) {
                    let mut d: Vec<Vec<f64>> = sets
                        .iter()
                        .map(|s| s.iter().map(|v| v.0).collect())
                        .collect();
                    for (b, &(l, j)) in free.iter().enumerate() {
                        d[l][j] = (mask >> b & 1) as f64;
                    }
                    for p in &ps {
                        let g = grad_for_pattern(&net, &d, p);
                        let tol = 1e-12 * (1.0 + g.iter().map(|v| v.abs()).sum::<f64>());
                        for (i, gi) in g.iter().enumerate() {
                            assert!(
                                rj.grad.lo[i] - tol <= *gi && *gi <= rj.grad.hi[i] + tol,
                                "seed {seed} {norm:?} eps {eps}: pattern {mask} coordinate {i}: \
                                 {gi} outside [{}, {}]",
                                rj.grad.lo[i],
                                rj.grad.hi[i]
                            );
                        }
                        assert!(norm.dual_norm(&g) <= rj.recurjac_value * (1.0 + 1e-12));
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 1000, "only {checked} pattern/p pairs checked");
}

/// Random MLPs, ℓ2 and ℓ∞ balls, with and without the pixel box, IBP and CROWN boxes:
/// sampling/PGD lower ≤ RecurJac ≤ FastLip (same boxes, box ∩ simplex head), and the reported
/// value is the minimum of the sound rules.
#[test]
fn lower_recurjac_fastlip_chain_on_random_mlps() {
    for (hidden, seed) in [(vec![20, 16], 5u64), (vec![12, 12, 10], 6)] {
        let (m, net) = mlp([1, 4, 4], &hidden, 4, seed);
        let oracle = GradOracle {
            model: &m,
            temperature: 1.0,
            batch: 64,
        };
        let mut r = rng(seed + 10);
        for norm in [Norm::L2, Norm::Linf] {
            for (eps, unit_box) in [(0.01, false), (0.1, true), (0.3, false)] {
                let eps = if norm == Norm::Linf { eps / 4.0 } else { eps };
                let x = random_image(16, &mut r);
                let ball = Ball::new(x, eps, norm, unit_box).unwrap();
                let lo = lower_by_sampling(&oracle, &ball, 32, &mut r).unwrap().max(
                    lower_by_pgd(
                        &oracle,
                        &ball,
                        &PgdConfig {
                            steps: 8,
                            restarts: 2,
                            ..Default::default()
                        },
                        &mut r,
                    )
                    .unwrap(),
                );
                for pre in PRES {
                    let rj = recurjac_with(&net, &ball, 1.0, pre).unwrap();
                    let fl = fastlip_with(&net, &ball, 1.0, Head::Simplex, pre).unwrap();
                    let fl_box = fl.simplex_value.unwrap();
                    assert!(
                        lo <= rj.recurjac_value,
                        "{hidden:?} {norm:?} {eps}: lower {lo} > RecurJac {}",
                        rj.recurjac_value
                    );
                    assert!(
                        rj.recurjac_value <= fl_box * (1.0 + 1e-12),
                        "{hidden:?} {norm:?} {eps}: RecurJac {} > FastLip {fl_box}",
                        rj.recurjac_value
                    );
                    assert_eq!(rj.fastlip_value, fl.value);
                    assert_eq!(rj.value, rj.recurjac_value.min(fl.value));
                }
            }
        }
    }
}

/// RecurJac must beat FastLip strictly on some samples of a random MLP (a regression to the
/// interval rule would fail here), in both norms.
#[test]
fn recurjac_is_strictly_tighter_than_fastlip_on_some_samples() {
    let (_m, net) = mlp([1, 4, 4], &[24, 24], 5, 17);
    let mut r = rng(18);
    for norm in [Norm::L2, Norm::Linf] {
        let mut wins = 0;
        let eps = if norm == Norm::L2 { 0.1 } else { 0.02 };
        for _ in 0..6 {
            let x = random_image(16, &mut r);
            let ball = Ball::new(x, eps, norm, false).unwrap();
            let rj = recurjac_with(&net, &ball, 1.0, PreBounds::Crown { max_dim: 10_000 }).unwrap();
            if rj.recurjac_value < rj.fastlip_value * (1.0 - 1e-6) {
                wins += 1;
            }
        }
        assert!(
            wins >= 3,
            "{norm:?}: RecurJac beat FastLip on only {wins} of 6 samples"
        );
    }
}

/// At ε = 0 every neuron is stable: RecurJac gives ‖∇S(x)‖_q up to rounding.
#[test]
fn recurjac_at_radius_zero_is_the_gradient_norm() {
    let (m, net) = mlp([1, 3, 3], &[10, 10], 4, 5);
    let oracle = GradOracle {
        model: &m,
        temperature: 1.0,
        batch: 8,
    };
    let mut r = rng(9);
    for norm in [Norm::L2, Norm::Linf] {
        let x = random_image(9, &mut r);
        let ball = Ball::new(x.clone(), 0.0, norm, false).unwrap();
        let g = oracle.grad_norms(&[x], norm).unwrap()[0];
        let l = recurjac_with(&net, &ball, 1.0, PreBounds::Ibp)
            .unwrap()
            .recurjac_value;
        assert!(
            g <= l && l <= g * (1.0 + 1e-9),
            "{norm:?}: grad {g} RecurJac {l}"
        );
    }
}

/// LeNet and ResNet-18 are supported now; a network whose last node is not affine is refused
/// with a reason (BadInput).
#[test]
fn unsupported_networks_are_refused_with_a_reason() {
    for (arch, shape) in [(Arch::Lenet, [1, 12, 12]), (Arch::Resnet18, [3, 8, 8])] {
        let (_m, net) = model(arch.clone(), shape, 3, 1);
        assert_eq!(unsupported(&net), None, "{arch:?}");
    }
    let (_m, mut net) = mlp([1, 2, 2], &[3], 2, 1);
    assert!(unsupported(&net).is_none());
    net.nodes.push(Node::Relu);
    let reason = unsupported(&net).expect("a network ending in a ReLU");
    assert!(reason.contains("not affine"), "{reason}");
    let ball = Ball::new(vec![0.5; 4], 0.01, Norm::Linf, false).unwrap();
    match recurjac_with(&net, &ball, 1.0, PreBounds::Ibp) {
        Err(Error::BadInput(msg)) => assert!(msg.contains("not affine"), "{msg}"),
        other => panic!("expected BadInput, got {other:?}"),
    }
}

/// The conv / max-pool / residual test networks: LeNet-like, residual, residual with a pool.
fn conv_nets(seed: u64) -> Vec<(&'static str, Net)> {
    vec![
        ("lenet", tiny_lenet(seed)),
        ("resnet", tiny_resnet(seed, false)),
        ("resnet+pool", tiny_resnet(seed, true)),
    ]
}

/// Softmax at the 2^K corners of the logit box and at 12 random points of it.
fn probabilities(
    logits: &oodcert::bounds::Interval,
    r: &mut rand_chacha::ChaCha8Rng,
) -> Vec<Vec<f64>> {
    let k = logits.len();
    let corner = |mask: usize| -> Vec<f64> {
        let z: Vec<f64> = (0..k)
            .map(|i| {
                if mask >> i & 1 == 1 {
                    logits.hi[i]
                } else {
                    logits.lo[i]
                }
            })
            .collect();
        recurjac_nets::softmax(&z)
    };
    let mut ps: Vec<Vec<f64>> = (0..1usize << k).map(corner).collect();
    for _ in 0..12 {
        let z: Vec<f64> = (0..k)
            .map(|i| r.random_range(logits.lo[i]..=logits.hi[i]))
            .collect();
        ps.push(recurjac_nets::softmax(&z));
    }
    ps
}

/// Pattern enumeration on conv + ReLU + max-pool and residual nets: every ReLU derivative
/// pattern and every max-pool selection (one candidate per window) allowed by the traced boxes,
/// with p = softmax at the logit-box corners and random points, gives −Jᵀp inside the RecurJac
/// box and with ‖·‖_q below `recurjac_value`. The gradient set is the image of a product of
/// simplices under a multilinear map, so these vertices cover its convex hull.
#[test]
fn conv_pool_and_residual_patterns_stay_inside_recurjac() {
    let (mut checked, mut configs, mut pool_free, mut branch_free) =
        (0usize, 0usize, 0usize, 0usize);
    for seed in 0..4u64 {
        for (name, net) in conv_nets(300 + seed) {
            let mut r = rng(400 + seed);
            let x = random_image(net.input_dim(), &mut r);
            for norm in [Norm::L2, Norm::Linf] {
                for eps in [0.01, 0.03, 0.08] {
                    let eps = if norm == Norm::Linf { eps / 3.0 } else { eps };
                    let ball = Ball::new(x.clone(), eps, norm, seed % 2 == 1).unwrap();
                    let pre = PRES[(seed / 2 % 2) as usize];
                    let rj = recurjac_with(&net, &ball, 1.0, pre).unwrap();
                    let (traces, logits) = pre_bounds(&net, &ball, pre).unwrap();
                    let mut opts = Vec::new();
                    options(&net.nodes, &traces, &mut opts);
                    let ps = probabilities(&logits, &mut r);
                    let n = for_each_pattern(&opts, 1 << 12, |choices| {
                        for p in &ps {
                            let g = grad_for(&net, choices, p);
                            let tol = 1e-12 * (1.0 + g.iter().map(|v| v.abs()).sum::<f64>());
                            for (i, gi) in g.iter().enumerate() {
                                assert!(
                                    rj.grad.lo[i] - tol <= *gi && *gi <= rj.grad.hi[i] + tol,
                                    "{name} seed {seed} {norm:?} eps {eps}: coordinate {i}: {gi} \
                                     outside [{}, {}]",
                                    rj.grad.lo[i],
                                    rj.grad.hi[i]
                                );
                            }
                            let v = norm.dual_norm(&g);
                            assert!(
                                v <= rj.recurjac_value * (1.0 + 1e-12),
                                "{name} seed {seed} {norm:?} eps {eps}: pattern norm {v} > \
                                 RecurJac {}",
                                rj.recurjac_value
                            );
                            checked += 1;
                        }
                    });
                    if n.is_some_and(|n| n > 1) {
                        configs += 1;
                        let free = |(is_relu, u): &(bool, Vec<Vec<usize>>)| {
                            (!is_relu, u.iter().filter(|o| o.len() > 1).count())
                        };
                        pool_free += opts
                            .iter()
                            .map(free)
                            .filter(|f| f.0)
                            .map(|f| f.1)
                            .sum::<usize>();
                        // The ReLU inside the first block's main branch is the third option list.
                        if name != "lenet" {
                            branch_free += free(&opts[1]).1;
                        }
                    }
                }
            }
        }
    }
    eprintln!(
        "{configs} balls, {checked} pairs, {pool_free} free windows, {branch_free} branch ReLUs"
    );
    assert!(configs >= 20, "only {configs} balls enumerated");
    assert!(checked > 20_000, "only {checked} pattern/p pairs checked");
    assert!(
        pool_free >= 5,
        "only {pool_free} free max-pool windows enumerated"
    );
    assert!(
        branch_free >= 5,
        "only {branch_free} free ReLUs inside residual branches"
    );
}

/// Dense sampling on conv + max-pool and residual nets: at 3000 points of each ball the exact
/// gradient lies in the RecurJac box and its norm, and 3000 difference quotients
/// |S(a) − S(b)|/‖a − b‖, stay below `recurjac_value`.
#[test]
fn conv_pool_and_residual_sampling_never_exceeds_recurjac() {
    for seed in 0..3u64 {
        for (name, net) in conv_nets(500 + seed) {
            let mut r = rng(600 + seed);
            let x = random_image(net.input_dim(), &mut r);
            for norm in [Norm::L2, Norm::Linf] {
                for eps in [0.05, 0.3] {
                    let eps = if norm == Norm::Linf { eps / 3.0 } else { eps };
                    let ball = Ball::new(x.clone(), eps, norm, seed == 1).unwrap();
                    let rj = recurjac_with(&net, &ball, 1.0, PRES[(seed % 2) as usize]).unwrap();
                    let bound = rj.recurjac_value;
                    let pts: Vec<Vec<f64>> =
                        (0..3000).map(|_| sample_ball(&ball, &mut r)).collect();
                    let sg: Vec<(f64, Vec<f64>)> =
                        pts.iter().map(|p| score_and_grad(&net, p)).collect();
                    for (_, g) in &sg {
                        let tol = 1e-12 * (1.0 + g.iter().map(|v| v.abs()).sum::<f64>());
                        assert!(
                            (0..g.len()).all(|i| rj.grad.lo[i] - tol <= g[i] && g[i] <= rj.grad.hi[i] + tol),
                            "{name} seed {seed} {norm:?} eps {eps}: ∇S = {g:?} outside {:?}",
                            rj.grad
                        );
                        assert!(norm.dual_norm(g) <= bound * (1.0 + 1e-12));
                    }
                    for _ in 0..3000 {
                        let (a, b) = (r.random_range(0..pts.len()), r.random_range(0..pts.len()));
                        let dx: Vec<f64> = pts[a].iter().zip(&pts[b]).map(|(u, v)| u - v).collect();
                        let dist = norm.norm(&dx);
                        if dist > 1e-9 {
                            let q = (sg[a].0 - sg[b].0).abs() / dist;
                            assert!(
                                q <= bound * (1.0 + 1e-9),
                                "{name} seed {seed} {norm:?} eps {eps}: quotient {q} > RecurJac {bound}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// lower ≤ RecurJac ≤ FastLip (same boxes, box ∩ simplex head) on random LeNets (candle models,
/// sampling/PGD lower bound) and on random residual nets (lower bound: the largest exact
/// gradient norm over 200 samples), ℓ2 and ℓ∞, IBP and CROWN boxes, with and without the box.
#[test]
fn lower_recurjac_fastlip_chain_on_lenets_and_residual_nets() {
    let check = |what: &str, net: &Net, ball: &Ball, lo: f64| {
        for pre in PRES {
            let rj = recurjac_with(net, ball, 1.0, pre).unwrap();
            let fl = fastlip_with(net, ball, 1.0, Head::Simplex, pre).unwrap();
            let fl_box = fl.simplex_value.unwrap();
            assert!(
                lo <= rj.recurjac_value,
                "{what}: lower {lo} > RecurJac {}",
                rj.recurjac_value
            );
            assert!(
                rj.recurjac_value <= fl_box * (1.0 + 1e-12),
                "{what}: RecurJac {} > FastLip {fl_box}",
                rj.recurjac_value
            );
            assert_eq!(rj.fastlip_value, fl.value);
            assert_eq!(rj.value, rj.recurjac_value.min(fl.value));
            assert_eq!(rj.skipped_levels, 0);
        }
    };
    for seed in [3u64, 4] {
        let (m, net) = model(Arch::Lenet, [1, 12, 12], 4, seed);
        let oracle = GradOracle {
            model: &m,
            temperature: 1.0,
            batch: 64,
        };
        let mut r = rng(seed + 20);
        for norm in [Norm::L2, Norm::Linf] {
            for (eps, unit_box) in [(0.02, false), (0.1, true)] {
                let eps = if norm == Norm::Linf { eps / 10.0 } else { eps };
                let ball = Ball::new(random_image(144, &mut r), eps, norm, unit_box).unwrap();
                let pgd = PgdConfig {
                    steps: 6,
                    restarts: 2,
                    ..Default::default()
                };
                let lo = lower_by_sampling(&oracle, &ball, 32, &mut r)
                    .unwrap()
                    .max(lower_by_pgd(&oracle, &ball, &pgd, &mut r).unwrap());
                check(&format!("lenet {seed} {norm:?} {eps}"), &net, &ball, lo);
            }
        }
    }
    for seed in [5u64, 6] {
        for pool in [false, true] {
            let net = tiny_resnet(seed, pool);
            let mut r = rng(seed + 30);
            for norm in [Norm::L2, Norm::Linf] {
                for (eps, unit_box) in [(0.05, false), (0.2, true)] {
                    let eps = if norm == Norm::Linf { eps / 4.0 } else { eps };
                    let ball = Ball::new(random_image(16, &mut r), eps, norm, unit_box).unwrap();
                    let lo = (0..200)
                        .map(|_| {
                            norm.dual_norm(&score_and_grad(&net, &sample_ball(&ball, &mut r)).1)
                        })
                        .fold(0.0, f64::max);
                    check(
                        &format!("resnet {seed} {pool} {norm:?} {eps}"),
                        &net,
                        &ball,
                        lo,
                    );
                }
            }
        }
    }
}

/// FastLip's interval rule alone (box ∩ simplex head), without the masked product and split
/// bound that `fastlip_value` also takes.
fn interval(net: &Net, ball: &Ball, pre: PreBounds) -> f64 {
    fastlip_with(net, ball, 1.0, Head::Simplex, pre)
        .unwrap()
        .simplex_value
        .unwrap()
}

/// RecurJac beats FastLip strictly on some samples of random LeNets and residual nets (a
/// regression of the max-pool or residual rule to the interval step fails here).
#[test]
fn recurjac_is_strictly_tighter_than_fastlip_on_conv_and_residual_nets() {
    let pre = PreBounds::Crown { max_dim: 10_000 };
    for norm in [Norm::L2, Norm::Linf] {
        let eps = if norm == Norm::L2 { 0.05 } else { 0.005 };
        let (mut lenet_wins, mut res_wins) = (0, 0);
        for s in 0..6u64 {
            let (_m, net) = model(Arch::Lenet, [1, 12, 12], 4, 40 + s);
            let mut r = rng(50 + s);
            let ball = Ball::new(random_image(144, &mut r), eps, norm, false).unwrap();
            let rj = recurjac_with(&net, &ball, 1.0, pre).unwrap();
            lenet_wins +=
                usize::from(rj.recurjac_value < interval(&net, &ball, pre) * (1.0 - 1e-6));
            let net = tiny_resnet(60 + s, s % 2 == 0);
            let ball = Ball::new(random_image(16, &mut r), 4.0 * eps, norm, false).unwrap();
            let rj = recurjac_with(&net, &ball, 1.0, pre).unwrap();
            res_wins += usize::from(rj.recurjac_value < interval(&net, &ball, pre) * (1.0 - 1e-6));
        }
        eprintln!("{norm:?}: LeNet wins {lenet_wins}/6, residual wins {res_wins}/6");
        assert!(
            lenet_wins >= 3,
            "{norm:?}: RecurJac beat FastLip on {lenet_wins} of 6 LeNets"
        );
        assert!(
            res_wins >= 3,
            "{norm:?}: RecurJac beat FastLip on {res_wins} of 6 residual nets"
        );
    }
}

/// Each new rule alone beats FastLip: on nets whose only nonlinearity is a max-pool, or ReLUs
/// inside a residual branch, RecurJac is strictly tighter on some samples and never above the
/// brute-force-checked box (a regression of either rule to the interval step fails here).
#[test]
fn max_pool_rule_and_residual_rule_alone_beat_fastlip() {
    let pre = PreBounds::Crown { max_dim: 10_000 };
    for norm in [Norm::L2, Norm::Linf] {
        let (mut pool_wins, mut block_wins) = (0, 0);
        for s in 0..6u64 {
            let mut r = rng(90 + s);
            for (is_pool, net) in [(true, pool_only(100 + s)), (false, block_only(110 + s))] {
                let eps = match norm {
                    Norm::L2 => 0.2,
                    Norm::Linf => 0.04,
                };
                let ball =
                    Ball::new(random_image(net.input_dim(), &mut r), eps, norm, false).unwrap();
                let rj = recurjac_with(&net, &ball, 1.0, pre).unwrap();
                let win = usize::from(rj.recurjac_value < rj.fastlip_value * (1.0 - 1e-6));
                if is_pool {
                    pool_wins += win;
                } else {
                    block_wins += win;
                }
                for _ in 0..300 {
                    let g = score_and_grad(&net, &sample_ball(&ball, &mut r)).1;
                    assert!(norm.dual_norm(&g) <= rj.recurjac_value * (1.0 + 1e-12));
                }
            }
        }
        eprintln!("{norm:?}: max-pool-only wins {pool_wins}/6, block-only wins {block_wins}/6");
        assert!(
            pool_wins >= 3,
            "{norm:?}: max-pool rule beat FastLip on {pool_wins} of 6"
        );
        assert!(
            block_wins >= 3,
            "{norm:?}: residual rule beat FastLip on {block_wins} of 6"
        );
    }
}

/// A 2×2 max-pool whose four entries can all be maximal, then logits (y, 2y): on an ℓ∞ ball the
/// selection weights sum to 1, so ‖∇S‖₁ = p₁ + 2p₂ ≤ 2, which the signed ℓ1 merge through the
/// window recovers (≈ 1.7 here) while FastLip's independent [0, 1] weights give 4×. Fails if
/// the window rule forgets that the weights sum to 1.
#[test]
fn tied_max_pool_window_is_merged_exactly() {
    use oodcert::bounds::dense::Dense;
    use oodcert::bounds::net::Affine;
    let net = Net {
        input_shape: [1, 2, 2],
        num_classes: 2,
        nodes: vec![
            Node::MaxPool2 { c: 1, h: 2, w: 2 },
            Node::Affine(Affine {
                name: "fc".into(),
                op: LinearOp::Dense(Dense {
                    out: 2,
                    inp: 1,
                    w: vec![1.0, 2.0],
                }),
                bias: None,
            }),
        ],
    };
    let ball = Ball::new(vec![0.5; 4], 0.1, Norm::Linf, false).unwrap();
    let rj = recurjac_with(&net, &ball, 1.0, PreBounds::Ibp).unwrap();
    let mut r = rng(7);
    let sampled = (0..2000)
        .map(|_| Norm::Linf.dual_norm(&score_and_grad(&net, &sample_ball(&ball, &mut r)).1))
        .fold(0.0, f64::max);
    assert!(sampled > 1.5, "sampled {sampled}");
    assert!(
        sampled <= rj.recurjac_value && rj.recurjac_value <= 2.0,
        "{}",
        rj.recurjac_value
    );
    let fl = interval(&net, &ball, PreBounds::Ibp);
    assert!(
        rj.recurjac_value <= 0.3 * fl,
        "RecurJac {} vs FastLip {fl}",
        rj.recurjac_value
    );
    assert_eq!(rj.rule.name(), "recurjac-signed-l1");
}

/// The cost guard: levels whose recursion costs more than `max_work` use FastLip's step; the
/// result stays sound (sampled gradients inside its box) and lies between the full recursion
/// and FastLip.
#[test]
fn cost_guard_leaves_large_levels_to_fastlip_soundly() {
    for seed in 0..3u64 {
        let net = tiny_resnet(70 + seed, true);
        let mut r = rng(80 + seed);
        let ball = Ball::new(random_image(16, &mut r), 0.1, Norm::L2, false).unwrap();
        let full = recurjac_with(&net, &ball, 1.0, PreBounds::Ibp).unwrap();
        let part = recurjac_limited(&net, &ball, 1.0, PreBounds::Ibp, 1e4).unwrap();
        let none = recurjac_limited(&net, &ball, 1.0, PreBounds::Ibp, 0.0).unwrap();
        assert_eq!(full.skipped_levels, 0);
        assert!(part.skipped_levels > 0 && part.recursed_entries > 0);
        assert!(part.recursed_entries < full.recursed_entries);
        assert_eq!(none.recursed_entries, 0);
        for (a, b) in [(&full, &part), (&part, &none)] {
            assert!(a.recurjac_value <= b.recurjac_value * (1.0 + 1e-12));
        }
        assert!(none.recurjac_value <= none.fastlip_value * (1.0 + 1e-12));
        for _ in 0..500 {
            let g = score_and_grad(&net, &sample_ball(&ball, &mut r)).1;
            let tol = 1e-12 * (1.0 + g.iter().map(|v| v.abs()).sum::<f64>());
            assert!(
                (0..16).all(|i| part.grad.lo[i] - tol <= g[i] && g[i] <= part.grad.hi[i] + tol)
            );
        }
    }
}

#[test]
#[ignore = "timing probe"]
fn timing_probe_mnist_mlp() {
    let (_m, net) = mlp([1, 28, 28], &[256, 256], 10, 3);
    let mut r = rng(4);
    let x = random_image(784, &mut r);
    for (norm, eps) in [(Norm::L2, 0.1), (Norm::Linf, 0.01)] {
        let ball = Ball::new(x.clone(), eps, norm, true).unwrap();
        let pre = PreBounds::Crown { max_dim: 4096 };
        let t = std::time::Instant::now();
        let fl = fastlip_with(&net, &ball, 1.0, Head::Simplex, pre).unwrap();
        eprintln!("fastlip {norm:?} {:?} {}", t.elapsed(), fl.value);
        let t = std::time::Instant::now();
        let rj = recurjac_with(&net, &ball, 1.0, pre).unwrap();
        eprintln!(
            "recurjac {norm:?} {:?} rj {} fl {} rule {:?}",
            t.elapsed(),
            rj.recurjac_value,
            rj.fastlip_value,
            rj.rule
        );
    }
}

/// `cargo test --release --test lipschitz_recurjac resnet18 -- --ignored --nocapture`: RecurJac
/// on a random-init CIFAR ResNet-18 (3×32×32) with the default cost guard (1e10): time, levels
/// recursed and skipped, and the value against FastLip.
#[test]
#[ignore = "timing probe (minutes)"]
fn timing_probe_resnet18_32x32() {
    let (_m, net) = model(Arch::Resnet18, [3, 32, 32], 10, 1);
    let mut r = rng(2);
    let ball = Ball::new(random_image(3 * 32 * 32, &mut r), 1e-4, Norm::Linf, true).unwrap();
    let t = std::time::Instant::now();
    let fl = fastlip_with(&net, &ball, 1.0, Head::Simplex, PreBounds::Ibp).unwrap();
    eprintln!("fastlip (box∩simplex) {:?} {}", t.elapsed(), fl.value);
    let t = std::time::Instant::now();
    let rj = recurjac_limited(&net, &ball, 1.0, PreBounds::Ibp, 1e10).unwrap();
    eprintln!(
        "recurjac (max_work 1e10) {:?} value {} fastlip {} entries recursed {} levels skipped {}",
        t.elapsed(),
        rj.recurjac_value,
        rj.fastlip_value,
        rj.recursed_entries,
        rj.skipped_levels
    );
}

/// `OODCERT_PROBE_MODEL=FILE cargo test --release --test lipschitz_recurjac probe -- --ignored
/// --nocapture`: RecurJac heads on a trained model at random valid images (timing and tightness).
#[test]
#[ignore = "probe on a trained model"]
fn probe_trained_model() {
    let Ok(path) = std::env::var("OODCERT_PROBE_MODEL") else {
        return;
    };
    let m = oodcert::model::Model::load(std::path::Path::new(&path), &candle_core::Device::Cpu)
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap();
    let net = Net::from_model(&m).unwrap();
    let mut r = rng(1);
    for (norm, eps) in [(Norm::L2, 0.1), (Norm::Linf, 0.01)] {
        let x: Vec<f64> = (0..net.input_dim())
            .map(|_| if r.random::<f64>() < 0.2 { 1.0 } else { 0.0 })
            .collect();
        let ball = Ball::new(x, eps, norm, true).unwrap();
        let t = std::time::Instant::now();
        let rj = recurjac_with(&net, &ball, 1.0, PreBounds::Crown { max_dim: 4096 }).unwrap();
        eprintln!(
            "{norm:?}: {:?} fastlip {} energy-row {} class-rows {} recurjac {} rule {:?}",
            t.elapsed(),
            rj.fastlip_value,
            rj.energy_row_value,
            rj.class_rows_value,
            rj.recurjac_value,
            rj.rule
        );
    }
}
