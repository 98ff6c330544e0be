//! Certified radii and bounds on S: no sampled or PGD point leaves the IBP bounds of S, and no
//! PGD attack on S moves a sample across γ within its certified radius (Lipschitz route and
//! bound-propagation route).

mod lipschitz_common;
use lipschitz_common::*;

use oodcert::bounds::{Ball, Norm};
use oodcert::lipschitz::empirical::{GradOracle, PgdConfig, extreme_score_by_pgd, sample_ball};
use oodcert::lipschitz::global_bound;
use oodcert::lipschitz::radius::{
    bound_prop_certify, energy_bounds_ibp, is_ood, lipschitz_certify, lipschitz_radius,
    search_radius_from,
};
use oodcert::model::Arch;

#[test]
fn lipschitz_radius_formula() {
    let r = lipschitz_radius(1.0, 2.0, 10.0);
    assert!(r < 0.5 && r > 0.5 - 1e-15, "{r}");
    assert_eq!(lipschitz_radius(1.0, 2.0, 0.1), 0.1);
    assert_eq!(lipschitz_radius(0.0, 2.0, 0.1), 0.0);
    assert_eq!(lipschitz_radius(1.0, f64::INFINITY, 0.1), 0.0);
}

#[test]
fn energy_bounds_contain_sampled_and_attacked_scores() {
    for (arch, shape) in [
        (
            Arch::Mlp {
                hidden: vec![12, 8],
            },
            [1, 4, 4],
        ),
        (Arch::Lenet, [1, 12, 12]),
    ] {
        let (m, net) = model(arch, shape, 4, 21);
        let oracle = GradOracle {
            model: &m,
            temperature: 1.0,
            batch: 64,
        };
        let mut r = rng(22);
        let d: usize = shape.iter().product();
        for norm in [Norm::L2, Norm::Linf] {
            for eps in [0.01, 0.1] {
                let x = random_image(d, &mut r);
                let ball = Ball::new(x, eps, norm, true).unwrap();
                let (lo, hi) = energy_bounds_ibp(&net, &ball, 1.0).unwrap();
                let pts: Vec<Vec<f64>> = (0..200).map(|_| sample_ball(&ball, &mut r)).collect();
                for (s, _) in oracle.score_grads(&pts).unwrap() {
                    assert!(lo <= s && s <= hi, "{s} outside [{lo}, {hi}]");
                }
                assert_pgd_extremes_of_s_inside(&oracle, &ball, 20, (lo, hi), &mut r, "IBP");
            }
        }
    }
}

#[test]
fn pgd_on_s_never_crosses_gamma_inside_certified_radii() {
    let (m, net) = mlp([1, 4, 4], &[16, 12], 3, 31);
    let oracle = GradOracle {
        model: &m,
        temperature: 1.0,
        batch: 64,
    };
    let mut r = rng(32);
    let xs: Vec<Vec<f64>> = (0..24).map(|_| random_image(16, &mut r)).collect();
    let scores: Vec<f64> = oracle
        .score_grads(&xs)
        .unwrap()
        .iter()
        .map(|(s, _)| *s)
        .collect();
    let mut sorted = scores.clone();
    sorted.sort_by(f64::total_cmp);
    let gamma = sorted[sorted.len() / 2];
    let mut certified = [0usize; 2];
    let mut beyond_start = 0usize;
    for norm in [Norm::L2, Norm::Linf] {
        let global = global_bound(&net, norm).unwrap().value;
        for (x, &s) in xs.iter().zip(&scores) {
            let base = Ball::new(x.clone(), 0.0, norm, false).unwrap();
            // Searched upward from a small ε to the pixel box's diameter (√16 = 4 for ℓ2, 1 for
            // ℓ∞), as `oodcert lipschitz` does.
            let (start, r_max) = match norm {
                Norm::L2 => (0.02, 4.0),
                Norm::Linf => (0.005, 1.0),
            };
            let r_lip = search_radius_from(
                |e| lipschitz_certify(&net, &base.with_eps(e), 1.0, s, gamma, global),
                start,
                r_max,
                14,
            )
            .unwrap();
            let r_bp = search_radius_from(
                |e| bound_prop_certify(&net, &base.with_eps(e), 1.0, s, gamma),
                start,
                r_max,
                14,
            )
            .unwrap();
            for rad in [r_lip, r_bp] {
                beyond_start += usize::from(rad > start);
            }
            for (route, rad) in [(0, r_lip), (1, r_bp)] {
                if rad <= 0.0 {
                    continue;
                }
                certified[route] += 1;
                // Attack just inside the radius (the Lipschitz certificate is for the open ball).
                let ball = base.with_eps(rad * (1.0 - 1e-9));
                let cfg = PgdConfig {
                    steps: 30,
                    restarts: 4,
                    step_frac: 0.1,
                    ..Default::default()
                };
                let ood = is_ood(s, gamma);
                // An OOD sample is attacked towards low S, an ID one towards high S.
                let worst = extreme_score_by_pgd(&oracle, &ball, !ood, &cfg, &mut r).unwrap();
                assert_eq!(
                    is_ood(worst, gamma),
                    ood,
                    "{norm:?} route {route}: S {s} -> {worst} crosses γ {gamma} within radius {rad}"
                );
            }
        }
    }
    // The certificates are not vacuous on this model, and the search goes beyond its start.
    assert!(
        certified[0] >= 20 && certified[1] >= 10 && beyond_start >= 10,
        "certified counts {certified:?}, {beyond_start} beyond the start"
    );
}
