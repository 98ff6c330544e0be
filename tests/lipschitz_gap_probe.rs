//! Probe (issue 11): where the LeNet ℓ2 gap between the certified local bound and PGD comes
//! from. Per image: unstable ReLUs and multi-candidate pool windows under `local::pre_bounds`;
//! ‖∇S(x₀)‖; the masked product and its prefix factors against the composed prefix norms at the
//! centre's activation pattern; and a lower bound of sup ‖J(D)ᵀp₀‖ over *independent* choices
//! of every ReLU derivative and pool selection the boxes allow (block-coordinate ascent), the
//! best any bound that treats the derivatives as independent can reach.
//!
//! `OODCERT_DATA=… OODCERT_PROBE_MODEL=lenet.safetensors cargo test --release --test
//! lipschitz_gap_probe -- --ignored --nocapture` (`OODCERT_PROBE_EPS`, `OODCERT_PROBE_NORM`).

use oodcert::bounds::max_pool::candidates;
use oodcert::bounds::{Ball, Net, Node, Norm, Trace};
use oodcert::lipschitz::local::{PreBounds, pre_bounds};
use oodcert::lipschitz::local_product::masked_product;
use oodcert::lipschitz::operator_norm::spectral_upper;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A per-node Jacobian choice: ReLU derivatives or the selected input of every pool window.
#[derive(Clone)]
enum Choice {
    None,
    Relu(Vec<f64>),
    Pool(Vec<Option<usize>>),
}

fn tangents(net: &Net, ch: &[Choice], u: &[f64]) -> Vec<Vec<f64>> {
    let mut t = vec![u.to_vec()];
    for (n, c) in net.nodes.iter().zip(ch) {
        let x = t.last().unwrap();
        let y = match (n, c) {
            (Node::Affine(a), _) => a.op.map().apply(x, false),
            (Node::Relu, Choice::Relu(d)) => x.iter().zip(d).map(|(a, b)| a * b).collect(),
            (_, Choice::Pool(s)) => s.iter().map(|s| s.map_or(0.0, |i| x[i])).collect(),
            _ => panic!("unsupported node"),
        };
        t.push(y);
    }
    t
}

/// Cotangents at every node input (index k) and the network output (index n).
fn cotangents(net: &Net, ch: &[Choice], q: &[f64], traces: &[Trace]) -> Vec<Vec<f64>> {
    let n = net.nodes.len();
    let mut c = vec![Vec::new(); n + 1];
    c[n] = q.to_vec();
    for k in (0..n).rev() {
        let g = &c[k + 1];
        c[k] = match (&net.nodes[k], &ch[k]) {
            (Node::Affine(a), _) => a.op.map().apply_t(g, false),
            (Node::Relu, Choice::Relu(d)) => g.iter().zip(d).map(|(a, b)| a * b).collect(),
            (_, Choice::Pool(s)) => {
                let mut v = vec![0.0; traces[k].input().len()];
                for (w, s) in s.iter().enumerate() {
                    if let Some(i) = s {
                        v[*i] += g[w];
                    }
                }
                v
            }
            _ => panic!("unsupported node"),
        };
    }
    c
}

