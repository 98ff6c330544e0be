//! Soundness of the Lipschitz bounds: empirical lower ≤ certified local ≤ certified global on
//! random models and samples; brute force on tiny MLPs never exceeds the certified bound.

mod lipschitz_common;
use lipschitz_common::*;

use candle_core::Tensor;
use oodcert::bounds::{Ball, Norm};
use oodcert::lipschitz::empirical::{GradOracle, PgdConfig, lower_by_pgd, lower_by_sampling};
use oodcert::lipschitz::global::global_bound_with;
use oodcert::lipschitz::global_bound;
use oodcert::lipschitz::local::{Head, fastlip};
use oodcert::lipschitz::operator_norm::NormBudget;
use oodcert::model::{Arch, Classifier};

#[test]
fn host_network_matches_the_candle_model() {
    let mut r = rng(1);
    for (arch, shape) in [
        (Arch::Mlp { hidden: vec![7, 5] }, [2, 3, 3]),
        (Arch::Lenet, [1, 12, 12]),
        (Arch::Lenet, [3, 13, 14]),
        (Arch::Resnet18, [3, 8, 8]),
    ] {
        let (m, net) = model(arch.clone(), shape, 4, 7);
        let d: usize = shape.iter().product();
        let x = random_image(d, &mut r);
        let t = Tensor::from_vec(x.clone(), (1, shape[0], shape[1], shape[2]), m.device()).unwrap();
        let want = m
            .logits(&t)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let got = net.forward(&x).unwrap();
        for (a, b) in want.iter().zip(&got) {
            assert!(
                (a - b).abs() < 1e-9 * (1.0 + a.abs()),
                "{arch:?}: {want:?} vs {got:?}"
            );
        }
    }
}

