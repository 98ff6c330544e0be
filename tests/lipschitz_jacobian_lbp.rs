//! Soundness and usefulness of the Jacobian bound propagation (src/lipschitz/jacobian_lbp.rs):
//! on tiny MLPs a grid of gradient norms and difference quotients never exceeds it; on conv +
//! max-pool, residual (+ max-pool) and max-pool-only nets, dense sampling plus a hill-climbing
//! attack on ‖∇S‖ never exceeds it and every sampled gradient lies in its gradient box; on
//! candle MLPs, LeNets and ResNet-18s (batch-norm, average pool) sampling/PGD lower ≤ the rule
//! alone ≤ FastLip; the rule alone is strictly tighter than FastLip on most samples; at radius 0
//! it is the gradient norm; networks it cannot handle are refused. ℓ2 and ℓ∞, with and without
//! the pixel box, IBP and CROWN pre-activation boxes. Proof: proofs/lipschitz_jacobian_lbp.md.

mod recurjac_nets;
use recurjac_nets::*;

mod lipschitz_common;
use lipschitz_common::*;

use oodcert::bounds::net::Node;
use oodcert::bounds::{Ball, Net, Norm};
use oodcert::error::Error;
use oodcert::lipschitz::empirical::{
    GradOracle, PgdConfig, lower_by_pgd, lower_by_sampling, sample_ball,
};
use oodcert::lipschitz::jacobian_lbp::{
    JacobianBound, JacobianRule, LbpConfig, directional_upper, jacobian_lbp,
};
use oodcert::lipschitz::local::{Head, PreBounds, fastlip_with};
use oodcert::model::Arch;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

const PRES: [PreBounds; 2] = [PreBounds::Ibp, PreBounds::Crown { max_dim: 10_000 }];

fn lbp(net: &Net, ball: &Ball, pre: PreBounds) -> JacobianBound {
    jacobian_lbp(net, ball, 1.0, pre, LbpConfig::default()).unwrap()
}

/// Tiny MLPs (2 inputs): a 300×300 grid of gradients lies in the gradient box and no gradient
/// norm nor any of 20 000 difference quotients exceeds the rule's own value (`lbp_value`, not
/// only the min with FastLip).
#[test]
fn tiny_mlp_grid_never_exceeds_jacobian_lbp() {
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
                let ball = Ball::new(x.clone(), eps, norm, seed % 2 == 1).unwrap();
                let b = lbp(&net, &ball, PRES[(seed / 2 % 2) as usize]);
                let bound = b.lbp_value;
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
                let mut worst = 0.0f64;
                for (_, gr) in &sg {
                    let tol = 1e-12 * (1.0 + gr.iter().map(|v| v.abs()).sum::<f64>());
                    assert!(
                        (0..2).all(|i| b.grad.lo[i] - tol <= gr[i] && gr[i] <= b.grad.hi[i] + tol),
                        "seed {seed} {norm:?} eps {eps}: ∇S = {gr:?} outside {:?}",
                        b.grad
                    );
                    worst = worst.max(norm.dual_norm(gr));
                }
                assert!(
                    worst <= bound,
                    "seed {seed} {norm:?} eps {eps}: grid grad {worst} > bound {bound}"
                );
                for _ in 0..20_000 {
                    let a = r.random_range(0..pts.len());
                    let c = r.random_range(0..pts.len());
                    let dx: Vec<f64> = pts[a].iter().zip(&pts[c]).map(|(u, v)| u - v).collect();
                    let dist = norm.norm(&dx);
                    if dist > 1e-6 {
                        let q = (sg[a].0 - sg[c].0).abs() / dist;
                        assert!(
                            q <= bound * (1.0 + 1e-9),
                            "seed {seed} {norm:?} eps {eps}: quotient {q} > bound {bound}"
                        );
                    }
                }
            }
        }
    }
}

/// Hill climbing on ‖∇S‖_q inside the ball from `start` (a host-side attack for hand-built
/// nets): random steps of shrinking size, kept when the gradient norm grows.
fn hill_climb(net: &Net, ball: &Ball, start: Vec<f64>, steps: usize, r: &mut ChaCha8Rng) -> f64 {
    let norm = ball.norm;
    let mut x = start;
    let mut best = norm.dual_norm(&score_and_grad(net, &x).1);
    for s in 0..steps {
        let scale = ball.eps * 0.5 * (1.0 - s as f64 / steps as f64) + 1e-6;
        let mut y: Vec<f64> = x
            .iter()
            .map(|v| v + scale * (2.0 * r.random::<f64>() - 1.0))
            .collect();
        ball.project(&mut y);
        let v = norm.dual_norm(&score_and_grad(net, &y).1);
        if v > best {
            best = v;
            x = y;
        }
    }
    best
}

