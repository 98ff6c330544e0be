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

/// A window's linear relaxations on a box (CROWN, and α-CROWN's choices among them).
#[derive(Debug, Clone)]
pub struct WindowRelax {
    /// The entry with the largest lower bound (CROWN's lower line max ≥ x_best).
    pub best: usize,
    /// The entries that can be the maximum somewhere on the box ([`candidates`]).
    pub cand: Vec<usize>,
    /// The largest upper bound.
    pub hi: f64,
    /// Upper line a·x_m + b ([`upper_line`]).
    pub chord: (usize, f64, f64),
    /// Upper plane Σ f_i x_i + c ([`upper_facet`]).
    pub facet: (Vec<(usize, f64)>, f64),
}

/// The window's entry with the largest lower bound (the lower line max ≥ x_best; 0 for an empty
/// window).
pub fn best_entry(x: &Interval, win: &[usize]) -> usize {
    win.iter()
        .copied()
        .max_by(|&a, &b| x.lo[a].total_cmp(&x.lo[b]))
        .unwrap_or(0)
}

/// The relaxations of every window of `wins` on the box `x`.
pub fn window_relaxations(x: &Interval, wins: &[Vec<usize>]) -> Vec<WindowRelax> {
    wins.iter()
        .map(|win| {
            let best = best_entry(x, win);
            let hi = win
                .iter()
                .map(|&i| x.hi[i])
                .fold(f64::NEG_INFINITY, max_nan);
            let cand = candidates(x, win);
            let (chord, facet) = if cand.len() > 1 {
                (upper_line(x, &cand), upper_facet(x, win, &cand))
            } else {
                ((best, 0.0, hi), (Vec::new(), hi))
            };
            WindowRelax {
                best,
                cand,
                hi,
                chord,
                facet,
            }
        })
        .collect()
}

/// An upper line of the maximum of a window with several candidates, x ↦ a·x_m + b ≥ max_i x_i
/// on the box: the chord of max(x_m, U₂) between x_m = l_m and u_m, where m has the largest
/// upper bound and U₂ = max(l_m, max_{i≠m} u_i) (a convex function of x_m below a line that is
/// above it at both ends; with the others at most U₂ the window's maximum is at most it). The
/// slope is rounded down (a smaller one only raises the line on [l_m, u_m]) and b up. Returns
/// `(m, a, b)`; `a = 0, b = max u` (the constant bound) when the box has a non-finite bound or
/// two entries share the largest upper bound.
pub fn upper_line(x: &Interval, cand: &[usize]) -> (usize, f64, f64) {
    let hi = cand
        .iter()
        .map(|&i| x.hi[i])
        .fold(f64::NEG_INFINITY, max_nan);
    let Some(&m) = cand.iter().find(|&&i| x.hi[i] == hi) else {
        return (cand.first().copied().unwrap_or(0), 0.0, hi);
    };
    let (l, u) = (x.lo[m], x.hi[m]);
    let u2 = cand
        .iter()
        .filter(|&&i| i != m)
        .map(|&i| x.hi[i])
        .fold(l, max_nan);
    if !((u - l).is_finite() && (u - u2).is_finite()) || u2 >= u || l >= u {
        return (m, 0.0, hi);
    }
    let a = next_down((u - u2) / (u - l) * (1.0 - 4.0 * f64::EPSILON)).clamp(0.0, 1.0);
    // fl(a·u) and the subtraction each err by ≤ u_r of their magnitude.
    let (au, b) = (a * u, u - a * u);
    let b = next_up(b + 4.0 * f64::EPSILON * (b.abs() + au.abs()));
    if !b.is_finite() {
        return (m, 0.0, hi);
    }
    (m, a, b)
}

