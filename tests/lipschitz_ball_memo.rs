//! The per-sample ball memo (`lipschitz::ball_memo`) gives exactly what each bound gives when
//! computed on its own: E(r) as `f32_margin::ball_error`, the energy bounds as
//! `radius::energy_bounds_{ibp,crown}`, the trace as `local::pre_bounds`, for a detector that
//! shares the bound network and for one that does not; `keep_energy_bounds` stores them only while
//! the radius's trace is at hand.

mod lipschitz_common;
use lipschitz_common::*;

use oodcert::bounds::f32_detector::F32Detector;
use oodcert::bounds::{Ball, Net, Norm};
use oodcert::lipschitz::ball_memo::BallMemo;
use oodcert::lipschitz::f32_margin::ball_error;
use oodcert::lipschitz::local::{PreBounds, pre_bounds};
use oodcert::lipschitz::radius::{energy_bounds_crown, energy_bounds_ibp, energy_bounds_with};
use oodcert::model::Arch;
use oodcert::score::ScoreKind;

fn check(net: &Net, det: &F32Detector, shares: bool, norm: Norm, pre: PreBounds) {
    let mut g = rng(7);
    let x = random_image(net.input_dim(), &mut g);
    let base = Ball::new(x, 0.05, norm, true).unwrap();
    let memo = BallMemo::new(net, det, shares, &base, pre, 1.0);
    // Radii revisited out of order, as the two radius searches do.
    for r in [0.05, 0.1, 0.2, 0.1, 0.05, 0.4, 0.2] {
        let ball = base.with_eps(r);
        let (t, l) = pre_bounds(net, &ball, pre).unwrap();
        // Keeping the energy bounds of a radius whose trace is not at hand computes nothing…
        if memo.has_energy_bounds(r) {
            memo.keep_energy_bounds(0.3).unwrap();
            assert!(!memo.has_energy_bounds(0.3), "kept without a trace at hand");
        }
        let m = memo.trace(r).unwrap();
        // …and with it at hand stores them (checked against the bound computed alone below).
        memo.keep_energy_bounds(r).unwrap();
        assert!(memo.has_energy_bounds(r), "not kept at r = {r}");
        assert_eq!(m.1, l, "logit box at r = {r}");
        assert_eq!(m.0.len(), t.len());
        for (a, b) in m.0.iter().zip(&t) {
            assert_eq!(a.input(), b.input(), "node box at r = {r}");
        }
        let e = ball_error(det, &ball, pre).unwrap();
        assert_eq!(
            memo.error(r).unwrap().to_bits(),
            e.to_bits(),
            "E at r = {r}"
        );
        let want = match pre {
            PreBounds::Ibp => energy_bounds_ibp(net, &ball, 1.0).unwrap(),
            PreBounds::Crown { max_dim } => energy_bounds_crown(net, &ball, 1.0, max_dim).unwrap(),
            pre => energy_bounds_with(net, &ball, 1.0, pre).unwrap(),
        };
        let got = memo.energy_bounds(r).unwrap();
        assert_eq!(got.0.to_bits(), want.0.to_bits(), "S_lo at r = {r}");
        assert_eq!(got.1.to_bits(), want.1.to_bits(), "S_hi at r = {r}");
    }
}

#[test]
fn memo_equals_each_bound_computed_alone() {
    let (m, net) = model(Arch::Lenet, [1, 14, 14], 4, 3);
    let det = F32Detector::new(&m, ScoreKind::Energy, 1.0).unwrap();
    assert!(
        det.net == net,
        "the energy detector's network is the bound network"
    );
    for norm in [Norm::L2, Norm::Linf] {
        for pre in [PreBounds::Ibp, PreBounds::Crown { max_dim: 4096 }] {
            check(&net, &det, true, norm, pre);
        }
    }
}

#[test]
fn memo_reads_the_detectors_own_trace_when_the_networks_differ() {
    let (_, net) = mlp([1, 6, 6], &[12, 8], 3, 5);
    let (other, _) = mlp([1, 6, 6], &[12, 8], 3, 6);
    let det = F32Detector::new(&other, ScoreKind::Energy, 1.0).unwrap();
    assert!(det.net != net, "a detector with a network of its own");
    check(
        &net,
        &det,
        false,
        Norm::L2,
        PreBounds::Crown { max_dim: 4096 },
    );
}
