//! How loose are the certified pre-activation boxes of a ReLU network over a ball, and how much
//! of a local Lipschitz bound's slack do they cause? For each ReLU node: how many of its inputs
//! the CROWN boxes (`bounds::crown::crown_trace`, as `oodcert lipschitz --bounds crown` uses them,
//! without the `--crown-max-dim` cap) leave sign-uncertain, how many are *seen* to change sign in
//! the ball, and the summed widths of both. "Seen" ranges come from sampled points (vertices and
//! uniform points of the ball's box) widened by sign-gradient ascent per neuron and direction:
//! points of the ball, so they lie inside the true ranges. Then RecurJac's bound on the certified
//! boxes, and — not a certificate, a what-if — on the same boxes with the ReLU inputs after the
//! first ReLU layer and the logits replaced by the seen ranges: about what exact boxes would give.
//! ℓ∞ only (the box is the ball, ∩ [0, 1] with `box`); Affine, ReLU and max-pool nodes. Used in
//! BENCHMARKS.md ("Issue 11's targets"). `OODCERT_ALPHA_ITERS=N` takes RecurJac's certified boxes
//! from α-CROWN with N steps (`--alpha-iters N`) instead of CROWN.
//!
//! Run: cargo run --release --example preactivation_boxes -- MODEL DATA EPS [box] [IMAGES] [SAMPLES]
//! e.g. `… -- lenet.safetensors mnist:test 0.005 box 2 3000` (data from `OODCERT_DATA`).

use oodcert::bounds::ball::{Ball, Norm};
use oodcert::bounds::ibp::Trace;
use oodcert::bounds::net::{Net, Node};
use oodcert::error::{Error, Result};
use rand::{Rng, SeedableRng};

#[path = "support/args.rs"]
mod args;
#[path = "support/point_eval.rs"]
mod point_eval;
use args::arg;
use point_eval::{backprop, forward_trace};

const USAGE: &str = "usage: preactivation_boxes MODEL DATA EPS [box] [IMAGES] [SAMPLES]";

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().collect();
    let unit_box = args.iter().any(|a| a == "box");
    args.retain(|a| a != "box");
    let (model_path, data): (String, String) =
        (arg(&args, 1, None, USAGE)?, arg(&args, 2, None, USAGE)?);
    let eps: f64 = arg(&args, 3, None, USAGE)?;
    let (images, samples): (usize, usize) = (
        arg(&args, 4, Some(2), USAGE)?,
        arg(&args, 5, Some(3000), USAGE)?,
    );
    if samples == 0 {
        return Err(Error::BadInput("SAMPLES must be at least 1".into()));
    }
    let (net, xs) = point_eval::load(&model_path, &data)?;
    let relus: Vec<usize> = (0..net.nodes.len())
        .filter(|&i| matches!(net.nodes[i], Node::Relu))
        .collect();
    let Some(&first_relu) = relus.first() else {
        return Err(Error::BadInput("the network has no ReLU".into()));
    };
    let mut what_if = Vec::new();
    println!("image,node,inputs,crown_unstable,seen_unstable,crown_width,seen_width");
    for (img, x) in xs.into_iter().take(images).enumerate() {
        let ball = Ball::new(x, eps, Norm::Linf, unit_box)?;
        let (traces, _) = oodcert::bounds::crown::crown_trace(&net.nodes, &ball, usize::MAX)?;
        let cube = ball.to_box();
        let mut seen = sampled_ranges(&net, &cube, samples, img as u64)?;
        ascent_ranges(&net, &cube, &ball.center, &mut seen)?;
        for &i in &relus {
            let Trace::Leaf(b) = &traces[i] else { continue };
            let (lo, hi) = &seen[i];
            let unstable = |l: &[f64], h: &[f64]| {
                l.iter()
                    .zip(h)
                    .filter(|(l, h)| **l < 0.0 && **h > 0.0)
                    .count()
            };
            let width = |l: &[f64], h: &[f64]| l.iter().zip(h).map(|(l, h)| h - l).sum::<f64>();
            println!(
                "{img},{i},{},{},{},{:.3},{:.3}",
                lo.len(),
                unstable(&b.lo, &b.hi),
                unstable(lo, hi),
                width(&b.lo, &b.hi),
                width(lo, hi)
            );
        }
        what_if.push(what_if_recurjac(&net, &ball, &seen, first_relu)?);
    }
    // Not certificates: RecurJac on the certified boxes, and on the same boxes with every ReLU
    // input after the first ReLU layer (and the logits) replaced by its seen range.
    println!("image,recurjac_certified,recurjac_seen_relu_boxes");
    for (img, (a, b)) in what_if.iter().enumerate() {
        println!("{img},{a:.2},{b:.2}");
    }
    Ok(())
}

