//! 2-d convolution on the CPU as three bilinear ops, each im2col + one GEMM per group of samples
//! (one sample for large planes; several side by side for small ones, so that a GEMM has enough
//! columns and packs the kernel once for them, see [`ConvShape::group`]):
//!
//! * [`Conv2dOp`]: y = W ⋆ x;
//! * [`ConvInputAdjoint`]: (g, W) ↦ the x-gradient, ⟨W ⋆ x, g⟩ = ⟨x, ConvInputAdjoint(g, W)⟩
//!   (a transposed convolution);
//! * [`ConvWeightAdjoint`]: (x, g) ↦ the W-gradient, ⟨W ⋆ x, g⟩ = ⟨W, ConvWeightAdjoint(x, g)⟩.
//!
//! Each op's backward is written with the other two (the adjoint identities above), so gradients
//! of every order flow — the double backpropagation of the gradient penalty included — while no
//! column matrix ever enters the autograd graph (candle's own CPU conv2d is a direct loop whose
//! backward is ~9× slower than PyTorch: shared/spec/candle-notes.md). Other devices use candle's
//! `conv2d` (see [`conv2d_auto`]).

use super::cpu_op::{CpuFloat, dims4, dispatch2};
use super::gemm::{Mat, gemm_into};
use super::im2col::{ConvGeometry, col2im_strided, im2col_strided};
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Samples per partial sum of the weight gradient (at least; rounded up to whole groups): fixed by
/// the geometry, so that the summation order (and the result, bit for bit) does not depend on the
/// number of threads.
const WEIGHT_GRAD_CHUNK: usize = 8;

/// Output positions a GEMM of a group of samples aims at (samples side by side).
const TARGET_COLS: usize = 256;

/// Fewest columns of any forward or input-adjoint GEMM: the last group of a batch is padded up to
/// it with zero columns. The `gemm` crate picks its k-blocking (hence each entry's summation
/// order) from the shapes, differently when m ≤ 64 and n ≤ 64, or n = 1; with n ≥ 65 always,
/// every column is summed the same way in every group, so a sample's result does not depend on
/// the batch it is in (tested: tests/model_inference.rs).
const MIN_COLS: usize = 65;

/// Shapes of one convolution: input `(n, c, h, w)`, kernel `(o, c, kh, kw)`, output `(n, o, ho, wo)`.
#[derive(Debug, Clone, Copy)]
struct ConvShape {
    g: ConvGeometry,
    o: usize,
    ho: usize,
    wo: usize,
}

impl ConvShape {
    fn new(
        [n, c, h, w]: [usize; 4],
        [o, kc, kh, kw]: [usize; 4],
        stride: usize,
        padding: usize,
    ) -> candle_core::Result<Self> {
        if kc != c {
            candle_core::bail!("conv2d: input has {c} channels, the kernel expects {kc}");
        }
        let g = ConvGeometry {
            n,
            c,
            h,
            w,
            kh,
            kw,
            stride,
            padding,
        };
        let Some((ho, wo)) = g.output_hw() else {
            candle_core::bail!("conv2d: kernel {kh}×{kw} larger than the padded input {h}×{w}");
        };
        Ok(ConvShape { g, o, ho, wo })
    }

    fn input_len(&self) -> usize {
        self.g.c * self.g.h * self.g.w
    }
    fn output_len(&self) -> usize {
        self.o * self.ho * self.wo
    }
    fn positions(&self) -> usize {
        self.ho * self.wo
    }
    /// A 1×1, stride-1, unpadded kernel: the column matrix is the sample itself.
    fn is_pointwise(&self) -> bool {
        self.g.kh == 1 && self.g.kw == 1 && self.g.stride == 1 && self.g.padding == 0
    }
    fn x_dims(&self) -> [usize; 4] {
        [self.g.n, self.g.c, self.g.h, self.g.w]
    }
    fn w_dims(&self) -> [usize; 4] {
        [self.o, self.g.c, self.g.kh, self.g.kw]
    }
    fn y_dims(&self) -> [usize; 4] {
        [self.g.n, self.o, self.ho, self.wo]
    }

    /// Samples per GEMM group: ⌈TARGET_COLS / positions⌉ (1 for planes of ≥ 256 positions).
    fn group(&self) -> usize {
        TARGET_COLS.div_ceil(self.positions().max(1))
    }

