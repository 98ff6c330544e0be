//! Certified local Lipschitz bound of S on a ball (FastLip, Weng et al. 2018, with the energy
//! head): pre-activation boxes from IBP, each ReLU's derivative fixed to {0}, {1} or [0, 1], each
//! max-pool's gradient routed to the window entries that can be maximal, p = softmax(z/T) bounded
//! from the logit box, then ∇ₓS = −J_fᵀp bounded by interval arithmetic backwards through the
//! network; L = ‖max(|g_lo|, |g_hi|)‖_q (proof: proofs/lipschitz_local_gradient.md).
//!
//! Two heads are combined: `box` pushes the box of −p through one backward pass; `simplex`
//! bounds each logit's Jacobian row J_k separately (K passes) and then optimises Σ_k p_k J_k over
//! p ∈ box ∩ simplex per input coordinate. Both are sound; their intersection is reported, and
//! [`fastlip_on`] reports the minimum with the masked local product and the split bound
//! (`local_product`, `split_bound`; proofs/lipschitz_local_product.md). [`pre_bounds`] tightens
//! every box with the Lipschitz boxes of the ball (`local_product::lipschitz_boxes`).

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
    /// The masked local product bound (`local_product::masked_product`); `None` for node
    /// kinds it does not know.
    pub product_value: Option<f64>,
    /// The split bound (`split_bound::split_bound`), with the product bound.
    pub split_value: Option<f64>,
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
    /// [`PreBounds::Crown`] with the boxes of the ReLU inputs on a flat network tightened by
    /// α-CROWN, `iters` Adam steps on the slopes (`bounds::alpha_crown`).
    AlphaCrown { max_dim: usize, iters: usize },
}

/// The node input boxes and the logit box over the ball.
pub fn pre_bounds(net: &Net, ball: &Ball, pre: PreBounds) -> Result<(Vec<Trace>, Interval)> {
    let (traces, logits) = match pre {
        PreBounds::Ibp => ibp(&net.nodes, ball.to_box())?,
        PreBounds::Crown { max_dim } => {
            crate::bounds::crown::crown_trace(&net.nodes, ball, max_dim)?
        }
        PreBounds::AlphaCrown { max_dim, iters } => {
            let budget = crate::bounds::crown::CrownBudget {
                alpha_iters: iters,
                ..crate::bounds::crown::CrownBudget::with_max_dim(max_dim)
            };
            crate::bounds::crown::crown_trace_with(&net.nodes, ball, &budget)?
        }
    };
    super::local_product::lipschitz_boxes(net, ball, traces, logits)
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
    if let Some(lp) = super::local_product::masked_product(net, traces, norm)? {
        b.product_value = Some(lp.total);
        let split = super::split_bound::split_bound(
            net,
            traces,
            neg_softmax_box(&b.logits, temperature),
            &lp.prefix,
            norm,
        )?;
        b.split_value = Some(split);
    }
    b.value = b
        .value
        .min(b.product_value.unwrap_or(f64::INFINITY))
        .min(b.split_value.unwrap_or(f64::INFINITY));
    Ok(b)
}

/// The box of ∂S/∂f = −softmax(f/T) over a logit box (simplex-tightened).
pub fn neg_softmax_box(logits: &Interval, temperature: f64) -> Interval {
    let p = simplex_tighten(&softmax_box(logits, temperature));
    Interval {
        lo: p.hi.iter().map(|v| -v).collect(),
        hi: p.lo.iter().map(|v| -v).collect(),
    }
}

/// [`fastlip_on`] without the local product and split bounds (its operator norms cost more than the heads).
pub fn fastlip_heads_on(
    net: &Net,
    traces: &[Trace],
    logits: Interval,
    norm: crate::bounds::Norm,
    temperature: f64,
    head: Head,
) -> Result<LocalBound> {
    let p = simplex_tighten(&softmax_box(&logits, temperature));
    let neg_p = neg_softmax_box(&logits, temperature);
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
        split_value: None,
        value,
        box_value,
        simplex_value,
        grad,
        logits,
    })
}
