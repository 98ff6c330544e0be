//! Window geometry of 2-D pooling (PyTorch/ONNX `MaxPool`/`AveragePool`, floor mode): kernel
//! (kh, kw), stride (sh, sw), symmetric padding (ph, pw); output side ⌊(h + 2ph − kh)/sh⌋ + 1.
//! The windows list the input entries each output reads (padding positions left out).

use crate::error::{Error, Result};

/// Kernel, stride and padding of a pool over a `(c, h, w)` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeometry {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
}

impl PoolGeometry {
    /// A k × k kernel with stride s and padding p in both directions (the usual pool).
    pub fn square(c: usize, h: usize, w: usize, k: usize, s: usize, p: usize) -> PoolGeometry {
        PoolGeometry {
            c,
            h,
            w,
            kh: k,
            kw: k,
            sh: s,
            sw: s,
            ph: p,
            pw: p,
        }
    }

    /// The output side (ho, wo), or a one-line error for a geometry no pool can have: zero
    /// kernel or stride, padding ≥ kernel (a window could hold padding only), kernel larger
    /// than the padded input.
    pub fn out_hw(&self) -> Result<(usize, usize)> {
        let g = self;
        if g.kh == 0 || g.kw == 0 || g.sh == 0 || g.sw == 0 {
            return Err(Error::BadInput(format!(
                "pool: kernel {}×{} and stride {}×{} must be positive",
                g.kh, g.kw, g.sh, g.sw
            )));
        }
        if g.ph >= g.kh || g.pw >= g.kw {
            return Err(Error::BadInput(format!(
                "pool: padding {}×{} must be smaller than the kernel {}×{}",
                g.ph, g.pw, g.kh, g.kw
            )));
        }
        if g.h + 2 * g.ph < g.kh || g.w + 2 * g.pw < g.kw {
            return Err(Error::BadInput(format!(
                "pool: kernel {}×{} larger than the padded {}×{} input",
                g.kh,
                g.kw,
                g.h + 2 * g.ph,
                g.w + 2 * g.pw
            )));
        }
        Ok((
            (g.h + 2 * g.ph - g.kh) / g.sh + 1,
            (g.w + 2 * g.pw - g.kw) / g.sw + 1,
        ))
    }

    /// Output entries c·ho·wo (0 for an invalid geometry).
    pub fn out_len(&self) -> usize {
        self.out_hw().map_or(0, |(ho, wo)| self.c * ho * wo)
    }

    /// The real input rows (or columns) of output row i: [i·s − p, i·s − p + k) ∩ [0, n).
    fn span(i: usize, s: usize, p: usize, k: usize, n: usize) -> (usize, usize) {
        let start = i * s;
        (
            start.saturating_sub(p),
            (start + k).saturating_sub(p).min(n),
        )
    }

    /// Per output entry (channel-major, then row, column), the input indices of its window
    /// without the padding; empty for an invalid geometry. Never an empty window otherwise
    /// (padding < kernel).
    pub fn windows(&self) -> Vec<Vec<usize>> {
        let Ok((ho, wo)) = self.out_hw() else {
            return Vec::new();
        };
        let g = self;
        let mut v = Vec::with_capacity(g.c * ho * wo);
        for ch in 0..g.c {
            for i in 0..ho {
                let (r0, r1) = Self::span(i, g.sh, g.ph, g.kh, g.h);
                for j in 0..wo {
                    let (c0, c1) = Self::span(j, g.sw, g.pw, g.kw, g.w);
                    let mut win = Vec::with_capacity((r1 - r0) * (c1 - c0));
                    for r in r0..r1 {
                        for c in c0..c1 {
                            win.push(ch * g.h * g.w + r * g.w + c);
                        }
                    }
                    v.push(win);
                }
            }
        }
        v
    }

    /// The most windows any input entry lies in (1 without overlap, e.g. kernel = stride).
    pub fn max_cover(&self) -> usize {
        let mut count = vec![0usize; self.c * self.h * self.w];
        for win in self.windows() {
            for i in win {
                count[i] += 1;
            }
        }
        count.into_iter().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo(h: usize, k: usize, s: usize, p: usize) -> PoolGeometry {
        PoolGeometry::square(2, h, h + 1, k, s, p)
    }

    /// Windows against a direct enumeration of the padded kernel positions, output sizes against
    /// PyTorch's floor formula, and the cover count.
    #[test]
    fn windows_match_the_padded_enumeration() {
        for (h, k, s, p) in [
            (4, 2, 2, 0),
            (5, 3, 1, 1),
            (5, 3, 2, 1),
            (6, 3, 2, 0),
            (7, 2, 3, 1),
        ] {
            let g = geo(h, k, s, p);
            let (ho, wo) = g.out_hw().unwrap();
            assert_eq!(ho, (h + 2 * p - k) / s + 1);
            assert_eq!(wo, (h + 1 + 2 * p - k) / s + 1);
            let wins = g.windows();
            assert_eq!(wins.len(), 2 * ho * wo);
            let mut cover = vec![0; 2 * h * (h + 1)];
            for ch in 0..2 {
                for i in 0..ho {
                    for j in 0..wo {
                        let mut want = Vec::new();
                        for a in 0..k {
                            for b in 0..k {
                                let (r, c) =
                                    ((i * s + a) as i64 - p as i64, (j * s + b) as i64 - p as i64);
                                if r >= 0 && c >= 0 && (r as usize) < h && (c as usize) < h + 1 {
                                    want.push(ch * h * (h + 1) + r as usize * (h + 1) + c as usize);
                                }
                            }
                        }
                        assert!(!want.is_empty());
                        for &x in &want {
                            cover[x] += 1;
                        }
                        assert_eq!(wins[(ch * ho + i) * wo + j], want);
                    }
                }
            }
            assert_eq!(g.max_cover(), *cover.iter().max().unwrap());
        }
        assert!(geo(4, 2, 2, 2).out_hw().is_err());
        assert!(geo(4, 2, 0, 0).out_hw().is_err());
        assert!(geo(1, 4, 1, 1).out_hw().is_err());
    }
}