    /// Samples a group of `b` real ones is computed as (the rest zero columns): `b` when the
    /// group has one sample (n = positions, the same for every sample), else at least
    /// ⌈MIN_COLS / positions⌉ (see [`MIN_COLS`]).
    fn padded(&self, b: usize) -> usize {
        if self.group() == 1 {
            b
        } else {
            b.max(MIN_COLS.div_ceil(self.positions().max(1)))
        }
    }

    /// The column matrix `(c·kh·kw, nb·positions)` of the samples `x` (`b ≤ nb` of them, side
    /// by side; zero columns for the other `nb − b`): `x` itself for one sample and a pointwise
    /// kernel, else im2col into `buf`.
    fn columns<'a, T: CpuFloat>(&self, x: &'a [T], nb: usize, buf: &'a mut Vec<T>) -> Mat<'a, T> {
        let (rows, p) = (self.g.rows(), self.positions());
        if nb == 1 && self.is_pointwise() {
            return Mat::row_major(x, rows, p);
        }
        let ld = nb * p;
        buf.resize(rows * ld, T::default());
        let b = x.len() / self.input_len().max(1);
        for (j, xb) in x.chunks(self.input_len().max(1)).enumerate() {
            im2col_strided(&self.g, (self.ho, self.wo), xb, &mut buf[j * p..], ld);
        }
        for row in buf.chunks_exact_mut(ld) {
            row[b * p..].fill(T::default());
        }
        Mat::row_major(buf, rows, ld)
    }

    /// The output-shaped samples `g` (`b` of them, `(o, positions)` each) side by side as one
    /// `(o, nb·positions)` matrix (zero columns for the other `nb − b`); `g` itself when nb = 1.
    fn side_by_side<'a, T: CpuFloat>(
        &self,
        g: &'a [T],
        nb: usize,
        buf: &'a mut Vec<T>,
    ) -> Mat<'a, T> {
        let p = self.positions();
        if nb == 1 {
            return Mat::row_major(g, self.o, p);
        }
        buf.resize(self.o * nb * p, T::default());
        let b = g.len() / self.output_len().max(1);
        for (j, gb) in g.chunks(self.output_len().max(1)).enumerate() {
            for (oc, row) in gb.chunks_exact(p).enumerate() {
                buf[(oc * nb + j) * p..][..p].copy_from_slice(row);
            }
        }
        for row in buf.chunks_exact_mut(nb * p) {
            row[b * p..].fill(T::default());
        }
        Mat::row_major(buf, self.o, nb * p)
    }
}

/// Scratch buffers of one worker: columns, a side-by-side operand, a GEMM result.
type Scratch<T> = (Vec<T>, Vec<T>, Vec<T>);

/// y_b = W · im2col(x_b) for every sample b, a group of samples per GEMM.
fn conv_forward<T: CpuFloat>(sh: ConvShape, x: &[T], w: &[T]) -> candle_core::Result<Vec<T>> {
    let wm = Mat::row_major(w, sh.o, sh.g.rows());
    let (ilen, olen, p, grp) = (sh.input_len(), sh.output_len(), sh.positions(), sh.group());
    let mut y = vec![T::default(); sh.g.n * olen];
    if olen == 0 || ilen == 0 {
        return Ok(y);
    }
    y.par_chunks_mut(olen * grp)
        .zip(x.par_chunks(ilen * grp))
        .try_for_each_init(Scratch::default, |(buf, _, tmp), (ys, xs)| {
            let b = xs.len() / ilen;
            let nb = sh.padded(b);
            let cols = sh.columns(xs, nb, buf);
            if nb == 1 {
                return gemm_into(ys, wm, cols, false, false);
            }
            tmp.resize(sh.o * nb * p, T::default());
            gemm_into(tmp, wm, cols, false, false)?;
            // (o, nb·p) → (b, o, p).
            for (j, yb) in ys.chunks_exact_mut(olen).enumerate() {
                for (oc, row) in yb.chunks_exact_mut(p).enumerate() {
                    row.copy_from_slice(&tmp[(oc * nb + j) * p..][..p]);
                }
            }
            Ok(())
        })?;
    Ok(y)
}

