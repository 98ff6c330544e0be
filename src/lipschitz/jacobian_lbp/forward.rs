//! Back-substitution of the pre-activation terms Σ_k α_kᵀz_k (left by the ReLU rule at every
//! level of the Jacobian graph) to the input through the forward network, as one CROWN row
//! (Zhang et al. 2018) into which each level's α is injected where the walk passes its z_k; then
//! concretised over the ball with the dual norm (`Ball::min_linear`). One walk for all levels
//! keeps the correlation between them (one concretisation instead of one per level).
//!
//! Rounding as in src/bounds/crown.rs: with the stored λ exact, fl(Aᵀλ) errs by ≤ γ|A|ᵀ|λ|, so
//! the form loses ≤ γ|λ|ᵀ(|A|M) with M ≥ |h| on the node's input box; relaxation products and
//! constants are charged U2·(n + 2)·(their magnitudes: |λs|·M for a slope s landing on an entry,
//! |λb| for a constant; n the node's width), injections U2·|λ|ᵀM; overlapping max-pool windows
//! that add several λ_k·s_k into one entry are charged 2γ_cover·Σ|λ_k s_k|M (`landed`); all
//! accumulated in `slack` and subtracted at the end.

use super::Side;
use crate::bounds::ibp::Trace;
use crate::bounds::max_pool::{WindowRelax, window_relaxations};
use crate::bounds::net::{Node, branch_dims, split_by};
use crate::bounds::round::{ABS_FLOOR, dot_err, next_down};
use crate::bounds::{Ball, relu};
use crate::error::{Error, Result};

const U2: f64 = 2.0 * f64::EPSILON;

/// What pass B reads at every node, computed once per ball: M ≥ |input| on the traced box,
/// |A|M for an affine node, the ReLU relaxation lines, the max-pool windows' relaxations (best
/// entry, candidates, chord upper line: [`window_relaxations`], as CROWN).
pub(crate) enum Mags {
    Affine {
        m_in: Vec<f64>,
        am: Vec<f64>,
    },
    Relu {
        m_in: Vec<f64>,
        rel: Vec<(f64, f64, f64)>,
    },
    Pool {
        m_in: Vec<f64>,
        wins: Vec<WindowRelax>,
        /// The most windows one input entry is in (1: no overlap).
        cover: usize,
    },
    Residual {
        m_in: Vec<f64>,
        main: Vec<Mags>,
        shortcut: Vec<Mags>,
    },
    Concat {
        m_in: Vec<f64>,
        branches: Vec<Vec<Mags>>,
        dims: Vec<usize>,
    },
}

impl Mags {
    fn m_in(&self) -> &[f64] {
        match self {
            Mags::Affine { m_in, .. }
            | Mags::Relu { m_in, .. }
            | Mags::Pool { m_in, .. }
            | Mags::Residual { m_in, .. }
            | Mags::Concat { m_in, .. } => m_in,
        }
    }
}