/// The range of every node's input (and of the logits, last) over `samples` points of the box:
/// vertices and uniform points, alternately.
fn sampled_ranges(
    net: &Net,
    cube: &oodcert::bounds::Interval,
    samples: usize,
    seed: u64,
) -> Result<Vec<(Vec<f64>, Vec<f64>)>> {
    let mut ranges: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for s in 0..samples {
        let x: Vec<f64> = (0..cube.lo.len())
            .map(|i| {
                let t: f64 = if s % 2 == 0 {
                    f64::from(u8::from(rng.random::<bool>()))
                } else {
                    rng.random()
                };
                cube.lo[i] + t * (cube.hi[i] - cube.lo[i])
            })
            .collect();
        for (k, a) in forward_trace(&net.nodes, &x)?.into_iter().enumerate() {
            if ranges.len() == k {
                ranges.push((a.clone(), a));
                continue;
            }
            let (lo, hi) = &mut ranges[k];
            for (j, v) in a.into_iter().enumerate() {
                lo[j] = lo[j].min(v);
                hi[j] = hi[j].max(v);
            }
        }
    }
    Ok(ranges)
}

/// RecurJac's value on the certified boxes, and with the boxes of the ReLU inputs after
/// `first_relu` and of the logits replaced by `seen`.
fn what_if_recurjac(
    net: &Net,
    ball: &Ball,
    seen: &[(Vec<f64>, Vec<f64>)],
    first_relu: usize,
) -> Result<(f64, f64)> {
    use oodcert::bounds::Interval;
    use oodcert::lipschitz::local::{PreBounds, pre_bounds};
    use oodcert::lipschitz::recurjac::recurjac_on;
    let iters = match std::env::var("OODCERT_ALPHA_ITERS") {
        Ok(v) => v.parse().map_err(|_| {
            Error::BadInput(format!("OODCERT_ALPHA_ITERS must be a count, got {v:?}"))
        })?,
        Err(_) => 0,
    };
    let max_dim = usize::MAX;
    let pre = if iters > 0 {
        PreBounds::AlphaCrown { max_dim, iters }
    } else {
        PreBounds::Crown { max_dim }
    };
    let (traces, logits) = pre_bounds(net, ball, pre)?;
    let certified = recurjac_on(net, &traces, logits, Norm::Linf, 1.0, 1e10)?.value;
    let mut t = traces;
    for (i, tr) in t.iter_mut().enumerate().skip(first_relu + 1) {
        if matches!(net.nodes[i], Node::Relu) {
            let (lo, hi) = &seen[i];
            *tr = Trace::Leaf(Interval::new(lo.clone(), hi.clone())?);
        }
    }
    let (lo, hi) = &seen[net.nodes.len()];
    let logits = Interval::new(lo.clone(), hi.clone())?;
    Ok((
        certified,
        recurjac_on(net, &t, logits, Norm::Linf, 1.0, 1e10)?.value,
    ))
}

/// Widens `ranges` at every ReLU input and at the logits by sign-gradient
/// ascent per neuron and direction from x0 over the box `cube` (vertices; a lower bound on the
/// true range, usually much closer to it than random points).
fn ascent_ranges(
    net: &Net,
    cube: &oodcert::bounds::Interval,
    x0: &[f64],
    ranges: &mut [(Vec<f64>, Vec<f64>)],
) -> Result<()> {
    use rayon::prelude::*;
    let nodes = &net.nodes;
    let mut targets: Vec<usize> = (0..nodes.len())
        .filter(|&i| matches!(nodes[i], Node::Relu))
        .collect();
    targets.push(nodes.len());
    for t in targets {
        let n = ranges[t].0.len();
        let found: Vec<(usize, f64)> = (0..2 * n)
            .into_par_iter()
            .map(|q| -> Result<(usize, f64)> {
                let (j, s) = (q / 2, if q % 2 == 0 { 1.0 } else { -1.0 });
                let mut x = x0.to_vec();
                let mut best = f64::NEG_INFINITY;
                for _ in 0..8 {
                    let acts = forward_trace(&nodes[..t], &x)?;
                    best = best.max(s * acts[t][j]);
                    let mut e = vec![0.0; n];
                    e[j] = s;
                    let g = backprop(nodes, &acts, t, e);
                    let next: Vec<f64> = (0..x.len())
                        .map(|i| {
                            if g[i] > 0.0 {
                                cube.hi[i]
                            } else if g[i] < 0.0 {
                                cube.lo[i]
                            } else {
                                x[i]
                            }
                        })
                        .collect();
                    if next == x {
                        break;
                    }
                    x = next;
                }
                let acts = forward_trace(&nodes[..t], &x)?;
                Ok((q, best.max(s * acts[t][j])))
            })
            .collect::<Result<_>>()?;
        let (lo, hi) = &mut ranges[t];
        for (q, v) in found {
            let j = q / 2;
            if q.is_multiple_of(2) {
                hi[j] = hi[j].max(v);
            } else {
                lo[j] = lo[j].min(-v);
            }
        }
    }
    Ok(())
}