/// The conv / max-pool / residual test networks.
fn conv_nets(seed: u64) -> Vec<(&'static str, Net)> {
    vec![
        ("lenet", tiny_lenet(seed)),
        ("resnet", tiny_resnet(seed, false)),
        ("resnet+pool", tiny_resnet(seed, true)),
        ("pool-only", pool_only(seed)),
        ("block-only", block_only(seed)),
    ]
}

/// Dense sampling + hill climbing on conv + max-pool, residual and pool-only nets: at 2000
/// points of each ball the exact gradient lies in the gradient box and neither its norm, nor
/// the attack's best, nor 2000 difference quotients exceed the rule's own value.
#[test]
fn conv_pool_and_residual_sampling_never_exceeds_jacobian_lbp() {
    let mut configs = 0;
    for seed in 0..3u64 {
        for (name, net) in conv_nets(500 + seed) {
            let mut r = rng(600 + seed);
            let x = random_image(net.input_dim(), &mut r);
            for norm in [Norm::L2, Norm::Linf] {
                for eps in [0.05, 0.3] {
                    let eps = if norm == Norm::Linf { eps / 3.0 } else { eps };
                    let ball = Ball::new(x.clone(), eps, norm, seed == 1).unwrap();
                    let b = lbp(&net, &ball, PRES[(seed % 2) as usize]);
                    let bound = b.lbp_value;
                    let pts: Vec<Vec<f64>> =
                        (0..2000).map(|_| sample_ball(&ball, &mut r)).collect();
                    let sg: Vec<(f64, Vec<f64>)> =
                        pts.iter().map(|p| score_and_grad(&net, p)).collect();
                    let mut best = (0.0f64, 0usize);
                    for (k, (_, g)) in sg.iter().enumerate() {
                        let tol = 1e-12 * (1.0 + g.iter().map(|v| v.abs()).sum::<f64>());
                        assert!(
                            (0..g.len())
                                .all(|i| b.grad.lo[i] - tol <= g[i] && g[i] <= b.grad.hi[i] + tol),
                            "{name} seed {seed} {norm:?} eps {eps}: ∇S outside the box"
                        );
                        let v = norm.dual_norm(g);
                        assert!(
                            v <= bound,
                            "{name} seed {seed} {norm:?} eps {eps}: sampled {v} > bound {bound}"
                        );
                        if v > best.0 {
                            best = (v, k);
                        }
                    }
                    let climbed = hill_climb(&net, &ball, pts[best.1].clone(), 300, &mut r);
                    assert!(
                        climbed <= bound,
                        "{name} seed {seed} {norm:?} eps {eps}: attack {climbed} > bound {bound}"
                    );
                    for _ in 0..2000 {
                        let (a, c) = (r.random_range(0..pts.len()), r.random_range(0..pts.len()));
                        let dx: Vec<f64> = pts[a].iter().zip(&pts[c]).map(|(u, v)| u - v).collect();
                        let dist = norm.norm(&dx);
                        if dist > 1e-9 {
                            let q = (sg[a].0 - sg[c].0).abs() / dist;
                            assert!(
                                q <= bound * (1.0 + 1e-9),
                                "{name} seed {seed} {norm:?} eps {eps}: quotient {q} > {bound}"
                            );
                        }
                    }
                    configs += 1;
                }
            }
        }
    }
    assert_eq!(configs, 3 * 5 * 4);
}

