//! Nelder–Mead simplex minimisation (Nelder & Mead 1965; coefficients 1, 2, ½, ½ as in Lagarias
//! et al. 1998), used for the reverse-Weibull maximum-likelihood fit of CLEVER.

/// Minimises `f` from `x0` with initial step `step` per coordinate; stops when the simplex's
/// function values span less than `ftol` (relative) or after `max_iter` iterations.
/// Returns (argmin, min). Non-finite values count as +∞.
pub fn minimize(
    f: impl Fn(&[f64]) -> f64,
    x0: &[f64],
    step: f64,
    ftol: f64,
    max_iter: usize,
) -> (Vec<f64>, f64) {
    let n = x0.len();
    let eval = |x: &[f64]| {
        let v = f(x);
        if v.is_finite() { v } else { f64::INFINITY }
    };
    let mut pts: Vec<Vec<f64>> = vec![x0.to_vec()];
    for i in 0..n {
        let mut p = x0.to_vec();
        p[i] += step;
        pts.push(p);
    }
    let mut vals: Vec<f64> = pts.iter().map(|p| eval(p)).collect();
    for _ in 0..max_iter {
        let mut idx: Vec<usize> = (0..=n).collect();
        idx.sort_by(|&a, &b| vals[a].total_cmp(&vals[b]));
        pts = idx.iter().map(|&i| pts[i].clone()).collect();
        vals = idx.iter().map(|&i| vals[i]).collect();
        let (best, worst) = (vals[0], vals[n]);
        if (worst - best).abs() <= ftol * (best.abs() + ftol) {
            break;
        }
        let centroid: Vec<f64> = (0..n)
            .map(|j| pts[..n].iter().map(|p| p[j]).sum::<f64>() / n as f64)
            .collect();
        let along = |t: f64| -> Vec<f64> {
            (0..n)
                .map(|j| centroid[j] + t * (pts[n][j] - centroid[j]))
                .collect()
        };
        let xr = along(-1.0);
        let fr = eval(&xr);
        if fr < vals[0] {
            let xe = along(-2.0);
            let fe = eval(&xe);
            if fe < fr {
                pts[n] = xe;
                vals[n] = fe;
            } else {
                pts[n] = xr;
                vals[n] = fr;
            }
        } else if fr < vals[n - 1] {
            pts[n] = xr;
            vals[n] = fr;
        } else {
            let (xc, fc) = if fr < vals[n] {
                let x = along(-0.5);
                let v = eval(&x);
                (x, v)
            } else {
                let x = along(0.5);
                let v = eval(&x);
                (x, v)
            };
            if fc < vals[n].min(fr) {
                pts[n] = xc;
                vals[n] = fc;
            } else {
                for i in 1..=n {
                    pts[i] = (0..n)
                        .map(|j| pts[0][j] + 0.5 * (pts[i][j] - pts[0][j]))
                        .collect();
                    vals[i] = eval(&pts[i]);
                }
            }
        }
    }
    let i = (0..=n)
        .min_by(|&a, &b| vals[a].total_cmp(&vals[b]))
        .unwrap_or(0);
    (pts[i].clone(), vals[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_rosenbrock_minimum() {
        let f = |x: &[f64]| (1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2);
        let (x, v) = minimize(f, &[-1.2, 1.0], 0.5, 1e-14, 5000);
        assert!(
            (x[0] - 1.0).abs() < 1e-4 && (x[1] - 1.0).abs() < 1e-4 && v < 1e-8,
            "{x:?} {v}"
        );
    }

    #[test]
    fn finds_a_shifted_quadratic_in_4d() {
        let c = [3.0, -2.0, 0.5, 10.0];
        let f = |x: &[f64]| {
            x.iter()
                .zip(&c)
                .enumerate()
                .map(|(i, (a, b))| (i + 1) as f64 * (a - b).powi(2))
                .sum::<f64>()
        };
        let (x, _) = minimize(f, &[0.0; 4], 1.0, 1e-16, 20000);
        for i in 0..4 {
            assert!((x[i] - c[i]).abs() < 1e-5, "{x:?}");
        }
    }
}