/// dx_b = col2im(Wᵀ · g_b) for every sample b, a group of samples per GEMM.
fn conv_input_adjoint<T: CpuFloat>(sh: ConvShape, g: &[T], w: &[T]) -> candle_core::Result<Vec<T>> {
    let wt = Mat::row_major(w, sh.o, sh.g.rows()).t();
    let (ilen, olen, p, grp) = (sh.input_len(), sh.output_len(), sh.positions(), sh.group());
    let mut dx = vec![T::default(); sh.g.n * ilen];
    if olen == 0 || ilen == 0 {
        return Ok(dx);
    }
    dx.par_chunks_mut(ilen * grp)
        .zip(g.par_chunks(olen * grp))
        .try_for_each_init(Scratch::default, |(cols, side, _), (dxs, gs)| {
            let b = gs.len() / olen;
            let nb = sh.padded(b);
            let gm = sh.side_by_side(gs, nb, side);
            if nb == 1 && sh.is_pointwise() {
                return gemm_into(dxs, wt, gm, false, false);
            }
            let ld = nb * p;
            cols.resize(sh.g.rows() * ld, T::default());
            gemm_into(cols, wt, gm, false, false)?;
            for (j, dxb) in dxs.chunks_exact_mut(ilen).enumerate() {
                col2im_strided(&sh.g, (sh.ho, sh.wo), &cols[j * p..], dxb, ld);
            }
            Ok(())
        })?;
    Ok(dx)
}

/// dW = Σ_b g_b · im2col(x_b)ᵀ: one GEMM per group of samples (inner dimension: their positions)
/// accumulated over fixed chunks of whole groups, then the chunks summed in order.
fn conv_weight_adjoint<T: CpuFloat>(
    sh: ConvShape,
    x: &[T],
    g: &[T],
) -> candle_core::Result<Vec<T>> {
    let wlen = sh.o * sh.g.rows();
    let (ilen, olen, grp) = (sh.input_len(), sh.output_len(), sh.group());
    let mut dw = vec![T::default(); wlen];
    if olen == 0 || ilen == 0 {
        return Ok(dw);
    }
    let chunk = WEIGHT_GRAD_CHUNK.div_ceil(grp) * grp;
    let partials = x
        .par_chunks(ilen * chunk)
        .zip(g.par_chunks(olen * chunk))
        .map_init(Scratch::default, |(buf, side, _), (xs, gs)| {
            let mut part = vec![T::default(); wlen];
            for (i, (xg, gg)) in xs.chunks(ilen * grp).zip(gs.chunks(olen * grp)).enumerate() {
                let b = xg.len() / ilen;
                let cols = sh.columns(xg, b, buf);
                let gm = sh.side_by_side(gg, b, side);
                gemm_into(&mut part, gm, cols.t(), i > 0, false)?;
            }
            Ok(part)
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    for part in partials {
        for (d, p) in dw.iter_mut().zip(part) {
            *d += p;
        }
    }
    Ok(dw)
}

/// y = W ⋆ x for `x (n, c, h, w)` and `W (o, c, kh, kw)` (PyTorch's cross-correlation).
#[derive(Debug, Clone, Copy)]
pub struct Conv2dOp {
    pub stride: usize,
    pub padding: usize,
}

/// (g `(n, o, ho, wo)`, W) ↦ the adjoint of x ↦ W ⋆ x applied to g, shape `(n, c, h, w)`.
#[derive(Debug, Clone, Copy)]
pub struct ConvInputAdjoint {
    pub stride: usize,
    pub padding: usize,
    /// The input's spatial size (not implied by the output's when stride > 1).
    pub h: usize,
    pub w: usize,
}

/// (x, g `(n, o, ho, wo)`) ↦ the adjoint of W ↦ W ⋆ x applied to g, shape `(o, c, kh, kw)`.
#[derive(Debug, Clone, Copy)]
pub struct ConvWeightAdjoint {
    pub stride: usize,
    pub padding: usize,
    pub kh: usize,
    pub kw: usize,
}

fn apply<C: CustomOp2 + Send + Sync + 'static>(
    a: &Tensor,
    b: &Tensor,
    op: C,
) -> candle_core::Result<Tensor> {
    a.contiguous()?.apply_op2(&b.contiguous()?, op)
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "conv2d-gemm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = dims4(l1, "conv2d input")?;
        let w = dims4(l2, "conv2d kernel")?;
        let sh = ConvShape::new(x, w, self.stride, self.padding)?;
        let out = dispatch2(
            s1,
            l1,
            s2,
            l2,
            "conv2d",
            |x, w| conv_forward(sh, x, w),
            |x, w| conv_forward(sh, x, w),
        )?;
        Ok((out, Shape::from(sh.y_dims().to_vec())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, _, h, wd) = x.dims4()?;
        let (_, _, kh, kw) = w.dims4()?;
        let (stride, padding) = (self.stride, self.padding);
        let dx = apply(
            grad,
            w,
            ConvInputAdjoint {
                stride,
                padding,
                h,
                w: wd,
            },
        )?;
        let dw = apply(
            x,
            grad,
            ConvWeightAdjoint {
                stride,
                padding,
                kh,
                kw,
            },
        )?;
        Ok((Some(dx), Some(dw)))
    }
}

impl CustomOp2 for ConvInputAdjoint {
    fn name(&self) -> &'static str {
        "conv2d-input-adjoint"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let [n, o, ho, wo] = dims4(l1, "conv2d output gradient")?;
        let w = dims4(l2, "conv2d kernel")?;
        let sh = ConvShape::new([n, w[1], self.h, self.w], w, self.stride, self.padding)?;
        if (o, ho, wo) != (sh.o, sh.ho, sh.wo) {
            candle_core::bail!(
                "conv2d input adjoint: gradient {:?} does not match the output {:?}",
                [n, o, ho, wo],
                sh.y_dims()
            );
        }
        let out = dispatch2(
            s1,
            l1,
            s2,
            l2,
            "conv2d input adjoint",
            |g, w| conv_input_adjoint(sh, g, w),
            |g, w| conv_input_adjoint(sh, g, w),
        )?;
        Ok((out, Shape::from(sh.x_dims().to_vec())))
    }

    /// u = A_W* g is linear in g with adjoint A_W (so dg = W ⋆ U), and ⟨A_W* g, U⟩ = ⟨W ⋆ U, g⟩ =
    /// ⟨W, ConvWeightAdjoint(U, g)⟩ gives dW.
    fn bwd(
        &self,
        g: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, _, kh, kw) = w.dims4()?;
        let (stride, padding) = (self.stride, self.padding);
        let dg = apply(grad, w, Conv2dOp { stride, padding })?;
        let dw = apply(
            grad,
            g,
            ConvWeightAdjoint {
                stride,
                padding,
                kh,
                kw,
            },
        )?;
        Ok((Some(dg), Some(dw)))
    }
}

