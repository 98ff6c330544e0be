//! CROWN soundness and usefulness: sampled and PGD points never leave the CROWN logit box or
//! the CROWN bounds on S; CROWN boxes are tighter than IBP on ℓ2 balls; FastLip with CROWN
//! pre-activation bounds stays above every empirical lower bound and below the IBP version.

mod lipschitz_common;
use lipschitz_common::*;

use oodcert::bounds::crown::crown_trace;
use oodcert::bounds::ibp::ibp;
use oodcert::bounds::{Ball, Norm};
use oodcert::lipschitz::empirical::{
    GradOracle, PgdConfig, extreme_score_by_pgd, lower_by_pgd, lower_by_sampling, sample_ball,
};
use oodcert::lipschitz::local::{Head, PreBounds, fastlip_with};
use oodcert::lipschitz::radius::{energy_bounds_crown, energy_bounds_ibp};
use oodcert::model::Arch;

fn width(b: &oodcert::bounds::Interval) -> f64 {
    b.lo.iter().zip(&b.hi).map(|(l, h)| h - l).sum()
}

#[test]
fn crown_boxes_contain_samples_and_beat_ibp() {
    for (arch, shape, max_dim) in [
        (
            Arch::Mlp {
                hidden: vec![20, 16],
            },
            [1, 4, 4],
            10_000,
        ),
        (Arch::Lenet, [1, 12, 12], 10_000),
        (Arch::Resnet18, [3, 8, 8], 64),
    ] {
        let (m, net) = model(arch.clone(), shape, 4, 51);
        let oracle = GradOracle {
            model: &m,
            temperature: 1.0,
            batch: 64,
        };
        let d: usize = shape.iter().product();
        let mut r = rng(52);
        let big = matches!(arch, Arch::Resnet18);
        let (n_pts, steps) = if big { (10, 5) } else { (100, 20) };
        let norms: &[Norm] = if big {
            &[Norm::Linf]
        } else {
            &[Norm::L2, Norm::Linf]
        };
        for &norm in norms {
            let x = random_image(d, &mut r);
            let eps = if norm == Norm::L2 { 0.2 } else { 0.02 };
            let ball = Ball::new(x, eps, norm, true).unwrap();
            let (_, z_ibp) = ibp(&net.nodes, ball.to_box()).unwrap();
            let (_, z_crown) = crown_trace(&net.nodes, &ball, max_dim).unwrap();
            let pts: Vec<Vec<f64>> = (0..n_pts).map(|_| sample_ball(&ball, &mut r)).collect();
            for p in &pts {
                let z = net.forward(p).unwrap();
                assert!(
                    z_crown.contains(&z),
                    "{arch:?} {norm:?}: logits {z:?} outside CROWN box {z_crown:?}"
                );
            }
            if norm == Norm::L2 && !matches!(arch, Arch::Resnet18) {
                assert!(
                    width(&z_crown) < 0.9 * width(&z_ibp),
                    "{arch:?}: CROWN {} vs IBP {}",
                    width(&z_crown),
                    width(&z_ibp)
                );
            }
            let (lo, hi) = energy_bounds_crown(&net, &ball, 1.0, max_dim).unwrap();
            let (ilo, ihi) = energy_bounds_ibp(&net, &ball, 1.0).unwrap();
            assert!(lo >= ilo && hi <= ihi);
            let cfg = PgdConfig {
                steps,
                restarts: 3,
                ..Default::default()
            };
            let smax = extreme_score_by_pgd(&oracle, &ball, true, &cfg, &mut r).unwrap();
            let smin = extreme_score_by_pgd(&oracle, &ball, false, &cfg, &mut r).unwrap();
            assert!(
                lo <= smin && smax <= hi,
                "{arch:?} {norm:?}: PGD [{smin}, {smax}] outside CROWN [{lo}, {hi}]"
            );
        }
    }
}

#[test]
fn fastlip_with_crown_is_sound_and_tighter() {
    for (arch, shape) in [
        (
            Arch::Mlp {
                hidden: vec![20, 16],
            },
            [1, 4, 4],
        ),
        (Arch::Lenet, [1, 12, 12]),
    ] {
        let (m, net) = model(arch.clone(), shape, 4, 61);
        let oracle = GradOracle {
            model: &m,
            temperature: 1.0,
            batch: 64,
        };
        let d: usize = shape.iter().product();
        let mut r = rng(62);
        for norm in [Norm::L2, Norm::Linf] {
            for eps in [0.01, 0.1] {
                let x = random_image(d, &mut r);
                let ball = Ball::new(x, eps, norm, false).unwrap();
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
                let ibp_l = fastlip_with(&net, &ball, 1.0, Head::Simplex, PreBounds::Ibp)
                    .unwrap()
                    .value;
                let crown_l = fastlip_with(
                    &net,
                    &ball,
                    1.0,
                    Head::Simplex,
                    PreBounds::Crown { max_dim: 10_000 },
                )
                .unwrap()
                .value;
                assert!(
                    lo <= crown_l,
                    "{arch:?} {norm:?} {eps}: lower {lo} > CROWN-FastLip {crown_l}"
                );
                assert!(crown_l <= ibp_l, "{arch:?}: CROWN {crown_l} > IBP {ibp_l}");
            }
        }
    }
}
