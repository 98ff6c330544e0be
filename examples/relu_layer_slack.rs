//! Where a local Lipschitz bound's slack sits, ReLU layer by ReLU layer (a what-if, not a
//! certificate). For each image: per ReLU node, its inputs, how many the certified boxes
//! (`local::pre_bounds` with CROWN, no width cap) leave sign-uncertain, their mean width, and the
//! mean width 2ε‖∇z_k(x₀)‖ they would have if the network were its linearisation at x₀; then
//! the local bound `local::fastlip_on` (FastLip heads, masked and scaled products, split bound:
//! the ℓ2 methods of `oodcert lipschitz`; not RecurJac, ℓ∞'s best) with the first k ReLU layers —
//! and the max-pools among them — fixed at the centre's values, k = 0, 1, …, all, and finally
//! with the logits fixed too, which is ‖∇S(x₀)‖. The drop from one k to the next is what that
//! layer's derivative uncertainty costs. For ℓ2 also the ranges that gradient ascent per neuron
//! sees in the ball for the ReLU layers of at most `SEEN_MAX` (256) inputs (inside the true ranges), and the
//! bound with those boxes in place of the certified ones: about what exact boxes would give.
//! Used in BENCHMARKS.md ("Issue 11's targets").
//!
//! Run: cargo run --release --example relu_layer_slack -- MODEL DATA NORM EPS [IMAGES]
//! e.g. `… -- lenet.safetensors mnist:test l2 0.1 3` (data from `OODCERT_DATA`).

use oodcert::bounds::Interval;
use oodcert::bounds::ball::{Ball, Norm};
use oodcert::bounds::ibp::Trace;
use oodcert::bounds::net::Node;
use oodcert::error::{Error, Result};
use oodcert::lipschitz::local::{Head, PreBounds, fastlip_on, pre_bounds};

#[path = "support/point_eval.rs"]
mod point_eval;
use point_eval::{backprop, forward_trace};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = || Error::BadInput("usage: relu_layer_slack MODEL DATA NORM EPS [IMAGES]".into());
    let (path, data) = (
        args.get(1).ok_or_else(usage)?,
        args.get(2).ok_or_else(usage)?,
    );
    let norm = match args.get(3).map(String::as_str) {
        Some("l2") => Norm::L2,
        Some("linf") => Norm::Linf,
        _ => return Err(usage()),
    };
    let eps: f64 = args.get(4).and_then(|s| s.parse().ok()).ok_or_else(usage)?;
    let images: usize = args
        .get(5)
        .map_or(Ok(3), |s| s.parse().map_err(|_| usage()))?;
    // SEEN_MAX: the widest ReLU layer whose seen ranges are searched (ascent per neuron).
    let seen_max: usize = std::env::var("SEEN_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let (net, xs) = point_eval::load(path, data)?;
    let bound = |t: &[Trace], logits: Interval| -> Result<f64> {
        Ok(fastlip_on(&net, t, logits, norm, 1.0, Head::Simplex)?.value)
    };
    println!(
        "image,relu_node,inputs,unstable,mean_width,mean_centre_linear_width,bound_with_layers_up_to_it_fixed"
    );
    for (img, x) in xs.into_iter().take(images).enumerate() {
        let ball = Ball::new(x.clone(), eps, norm, false)?;
        let (traces, logits) = pre_bounds(
            &net,
            &ball,
            PreBounds::Crown {
                max_dim: usize::MAX,
            },
        )?;
        // The inputs of every node at the centre (and the logits, last).
        let acts = forward_trace(&net.nodes, &x)?;
        println!("{img},none,,,,,{:.3}", bound(&traces, logits.clone())?);
        let mut fixed = traces.clone();
        for (i, n) in net.nodes.iter().enumerate() {
            if !(matches!(n, Node::Relu) || n.is_max_pool()) {
                continue;
            }
            fixed[i] = Trace::Leaf(Interval::point(&acts[i]));
            if !matches!(n, Node::Relu) {
                continue;
            }
            let b = traces[i].input();
            let m = b.lo.len();
            let unstable = (0..m).filter(|&k| b.lo[k] < 0.0 && b.hi[k] > 0.0).count();
            let width = (0..m).map(|k| b.hi[k] - b.lo[k]).sum::<f64>() / m.max(1) as f64;
            let linear = centre_linear_width(&net.nodes[..i], &acts, eps, norm);
            println!(
                "{img},{i},{m},{unstable},{width:.3},{linear:.3},{:.3}",
                bound(&fixed, logits.clone())?
            );
        }
        let at_centre = Interval::point(&acts[net.nodes.len()]);
        println!("{img},all+logits,,,,,{:.3}", bound(&fixed, at_centre)?);
        // What-if: the boxes of the ReLU layers of at most `seen_max` inputs replaced by the ranges
        // that ℓ_p-ball ascent per neuron sees (inside the true ranges: not a certificate).
        if norm == Norm::L2 {
            let mut seen = traces.clone();
            for (i, n) in net.nodes.iter().enumerate() {
                if !matches!(n, Node::Relu) || acts[i].len() > seen_max {
                    continue;
                }
                let m = acts[i].len();
                use rayon::prelude::*;
                let r: Vec<(f64, f64)> = (0..m)
                    .into_par_iter()
                    .map(|k| {
                        let lo = -ascend(&net.nodes[..i], &acts[0], eps, k, -1.0)?;
                        let hi = ascend(&net.nodes[..i], &acts[0], eps, k, 1.0)?;
                        Ok((lo, hi))
                    })
                    .collect::<Result<_>>()?;
                let b = traces[i].input();
                let lo: Vec<f64> = r.iter().map(|p| p.0).collect();
                let hi: Vec<f64> = r.iter().map(|p| p.1).collect();
                let un = (0..m).filter(|&k| lo[k] < 0.0 && hi[k] > 0.0).count();
                let w = (0..m).map(|k| hi[k] - lo[k]).sum::<f64>() / m as f64;
                let wb = (0..m).map(|k| b.hi[k] - b.lo[k]).sum::<f64>() / m as f64;
                println!("{img},seen@{i},{m},{un},{w:.3} (certified {wb:.3}),,");
                seen[i] = Trace::Leaf(Interval::new(lo, hi)?);
            }
            println!(
                "{img},seen_small_layers,,,,,{:.3}",
                bound(&seen, logits.clone())?
            );
        }
    }
    Ok(())
}