/// The propagation's rows themselves (no norm relaxation, no min with a box): for random
/// directions v, vᵀ∇S at 1500 sampled points (and a hill-climbing attack on vᵀ∇S) never exceeds
/// `directional_upper`, with and without refined gradient boxes, on MLPs and every conv /
/// max-pool / residual test net; at the smallest radius, with CROWN boxes and refinement, the
/// bound is within 10% (of max |vᵀ∇S|) of the sampled maximum on at least half the balls (so a
/// relaxation that loses its constants or signs is caught).
#[test]
fn directional_rows_hold_on_sampled_gradients_and_are_tight_at_small_radii() {
    let (mut tight, mut small) = (0, 0);
    let mut gaps = Vec::new();
    for seed in 0..3u64 {
        let mut nets = conv_nets(700 + seed);
        nets.push(("mlp", mlp([1, 3, 3], &[12, 10], 3, 710 + seed).1));
        for (name, net) in nets {
            let mut r = rng(720 + seed);
            let n = net.input_dim();
            let x = random_image(n, &mut r);
            for norm in [Norm::L2, Norm::Linf] {
                for eps in [0.02, 0.2] {
                    let eps = if norm == Norm::Linf { eps / 3.0 } else { eps };
                    let ball = Ball::new(x.clone(), eps, norm, seed == 2).unwrap();
                    let pts: Vec<Vec<f64>> =
                        (0..1500).map(|_| sample_ball(&ball, &mut r)).collect();
                    let grads: Vec<Vec<f64>> =
                        pts.iter().map(|p| score_and_grad(&net, p).1).collect();
                    for trial in 0..3 {
                        let v: Vec<f64> = (0..n).map(|_| 2.0 * r.random::<f64>() - 1.0).collect();
                        let cfg = LbpConfig {
                            refine_max_dim: if trial == 0 { 0 } else { 1024 },
                            ..LbpConfig::default()
                        };
                        let pre = PRES[((seed + trial) % 2) as usize];
                        let bound = directional_upper(&net, &ball, 1.0, pre, cfg, &v).unwrap();
                        let dot = |g: &[f64]| g.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>();
                        let (mut best, mut at) = (f64::NEG_INFINITY, 0);
                        for (k, g) in grads.iter().enumerate() {
                            let d = dot(g);
                            assert!(
                                d <= bound,
                                "{name} seed {seed} {norm:?} eps {eps} trial {trial}: vᵀ∇S = {d} > {bound}"
                            );
                            if d > best {
                                (best, at) = (d, k);
                            }
                        }
                        let mut y = pts[at].clone();
                        for s in 0..200 {
                            let scale = eps * 0.3 * (1.0 - s as f64 / 200.0) + 1e-7;
                            let mut z: Vec<f64> = y
                                .iter()
                                .map(|a| a + scale * (2.0 * r.random::<f64>() - 1.0))
                                .collect();
                            ball.project(&mut z);
                            let d = dot(&score_and_grad(&net, &z).1);
                            if d > best {
                                (best, y) = (d, z);
                            }
                        }
                        assert!(
                            best <= bound,
                            "{name} seed {seed} {norm:?} eps {eps}: attack {best} > {bound}"
                        );
                        let crown = matches!(pre, PreBounds::Crown { .. });
                        if crown && trial > 0 && eps < 0.03 {
                            small += 1;
                            let scale = grads.iter().map(|g| dot(g).abs()).fold(0.0, f64::max);
                            gaps.push((bound - best) / scale);
                            tight += usize::from(bound - best <= 0.1 * scale);
                        }
                    }
                }
            }
        }
    }
    eprintln!("tight at the small radius: {tight} of {small}: {gaps:.3?}");
    assert!(
        tight * 2 >= small,
        "tight on only {tight} of {small} small balls"
    );
}