impl CustomOp2 for ConvWeightAdjoint {
    fn name(&self) -> &'static str {
        "conv2d-weight-adjoint"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = dims4(l1, "conv2d input")?;
        let [n, o, ho, wo] = dims4(l2, "conv2d output gradient")?;
        let sh = ConvShape::new(x, [o, x[1], self.kh, self.kw], self.stride, self.padding)?;
        if (n, ho, wo) != (x[0], sh.ho, sh.wo) {
            candle_core::bail!(
                "conv2d weight adjoint: gradient {:?} does not match the output {:?}",
                [n, o, ho, wo],
                sh.y_dims()
            );
        }
        let out = dispatch2(
            s1,
            l1,
            s2,
            l2,
            "conv2d weight adjoint",
            |x, g| conv_weight_adjoint(sh, x, g),
            |x, g| conv_weight_adjoint(sh, x, g),
        )?;
        Ok((out, Shape::from(sh.w_dims().to_vec())))
    }

    /// v = B_x* g is linear in g with ⟨B_x* g, V⟩ = ⟨V ⋆ x, g⟩ (so dg = V ⋆ x), and bilinear in
    /// (x, g) with ⟨V ⋆ x, g⟩ = ⟨x, ConvInputAdjoint(g, V)⟩ (so dx).
    fn bwd(
        &self,
        x: &Tensor,
        g: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, _, h, wd) = x.dims4()?;
        let (stride, padding) = (self.stride, self.padding);
        let dx = apply(
            g,
            grad,
            ConvInputAdjoint {
                stride,
                padding,
                h,
                w: wd,
            },
        )?;
        let dg = apply(x, grad, Conv2dOp { stride, padding })?;
        Ok((Some(dx), Some(dg)))
    }
}

/// W ⋆ x (no bias) for `x (n, c, h, w)`, `w (out, c, kh, kw)`: on the CPU (f32/f64) by the GEMM
/// ops of this module, elsewhere by candle's `conv2d`. Same result as
/// `x.conv2d(w, padding, stride, 1, 1)`.
pub fn conv2d_auto(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
) -> candle_core::Result<Tensor> {
    let cpu_float = x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64);
    if !cpu_float || x.dtype() != w.dtype() {
        return x.conv2d(w, padding, stride, 1, 1);
    }
    if stride == 0 {
        candle_core::bail!("conv2d: stride must be > 0");
    }
    apply(x, w, Conv2dOp { stride, padding })
}
