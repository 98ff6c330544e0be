//! How loose are the certified pre-activation boxes of a ReLU network over a ball? For each ReLU
//! node: how many of its inputs the CROWN boxes (`bounds::crown::crown_trace`, as `oodcert
//! lipschitz --bounds crown` uses them, without the `--crown-max-dim` cap) leave sign-uncertain,
//! how many are *seen* to change sign at sampled points of the ball (a lower bound on the truly
//! unstable ones), and the width of the certified box over the sampled range (median and 90th
//! percentile: an upper bound on the looseness, since sampling only reaches inside the true
//! range). Points: vertices of the ball's bounding box (∩ [0, 1] with `box`) and uniform points in
//! it; ℓ∞ only (the box is the ball). Used in BENCHMARKS.md ("Issue 11's targets").
//!
//! Run: cargo run --release --example preactivation_boxes -- MODEL DATA EPS [box] [IMAGES] [SAMPLES]
//! e.g. `… -- lenet.safetensors mnist:test 0.005 box 2 3000` (data from `OODCERT_DATA`).

use oodcert::bounds::ball::{Ball, Norm};
use oodcert::bounds::ibp::Trace;
use oodcert::bounds::net::{Net, Node, forward_nodes};
use oodcert::error::{Error, Result};
use oodcert::model::{Classifier, Model};
use rand::{Rng, SeedableRng};

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: Option<T>) -> Result<T> {
    match args.get(i) {
        Some(s) => s
            .parse()
            .map_err(|_| Error::BadInput(format!("argument {i}: cannot parse \"{s}\""))),
        None => default.ok_or_else(|| {
            Error::BadInput(
                "usage: preactivation_boxes MODEL DATA EPS [box] [IMAGES] [SAMPLES]".into(),
            )
        }),
    }
}

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().collect();
    let unit_box = args.iter().any(|a| a == "box");
    args.retain(|a| a != "box");
    let (model_path, data): (String, String) = (arg(&args, 1, None)?, arg(&args, 2, None)?);
    let eps: f64 = arg(&args, 3, None)?;
    let (images, samples): (usize, usize) = (arg(&args, 4, Some(2))?, arg(&args, 5, Some(3000))?);
    let model = Model::load_energy_of_as(
        &model_path,
        &candle_core::Device::Cpu,
        oodcert::score::ScoreKind::Energy,
        "--score",
        candle_core::DType::F64,
    )?;
    let net = Net::from_model(&model)?;
    let shape = model.spec().input_shape;
    let ds = oodcert::data::load_as(&data, &oodcert::data::default_data_dir(), shape)?;
    let d = shape.iter().product::<usize>();
    let relus: Vec<usize> = (0..net.nodes.len())
        .filter(|&i| matches!(net.nodes[i], Node::Relu))
        .collect();
    println!(
        "image,node,inputs,crown_unstable,sampled_unstable,width_ratio_median,width_ratio_p90"
    );
    for img in 0..images.min(ds.labels.len()) {
        let x: Vec<f64> = ds.images[img * d..(img + 1) * d]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let ball = Ball::new(x, eps, Norm::Linf, unit_box)?;
        let (traces, _) = oodcert::bounds::crown::crown_trace(&net.nodes, &ball, usize::MAX)?;
        let cube = ball.to_box();
        // Sampled range [lo, hi] of every ReLU node's input.
        let mut ranges: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(img as u64);
        for s in 0..samples {
            let mut cur: Vec<f64> = (0..d)
                .map(|i| {
                    let t: f64 = if s % 2 == 0 {
                        f64::from(u8::from(rng.random::<bool>()))
                    } else {
                        rng.random()
                    };
                    cube.lo[i] + t * (cube.hi[i] - cube.lo[i])
                })
                .collect();
            let mut k = 0;
            for (i, node) in net.nodes.iter().enumerate() {
                if relus.contains(&i) {
                    if ranges.len() == k {
                        ranges.push((cur.clone(), cur.clone()));
                    }
                    let (lo, hi) = &mut ranges[k];
                    for (j, &v) in cur.iter().enumerate() {
                        lo[j] = lo[j].min(v);
                        hi[j] = hi[j].max(v);
                    }
                    k += 1;
                }
                cur = forward_nodes(std::slice::from_ref(node), cur)?;
            }
        }
        for (&i, (lo, hi)) in relus.iter().zip(&ranges) {
            let Trace::Leaf(b) = &traces[i] else { continue };
            let n = b.lo.len();
            let unstable =
                |l: &[f64], h: &[f64]| (0..n).filter(|&j| l[j] < 0.0 && h[j] > 0.0).count();
            let mut ratios: Vec<f64> = (0..n)
                .map(|j| (b.hi[j] - b.lo[j]) / (hi[j] - lo[j]).max(1e-12))
                .collect();
            ratios.sort_by(f64::total_cmp);
            println!(
                "{img},{i},{n},{},{},{:.3},{:.3}",
                unstable(&b.lo, &b.hi),
                unstable(lo, hi),
                ratios[n / 2],
                ratios[n * 9 / 10]
            );
        }
    }
    Ok(())
}