/// lower (sampling + PGD) ≤ the rule alone ≤ FastLip (same boxes, box ∩ simplex head) on candle
/// MLPs, LeNets and ResNet-18s (batch-norm, residual blocks, global average pool), ℓ2 and ℓ∞,
/// with and without the pixel box, IBP and CROWN boxes; `value` is the minimum of the rules.
#[test]
fn lower_lbp_fastlip_chain_on_mlps_lenets_and_resnets() {
    let cases = [
        (
            Arch::Mlp {
                hidden: vec![20, 16],
            },
            [1, 4, 4],
            4,
            0.3,
        ),
        (Arch::Lenet, [1, 12, 12], 4, 0.1),
        (Arch::Resnet18, [3, 8, 8], 3, 0.05),
    ];
    for (arch, shape, k, big) in cases {
        let t = std::time::Instant::now();
        let seeds: &[u64] = if arch == Arch::Resnet18 {
            &[3]
        } else {
            &[3, 4]
        };
        for &seed in seeds {
            let (m, net) = model(arch.clone(), shape, k, seed);
            let oracle = GradOracle {
                model: &m,
                temperature: 1.0,
                batch: 64,
            };
            let mut r = rng(seed + 20);
            let n = net.input_dim();
            for norm in [Norm::L2, Norm::Linf] {
                let balls: &[(f64, bool)] = if arch == Arch::Resnet18 {
                    &[(big, true)]
                } else {
                    &[(big / 5.0, false), (big, true)]
                };
                for &(eps, unit_box) in balls {
                    let eps = if norm == Norm::Linf { eps / 10.0 } else { eps };
                    let ball = Ball::new(random_image(n, &mut r), eps, norm, unit_box).unwrap();
                    let pgd = PgdConfig {
                        steps: 8,
                        restarts: 2,
                        ..Default::default()
                    };
                    let lo = lower_by_sampling(&oracle, &ball, 64, &mut r)
                        .unwrap()
                        .max(lower_by_pgd(&oracle, &ball, &pgd, &mut r).unwrap());
                    let pre = match (&arch, seed % 2) {
                        (_, 0) => PreBounds::Ibp,
                        (Arch::Resnet18, _) => PreBounds::Crown { max_dim: 300 },
                        _ => PreBounds::Crown { max_dim: 10_000 },
                    };
                    let b = lbp(&net, &ball, pre);
                    let fl = fastlip_with(&net, &ball, 1.0, Head::Simplex, pre).unwrap();
                    let what = format!("{arch:?} seed {seed} {norm:?} eps {eps} box {unit_box}");
                    assert!(lo <= b.lbp_value, "{what}: lower {lo} > {}", b.lbp_value);
                    assert!(
                        b.lbp_value <= fl.simplex_value.unwrap() * (1.0 + 1e-12),
                        "{what}: lbp {} > FastLip {:?}",
                        b.lbp_value,
                        fl.simplex_value
                    );
                    assert_eq!(b.fastlip_value, fl.value);
                    assert_eq!(b.value, b.lbp_value.min(fl.value));
                    assert_eq!(
                        b.rule == JacobianRule::Fastlip,
                        fl.value <= b.lbp_value,
                        "{what}"
                    );
                }
            }
        }
        eprintln!("{arch:?}: {:?}", t.elapsed());
    }
}

/// The rule alone beats FastLip's interval rule by ≥ 1% on most samples of random MLPs, LeNets and residual
/// nets, in both norms (a regression of any relaxation to the interval rule fails here).
#[test]
fn jacobian_lbp_is_tighter_than_fastlip_on_most_samples() {
    let pre = PreBounds::Crown { max_dim: 10_000 };
    for norm in [Norm::L2, Norm::Linf] {
        let eps = if norm == Norm::L2 { 0.05 } else { 0.005 };
        let (mut wins, mut total) = (0, 0);
        let mut ratios = Vec::new();
        for s in 0..6u64 {
            let mut r = rng(50 + s);
            let nets: Vec<(Net, f64)> = vec![
                (mlp([1, 4, 4], &[24, 24], 5, 17 + s).1, eps),
                (model(Arch::Lenet, [1, 12, 12], 4, 40 + s).1, eps),
                (tiny_resnet(60 + s, s % 2 == 0), 4.0 * eps),
            ];
            for (net, e) in nets {
                let ball =
                    Ball::new(random_image(net.input_dim(), &mut r), e, norm, false).unwrap();
                let b = lbp(&net, &ball, pre);
                // The interval rule alone (FastLip's value also takes the masked product and
                // the split bound, which are not interval rules).
                let interval = fastlip_with(&net, &ball, 1.0, Head::Simplex, pre)
                    .unwrap()
                    .simplex_value
                    .unwrap();
                ratios.push(b.lbp_value / interval);
                wins += usize::from(b.lbp_value < 0.99 * interval);
                total += 1;
            }
        }
        eprintln!("{norm:?}: lbp/FastLip {ratios:.3?}");
        assert!(
            wins * 3 >= total * 2,
            "{norm:?}: beat FastLip by 1% on only {wins} of {total} samples"
        );
    }
}

/// At ε = 0 every neuron is stable: the rule gives ‖∇S(x)‖_q up to rounding.
#[test]
fn jacobian_lbp_at_radius_zero_is_the_gradient_norm() {
    for (arch, shape) in [
        (
            Arch::Mlp {
                hidden: vec![10, 10],
            },
            [1, 3, 3],
        ),
        (Arch::Lenet, [1, 12, 12]),
    ] {
        let (m, net) = model(arch.clone(), shape, 4, 5);
        let oracle = GradOracle {
            model: &m,
            temperature: 1.0,
            batch: 8,
        };
        let mut r = rng(9);
        for norm in [Norm::L2, Norm::Linf] {
            let x = random_image(net.input_dim(), &mut r);
            let ball = Ball::new(x.clone(), 0.0, norm, false).unwrap();
            let g = oracle.grad_norms(&[x], norm).unwrap()[0];
            let l = lbp(&net, &ball, PreBounds::Ibp).lbp_value;
            assert!(
                g <= l && l <= g * (1.0 + 1e-6),
                "{arch:?} {norm:?}: grad {g} bound {l}"
            );
        }
    }
}

