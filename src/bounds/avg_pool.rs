//! Average pooling as a [`LinearMap`] (PyTorch `AvgPool2d` / ONNX `AveragePool`, floor mode):
//! each output the mean of its window, divided by the kernel area (`count_include_pad`: padding
//! counts as zeros) or by the number of real entries in the window; global average pooling
//! (`(c, h, w)` → `(c)`) is the window covering the whole input.

use super::linear_map::LinearMap;
use super::pool_geometry::PoolGeometry;

/// Average pool of a `(c, h, w)` input with the given window geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct AvgPool {
    pub geo: PoolGeometry,
    pub count_include_pad: bool,
    /// The windows (input indices without padding), cached from `geo`.
    wins: Vec<Vec<usize>>,
}

impl AvgPool {
    /// The pool; an invalid geometry is bad input (one line).
    pub fn new(geo: PoolGeometry, count_include_pad: bool) -> crate::error::Result<AvgPool> {
        geo.out_hw()?;
        Ok(AvgPool {
            geo,
            count_include_pad,
            wins: geo.windows(),
        })
    }

    /// Global average pooling: the mean over the h·w positions of each channel.
    pub fn global(c: usize, h: usize, w: usize) -> AvgPool {
        let geo = PoolGeometry {
            c,
            h,
            w,
            kh: h.max(1),
            kw: w.max(1),
            sh: 1,
            sw: 1,
            ph: 0,
            pw: 0,
        };
        AvgPool {
            geo,
            count_include_pad: true,
            wins: geo.windows(),
        }
    }

    /// The windows, output-major.
    pub fn windows(&self) -> &[Vec<usize>] {
        &self.wins
    }

    /// The coefficient 1/n of output k (n the kernel area or the window's real entries), as
    /// the f64 the map multiplies by.
    pub fn coef(&self, k: usize) -> f64 {
        let n = if self.count_include_pad {
            self.geo.kh * self.geo.kw
        } else {
            self.wins[k].len()
        };
        1.0 / n as f64
    }

    /// The most real entries in one window.
    pub fn max_window(&self) -> usize {
        self.wins.iter().map(|w| w.len()).max().unwrap_or(0)
    }

    /// The most windows one input entry is in.
    pub fn max_cover(&self) -> usize {
        let mut count = vec![0usize; self.in_dim()];
        for win in &self.wins {
            for &i in win {
                count[i] += 1;
            }
        }
        count.into_iter().max().unwrap_or(0)
    }
}

impl LinearMap for AvgPool {
    fn in_dim(&self) -> usize {
        self.geo.c * self.geo.h * self.geo.w
    }
    fn out_dim(&self) -> usize {
        self.wins.len()
    }
    /// The coefficients are positive, so A and |A| agree.
    fn apply(&self, x: &[f64], _abs: bool) -> Vec<f64> {
        self.wins
            .iter()
            .enumerate()
            .map(|(k, win)| win.iter().map(|&i| x[i]).sum::<f64>() * self.coef(k))
            .collect()
    }
    fn apply_t(&self, y: &[f64], _abs: bool) -> Vec<f64> {
        let mut x = vec![0.0; self.in_dim()];
        for (k, win) in self.wins.iter().enumerate() {
            let v = y[k] * self.coef(k);
            for &i in win {
                x[i] += v;
            }
        }
        x
    }
    fn fan_in(&self) -> usize {
        // The window's terms plus the rounding of 1/n.
        self.max_window() + 1
    }
    fn fan_out(&self) -> usize {
        // One product per window the entry is in, plus the rounding of 1/n.
        self.max_cover() + 1
    }
}
