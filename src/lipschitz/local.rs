//! Certified local Lipschitz bound of S on a ball (FastLip, Weng et al. 2018, with the energy
//! head): pre-activation boxes from IBP, each ReLU's derivative fixed to {0}, {1} or [0, 1], each
//! max-pool's gradient routed to the window entries that can be maximal, p = softmax(z/T) bounded
//! from the logit box, then ∇ₓS = −J_fᵀp bounded by interval arithmetic backwards through the
//! network; L = ‖max(|g_lo|, |g_hi|)‖_q (proof: proofs/lipschitz_local_gradient.md).
//!
//! Two heads are combined: `box` pushes the box of −p through one backward pass; `simplex`
//! bounds each logit's Jacobian row J_k separately (K passes) and then optimises Σ_k p_k J_k over
//! p ∈ box ∩ simplex per input coordinate. Both are sound; their intersection is reported.

use crate::bounds::ibp::{Trace, ibp};
use crate::bounds::linear_map::adjoint_image;
use crate::bounds::net::{Net, Node};
use crate::bounds::softmax::{max_linear_box_simplex, simplex_tighten, softmax_box};
use crate::bounds::{Ball, Interval, max_pool, relu};
use crate::error::{Error, Result};
use serde::Serialize;

/// Which softmax head to use for the local gradient bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Head {
    /// One backward pass from the box of −p.
    Box,
    /// K backward passes (one per logit) and the box ∩ simplex optimisation, intersected with Box.
    Simplex,
}

/// A certified local bound and the boxes it came from.
#[derive(Debug, Clone)]
pub struct LocalBound {
    /// The certified bound on sup ‖∇ₓS‖_q over the ball (= the local Lipschitz constant bound).
    pub value: f64,
    /// The box-head value (always computed).
    pub box_value: f64,
    /// The simplex-head value, when computed.
    pub simplex_value: Option<f64>,
    /// The local product bound (dense ReLU networks only), see [`local_product`].
    pub product_value: Option<f64>,
    /// The box of ∇ₓS over the ball.
    pub grad: Interval,
    /// The IBP logit box.
    pub logits: Interval,
}

/// {Jᵀg : J a Clarke Jacobian of `nodes` on the traced boxes, g ∈ box} ⊆ the returned box.
pub fn grad_backward(nodes: &[Node], traces: &[Trace], g: Interval) -> Result<Interval> {
    if nodes.len() != traces.len() {
        return Err(Error::Internal("trace does not match the network".into()));
    }
    let mut g = g;
    for (node, trace) in nodes.iter().zip(traces).rev() {
        g = match (node, trace) {
            (Node::Affine(a), _) => adjoint_image(a.op.map(), &g)?,
            (Node::Relu, t) => relu::grad_back(t.input(), &g),
            (Node::MaxPool2 { .. } | Node::MaxPool { .. }, t) => {
                max_pool::grad_back(t.input(), &g, &node.pool_windows())
            }
            (
                Node::Residual { main, shortcut },
                Trace::Residual {
                    main: tm,
                    shortcut: ts,
                    ..
                },
            ) => {
                let gm = grad_backward(main, tm, g.clone())?;
                let gs = grad_backward(shortcut, ts, g)?;
                gm.add(&gs)?
            }
            (
                Node::Concat { branches },
                Trace::Concat {
                    input,
                    branches: tb,
                },
            ) if tb.len() == branches.len() => {
                // The box splits by branch; the branch images add at the fork (rounded outward).
                let dims = crate::bounds::net::branch_dims(branches, input.len())?;
                let parts = crate::bounds::net::split_box(&g, &dims)?;
                let mut sum = Interval::point(&vec![0.0; input.len()]);
                for ((b, t), part) in branches.iter().zip(tb).zip(parts) {
                    sum = sum.add(&grad_backward(b, t, part)?)?;
                }
                sum
            }
            (Node::Residual { .. } | Node::Concat { .. }, _) => {
                return Err(Error::Internal(
                    "residual or concatenation node without its branch traces".into(),
                ));
            }
        };
    }
    Ok(g)
}

