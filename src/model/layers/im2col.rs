//! Convolution as im2col + one GEMM on the CPU (candle's own CPU conv2d is a direct loop and its
//! input gradient, conv_transpose2d, is ~9× slower than PyTorch; shared/spec/candle-notes.md).
//!
//! [`Im2Col`] and [`Col2Im`] are linear maps and adjoint to each other, so each one's backward is
//! the other one, applied as a recorded op: gradients of any order flow through them, and
//! conv = W·im2col(x) is differentiated by candle's matmul rules. CPU only: other devices use
//! candle's `conv2d` (see [`conv2d_im2col`]).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
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
        let (hp, wp) = (self.h + 2 * self.padding, self.w + 2 * self.padding);
        if hp < self.kh || wp < self.kw || self.stride == 0 {
            return None;
        }
        Some((
            (hp - self.kh) / self.stride + 1,
            (wp - self.kw) / self.stride + 1,
        ))
    }

    /// Rows of the column matrix: c·kh·kw (the flattened kernel, PyTorch order).
    fn rows(&self) -> usize {
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

/// Runs `f(index, chunk)` over `data.chunks_mut(chunk)`, on all cores when the work is large.
fn par_chunks<T: Send>(data: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if chunk == 0 || data.is_empty() {
        return;
    }
    let chunks = data.len().div_ceil(chunk);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(chunks);
    if threads <= 1 || data.len() < (1 << 16) {
        data.chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
        return;
    }
    let per = chunks.div_ceil(threads);
    std::thread::scope(|scope| {
        for (t, block) in data.chunks_mut(per * chunk).enumerate() {
            let f = &f;
            scope.spawn(move || {
                for (i, c) in block.chunks_mut(chunk).enumerate() {
                    f(t * per + i, c);
                }
            });
        }
    });
}

fn contiguous<'a, T>(data: &'a [T], layout: &Layout, op: &str) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: the input must be contiguous"),
    }
}

fn im2col_kernel<T: Copy + Default + Send + Sync>(g: ConvGeometry, x: &[T]) -> Vec<T> {
    let Some((ho, wo)) = g.output_hw() else {
        return Vec::new();
    };
    let ncols = g.n * ho * wo;
    let mut out = vec![T::default(); g.rows() * ncols];
    let (s, p) = (g.stride, g.padding);
    par_chunks(&mut out, ncols, |row, dst| {
        let (ci, i, j) = (row / (g.kh * g.kw), (row / g.kw) % g.kh, row % g.kw);
        let (oy_lo, oy_hi) = g.valid(i, g.h, ho);
        let (ox_lo, ox_hi) = g.valid(j, g.w, wo);
        for b in 0..g.n {
            let plane = &x[(b * g.c + ci) * g.h * g.w..][..g.h * g.w];
            for oy in oy_lo..oy_hi {
                let src = &plane[(oy * s + i - p) * g.w..][..g.w];
                let d = &mut dst[(b * ho + oy) * wo..][..wo];
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
    });
    out
}

fn col2im_kernel<T: Copy + Default + AddAssign + Send + Sync>(
    g: ConvGeometry,
    cols: &[T],
) -> Vec<T> {
    let Some((ho, wo)) = g.output_hw() else {
        return Vec::new();
    };
    let ncols = g.n * ho * wo;
    let mut out = vec![T::default(); g.n * g.c * g.h * g.w];
    let (s, p) = (g.stride, g.padding);
    par_chunks(&mut out, g.h * g.w, |plane_idx, plane| {
        let (b, ci) = (plane_idx / g.c, plane_idx % g.c);
        for i in 0..g.kh {
            let (oy_lo, oy_hi) = g.valid(i, g.h, ho);
            for j in 0..g.kw {
                let (ox_lo, ox_hi) = g.valid(j, g.w, wo);
                let row = &cols[((ci * g.kh + i) * g.kw + j) * ncols..][..ncols];
                for oy in oy_lo..oy_hi {
                    let d = &mut plane[(oy * s + i - p) * g.w..][..g.w];
                    let src = &row[(b * ho + oy) * wo..][..wo];
                    for ox in ox_lo..ox_hi {
                        d[ox * s + j - p] += src[ox];
                    }
                }
            }
        }
    });
    out
}

/// `(n, c, h, w)` → the column matrix `(c·kh·kw, n·ho·wo)`; entry (row, col) is the input pixel
/// the kernel tap `row` sees at output position `col` (0 in the padding).
#[derive(Debug, Clone, Copy)]
pub struct Im2Col(pub ConvGeometry);

/// The adjoint of [`Im2Col`]: scatter-adds a column matrix back onto `(n, c, h, w)`.
#[derive(Debug, Clone, Copy)]
pub struct Col2Im(pub ConvGeometry);

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        if layout.shape().dims() != [g.n, g.c, g.h, g.w] {
            candle_core::bail!("im2col: input {:?} does not match {g:?}", layout.shape());
        }
        let Some((ho, wo)) = g.output_hw() else {
            candle_core::bail!("im2col: kernel larger than the padded input ({g:?})");
        };
        let cols = g.n * ho * wo;
        let out = match storage {
            CpuStorage::F32(v) => {
                CpuStorage::F32(im2col_kernel(g, contiguous(v, layout, "im2col")?))
            }
            CpuStorage::F64(v) => {
                CpuStorage::F64(im2col_kernel(g, contiguous(v, layout, "im2col")?))
            }
            other => candle_core::bail!("im2col: f32 or f64 only, got {:?}", other.dtype()),
        };
        Ok((out, Shape::from((g.rows(), cols))))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(Col2Im(self.0))?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        let Some((ho, wo)) = g.output_hw() else {
            candle_core::bail!("col2im: kernel larger than the padded input ({g:?})");
        };
        if layout.shape().dims() != [g.rows(), g.n * ho * wo] {
            candle_core::bail!("col2im: input {:?} does not match {g:?}", layout.shape());
        }
        let out = match storage {
            CpuStorage::F32(v) => {
                CpuStorage::F32(col2im_kernel(g, contiguous(v, layout, "col2im")?))
            }
            CpuStorage::F64(v) => {
                CpuStorage::F64(col2im_kernel(g, contiguous(v, layout, "col2im")?))
            }
            other => candle_core::bail!("col2im: f32 or f64 only, got {:?}", other.dtype()),
        };
        Ok((out, Shape::from((g.n, g.c, g.h, g.w))))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(Im2Col(self.0))?))
    }
}