fn norm2(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

#[test]
#[ignore = "probe on a trained model"]
fn probe_lenet_gap() {
    let Ok(path) = std::env::var("OODCERT_PROBE_MODEL") else {
        return;
    };
    let eps: f64 = std::env::var("OODCERT_PROBE_EPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.1);
    let norm = match std::env::var("OODCERT_PROBE_NORM").as_deref() {
        Ok("linf") => Norm::Linf,
        _ => Norm::L2,
    };
    let m = oodcert::model::Model::load(std::path::Path::new(&path), &candle_core::Device::Cpu)
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap();
    let net = Net::from_model(&m).unwrap();
    let root = oodcert::data::default_data_dir();
    let data = oodcert::data::load_as("mnist:test", &root, net.input_shape).unwrap();
    let n_in = net.input_dim();
    let signed = std::env::var_os("OODCERT_PROBE_SIGNED").is_some();
    for img in 0..5 {
        let x: Vec<f64> = data.image(img).iter().map(|v| *v as f64).collect();
        let ball = Ball::new(x.clone(), eps, norm, false).unwrap();
        let (traces, _) = pre_bounds(&net, &ball, PreBounds::Crown { max_dim: 4096 }).unwrap();
        // Free choices the boxes allow, and the centre's pattern.
        let (centre, _) =
            oodcert::bounds::ibp::ibp(&net.nodes, oodcert::bounds::Interval::point(&x)).unwrap();
        let mut c0 = Vec::new();
        #[allow(clippy::type_complexity)]
        let mut free: Vec<(usize, Vec<Vec<f64>>, Vec<Vec<usize>>)> = Vec::new();
        let mut counts = Vec::new();
        for (k, node) in net.nodes.iter().enumerate() {
            let b = traces[k].input();
            let z = &centre[k].input().lo;
            match node {
                Node::Relu => {
                    let d: Vec<f64> = z.iter().map(|v| if *v > 0.0 { 1.0 } else { 0.0 }).collect();
                    let f: Vec<Vec<f64>> = (0..b.len())
                        .map(|j| {
                            if b.lo[j] > 0.0 {
                                vec![1.0]
                            } else if b.hi[j] < 0.0 {
                                vec![0.0]
                            } else {
                                vec![0.0, 1.0]
                            }
                        })
                        .collect();
                    let unstable = f.iter().filter(|f| f.len() > 1).count();
                    let dead = f.iter().filter(|f| f == &&vec![0.0]).count();
                    counts.push(format!(
                        "relu{k}: {unstable} unstable, {dead} dead of {}",
                        b.len()
                    ));
                    c0.push(Choice::Relu(d));
                    free.push((k, f, Vec::new()));
                }
                n if n.is_max_pool() => {
                    let wins = n.pool_windows();
                    let sel: Vec<Option<usize>> = wins
                        .iter()
                        .map(|w| {
                            w.iter()
                                .copied()
                                .max_by(|a, b| z[*a].partial_cmp(&z[*b]).unwrap())
                        })
                        .collect();
                    let cands: Vec<Vec<usize>> = wins.iter().map(|w| candidates(b, w)).collect();
                    let multi = cands.iter().filter(|c| c.len() > 1).count();
                    counts.push(format!(
                        "pool{k}: {multi} of {} windows with >1 candidate",
                        wins.len()
                    ));
                    c0.push(Choice::Pool(sel));
                    free.push((k, Vec::new(), cands));
                }
                _ => c0.push(Choice::None),
            }
        }
        let logits = net.forward(&x).unwrap();
        let mx = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = logits.iter().map(|l| (l - mx).exp()).collect();
        let s: f64 = e.iter().sum();
        let q: Vec<f64> = e.iter().map(|v| -v / s).collect();
        let g0 = cotangents(&net, &c0, &q, &traces)[0].clone();
        let lp = masked_product(&net, &traces, norm).unwrap().unwrap();
        eprintln!("image {img}: {}", counts.join("; "));
        eprintln!(
            "image {img}: |grad S(x0)| = {:.4}, masked product {:.4e}, p0 max {:.4}",
            norm2(&g0),
            lp.total,
            -q.iter().cloned().fold(0.0, f64::min)
        );
        // Composed prefix norms at the centre pattern vs the masked prefix products.
        if img < 2 && !signed {
            let basis: Vec<Vec<Vec<f64>>> = (0..n_in)
                .map(|i| {
                    let mut u = vec![0.0; n_in];
                    u[i] = 1.0;
                    tangents(&net, &c0, &u)
                })
                .collect();
            for k in 0..=net.nodes.len() {
                let dim = basis[0][k].len();
                let mut a = vec![0.0; dim * n_in];
                for (i, t) in basis.iter().enumerate() {
                    for r in 0..dim {
                        a[r * n_in + i] = t[k][r];
                    }
                }
                let v = spectral_upper(dim, n_in, &a);
                let pre = lp.prefix.get(k).copied().unwrap_or(f64::NAN);
                eprintln!(
                    "  node {k} input dim {dim}: composed norm at centre {v:.4}, masked prefix product {pre:.4}"
                );
            }
        }
        // Block-coordinate ascent over independent choices.
        let mut best = 0.0f64;
        let mut rng = ChaCha8Rng::seed_from_u64(img as u64);
        for start in 0..6 {
            let mut ch = c0.clone();
            if start > 0 {
                for (k, rf, pc) in &free {
                    match &mut ch[*k] {
                        Choice::Relu(d) => {
                            for (j, f) in rf.iter().enumerate() {
                                d[j] = f[rng.random_range(0..f.len())];
                            }
                        }
                        Choice::Pool(s) => {
                            for (w, c) in pc.iter().enumerate() {
                                s[w] = Some(c[rng.random_range(0..c.len())]);
                            }
                        }
                        Choice::None => {}
                    }
                }
            }
            let mut val = 0.0;
            for _round in 0..40 {
                let g = cotangents(&net, &ch, &q, &traces)[0].clone();
                val = norm2(&g);
                let u: Vec<f64> = g.iter().map(|v| v / val.max(1e-300)).collect();
                for (k, rf, pc) in &free {
                    let t = tangents(&net, &ch, &u);
                    let c = cotangents(&net, &ch, &q, &traces);
                    match &mut ch[*k] {
                        Choice::Relu(d) => {
                            for (j, f) in rf.iter().enumerate() {
                                let tc = t[*k][j] * c[*k + 1][j];
                                if signed && f != &vec![0.0] {
                                    d[j] = if tc > 0.0 { 1.0 } else { -1.0 };
                                } else if f.len() > 1 {
                                    d[j] = if tc > 0.0 { 1.0 } else { 0.0 };
                                }
                            }
                        }
                        Choice::Pool(s) => {
                            for (w, cand) in pc.iter().enumerate() {
                                let gw = c[*k + 1][w];
                                let score = |a: usize| {
                                    if signed {
                                        (t[*k][a] * gw).abs()
                                    } else {
                                        t[*k][a] * gw
                                    }
                                };
                                s[w] = cand
                                    .iter()
                                    .copied()
                                    .max_by(|a, b| score(*a).partial_cmp(&score(*b)).unwrap());
                            }
                        }
                        Choice::None => {}
                    }
                }
            }
            best = best.max(val);
        }
        eprintln!(
            "image {img}: ascent over independent derivative choices: sup >= {best:.4} ({:.1}x |grad S(x0)|)",
            best / norm2(&g0)
        );
    }
}