/// An upper plane of a window's maximum, M + Σ_{i∈cand} f_i (x_i − l_i) with M = max_win l and
/// f_i = (u_i − M)/(u_i − l_i): at a vertex of the box with the entries S at their upper bounds
/// it is M + Σ_S (u_i − M) ≥ max(M, max_S u_i) ≥ the maximum (every term ≥ 0; entries that are
/// not candidates stay below M), and an affine function above a convex one at every vertex is
/// above it on the box. Exact at the vertices with at most one candidate up. The f_i are
/// rounded up (x_i − l_i ≥ 0, so that only raises the plane) and the constant c = M − Σ f_i l_i
/// up. Returns `(Σ f_i x_i as (i, f_i), c)`; the constant max u alone when a bound is not finite.
pub fn upper_facet(x: &Interval, win: &[usize], cand: &[usize]) -> (Vec<(usize, f64)>, f64) {
    let m = win
        .iter()
        .map(|&i| x.lo[i])
        .fold(f64::NEG_INFINITY, max_nan);
    let hi = cand
        .iter()
        .map(|&i| x.hi[i])
        .fold(f64::NEG_INFINITY, max_nan);
    let finite = win
        .iter()
        .all(|&i| x.lo[i].is_finite() && x.hi[i].is_finite());
    if !finite || !m.is_finite() {
        return (Vec::new(), hi);
    }
    let mut f = Vec::with_capacity(cand.len());
    let (mut c, mut mag) = (m, m.abs());
    for &i in cand {
        let (l, u) = (x.lo[i], x.hi[i]);
        if u <= l || u <= m {
            continue; // x_i ≤ M on the box: no term needed
        }
        if !(u - l).is_finite() {
            return (Vec::new(), hi); // the slope would round to 0 (overflowed width)
        }
        let fi = next_up((u - m) / (u - l) * (1.0 + 4.0 * f64::EPSILON));
        c -= fi * l;
        mag += (fi * l).abs();
        f.push((i, fi));
    }
    let err = super::round::dot_err(f.len() + 1) * mag;
    let c = next_up(c + err + super::round::ABS_FLOOR);
    if !c.is_finite() {
        return (Vec::new(), hi);
    }
    (f, c)
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Brute force: on random windows of 2–5 entries with overlapping boxes, the chord and the
    /// facet lie above the window's maximum at every vertex of the box and at random points, and
    /// each touches it somewhere (neither is the constant bound in disguise).
    #[test]
    fn upper_line_and_facet_bound_the_maximum() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let (mut chord_tight, mut facet_tight, mut cases) = (0, 0, 0);
        for _ in 0..3000 {
            let k = rng.random_range(2..=5);
            let lo: Vec<f64> = (0..k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let hi: Vec<f64> = lo.iter().map(|l| l + rng.random_range(0.0..1.5)).collect();
            let x = Interval::new(lo, hi).unwrap();
            let win: Vec<usize> = (0..k).collect();
            let cand = candidates(&x, &win);
            if cand.len() < 2 {
                continue;
            }
            cases += 1;
            let (m, a, b) = upper_line(&x, &cand);
            let (f, c) = upper_facet(&x, &win, &cand);
            let line = |p: &[f64]| a * p[m] + b;
            let plane = |p: &[f64]| f.iter().map(|&(i, fi)| fi * p[i]).sum::<f64>() + c;
            let mut points: Vec<Vec<f64>> = (0..1usize << k)
                .map(|mask| {
                    (0..k)
                        .map(|i| if mask >> i & 1 == 1 { x.hi[i] } else { x.lo[i] })
                        .collect()
                })
                .collect();
            points.extend((0..50).map(|_| {
                (0..k)
                    .map(|i| x.lo[i] + rng.random::<f64>() * (x.hi[i] - x.lo[i]))
                    .collect()
            }));
            let (mut gap_l, mut gap_f) = (f64::INFINITY, f64::INFINITY);
            for p in &points {
                let mx = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                assert!(
                    line(p) >= mx,
                    "chord {} < max {mx} at {p:?} on {x:?}",
                    line(p)
                );
                assert!(
                    plane(p) >= mx,
                    "facet {} < max {mx} at {p:?} on {x:?}",
                    plane(p)
                );
                gap_l = gap_l.min(line(p) - mx);
                gap_f = gap_f.min(plane(p) - mx);
            }
            chord_tight += usize::from(a > 0.0 && gap_l < 1e-9);
            facet_tight += usize::from(!f.is_empty() && gap_f < 1e-9);
        }
        assert!(cases > 1000 && chord_tight * 2 > cases && facet_tight * 2 > cases);
    }

    /// Found in review: a window wider than f64's range made the facet's slope round to 0 (a
    /// plane 1e-15 where the max is 1e308), and the chord's intercept missed the rounding of
    /// a·u (a·u + b fell 5.5e-17 below u, checked here without rounding: a·u = p + e exactly).
    #[test]
    fn planes_survive_overflow_and_the_rounding_of_a_times_u() {
        let x = Interval::new(vec![-1e308, 0.0], vec![1e308, 1.0]).unwrap();
        let (f, c) = upper_facet(&x, &[0, 1], &[0, 1]);
        let (m, a, b) = upper_line(&x, &[0, 1]);
        for p in [[1e308, 0.0f64], [1e308, 1.0], [-1e308, 1.0], [-1e308, 0.0]] {
            let mx = p[0].max(p[1]);
            assert!(
                f.iter().map(|&(i, fi)| fi * p[i]).sum::<f64>() + c >= mx,
                "facet at {p:?}"
            );
            assert!(a * p[m] + b >= mx, "chord at {p:?}");
        }
        let (l, u) = (-0.559415810800574, -0.5001032070487941);
        let x = Interval::new(vec![l, l - 1.0], vec![u, l]).unwrap();
        let (m, a, b) = upper_line(&x, &[0, 1]);
        assert_eq!(m, 0);
        assert!(a > 0.99, "slope {a}");
        let p = a * u;
        let e = a.mul_add(u, -p);
        assert!((p - u) + b + e >= 0.0, "a·u + b − u = {}", (p - u) + b + e);
    }
}