/// The largest s·z_k over the ℓ2 ball B(x0, eps) that 40 steps of normalised gradient ascent
/// from x0 find (a point of the ball: a lower bound on the true maximum).
fn ascend(nodes: &[Node], x0: &[f64], eps: f64, k: usize, s: f64) -> Result<f64> {
    let mut x = x0.to_vec();
    let mut best = f64::NEG_INFINITY;
    for step in 0..40 {
        let acts = forward_trace(nodes, &x)?;
        let out = &acts[nodes.len()];
        best = best.max(s * out[k]);
        let mut g = vec![0.0; out.len()];
        g[k] = s;
        let g = backprop(nodes, &acts, nodes.len(), g);
        let gn = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        if gn == 0.0 {
            break;
        }
        let lr = eps * if step < 20 { 0.5 } else { 0.1 };
        for (xi, gi) in x.iter_mut().zip(&g) {
            *xi += lr * gi / gn;
        }
        let dn = x
            .iter()
            .zip(x0)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt();
        if dn > eps {
            for (xi, ci) in x.iter_mut().zip(x0) {
                *xi = ci + (*xi - ci) * eps / dn;
            }
        }
    }
    Ok(best)
}

/// The mean over the outputs of `nodes` of 2ε‖∇z_k(x₀)‖ (dual norm of the ball): the width each
/// would have if the network were its linearisation at the centre (ReLU patterns and max-pool
/// selections of x₀) — what remains of a box once every flip is accounted for at no cost.
fn centre_linear_width(nodes: &[Node], acts: &[Vec<f64>], eps: f64, norm: Norm) -> f64 {
    use rayon::prelude::*;
    let m = acts[nodes.len()].len();
    let total: f64 = (0..m)
        .into_par_iter()
        .map(|k| {
            let mut e = vec![0.0; m];
            e[k] = 1.0;
            let g = backprop(nodes, acts, nodes.len(), e);
            2.0 * eps * norm.dual_norm_up(&g.iter().map(|v| v.abs()).collect::<Vec<_>>())
        })
        .sum();
    total / m.max(1) as f64
}