/// The per-node data of pass B for `nodes` on their traced boxes. A NaN in a traced box is an
/// error (a corrupted trace: the relaxations would otherwise turn it into a NaN row, which the
/// minimum over plane policies would silently drop).
pub(crate) fn mags(nodes: &[Node], traces: &[Trace]) -> Result<Vec<Mags>> {
    if nodes.len() != traces.len() {
        return Err(Error::Internal(
            "Jacobian bound: trace does not match the network".into(),
        ));
    }
    nodes
        .iter()
        .zip(traces)
        .map(|(node, trace)| {
            let inp = trace.input();
            let m_in = inp.abs_max();
            if let Some(j) = m_in.iter().position(|v| v.is_nan()) {
                let what = match node {
                    Node::Affine(_) => "an affine",
                    Node::Relu => "a ReLU",
                    Node::MaxPool2 { .. } | Node::MaxPool { .. } => "a max-pool",
                    Node::Residual { .. } => "a residual",
                    Node::Concat { .. } => "a concatenation",
                };
                return Err(Error::Internal(format!(
                    "Jacobian bound: the traced box of {what} node's input is NaN at entry {j}"
                )));
            }
            Ok(match (node, trace) {
                (Node::Affine(a), _) => {
                    let am = a.op.map().apply(&m_in, true);
                    Mags::Affine { m_in, am }
                }
                (Node::Relu, _) => Mags::Relu {
                    m_in,
                    rel: (0..inp.len())
                        .map(|j| relu::relaxation(inp.lo[j], inp.hi[j]))
                        .collect(),
                },
                (Node::MaxPool2 { .. } | Node::MaxPool { .. }, _) => Mags::Pool {
                    m_in,
                    wins: window_relaxations(inp, &node.pool_windows()),
                    cover: node.max_pool_geometry().map_or(1, |g| g.max_cover()),
                },
                (Node::Concat { branches }, Trace::Concat { branches: tb, .. })
                    if tb.len() == branches.len() =>
                {
                    Mags::Concat {
                        dims: branch_dims(branches, m_in.len())?,
                        m_in,
                        branches: branches
                            .iter()
                            .zip(tb)
                            .map(|(b, t)| mags(b, t))
                            .collect::<Result<_>>()?,
                    }
                }
                (
                    Node::Residual { main, shortcut },
                    Trace::Residual {
                        main: tm,
                        shortcut: ts,
                        ..
                    },
                ) => Mags::Residual {
                    m_in,
                    main: mags(main, tm)?,
                    shortcut: mags(shortcut, ts)?,
                },
                (Node::Residual { .. } | Node::Concat { .. }, _) => {
                    return Err(Error::Internal(
                        "residual or concatenation node without its branch traces".into(),
                    ));
                }
            })
        })
        .collect()
}

/// A linear lower bound λᵀh + c − slack of the injected form, carried backwards.
struct Row {
    lam: Vec<f64>,
    c: f64,
    slack: f64,
    /// False while λ is still zero (nothing injected yet): the walk only tracks dimensions.
    live: bool,
}

