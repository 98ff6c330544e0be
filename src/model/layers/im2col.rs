//! im2col and its adjoint col2im for one sample: the column matrix `(c·kh·kw, ho·wo)` whose entry
//! (tap, position) is the input pixel that kernel tap sees at that output position (0 in the
//! padding). The convolution ops in [`super::conv_gemm`] build on these.

use candle_core::Tensor;
use std::ops::AddAssign;

/// The geometry shared by [`Im2Col`] and [`Col2Im`]: input `(n, c, h, w)`, square stride, zero
/// padding, kernel `kh × kw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvGeometry {
    /// The geometry of convolving `x (n, c, h, w)` with a kernel `w (out, c', kh, kw)`.
    pub fn of(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> candle_core::Result<Self> {
        let (n, c, h, wd) = x.dims4()?;
        let (_, _, kh, kw) = w.dims4()?;
        Ok(ConvGeometry {
            n,
            c,
            h,
            w: wd,
            kh,
            kw,
            stride,
            padding,
        })
    }

    /// Output size ⌊(h + 2p − kh)/s⌋ + 1 × ⌊(w + 2p − kw)/s⌋ + 1 (None if the kernel does not fit).
    pub fn output_hw(&self) -> Option<(usize, usize)> {
        Some((
            super::window_out(self.h, self.kh, self.stride, self.padding)?,
            super::window_out(self.w, self.kw, self.stride, self.padding)?,
        ))
    }

    /// Rows of the column matrix: c·kh·kw (the flattened kernel, PyTorch order).
    pub fn rows(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Output positions o ∈ [lo, hi) whose input index o·s + k − p lies in [0, len), for
    /// kernel offset `k` along an axis of input length `len` and output length `out`.
    fn valid(&self, k: usize, len: usize, out: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.padding);
        let lo = if k >= p { 0 } else { (p - k).div_ceil(s) };
        let hi = if len + p > k {
            ((len - 1 + p - k) / s + 1).min(out)
        } else {
            0
        };
        (lo, hi.max(lo))
    }
}

/// Writes the column matrix `(c·kh·kw, ho·wo)` of one sample `x (c, h, w)` into `dst`; `ho × wo`
/// must be [`ConvGeometry::output_hw`] (`g.n` is ignored).
pub fn im2col_sample<T: Copy + Default>(
    g: &ConvGeometry,
    (ho, wo): (usize, usize),
    x: &[T],
    dst: &mut [T],
) {
    im2col_strided(g, (ho, wo), x, dst, ho * wo);
}

/// [`im2col_sample`] into the columns of a wider matrix: row r of the sample's column matrix is
/// written to `dst[r·ld ..][.. ho·wo]` (`ld ≥ ho·wo`; the other entries are left alone), so that
/// several samples side by side form one GEMM operand.
pub fn im2col_strided<T: Copy + Default>(
    g: &ConvGeometry,
    (ho, wo): (usize, usize),
    x: &[T],
    dst: &mut [T],
    ld: usize,
) {
    let plen = ho * wo;
    let (s, p) = (g.stride, g.padding);
    for row in 0..g.rows() {
        let d = &mut dst[row * ld..][..plen];
        let (ci, i, j) = (row / (g.kh * g.kw), (row / g.kw) % g.kh, row % g.kw);
        let (oy_lo, oy_hi) = g.valid(i, g.h, ho);
        let (ox_lo, ox_hi) = g.valid(j, g.w, wo);
        if oy_lo > 0 || oy_hi < ho || ox_lo > 0 || ox_hi < wo {
            d.fill(T::default());
        }
        let plane = &x[ci * g.h * g.w..][..g.h * g.w];
        for oy in oy_lo..oy_hi {
            let src = &plane[(oy * s + i - p) * g.w..][..g.w];
            let d = &mut d[oy * wo..][..wo];
            if s == 1 {
                let ix0 = ox_lo + j - p;
                d[ox_lo..ox_hi].copy_from_slice(&src[ix0..ix0 + (ox_hi - ox_lo)]);
            } else {
                for ox in ox_lo..ox_hi {
                    d[ox] = src[ox * s + j - p];
                }
            }
        }
    }
}

/// The adjoint of [`im2col_sample`]: scatter-adds a column matrix onto one sample `dst (c, h, w)`.
pub fn col2im_sample<T: Copy + AddAssign>(
    g: &ConvGeometry,
    (ho, wo): (usize, usize),
    cols: &[T],
    dst: &mut [T],
) {
    col2im_strided(g, (ho, wo), cols, dst, ho * wo);
}

/// The adjoint of [`im2col_strided`]: row r of the sample's column matrix is read from
/// `cols[r·ld ..][.. ho·wo]`.
pub fn col2im_strided<T: Copy + AddAssign>(
    g: &ConvGeometry,
    (ho, wo): (usize, usize),
    cols: &[T],
    dst: &mut [T],
    ld: usize,
) {
    let plen = ho * wo;
    let (s, p) = (g.stride, g.padding);
    for row in 0..g.rows() {
        let src_row = &cols[row * ld..][..plen];
        let (ci, i, j) = (row / (g.kh * g.kw), (row / g.kw) % g.kh, row % g.kw);
        let (oy_lo, oy_hi) = g.valid(i, g.h, ho);
        let (ox_lo, ox_hi) = g.valid(j, g.w, wo);
        let plane = &mut dst[ci * g.h * g.w..][..g.h * g.w];
        for oy in oy_lo..oy_hi {
            let d = &mut plane[(oy * s + i - p) * g.w..][..g.w];
            let src = &src_row[oy * wo..][..wo];
            if s == 1 {
                let ix0 = ox_lo + j - p;
                let d = &mut d[ix0..ix0 + (ox_hi - ox_lo)];
                for (d, &v) in d.iter_mut().zip(&src[ox_lo..ox_hi]) {
                    *d += v;
                }
            } else {
                for ox in ox_lo..ox_hi {
                    d[ox * s + j - p] += src[ox];
                }
            }
        }
    }
}
