//! Global average pooling `(c, h, w)` → `(c)` as a [`LinearMap`] (each output the mean of hw
//! inputs).

use super::linear_map::LinearMap;

/// Mean over the spatial positions of each of `c` channels of size `hw`.
#[derive(Debug, Clone, PartialEq)]
pub struct AvgPool {
    pub c: usize,
    pub hw: usize,
}

impl LinearMap for AvgPool {
    fn in_dim(&self) -> usize {
        self.c * self.hw
    }
    fn out_dim(&self) -> usize {
        self.c
    }
    fn apply(&self, x: &[f64], _abs: bool) -> Vec<f64> {
        let k = 1.0 / self.hw as f64;
        (0..self.c)
            .map(|i| x[i * self.hw..(i + 1) * self.hw].iter().sum::<f64>() * k)
            .collect()
    }
    fn apply_t(&self, y: &[f64], _abs: bool) -> Vec<f64> {
        let k = 1.0 / self.hw as f64;
        (0..self.c * self.hw).map(|j| y[j / self.hw] * k).collect()
    }
    fn fan_in(&self) -> usize {
        // hw terms plus the rounding of 1/hw.
        self.hw + 1
    }
    fn fan_out(&self) -> usize {
        2
    }
}