fn back(nodes: &[Node], info: &[Mags], side: &[Side], r: &mut Row) -> Result<()> {
    if nodes.len() != info.len() || nodes.len() != side.len() {
        return Err(Error::Internal(
            "Jacobian bound: terms do not match the network".into(),
        ));
    }
    for ((node, inf), s) in nodes.iter().zip(info).zip(side).rev() {
        let m_in = inf.m_in();
        match (node, inf) {
            (Node::Affine(a), Mags::Affine { am, .. }) => {
                let map = a.op.map();
                if r.live {
                    let e = 2.0 * dot_err(map.fan_out().max(map.fan_in()));
                    let mut slack = e * r.lam.iter().zip(am).map(|(l, m)| l.abs() * m).sum::<f64>();
                    if let Some(b) = &a.bias {
                        let (v, mag) = r
                            .lam
                            .iter()
                            .zip(b)
                            .fold((0.0, 0.0), |(v, m), (l, b)| (v + l * b, m + (l * b).abs()));
                        slack += dot_err(r.lam.len()) * mag + U2 * (r.c.abs() + v.abs());
                        r.c += v;
                    }
                    r.slack += slack + ABS_FLOOR;
                    r.lam = map.apply_t(&r.lam, false);
                } else {
                    r.lam = vec![0.0; map.in_dim()];
                }
            }
            (Node::Relu, Mags::Relu { rel, .. }) => {
                if r.live {
                    let mut sum = 0.0;
                    for (j, &(al, au, bu)) in rel.iter().enumerate() {
                        let l = r.lam[j];
                        if l == 0.0 {
                            continue;
                        }
                        let nl = if l >= 0.0 {
                            l * al
                        } else {
                            r.c += l * bu;
                            sum += (l * bu).abs();
                            l * au
                        };
                        sum += nl.abs() * m_in[j];
                        r.lam[j] = nl;
                    }
                    r.slack += U2 * (rel.len() as f64 + 2.0) * (sum + r.c.abs()) + ABS_FLOOR;
                }
            }
            (Node::MaxPool2 { .. } | Node::MaxPool { .. }, Mags::Pool { wins, cover, .. }) => {
                if r.live {
                    let mut nl = vec![0.0; m_in.len()];
                    let (mut sum, mut landed) = (0.0, 0.0);
                    for (k, w) in wins.iter().enumerate() {
                        let l = r.lam[k];
                        if l == 0.0 {
                            continue;
                        }
                        if l >= 0.0 {
                            nl[w.best] += l; // max ≥ the entry with the largest lower bound
                            landed += l * m_in[w.best];
                        } else if w.cand.len() == 1 {
                            nl[w.cand[0]] += l; // max = that entry on the whole box
                            landed -= l * m_in[w.cand[0]];
                        } else {
                            // max ≤ a·x_m + b on the box (the chord, max_pool::upper_line; the
                            // constant max u when a = 0): λ·a lands on x_m, λ·b in the constant.
                            let (m, a, b) = w.chord;
                            let la = l * a;
                            if la != 0.0 {
                                nl[m] += la;
                                landed += la.abs() * m_in[m];
                                sum += la.abs() * m_in[m];
                            }
                            r.c += l * b;
                            sum += (l * b).abs();
                        }
                    }
                    // Overlapping windows add several λ_k into one entry (rounded).
                    let acc_err = if *cover > 1 {
                        2.0 * dot_err(*cover)
                    } else {
                        0.0
                    };
                    r.slack += U2 * (wins.len() as f64 + 2.0) * (sum + r.c.abs())
                        + acc_err * landed
                        + ABS_FLOOR;
                    r.lam = nl;
                } else {
                    r.lam = vec![0.0; m_in.len()];
                }
            }
            (
                Node::Residual { main, shortcut },
                Mags::Residual {
                    main: im,
                    shortcut: is,
                    ..
                },
            ) => {
                // A block before the level a row starts at carries no terms.
                let (none_m, none_s) = (
                    vec![Side::None; main.len()],
                    vec![Side::None; shortcut.len()],
                );
                let (sm, ss) = match s {
                    Side::Residual { main, shortcut } => (main, shortcut),
                    Side::None => (&none_m, &none_s),
                    _ => {
                        return Err(Error::Internal("residual node with misplaced terms".into()));
                    }
                };
                let mut rm = Row {
                    lam: r.lam.clone(),
                    c: 0.0,
                    slack: 0.0,
                    live: r.live,
                };
                let mut rs = Row {
                    lam: std::mem::take(&mut r.lam),
                    c: 0.0,
                    slack: 0.0,
                    live: r.live,
                };
                back(main, im, sm, &mut rm)?;
                back(shortcut, is, ss, &mut rs)?;
                let mut sum = 0.0;
                r.lam = rm
                    .lam
                    .iter()
                    .zip(&rs.lam)
                    .enumerate()
                    .map(|(j, (a, b))| {
                        sum += (a.abs() + b.abs()) * m_in[j];
                        a + b
                    })
                    .collect();
                let add = rm.c + rs.c;
                sum += r.c.abs() + rm.c.abs() + rs.c.abs() + add.abs();
                r.c += add;
                r.slack += rm.slack + rs.slack + U2 * sum + ABS_FLOOR;
                r.live = rm.live || rs.live;
            }
            (
                Node::Concat { branches },
                Mags::Concat {
                    branches: ib, dims, ..
                },
            ) => {
                // A concatenation before the level a row starts at carries no terms.
                let none: Vec<Vec<Side>> =
                    branches.iter().map(|b| vec![Side::None; b.len()]).collect();
                let sb = match s {
                    Side::Concat(sb) if sb.len() == branches.len() => sb,
                    Side::None => &none,
                    _ => {
                        return Err(Error::Internal(
                            "Jacobian bound: concatenation terms misplaced".into(),
                        ));
                    }
                };
                let parts = split_by(&r.lam, dims)?;
                let d = m_in.len();
                let mut lam = vec![0.0; d];
                let (mut mag, mut csum, mut cmag, mut live) = (0.0, 0.0, 0.0, false);
                let mut slack = 0.0;
                for (((b, inf), sd), part) in branches.iter().zip(ib).zip(sb).zip(parts) {
                    let mut rb = Row {
                        lam: part.to_vec(),
                        c: 0.0,
                        slack: 0.0,
                        live: r.live,
                    };
                    back(b, inf, sd, &mut rb)?;
                    if rb.lam.len() != d {
                        return Err(Error::Internal(
                            "Jacobian bound: concatenation branch size".into(),
                        ));
                    }
                    for j in 0..d {
                        mag += rb.lam[j].abs() * m_in[j];
                        lam[j] += rb.lam[j];
                    }
                    csum += rb.c;
                    cmag += rb.c.abs();
                    slack += rb.slack;
                    live |= rb.live;
                }
                // The branch forms add at the fork: ≤ γ_nb of their magnitudes (as CROWN).
                let e = 2.0 * dot_err(branches.len() + 1);
                r.slack += slack + e * (mag + cmag + r.c.abs() + csum.abs()) + ABS_FLOOR;
                r.c += csum;
                r.lam = lam;
                r.live = live;
            }
            _ => return Err(Error::Internal("Jacobian bound: terms do not match".into())),
        }
        // Inject −α on this node's input (the pre-activation z of a ReLU): the row is a lower
        // bound, so the upper bound of αᵀz is minus the lower bound of (−α)ᵀz.
        if let Side::Relu(alpha) = s {
            if alpha.len() != r.lam.len() {
                return Err(Error::Internal(
                    "Jacobian bound: ReLU terms misplaced".into(),
                ));
            }
            let mut sum = 0.0;
            for (j, a) in alpha.iter().enumerate() {
                if *a != 0.0 {
                    r.lam[j] -= a;
                    sum += r.lam[j].abs() * m_in[j];
                    r.live = true;
                }
            }
            r.slack += U2 * sum;
        }
    }
    Ok(())
}

