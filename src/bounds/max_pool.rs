//! Max-pool rules for any window geometry (windows from [`super::net::Node::pool_windows`],
//! overlapping or padded): interval image (IBP), the Clarke gradient of max on a box (FastLip:
//! the gradient goes to a window entry that can be the maximum), used by CROWN's relaxation too.

use super::interval::Interval;
use super::round::{max_nan, next_down, next_up};

/// {maxpool(x) : x ∈ box} = [max lo, max hi] per window (exact).
pub fn ibp(x: &Interval, wins: &[Vec<usize>]) -> Interval {
    let f = |v: &[f64], win: &[usize]| win.iter().map(|&i| v[i]).fold(f64::NEG_INFINITY, max_nan);
    Interval {
        lo: wins.iter().map(|win| f(&x.lo, win)).collect(),
        hi: wins.iter().map(|win| f(&x.hi, win)).collect(),
    }
}

/// Which entries of a window can be its maximum somewhere on the box: hi_i ≥ max_j lo_j. A NaN
/// bound excludes nothing (an entry is dropped only when hi_i < max_j lo_j is known), so a
/// corrupted box can only widen the gradient's support, never hide an entry.
pub fn candidates(x: &Interval, win: &[usize]) -> Vec<usize> {
    let best_lo = win
        .iter()
        .map(|&i| x.lo[i])
        .fold(f64::NEG_INFINITY, max_nan);
    win.iter()
        .copied()
        .filter(|&i| x.hi[i].partial_cmp(&best_lo) != Some(std::cmp::Ordering::Less))
        .collect()
}

/// a + b rounded down (exact when either is 0, the only case without window overlap).
pub fn add_down(a: f64, b: f64) -> f64 {
    if a == 0.0 || b == 0.0 {
        a + b
    } else {
        next_down(a + b)
    }
}

/// a + b rounded up (exact when either is 0).
pub fn add_up(a: f64, b: f64) -> f64 {
    if a == 0.0 || b == 0.0 {
        a + b
    } else {
        next_up(a + b)
    }
}

/// Gradient box at the pool input from one at its output: a unique candidate receives the
/// gradient (derivative 1); with several, each receives λ·g with λ ∈ [0, 1] (the Clarke gradient
/// of max is the convex hull of the candidates' unit vectors); the others receive 0. An entry in
/// several windows (overlap) receives the sum over them, rounded outward.
pub fn grad_back(pre: &Interval, g: &Interval, wins: &[Vec<usize>]) -> Interval {
    route_back(wins.iter().map(|win| candidates(pre, win)), pre.len(), g)
}

/// [`grad_back`] with the candidates of each window given.
pub fn route_back(
    cands: impl IntoIterator<Item = impl AsRef<[usize]>>,
    in_dim: usize,
    g: &Interval,
) -> Interval {
    let mut lo = vec![0.0; in_dim];
    let mut hi = vec![0.0; in_dim];
    for (k, cand) in cands.into_iter().enumerate() {
        let cand = cand.as_ref();
        let (l, h) = if cand.len() == 1 {
            (g.lo[k], g.hi[k])
        } else {
            (g.lo[k].min(0.0), g.hi[k].max(0.0))
        };
        for &i in cand {
            lo[i] = add_down(lo[i], l);
            hi[i] = add_up(hi[i], h);
        }
    }
    Interval { lo, hi }
}

#[cfg(test)]
mod nan_tests {
    use super::*;

    /// A NaN bound keeps every entry a candidate (an empty set would drop the window's gradient).
    #[test]
    fn nan_bounds_exclude_no_candidate() {
        let win = [0, 1, 2];
        let x = Interval {
            lo: vec![f64::NAN, 0.0, -1.0],
            hi: vec![1.0, 2.0, -0.5],
        };
        assert_eq!(candidates(&x, &win), vec![0, 1, 2]);
        let y = Interval {
            lo: vec![0.0, 1.0, -3.0],
            hi: vec![f64::NAN, 2.0, -2.0],
        };
        assert_eq!(candidates(&y, &win), vec![0, 1]);
        // Finite boxes: exactly the entries with hi ≥ max lo.
        let z = Interval {
            lo: vec![0.0, 1.0, -3.0],
            hi: vec![0.5, 2.0, 1.0],
        };
        assert_eq!(candidates(&z, &win), vec![1, 2]);
    }
}