/// ‖max(|lo|, |hi|)‖_q, rounded up: the largest dual norm of any vector in the box.
pub fn box_dual_norm(b: &Interval, norm: crate::bounds::Norm) -> f64 {
    norm.dual_norm_up(&b.abs_max())
}

/// Where the pre-activation boxes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PreBounds {
    /// Interval bound propagation.
    Ibp,
    /// IBP ∩ CROWN for ReLU / max-pool inputs (inside residual blocks too) and the logits of
    /// dimension ≤ `max_dim` within the default work budget, and the leading affine chain's
    /// exact ℓ_p-ball boxes at any width (`bounds::crown::crown_trace`).
    Crown { max_dim: usize },
}

/// The node input boxes and the logit box over the ball.
pub fn pre_bounds(net: &Net, ball: &Ball, pre: PreBounds) -> Result<(Vec<Trace>, Interval)> {
    match pre {
        PreBounds::Ibp => ibp(&net.nodes, ball.to_box()),
        PreBounds::Crown { max_dim } => {
            crate::bounds::crown::crown_trace(&net.nodes, ball, max_dim)
        }
    }
}

/// FastLip bound of sup_{x'∈ball} ‖∇ₓS(x')‖_q with IBP pre-activation bounds.
pub fn fastlip(net: &Net, ball: &Ball, temperature: f64, head: Head) -> Result<LocalBound> {
    fastlip_with(net, ball, temperature, head, PreBounds::Ibp)
}

/// A valid temperature and a ball in the network's input space (the local bounds' preconditions).
pub(crate) fn check_query(net: &Net, ball: &Ball, temperature: f64) -> Result<()> {
    crate::score::check_temperature(temperature)?;
    if ball.center.len() != net.input_dim() {
        return Err(Error::BadInput(format!(
            "ball has {} coordinates, network {}",
            ball.center.len(),
            net.input_dim()
        )));
    }
    Ok(())
}

/// FastLip bound with the chosen pre-activation bounds.
pub fn fastlip_with(
    net: &Net,
    ball: &Ball,
    temperature: f64,
    head: Head,
    pre: PreBounds,
) -> Result<LocalBound> {
    check_query(net, ball, temperature)?;
    let (traces, logits) = pre_bounds(net, ball, pre)?;
    fastlip_on(net, &traces, logits, ball.norm, temperature, head)
}

/// FastLip bound on given pre-activation traces and logit box (from [`pre_bounds`]).
pub fn fastlip_on(
    net: &Net,
    traces: &[Trace],
    logits: Interval,
    norm: crate::bounds::Norm,
    temperature: f64,
    head: Head,
) -> Result<LocalBound> {
    let mut b = fastlip_heads_on(net, traces, logits, norm, temperature, head)?;
    b.product_value = local_product(net, traces, norm);
    b.value = b.value.min(b.product_value.unwrap_or(f64::INFINITY));
    Ok(b)
}

/// [`fastlip_on`] without the local product bound (its operator norms cost more than the heads).
pub fn fastlip_heads_on(
    net: &Net,
    traces: &[Trace],
    logits: Interval,
    norm: crate::bounds::Norm,
    temperature: f64,
    head: Head,
) -> Result<LocalBound> {
    let p = simplex_tighten(&softmax_box(&logits, temperature));
    let neg_p = Interval {
        lo: p.hi.iter().map(|v| -v).collect(),
        hi: p.lo.iter().map(|v| -v).collect(),
    };
    let g_box = grad_backward(&net.nodes, traces, neg_p)?;
    let box_value = box_dual_norm(&g_box, norm);
    let (grad, simplex_value) = match head {
        Head::Box => (g_box, None),
        Head::Simplex => {
            let k = net.num_classes;
            let mut rows = Vec::with_capacity(k);
            for c in 0..k {
                let mut e = vec![0.0; k];
                e[c] = 1.0;
                rows.push(grad_backward(&net.nodes, traces, Interval::point(&e))?);
            }
            let n = net.input_dim();
            let mut lo = vec![0.0; n];
            let mut hi = vec![0.0; n];
            let mut ca = vec![0.0; k];
            let mut cb = vec![0.0; k];
            for i in 0..n {
                for c in 0..k {
                    ca[c] = -rows[c].lo[i];
                    cb[c] = rows[c].hi[i];
                }
                // g_i = −Σ p_k J_ki ≤ max_p Σ p_k (−a_ki);  g_i ≥ −max_p Σ p_k b_ki.
                hi[i] = max_linear_box_simplex(&ca, &p);
                lo[i] = -max_linear_box_simplex(&cb, &p);
            }
            let g = Interval { lo, hi }.intersect(&g_box);
            let v = box_dual_norm(&g, norm);
            (g, Some(v))
        }
    };
    let value = box_dual_norm(&grad, norm);
    Ok(LocalBound {
        product_value: None,
        value,
        box_value,
        simplex_value,
        grad,
        logits,
    })
}