fn check_chain(arch: Arch, shape: [usize; 3], eps_list: &[f64], samples: usize, seed: u64) {
    let (m, net) = model(arch.clone(), shape, 5, seed);
    let oracle = GradOracle {
        model: &m,
        temperature: 1.0,
        batch: 64,
    };
    let d: usize = shape.iter().product();
    let mut r = rng(seed + 100);
    for norm in [Norm::L2, Norm::Linf] {
        // ResNet-18: a smaller work budget for the convolution norms keeps the test fast (the
        // bound stays sound, only looser).
        let budget = if matches!(arch, Arch::Resnet18) {
            NormBudget {
                reshape_max_gram: 400,
                unroll_max_side: 600,
            }
        } else {
            NormBudget::default()
        };
        let global = global_bound_with(&net, norm, budget).unwrap();
        assert!(
            global.folded <= global.naive * (1.0 + 1e-9),
            "{arch:?} {norm:?}: folded {} > naive {}",
            global.folded,
            global.naive
        );
        for s in 0..samples {
            let x = random_image(d, &mut r);
            for &eps in eps_list {
                let boxes: &[bool] = if matches!(arch, Arch::Resnet18) {
                    &[true]
                } else {
                    &[false, true]
                };
                for &unit_box in boxes {
                    let ball = Ball::new(x.clone(), eps, norm, unit_box).unwrap();
                    let lo_s = lower_by_sampling(&oracle, &ball, 24, &mut r).unwrap();
                    let cfg = PgdConfig {
                        steps: 6,
                        restarts: 2,
                        ..Default::default()
                    };
                    let lo_p = lower_by_pgd(&oracle, &ball, &cfg, &mut r).unwrap();
                    let lo = lo_s.max(lo_p);
                    let heads: &[Head] = if matches!(arch, Arch::Resnet18) {
                        &[Head::Simplex]
                    } else {
                        &[Head::Box, Head::Simplex]
                    };
                    for &head in heads {
                        let t = if s % 2 == 0 { 1.0 } else { 2.5 };
                        let local = fastlip(&net, &ball, t, head).unwrap();
                        if t == 1.0 {
                            assert!(
                                lo <= local.value,
                                "{arch:?} {norm:?} eps={eps} box={unit_box} {head:?}: lower {lo} > local {}",
                                local.value
                            );
                        }
                        assert!(local.value <= local.box_value);
                        // Local and global both bound the same constant; when the ball is large the
                        // local bound may exceed the global one (both remain sound).
                        assert!(
                            lo <= global.value,
                            "{arch:?} {norm:?}: lower {lo} > global {}",
                            global.value
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn mlp_lower_local_global_chain() {
    check_chain(
        Arch::Mlp {
            hidden: vec![16, 12],
        },
        [1, 4, 4],
        &[0.0, 0.01, 0.1, 1.0],
        4,
        11,
    );
}

#[test]
fn lenet_lower_local_global_chain() {
    check_chain(Arch::Lenet, [1, 12, 12], &[0.003, 0.05], 2, 12);
}

#[test]
fn resnet18_lower_local_global_chain() {
    check_chain(Arch::Resnet18, [3, 8, 8], &[0.001], 1, 13);
}

#[test]
fn local_bound_at_radius_zero_is_the_gradient_norm() {
    // On a point every ReLU is stable (generically), so FastLip gives ‖∇S(x)‖_q up to rounding.
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
        let l = fastlip(&net, &ball, 1.0, Head::Simplex).unwrap().value;
        assert!(
            g <= l && l <= g * (1.0 + 1e-9),
            "{norm:?}: grad {g} local {l}"
        );
    }
}

/// Tiny MLPs (2 inputs): a 300×300 grid of the ball's bounding square (points in the ball kept)
/// and 20 000 random pairs: no gradient norm and no difference quotient |S(a) − S(b)|/‖a − b‖
/// exceeds the certified local bound.
#[test]
fn tiny_mlp_brute_force_never_exceeds_the_local_bound() {
    for seed in 0..6u64 {
        let (m, net) = mlp([1, 1, 2], &[4, 3], 3, 40 + seed);
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
                let local = fastlip(&net, &ball, 1.0, Head::Simplex).unwrap().value;
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
                let max_grad = sg
                    .iter()
                    .map(|(_, g)| norm.dual_norm(g))
                    .fold(0.0, f64::max);
                assert!(
                    max_grad <= local,
                    "seed {seed} {norm:?} eps {eps}: grid grad {max_grad} > local {local}"
                );
                // Difference quotients between random pairs of grid points.
                let mut worst = 0.0f64;
                for _ in 0..20_000 {
                    use rand::Rng;
                    let a = r.random_range(0..pts.len());
                    let b = r.random_range(0..pts.len());
                    let dx: Vec<f64> = pts[a].iter().zip(&pts[b]).map(|(u, v)| u - v).collect();
                    let dist = norm.norm(&dx);
                    if dist > 1e-6 {
                        worst = worst.max((sg[a].0 - sg[b].0).abs() / dist);
                    }
                }
                assert!(
                    worst <= local * (1.0 + 1e-9),
                    "seed {seed} {norm:?} eps {eps}: quotient {worst} > local {local}"
                );
            }
        }
    }
}

#[test]
#[ignore = "timing probe"]
fn timing_probe() {
    let (_m, net) = model(Arch::Resnet18, [3, 8, 8], 5, 13);
    for norm in [Norm::L2, Norm::Linf] {
        let t = std::time::Instant::now();
        let g = global_bound(&net, norm).unwrap();
        eprintln!(
            "global {norm:?} {:?} naive {} folded {}",
            t.elapsed(),
            g.naive,
            g.folded
        );
    }
    let ball = Ball::new(vec![0.5; 192], 0.001, Norm::L2, false).unwrap();
    let t = std::time::Instant::now();
    let l = fastlip(&net, &ball, 1.0, Head::Simplex).unwrap();
    eprintln!("fastlip simplex {:?} {}", t.elapsed(), l.value);
    let t = std::time::Instant::now();
    let l = fastlip(&net, &ball, 1.0, Head::Box).unwrap();
    eprintln!("fastlip box {:?} {}", t.elapsed(), l.value);
    let t = std::time::Instant::now();
    let _ = oodcert::bounds::crown::crown_trace(&net.nodes, &ball, 64).unwrap();
    eprintln!("crown trace {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let _ = net.forward(&ball.center).unwrap();
    eprintln!("host forward {:?}", t.elapsed());
}

/// The gradient oracle's batches are sized by the forward activations per point
/// (`activation_len`, counted by hand here for a LeNet), fit the memory budget (a ResNet-18 at
/// 3×32×32 gets fewer than 256 points, an MLP keeps 256), and on a ResNet-18 the batch size
/// changes no score or gradient bit (not promised for every network: DenseNet-BC's gradients move
/// in their last bits with the batch, BENCHMARKS.md).
#[test]
fn gradient_batches_fit_the_memory_budget_and_leave_resnet_results_unchanged() {
    use oodcert::bounds::net::activation_len;
    use oodcert::lipschitz::empirical::{
        BYTES_PER_ACTIVATION, GRAD_MEMORY_BUDGET, batch_for_budget,
    };
    // LeNet on 1×12×12, 4 classes: normalisation 144; conv1 (pad 2) 6×12×12 = 864, ReLU 864,
    // pool 6×6×6 = 216; conv2 (5×5) 16×2×2 = 64, ReLU 64, pool 16; fc 120 + 120, 84 + 84, 4.
    let (_, lenet) = model(Arch::Lenet, [1, 12, 12], 4, 3);
    let want = 144 + 864 + 864 + 216 + 64 + 64 + 16 + 120 + 120 + 84 + 84 + 4;
    assert_eq!(activation_len(&lenet.nodes, 144).unwrap(), want);

    for len in [1usize, 1000, 1_600_000, 10_000_000, usize::MAX / 2] {
        for cap in [1usize, 64, 256] {
            let b = batch_for_budget(len, cap);
            assert!((1..=cap).contains(&b), "len {len} cap {cap}: batch {b}");
            let bytes = |n: usize| (n as u128) * (len as u128) * BYTES_PER_ACTIVATION as u128;
            assert!(
                b == 1 || bytes(b) <= GRAD_MEMORY_BUDGET as u128,
                "len {len}: {b} overflows"
            );
            assert!(
                b == cap || bytes(b + 1) > GRAD_MEMORY_BUDGET as u128,
                "len {len}: {b} too small"
            );
        }
    }

    let (mlp, _) = model(
        Arch::Mlp {
            hidden: vec![256, 256],
        },
        [1, 28, 28],
        10,
        4,
    );
    assert_eq!(GradOracle::new(&mlp, 1.0, 256).batch, 256);
    let (big, big_net) = model(Arch::Resnet18, [3, 32, 32], 10, 5);
    let len = activation_len(&big_net.nodes, 3 * 32 * 32).unwrap();
    assert!(
        len > 1_000_000,
        "ResNet-18 at 32×32 keeps {len} values per point"
    );
    let sized = GradOracle::new(&big, 1.0, 256);
    assert_eq!(sized.batch, batch_for_budget(len, 256));
    assert!(sized.batch < 256, "ResNet-18 batch {}", sized.batch);

    // Chunking never changes a result: one batch of 7 points against batches of 3 and of 1.
    let (res, _) = model(Arch::Resnet18, [3, 8, 8], 4, 6);
    let mut r = rng(7);
    let xs: Vec<Vec<f64>> = (0..7).map(|_| random_image(3 * 8 * 8, &mut r)).collect();
    let grads = |batch: usize| {
        GradOracle {
            model: &res,
            temperature: 1.5,
            batch,
        }
        .score_grads(&xs)
        .unwrap()
    };
    let whole = grads(7);
    assert_eq!(whole.len(), 7);
    assert_eq!(grads(3), whole);
    assert_eq!(grads(1), whole);
}