/// A certified upper bound of Σ_k α_kᵀz_k(x) over the ball, `side` holding α_k at each ReLU
/// (parallel to `nodes`, `info` from [`mags`]); `out_dim` is the network's output size.
pub(crate) fn upper(
    nodes: &[Node],
    info: &[Mags],
    side: &[Side],
    ball: &Ball,
    out_dim: usize,
) -> Result<f64> {
    let mut r = Row {
        lam: vec![0.0; out_dim],
        c: 0.0,
        slack: 0.0,
        live: false,
    };
    back(nodes, info, side, &mut r)?;
    if !r.live {
        return Ok(0.0);
    }
    if r.lam.len() != ball.center.len() {
        return Err(Error::Internal(
            "Jacobian bound: input size mismatch".into(),
        ));
    }
    let lin = ball.min_linear(&r.lam);
    let v = lin + r.c - r.slack;
    let lower = next_down(v - U2 * (lin.abs() + r.c.abs() + r.slack) - ABS_FLOOR);
    Ok(-lower)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds::dense::Dense;
    use crate::bounds::ibp::ibp;
    use crate::bounds::net::Affine;
    use crate::bounds::{LinearOp, Norm};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn dense(inp: usize, out: usize, r: &mut ChaCha8Rng) -> Node {
        Node::Affine(Affine {
            name: "d".into(),
            op: LinearOp::Dense(Dense {
                out,
                inp,
                w: (0..out * inp)
                    .map(|_| r.random::<f64>() * 2.0 - 1.0)
                    .collect(),
            }),
            bias: Some((0..out).map(|_| r.random::<f64>() - 0.5).collect()),
        })
    }

    /// Runs `nodes`, collecting Σ αᵀz over the ReLU inputs (sides parallel to the nodes).
    fn run(nodes: &[Node], side: &[Side], mut x: Vec<f64>, acc: &mut f64) -> Vec<f64> {
        for (node, s) in nodes.iter().zip(side) {
            if let Side::Relu(a) = s {
                *acc += a.iter().zip(&x).map(|(a, z)| a * z).sum::<f64>();
            }
            x = match (node, s) {
                (
                    Node::Residual { main, shortcut },
                    Side::Residual {
                        main: sm,
                        shortcut: ss,
                    },
                ) => {
                    let a = run(main, sm, x.clone(), acc);
                    let b = run(shortcut, ss, x, acc);
                    a.iter().zip(&b).map(|(a, b)| a + b).collect()
                }
                _ => crate::bounds::net::forward_nodes(std::slice::from_ref(node), x).unwrap(),
            };
        }
        x
    }

    /// Pass B alone: for random α at every ReLU (also inside a residual branch) of random dense
    /// nets, Σ αᵀz(x) at 3000 points of the ball never exceeds `upper`, which is within 50% of
    /// the sampled range above the sampled maximum on most nets (a dropped or mis-signed
    /// injection fails one of the two).
    #[test]
    fn injected_pre_activation_terms_are_bounded_over_the_ball() {
        let mut tight = 0;
        for seed in 0..20u64 {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            let nodes = vec![
                dense(4, 6, &mut r),
                Node::Relu,
                Node::Residual {
                    main: vec![dense(6, 5, &mut r), Node::Relu, dense(5, 6, &mut r)],
                    shortcut: vec![],
                },
                Node::Relu,
                dense(6, 3, &mut r),
            ];
            let mut alpha =
                |n: usize| Side::Relu((0..n).map(|_| r.random::<f64>() * 2.0 - 1.0).collect());
            let side = vec![
                Side::None,
                alpha(6),
                Side::Residual {
                    main: vec![Side::None, alpha(5), Side::None],
                    shortcut: vec![],
                },
                alpha(6),
                Side::None,
            ];
            let norm = if seed % 2 == 0 { Norm::L2 } else { Norm::Linf };
            let center: Vec<f64> = (0..4).map(|_| r.random::<f64>()).collect();
            let ball = Ball::new(center, 0.3, norm, seed % 3 == 0).unwrap();
            let (traces, _) = ibp(&nodes, ball.to_box()).unwrap();
            let info = mags(&nodes, &traces).unwrap();
            let ub = upper(&nodes, &info, &side, &ball, 3).unwrap();
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for _ in 0..3000 {
                let mut x: Vec<f64> = (0..4).map(|_| r.random::<f64>() * 2.0 - 1.0).collect();
                ball.project(&mut x);
                let x: Vec<f64> = x
                    .iter()
                    .zip(&ball.center)
                    .map(|(a, c)| c + (a - c) * r.random::<f64>())
                    .collect();
                let mut v = 0.0;
                run(&nodes, &side, x, &mut v);
                assert!(v <= ub, "seed {seed}: Σαᵀz = {v} > bound {ub}");
                (lo, hi) = (lo.min(v), hi.max(v));
            }
            tight += usize::from(ub - hi <= 0.5 * (hi - lo));
        }
        assert!(tight >= 10, "tight on only {tight} of 20 nets");
    }

    /// `info` with every max-pool window's upper line replaced by the constant max u (pass B's
    /// rule before the chord: a = 0, b = the window's largest upper bound).
    fn constant_pool_rule(info: &mut [Mags]) {
        for inf in info {
            match inf {
                Mags::Pool { wins, .. } => {
                    for w in wins.iter_mut().filter(|w| w.cand.len() > 1) {
                        w.chord = (w.chord.0, 0.0, w.hi);
                    }
                }
                Mags::Residual { main, shortcut, .. } => {
                    constant_pool_rule(main);
                    constant_pool_rule(shortcut);
                }
                Mags::Concat { branches, .. } => {
                    branches.iter_mut().for_each(|b| constant_pool_rule(b))
                }
                Mags::Affine { .. } | Mags::Relu { .. } => {}
            }
        }
    }

    /// A max-pool of a 2×3×3 input with overlapping windows into 2×2×2: 2×2 stride 1, or 3×3
    /// stride 2 with padding 1.
    fn overlapping_pool(k3: bool) -> Node {
        let (k, s, p) = if k3 { (3, 2, 1) } else { (2, 1, 0) };
        Node::from(crate::bounds::pool_geometry::PoolGeometry::square(
            2, 3, 3, k, s, p,
        ))
    }

    /// Pass B's max-pool rule with the chord (max_pool::upper_line) instead of the constant max
    /// u, on random nets whose overlapping max-pool windows have several candidates: Σ αᵀz(x) at
    /// 3000 points of the ball (half on its boundary) never exceeds the bound; where the pool
    /// follows the first ReLU (so the walk bounds x_m by at most u_m) the chord is never looser
    /// than the constant (up to rounding), and it is strictly tighter on most nets of both kinds.
    #[test]
    fn pool_chord_is_sound_and_tighter_than_the_constant() {
        let (mut strict, mut nets, mut gains) = (0, 0, Vec::new());
        for seed in 0..24u64 {
            let mut r = ChaCha8Rng::seed_from_u64(100 + seed);
            let shallow = seed % 2 == 0;
            let pool = overlapping_pool(seed % 4 < 2);
            let mut nodes = if shallow {
                vec![dense(4, 18, &mut r), Node::Relu]
            } else {
                vec![
                    dense(4, 6, &mut r),
                    Node::Relu,
                    dense(6, 18, &mut r),
                    Node::Relu,
                ]
            };
            nodes.extend([pool, dense(8, 6, &mut r), Node::Relu, dense(6, 3, &mut r)]);
            let dims = if shallow { vec![18, 6] } else { vec![6, 18, 6] };
            let mut di = dims.iter();
            let side: Vec<Side> = nodes
                .iter()
                .map(|n| match n {
                    Node::Relu => {
                        let d = *di.next().unwrap();
                        Side::Relu((0..d).map(|_| r.random::<f64>() * 2.0 - 1.0).collect())
                    }
                    _ => Side::None,
                })
                .collect();
            let norm = if seed % 3 == 0 { Norm::L2 } else { Norm::Linf };
            let eps = if norm == Norm::L2 { 0.4 } else { 0.2 };
            let center: Vec<f64> = (0..4).map(|_| r.random::<f64>()).collect();
            let ball = Ball::new(center, eps, norm, seed % 5 == 0).unwrap();
            let (traces, _) = ibp(&nodes, ball.to_box()).unwrap();
            let info = mags(&nodes, &traces).unwrap();
            let multi = info.iter().any(|i| match i {
                Mags::Pool { wins, .. } => wins.iter().any(|w| w.cand.len() > 1 && w.chord.1 > 0.0),
                _ => false,
            });
            assert!(multi, "seed {seed}: no window with a sloped chord");
            let ub = upper(&nodes, &info, &side, &ball, 3).unwrap();
            let mut old_info = mags(&nodes, &traces).unwrap();
            constant_pool_rule(&mut old_info);
            let ub_old = upper(&nodes, &old_info, &side, &ball, 3).unwrap();
            let mut hi = f64::NEG_INFINITY;
            for k in 0..3000 {
                let mut x: Vec<f64> = (0..4).map(|_| r.random::<f64>() * 4.0 - 2.0).collect();
                ball.project(&mut x);
                let x: Vec<f64> = if k % 2 == 0 {
                    x
                } else {
                    let t = r.random::<f64>();
                    x.iter()
                        .zip(&ball.center)
                        .map(|(a, c)| c + (a - c) * t)
                        .collect()
                };
                let mut v = 0.0;
                run(&nodes, &side, x, &mut v);
                assert!(
                    v <= ub,
                    "seed {seed}: Σαᵀz = {v} > bound {ub} (constant rule {ub_old})"
                );
                hi = hi.max(v);
            }
            if shallow {
                assert!(
                    ub <= ub_old + 1e-12 * (1.0 + ub_old.abs()),
                    "seed {seed}: chord {ub} looser than the constant {ub_old}"
                );
            }
            nets += 1;
            strict += usize::from(ub < ub_old - 1e-6 * (1.0 + ub_old.abs()));
            gains.push(((ub_old - ub) / (ub_old - hi), ub_old - hi, ub - hi));
        }
        eprintln!("chord vs constant, share of the gap closed: {gains:.3?}");
        assert!(
            strict * 3 >= nets * 2,
            "strictly tighter on only {strict} of {nets} nets"
        );
    }

    /// A NaN in a max-pool's input box (the upper bound of a window's chord entry, or a lower
    /// bound) is an error of pass B's set-up and so of the whole Jacobian bound, never a finite
    /// bound: the row itself turns NaN on such a box (the chord keeps a NaN upper bound, where
    /// the old constant, taken with `f64::max`, dropped it), and without the check the NaN row
    /// would be dropped by the minimum over plane policies, the bound falling back to the box.
    #[test]
    fn nan_in_a_pool_box_is_an_error() {
        let mut r = ChaCha8Rng::seed_from_u64(7);
        let nodes = vec![
            dense(4, 18, &mut r),
            Node::Relu,
            overlapping_pool(false),
            dense(8, 6, &mut r),
            Node::Relu,
            dense(6, 3, &mut r),
        ];
        let alpha: Vec<f64> = (0..6).map(|_| r.random::<f64>() * 2.0 - 1.0).collect();
        let side = vec![
            Side::None,
            Side::None,
            Side::None,
            Side::None,
            Side::Relu(alpha),
            Side::None,
        ];
        let ball = Ball::new(vec![0.5; 4], 0.2, Norm::Linf, false).unwrap();
        let (traces, logits) = ibp(&nodes, ball.to_box()).unwrap();
        let wins = nodes[2].pool_windows();
        let clean = window_relaxations(traces[2].input(), &wins);
        let w = clean
            .iter()
            .find(|w| w.cand.len() > 1 && w.chord.1 > 0.0)
            .expect("a window with a sloped chord");
        let net = crate::bounds::net::Net {
            input_shape: [1, 2, 2],
            num_classes: 3,
            nodes: nodes.clone(),
        };
        let cfg = super::super::LbpConfig {
            refine_max_dim: 0,
            ..Default::default()
        };
        assert!(
            super::super::jacobian_lbp_on(&net, &ball, &traces, logits.clone(), 1.0, cfg).is_ok()
        );
        for (at, upper_end) in [(w.chord.0, true), (w.best, false)] {
            let mut bad = traces.clone();
            let Trace::Leaf(b) = &mut bad[2] else {
                panic!("a leaf trace")
            };
            if upper_end {
                b.hi[at] = f64::NAN;
            } else {
                b.lo[at] = f64::NAN;
            }
            let nan_box = b.clone();
            match mags(&nodes, &bad) {
                Err(Error::Internal(m)) => {
                    assert!(m.contains("max-pool") && m.contains("NaN"), "{m}")
                }
                other => panic!("NaN box accepted: {:?}", other.map(|_| ())),
            }
            let jb = super::super::jacobian_lbp_on(&net, &ball, &bad, logits.clone(), 1.0, cfg);
            assert!(
                jb.is_err(),
                "NaN box gave a bound {:?}",
                jb.map(|b| b.value)
            );
            if upper_end {
                // The row on such a box (past the check) is NaN, not a finite number.
                let mut info = mags(&nodes, &traces).unwrap();
                let Mags::Pool { m_in, wins: wr, .. } = &mut info[2] else {
                    panic!("max-pool data")
                };
                *wr = window_relaxations(&nan_box, &wins);
                *m_in = nan_box.abs_max();
                let v = upper(&nodes, &info, &side, &ball, 3).unwrap();
                assert!(v.is_nan(), "pass B on a NaN box: {v}");
            }
        }
    }
}
