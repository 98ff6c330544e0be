//! 2×2 stride-2 max-pool rules: interval image (IBP), the Clarke gradient of max on a box
//! (FastLip: the gradient goes to a window entry that can be the maximum), and CROWN's relaxation.

use super::interval::Interval;
use super::net::pool_windows;
use super::round::max_nan;

/// {maxpool(x) : x ∈ box} = [max lo, max hi] per window (exact).
pub fn ibp(x: &Interval, c: usize, h: usize, w: usize) -> Interval {
    let wins = pool_windows(c, h, w);
    let f =
        |v: &[f64], win: &[usize; 4]| win.iter().map(|&i| v[i]).fold(f64::NEG_INFINITY, max_nan);
    Interval {
        lo: wins.iter().map(|win| f(&x.lo, win)).collect(),
        hi: wins.iter().map(|win| f(&x.hi, win)).collect(),
    }
}

/// Which entries of a window can be its maximum somewhere on the box: hi_i ≥ max_j lo_j.
pub fn candidates(x: &Interval, win: &[usize; 4]) -> Vec<usize> {
    let best_lo = win
        .iter()
        .map(|&i| x.lo[i])
        .fold(f64::NEG_INFINITY, max_nan);
    win.iter()
        .copied()
        .filter(|&i| x.hi[i] >= best_lo)
        .collect()
}

/// Gradient box at the pool input from one at its output: a unique candidate receives the
/// gradient (derivative 1); with several, each receives λ·g with λ ∈ [0, 1] (the Clarke gradient
/// of max is the convex hull of the candidates' unit vectors); the others receive 0.
pub fn grad_back(pre: &Interval, g: &Interval, c: usize, h: usize, w: usize) -> Interval {
    let mut lo = vec![0.0; pre.len()];
    let mut hi = vec![0.0; pre.len()];
    for (k, win) in pool_windows(c, h, w).iter().enumerate() {
        let cand = candidates(pre, win);
        if cand.len() == 1 {
            lo[cand[0]] = g.lo[k];
            hi[cand[0]] = g.hi[k];
        } else {
            for &i in &cand {
                lo[i] = g.lo[k].min(0.0);
                hi[i] = g.hi[k].max(0.0);
            }
        }
    }
    Interval { lo, hi }
}