/// W ⋆ x (no bias) for `x (n, c, h, w)`, `w (out, c, kh, kw)`: on the CPU as W·im2col(x) (one
/// GEMM), elsewhere candle's `conv2d`. Same result as `x.conv2d(w, padding, stride, 1, 1)`.
pub fn conv2d_im2col(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
) -> candle_core::Result<Tensor> {
    if !x.device().is_cpu() || !matches!(x.dtype(), DType::F32 | DType::F64) {
        return x.conv2d(w, padding, stride, 1, 1);
    }
    let (out, cw, _, _) = w.dims4()?;
    let g = ConvGeometry::of(x, w, stride, padding)?;
    let (n, c, kh, kw) = (g.n, g.c, g.kh, g.kw);
    if c != cw {
        candle_core::bail!("conv2d: input has {c} channels, the kernel expects {cw}");
    }
    let Some((ho, wo)) = g.output_hw() else {
        candle_core::bail!(
            "conv2d: kernel {kh}×{kw} larger than the padded input {}×{}",
            g.h,
            g.w
        );
    };
    let cols = x.contiguous()?.apply_op1(Im2Col(g))?;
    let y = w.reshape((out, c * kh * kw))?.matmul(&cols)?;
    y.reshape((out, n, ho, wo))?.transpose(0, 1)?.contiguous()
}

/// Largest column matrix (entries) [`conv2d_auto`] builds: 2²⁵ (128 MiB in f32). The matrix is
/// kept alive by the autograd graph until backward, so larger convolutions use candle's direct
/// `conv2d` instead (a ResNet-18 batch of 128 at 32×32 would otherwise hold ~2 GB of columns).
pub const IM2COL_MAX_ELEMS: usize = 1 << 25;

/// W ⋆ x (no bias): [`conv2d_im2col`] on the CPU when its column matrix has at most
/// [`IM2COL_MAX_ELEMS`] entries, candle's `conv2d` otherwise (both gradient-checked).
pub fn conv2d_auto(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
) -> candle_core::Result<Tensor> {
    let g = ConvGeometry::of(x, w, stride, padding)?;
    match g.output_hw() {
        Some((ho, wo)) if g.rows() * g.n * ho * wo <= IM2COL_MAX_ELEMS => {
            conv2d_im2col(x, w, stride, padding)
        }
        _ => x.conv2d(w, padding, stride, 1, 1),
    }
}
