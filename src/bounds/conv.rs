//! 2-d convolution (cross-correlation, zero padding, square stride) as a [`LinearMap`] on
//! flattened `(c, h, w)` tensors, PyTorch's `nn.Conv2d` semantics.

use super::linear_map::LinearMap;

/// A convolution kernel `(c_out, c_in, kh, kw)` applied to `(c_in, h, w)` inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv {
    pub c_out: usize,
    pub c_in: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    /// Input spatial size.
    pub h: usize,
    pub w: usize,
    /// Output spatial size ⌊(h + 2p − k)/s⌋ + 1.
    pub ho: usize,
    pub wo: usize,
    /// Kernel, row-major `(c_out, c_in, kh, kw)`.
    pub k: Vec<f64>,
}

impl Conv {
    /// Kernel entry K[o, c, a, b].
    pub fn at(&self, o: usize, c: usize, a: usize, b: usize) -> f64 {
        self.k[((o * self.c_in + c) * self.kh + a) * self.kw + b]
    }

    /// For kernel offset `a` along an axis of input size `n` and output size `no`: the output
    /// indices i whose input index i·s + a − p lies in [0, n).
    pub(crate) fn range(&self, a: usize, n: usize, no: usize) -> (usize, usize) {
        let s = self.stride as isize;
        let off = a as isize - self.pad as isize;
        // smallest i ≥ 0 with i·s + off ≥ 0
        let lo = if off >= 0 { 0 } else { ((-off) + s - 1) / s };
        // largest i with i·s + off ≤ n − 1
        let top = n as isize - 1 - off;
        let hi = if top < 0 {
            -1
        } else {
            (top / s).min(no as isize - 1)
        };
        if hi < lo {
            (0, 0)
        } else {
            (lo as usize, hi as usize + 1)
        }
    }

    fn run(&self, x: &[f64], abs: bool, transpose: bool) -> Vec<f64> {
        let (hw_in, hw_out) = (self.h * self.w, self.ho * self.wo);
        let mut out = vec![
            0.0;
            if transpose {
                self.c_in * hw_in
            } else {
                self.c_out * hw_out
            }
        ];
        let s = self.stride;
        for o in 0..self.c_out {
            for c in 0..self.c_in {
                for a in 0..self.kh {
                    let (i0, i1) = self.range(a, self.h, self.ho);
                    for b in 0..self.kw {
                        let (j0, j1) = self.range(b, self.w, self.wo);
                        let mut k = self.at(o, c, a, b);
                        if abs {
                            k = k.abs();
                        }
                        if k == 0.0 {
                            continue;
                        }
                        for i in i0..i1 {
                            let xi = i * s + a - self.pad;
                            let in_row = c * hw_in + xi * self.w;
                            let out_row = o * hw_out + i * self.wo;
                            if s == 1 && j1 > j0 {
                                // Contiguous on both sides: the same updates in the same order,
                                // as slices the compiler vectorises.
                                let (x0, n) = (in_row + j0 + b - self.pad, j1 - j0);
                                let (src, dst) = if transpose {
                                    (&x[out_row + j0..out_row + j0 + n], x0)
                                } else {
                                    (&x[x0..x0 + n], out_row + j0)
                                };
                                for (d, v) in out[dst..dst + n].iter_mut().zip(src) {
                                    *d += k * v;
                                }
                                continue;
                            }
                            for j in j0..j1 {
                                let xj = j * s + b - self.pad;
                                if transpose {
                                    out[in_row + xj] += k * x[out_row + j];
                                } else {
                                    out[out_row + j] += k * x[in_row + xj];
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

impl LinearMap for Conv {
    fn in_dim(&self) -> usize {
        self.c_in * self.h * self.w
    }
    fn out_dim(&self) -> usize {
        self.c_out * self.ho * self.wo
    }
    fn apply(&self, x: &[f64], abs: bool) -> Vec<f64> {
        self.run(x, abs, false)
    }
    fn apply_t(&self, y: &[f64], abs: bool) -> Vec<f64> {
        self.run(y, abs, true)
    }
    fn fan_in(&self) -> usize {
        self.c_in * self.kh * self.kw
    }
    fn fan_out(&self) -> usize {
        self.c_out * self.kh * self.kw
    }
}
