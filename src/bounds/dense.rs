//! Fully connected layer W (out × in, row-major) as a [`LinearMap`].

use super::linear_map::LinearMap;

/// A dense matrix W, row-major `(out, in)`, PyTorch's `nn.Linear` layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub out: usize,
    pub inp: usize,
    pub w: Vec<f64>,
}

impl Dense {
    /// Row i of W.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.w[i * self.inp..(i + 1) * self.inp]
    }
}

impl LinearMap for Dense {
    fn in_dim(&self) -> usize {
        self.inp
    }
    fn out_dim(&self) -> usize {
        self.out
    }
    fn apply(&self, x: &[f64], abs: bool) -> Vec<f64> {
        (0..self.out)
            .map(|i| {
                let r = self.row(i);
                if abs {
                    r.iter().zip(x).map(|(w, x)| w.abs() * x).sum()
                } else {
                    r.iter().zip(x).map(|(w, x)| w * x).sum()
                }
            })
            .collect()
    }
    fn apply_t(&self, y: &[f64], abs: bool) -> Vec<f64> {
        let mut x = vec![0.0; self.inp];
        for (i, &yi) in y.iter().enumerate().take(self.out) {
            if yi == 0.0 {
                continue;
            }
            for (xj, w) in x.iter_mut().zip(self.row(i)) {
                *xj += if abs { w.abs() } else { *w } * yi;
            }
        }
        x
    }
    fn fan_in(&self) -> usize {
        self.inp
    }
    fn fan_out(&self) -> usize {
        self.out
    }
}
