//! Split bound of sup ‖∇ₓS‖_q on a ball (proofs/lipschitz_local_product.md, Claim 4): for every
//! top-level node k, ∇ₓS(x) = M_k(x)ᵀ z_k(x) with M_k the Jacobian of the network before node k
//! and z_k the gradient of S at node k's input, so ‖∇ₓS‖_q ≤ ‖M_k‖_{p→p} · ‖box(z_k)‖_q, with
//! ‖M_k‖ from the masked prefix product and box(z_k) from FastLip's backward interval walk of
//! the suffix (k = 0: the box bound; the product bound covers k = L). The minimum over k.

use super::local::{box_dual_norm, grad_backward};
use crate::bounds::Norm;
use crate::bounds::ibp::Trace;
use crate::bounds::interval::Interval;
use crate::bounds::net::Net;
use crate::bounds::round::next_up;
use crate::error::{Error, Result};

/// min over k of `prefix[k]` × ‖box of the gradient at node k's input‖_q, where the backward
/// walk starts from `g_out` (the box of ∂S/∂logits = −p) and `prefix[k]` bounds the prefix's
/// norm on the coordinates where that gradient can be non-zero (`local_product::LocalProduct`).
pub fn split_bound(
    net: &Net,
    traces: &[Trace],
    g_out: Interval,
    prefix: &[f64],
    norm: Norm,
) -> Result<f64> {
    let n = net.nodes.len();
    if traces.len() != n || prefix.len() != n {
        return Err(Error::Internal(
            "split bound: trace does not match the network".into(),
        ));
    }
    let mut g = g_out;
    let mut best = f64::INFINITY;
    for k in (0..n).rev() {
        g = grad_backward(&net.nodes[k..=k], &traces[k..=k], g)?;
        if prefix[k].is_finite() {
            let v = next_up(prefix[k] * box_dual_norm(&g, norm));
            if v < best {
                best = v;
            }
        }
    }
    Ok(best)
}