/// A local product bound for dense ReLU networks (MLPs): on the ball, every Jacobian is
/// W_L D_{L−1} W_{L−1} ⋯ D_1 W_1 (normalisation folded into W_1) with D_i diagonal in [0, 1] and
/// zero on neurons that are inactive on the whole ball (pre-activation upper bound < 0). So
/// ‖J‖ ≤ Π ‖W_i restricted to the possibly-active rows and columns‖, the last factor measured
/// ℓp → ℓ∞ (S is 1-Lipschitz in ℓ∞ of the logits). Sound operator norms as in the global bound.
/// `None` for networks with other layers (convolutions, pooling, residual blocks).
pub fn local_product(net: &Net, traces: &[Trace], norm: crate::bounds::Norm) -> Option<f64> {
    use crate::bounds::net::LinearOp;
    use crate::lipschitz::operator_norm::{l2_to_linf_upper, linf_upper, spectral_upper};
    let mut cols_active: Vec<bool> = vec![true; net.input_dim()];
    let mut col_scale: Vec<f64> = vec![1.0; net.input_dim()];
    let mut total = 1.0f64;
    let n = net.nodes.len();
    let mut i = 0;
    while i < n {
        match &net.nodes[i] {
            Node::Affine(a) => match &a.op {
                LinearOp::Diag(d) if d.scale.len() == col_scale.len() => {
                    col_scale
                        .iter_mut()
                        .zip(&d.scale)
                        .for_each(|(c, s)| *c *= s);
                }
                LinearOp::Dense(d) if d.inp == cols_active.len() => {
                    let last = i + 1 == n;
                    let rows_active: Vec<bool> = match (net.nodes.get(i + 1), traces.get(i + 1)) {
                        _ if last => vec![true; d.out],
                        (Some(Node::Relu), Some(t)) => {
                            t.input().hi.iter().map(|u| *u >= 0.0).collect()
                        }
                        _ => return None,
                    };
                    let cols: Vec<usize> = (0..d.inp).filter(|&j| cols_active[j]).collect();
                    let rows: Vec<usize> = (0..d.out).filter(|&r| rows_active[r]).collect();
                    let mut m = Vec::with_capacity(rows.len() * cols.len());
                    for &r in &rows {
                        let row = d.row(r);
                        m.extend(cols.iter().map(|&j| row[j] * col_scale[j]));
                    }
                    let (nr, nc) = (rows.len(), cols.len());
                    let f = if nr == 0 || nc == 0 {
                        0.0
                    } else {
                        match (norm, last) {
                            (crate::bounds::Norm::L2, true) => l2_to_linf_upper(nr, nc, &m),
                            (crate::bounds::Norm::L2, false) => spectral_upper(nr, nc, &m),
                            (crate::bounds::Norm::Linf, _) => linf_upper(nr, nc, &m),
                        }
                    };
                    total = crate::bounds::round::next_up(total * f);
                    cols_active = rows_active;
                    col_scale = vec![1.0; d.out];
                }
                _ => return None,
            },
            Node::Relu => {}
            _ => return None,
        }
        i += 1;
    }
    Some(total)
}