/// A network whose last node is not affine is refused with a reason (BadInput), as is a ball
/// of the wrong dimension.
#[test]
fn unsupported_networks_are_refused_with_a_reason() {
    let (_m, mut net) = mlp([1, 2, 2], &[3], 2, 1);
    let ball = Ball::new(vec![0.5; 4], 0.01, Norm::Linf, false).unwrap();
    assert!(jacobian_lbp(&net, &ball, 1.0, PreBounds::Ibp, LbpConfig::default()).is_ok());
    let short = Ball::new(vec![0.5; 3], 0.01, Norm::Linf, false).unwrap();
    assert!(matches!(
        jacobian_lbp(&net, &short, 1.0, PreBounds::Ibp, LbpConfig::default()),
        Err(Error::BadInput(_))
    ));
    net.nodes.push(Node::Relu);
    match jacobian_lbp(&net, &ball, 1.0, PreBounds::Ibp, LbpConfig::default()) {
        Err(Error::BadInput(msg)) => assert!(msg.contains("affine"), "{msg}"),
        other => panic!("expected BadInput, got {other:?}"),
    }
}

/// `oodcert lipschitz --methods …,jacobian` through the binary, on an MLP and a LeNet: the run
/// succeeds, stderr names the winning rule, PGD lower ≤ upper_local, and upper_local is at most
/// the FastLip-only run's on every sample (it is the minimum of the requested local bounds); a
/// negative `--jacobian-max-work` exits 2 with one line and writes nothing.
#[test]
fn lipschitz_cli_jacobian_method() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = mlp([1, 8, 8], &[16, 12], 10, 4);
    let mpath = dir.path().join("m.safetensors");
    m.save(&mpath).unwrap();
    let (l, _) = model(Arch::Lenet, [1, 12, 12], 10, 4);
    let lpath = dir.path().join("l.safetensors");
    l.save(&lpath).unwrap();
    let run = |model: &std::path::Path, methods: &str, out: &str| {
        let out = dir.path().join(out);
        let o = Command::new(env!("CARGO_BIN_EXE_oodcert"))
            .args(["lipschitz", "--model", model.to_str().unwrap()])
            .args(["--data", "digits8:test", "--norm", "linf", "--eps", "0.01"])
            .args(["--limit", "4", "--pgd-steps", "5", "--box", "--quiet"])
            .args(["--methods", methods, "--out", out.to_str().unwrap()])
            .env("OODCERT_NO_FETCH", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        let mut rd = csv::Reader::from_path(out.join("lipschitz.csv")).unwrap();
        let h = rd.headers().unwrap().clone();
        let at = |n: &str| h.iter().position(|x| x == n).unwrap();
        let (pgd, up) = (at("lower_pgd"), at("upper_local"));
        let rows: Vec<(f64, f64)> = rd
            .records()
            .map(|r| {
                let r = r.unwrap();
                (r[pgd].parse().unwrap(), r[up].parse().unwrap())
            })
            .collect();
        (rows, err)
    };
    let bad = Command::new(env!("CARGO_BIN_EXE_oodcert"))
        .args(["lipschitz", "--model", mpath.to_str().unwrap()])
        .args(["--data", "digits8:test", "--norm", "linf", "--eps", "0.01"])
        .args(["--methods", "pgd,jacobian", "--jacobian-max-work=-1"])
        .args(["--out", dir.path().join("bad").to_str().unwrap()])
        .env("OODCERT_NO_FETCH", "1")
        .output()
        .unwrap();
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains("--jacobian-max-work") && msg.trim().lines().count() == 1,
        "{msg}"
    );
    assert!(!dir.path().join("bad").exists());
    for (name, path) in [("mlp", &mpath), ("lenet", &lpath)] {
        let (fl, _) = run(path, "pgd,local", &format!("{name}-fl"));
        let (jb, err) = run(path, "pgd,local,jacobian", &format!("{name}-jb"));
        assert!(
            err.contains("Jacobian bound") && err.contains("rule"),
            "{err}"
        );
        assert_eq!(fl.len(), 4);
        for ((p, a), (_, b)) in fl.iter().zip(&jb) {
            assert!(p <= b, "{name}: PGD {p} > upper_local {b}");
            assert!(b <= a, "{name}: with jacobian {b} > FastLip only {a}");
        }
    }
}
