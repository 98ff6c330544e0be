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
//! backward is ~9× slower than PyTorch: shared/spec/candle-notes.md). In f32 on a CPU with
//! AVX-512 the three GEMMs run on the dense loop's tile kernel (`dense_gemm::LeftProduct`), in the
//! `gemm` crate's order, so with `gemm_into`'s bits. Other devices use candle's `conv2d` (see
//! [`conv2d_auto`]).

use super::cpu_op::{CpuFloat, dims4, dispatch2};
use super::dense_gemm::LeftProduct;
use super::gemm::{Mat, gemm_into};
use super::im2col::{ConvGeometry, col2im_strided, im2col_strided};
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::any::TypeId;

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

    /// `plan(b)` for the two sample counts b of a batch's groups (the full groups' and the last
    /// one's) when `left` and T is f32 (the left-product kernel's case), else no plans.
    fn left_plans<T: 'static>(
        &self,
        left: bool,
        plan: impl Fn(usize) -> (usize, Option<LeftProduct>),
    ) -> GroupPlans {
        if !left || TypeId::of::<T>() != TypeId::of::<f32>() || self.g.n == 0 {
            return [(0, None), (0, None)];
        }
        let grp = self.group();
        [grp.min(self.g.n), (self.g.n - 1) % grp + 1].map(plan)
    }

    /// The column matrix `(c·kh·kw, nb·positions)` of the samples `x` (`b ≤ nb` of them, side
    /// by side; zero columns for the other `nb − b`): `x` itself for one sample and a pointwise
    /// kernel, else im2col into `buf`.
    fn columns<'a, T: CpuFloat>(&self, x: &'a [T], nb: usize, buf: &'a mut Vec<T>) -> Mat<'a, T> {
        self.columns_with_stride(x, nb, nb * self.positions(), buf)
    }

    /// [`Self::columns`] with rows of stride `ld` ≥ nb·positions (zeros past the samples).
    fn columns_with_stride<'a, T: CpuFloat>(
        &self,
        x: &'a [T],
        nb: usize,
        ld: usize,
        buf: &'a mut Vec<T>,
    ) -> Mat<'a, T> {
        let (rows, p) = (self.g.rows(), self.positions());
        if nb == 1 && self.is_pointwise() && ld == p {
            return Mat::row_major(x, rows, p);
        }
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
        self.side_by_side_with_stride(g, nb, nb * self.positions(), buf)
    }

    /// [`Self::side_by_side`] with rows of stride `ld` ≥ nb·positions (zeros past the samples).
    fn side_by_side_with_stride<'a, T: CpuFloat>(
        &self,
        g: &'a [T],
        nb: usize,
        ld: usize,
        buf: &'a mut Vec<T>,
    ) -> Mat<'a, T> {
        let p = self.positions();
        if nb == 1 && ld == p {
            return Mat::row_major(g, self.o, p);
        }
        buf.resize(self.o * ld, T::default());
        let b = g.len() / self.output_len().max(1);
        for (j, gb) in g.chunks(self.output_len().max(1)).enumerate() {
            for (oc, row) in gb.chunks_exact(p).enumerate() {
                buf[oc * ld + j * p..][..p].copy_from_slice(row);
            }
        }
        for row in buf.chunks_exact_mut(ld) {
            row[b * p..].fill(T::default());
        }
        Mat::row_major(buf, self.o, ld)
    }
}

/// Scratch buffers of one worker: columns, a side-by-side operand, a GEMM result.
type Scratch<T> = (Vec<T>, Vec<T>, Vec<T>);

/// `x` as `f32` values when T is f32.
fn as_f32<T: 'static>(x: &[T]) -> Option<&[f32]> {
    // SAFETY: T is f32 (the same TypeId), so the slice holds f32 values already.
    (TypeId::of::<T>() == TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts(x.as_ptr().cast(), x.len()) })
}

/// [`as_f32`] for a mutable slice.
fn as_f32_mut<T: 'static>(x: &mut [T]) -> Option<&mut [f32]> {
    // SAFETY: T is f32 (the same TypeId), so the slice holds f32 values already.
    (TypeId::of::<T>() == TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast(), x.len()) })
}

/// Left-product plans for the two group sizes of a batch (see [`ConvShape::left_plans`]), each
/// under the key its group is looked up by ([`plan_for`]).
type GroupPlans = [(usize, Option<LeftProduct>); 2];

/// The plan stored under `key`, if any.
fn plan_for(plans: &GroupPlans, key: usize) -> Option<&LeftProduct> {
    plans
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, lp)| lp.as_ref())
}

/// `dst` (rows of `k`) = the first `k` values of each row of `src` (stride `ld`), as T (exact: T
/// is f32 wherever the kernel ran).
fn unpad_into<T: CpuFloat>(dst: &mut [T], src: &[f32], k: usize, ld: usize) {
    for (d, s) in dst.chunks_exact_mut(k).zip(src.chunks_exact(ld)) {
        for (dv, &sv) in d.iter_mut().zip(&s[..k]) {
            *dv = T::of_f64(sv as f64);
        }
    }
}

/// `t[q·ldt + r] = a[r·cols + q]` (the transpose of the row-major `rows × cols` matrix `a`, rows
/// of stride `ldt`), in 16 × 16 tiles so that both sides stay in cache.
fn transpose_blocked(a: &[f32], rows: usize, cols: usize, t: &mut [f32], ldt: usize) {
    const B: usize = 16;
    for r0 in (0..rows).step_by(B) {
        let r1 = (r0 + B).min(rows);
        for q0 in (0..cols).step_by(B) {
            let q1 = (q0 + B).min(cols);
            for r in r0..r1 {
                let src = &a[r * cols + q0..r * cols + q1];
                for (q, &v) in (q0..q1).zip(src) {
                    t[q * ldt + r] = v;
                }
            }
        }
    }
}

/// One group's `W · im2col` on the AVX-512 left-product kernel (f32 only): the bits of the
/// `gemm_into` call it replaces (`LeftProduct`), written as `(b, o, positions)` into `ys` for
/// the group's `b` real samples. `false` (nothing written) when T is not f32.
#[allow(clippy::too_many_arguments)]
fn forward_group_left<T: CpuFloat>(
    lp: &LeftProduct,
    sh: ConvShape,
    w: &[T],
    xs: &[T],
    nb: usize,
    ys: &mut [T],
    buf: &mut Vec<T>,
    tmp: &mut Vec<T>,
) -> bool {
    let (p, o) = (sh.positions(), sh.o);
    let (ld, ldc) = (LeftProduct::ld(nb * p), LeftProduct::padded_ld(nb * p));
    let cols = sh.columns_with_stride(xs, nb, ldc, buf);
    let (Some(w), Some(c)) = (as_f32(w), cols.as_slice().and_then(as_f32)) else {
        return false;
    };
    if nb == 1 && ld == p && ys.len() == o * p {
        // One sample whose plane fills whole registers: straight into y.
        let Some(ys) = as_f32_mut(ys) else {
            return false;
        };
        lp.apply(w, c, ldc, ys, ld);
        return true;
    }
    tmp.resize(o * ld, T::default());
    let (Some(d), Some(ys)) = (as_f32_mut(tmp), as_f32_mut(ys)) else {
        return false;
    };
    lp.apply(w, c, ldc, d, ld);
    // (o, nb·p) with row stride ld → (b, o, p).
    for (j, yb) in ys.chunks_exact_mut(sh.output_len()).enumerate() {
        for (oc, row) in yb.chunks_exact_mut(p).enumerate() {
            row.copy_from_slice(&d[oc * ld + j * p..][..p]);
        }
    }
    true
}

/// y_b = W · im2col(x_b) for every sample b, a group of samples per GEMM.
fn conv_forward<T: CpuFloat>(sh: ConvShape, x: &[T], w: &[T]) -> candle_core::Result<Vec<T>> {
    conv_forward_with(sh, x, w, true)
}

/// [`conv_forward`], with the left-product kernel where it applies (`left`) or every group
/// through `gemm_into` (the reference the tests compare the kernel's bits with).
fn conv_forward_with<T: CpuFloat>(
    sh: ConvShape,
    x: &[T],
    w: &[T],
    left: bool,
) -> candle_core::Result<Vec<T>> {
    let wm = Mat::row_major(w, sh.o, sh.g.rows());
    let (ilen, olen, p, grp) = (sh.input_len(), sh.output_len(), sh.positions(), sh.group());
    let mut y = vec![T::default(); sh.g.n * olen];
    if olen == 0 || ilen == 0 {
        return Ok(y);
    }
    // f32 on a CPU with AVX-512: the left-product kernel, per padded group width, when it gives
    // the crate's bits on these shapes.
    let plans = sh.left_plans::<T>(left, |b| {
        let nb = sh.padded(b);
        (nb, LeftProduct::new(sh.o, sh.g.rows(), nb * p))
    });
    y.par_chunks_mut(olen * grp)
        .zip(x.par_chunks(ilen * grp))
        .try_for_each_init(Scratch::default, |(buf, _, tmp), (ys, xs)| {
            let b = xs.len() / ilen;
            let nb = sh.padded(b);
            if let Some(lp) = plan_for(&plans, nb)
                && forward_group_left(lp, sh, w, xs, nb, ys, buf, tmp)
            {
                return Ok(());
            }
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
    conv_input_adjoint_with(sh, g, w, true)
}

/// [`conv_input_adjoint`], with the left-product kernel where it applies (`left`; f32 on AVX-512:
/// Wᵀ materialised once, the gradients side by side as C) or every group through `gemm_into`.
fn conv_input_adjoint_with<T: CpuFloat>(
    sh: ConvShape,
    g: &[T],
    w: &[T],
    left: bool,
) -> candle_core::Result<Vec<T>> {
    let wt = Mat::row_major(w, sh.o, sh.g.rows()).t();
    let (ilen, olen, p, grp) = (sh.input_len(), sh.output_len(), sh.positions(), sh.group());
    let mut dx = vec![T::default(); sh.g.n * ilen];
    if olen == 0 || ilen == 0 {
        return Ok(dx);
    }
    let k = sh.g.rows();
    // Wᵀ (k × o) row-major and a plan per group width, on the kernel's path.
    let kernel = as_f32(w).filter(|_| left).map(|w32| {
        let mut wt_rows = vec![0.0f32; k * sh.o];
        transpose_blocked(w32, sh.o, k, &mut wt_rows, sh.o);
        let plans = sh.left_plans::<T>(true, |b| {
            let nb = sh.padded(b);
            (nb, LeftProduct::new(k, sh.o, nb * p))
        });
        (wt_rows, plans)
    });
    dx.par_chunks_mut(ilen * grp)
        .zip(g.par_chunks(olen * grp))
        .try_for_each_init(Scratch::default, |(cols, side, _), (dxs, gs)| {
            let b = gs.len() / olen;
            let nb = sh.padded(b);
            if let Some((wt_rows, plans)) = &kernel
                && let Some(lp) = plan_for(plans, nb)
            {
                let (ld, ldc) = (LeftProduct::ld(nb * p), LeftProduct::padded_ld(nb * p));
                let gm = sh.side_by_side_with_stride(gs, nb, ldc, side);
                cols.resize(k * ld, T::default());
                if let (Some(c), Some(d)) = (gm.as_slice().and_then(as_f32), as_f32_mut(cols)) {
                    lp.apply(wt_rows, c, ldc, d, ld);
                    if nb == 1 && sh.is_pointwise() {
                        // As the `gemm_into` path: the product is dx itself, copied rather than
                        // summed onto +0 by col2im (which would turn a −0 into +0).
                        for (dst, src) in dxs.chunks_exact_mut(p).zip(cols.chunks_exact(ld)) {
                            dst.copy_from_slice(&src[..p]);
                        }
                        return Ok(());
                    }
                    for (j, dxb) in dxs.chunks_exact_mut(ilen).enumerate() {
                        col2im_strided(&sh.g, (sh.ho, sh.wo), &cols[j * p..], dxb, ld);
                    }
                    return Ok(());
                }
            }
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
    conv_weight_adjoint_with(sh, x, g, true)
}

/// [`conv_weight_adjoint`], with the left-product kernel where it applies (`left`; f32 on
/// AVX-512: the gradients side by side as W's rows, the columns transposed into C, the chunk's
/// partial sum kept in a padded buffer) or every group through `gemm_into`.
fn conv_weight_adjoint_with<T: CpuFloat>(
    sh: ConvShape,
    x: &[T],
    g: &[T],
    left: bool,
) -> candle_core::Result<Vec<T>> {
    let wlen = sh.o * sh.g.rows();
    let (ilen, olen, grp) = (sh.input_len(), sh.output_len(), sh.group());
    let mut dw = vec![T::default(); wlen];
    if olen == 0 || ilen == 0 {
        return Ok(dw);
    }
    let (k, p) = (sh.g.rows(), sh.positions());
    // Per group size b: the product's depth is the group's b·p positions.
    let plans = sh.left_plans::<T>(left, |b| (b, LeftProduct::new(sh.o, b * p, k)));
    let f32_left = plans.iter().any(|(_, lp)| lp.is_some());
    let chunk = WEIGHT_GRAD_CHUNK.div_ceil(grp) * grp;
    let partials = x
        .par_chunks(ilen * chunk)
        .zip(g.par_chunks(olen * chunk))
        .map_init(Scratch::default, |(buf, side, _), (xs, gs)| {
            let mut part = vec![T::default(); wlen];
            let (ld, ldc) = (LeftProduct::ld(k), LeftProduct::padded_ld(k));
            // The chunk's sum on the kernel's path, (o × ld); None once a group cannot take it.
            let mut padded: Option<Vec<f32>> = f32_left.then(|| vec![0.0f32; sh.o * ld]);
            let mut ct: Vec<f32> = Vec::new();
            for (i, (xg, gg)) in xs.chunks(ilen * grp).zip(gs.chunks(olen * grp)).enumerate() {
                let b = xg.len() / ilen;
                let cols = sh.columns(xg, b, buf);
                let gm = sh.side_by_side(gg, b, side);
                if let Some(acc) = padded.as_mut() {
                    let plan = plan_for(&plans, b);
                    let ops = (
                        cols.as_slice().and_then(as_f32),
                        gm.as_slice().and_then(as_f32),
                    );
                    if let (Some(lp), (Some(c), Some(gv))) = (plan, ops) {
                        // C = colsᵀ: position q's k values in row q (stride ldc, zeros past k).
                        ct.clear();
                        ct.resize(b * p * ldc, 0.0);
                        transpose_blocked(c, k, b * p, &mut ct, ldc);
                        lp.apply_acc(gv, &ct, ldc, acc, ld, i > 0);
                        continue;
                    }
                    // Not on the kernel after all: hand the sum so far to the generic path.
                    if i > 0 {
                        unpad_into(&mut part, acc, k, ld);
                    }
                    padded = None;
                }
                gemm_into(&mut part, gm, cols.t(), i > 0, false)?;
            }
            if let Some(acc) = padded {
                unpad_into(&mut part, &acc, k, ld);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Products that underflow to −0: the kernel's input adjoint keeps the sign of zero as the
    /// `gemm_into` path does, also for a pointwise layer with one sample per group, where that
    /// path writes the product itself instead of summing it onto +0 (found in review: the kernel's
    /// branch went through col2im and returned +0).
    #[test]
    fn left_product_kernel_keeps_negative_zeros() {
        for (c, h, o, n) in [
            (8usize, 16usize, 16usize, 1usize),
            (8, 10, 16, 1),
            (6, 12, 16, 3),
        ] {
            let sh = ConvShape::new([n, c, h, h], [o, c, 1, 1], 1, 0).unwrap();
            let w = vec![-1e-10f32; o * c];
            let gy = vec![1e-40f32; n * sh.output_len()];
            let x = vec![1e-40f32; n * sh.input_len()];
            let bits = |v: Vec<f32>| v.iter().map(|t| t.to_bits()).collect::<Vec<_>>();
            let dx0 = bits(conv_input_adjoint_with(sh, &gy, &w, false).unwrap());
            // One sample per group (n = 1, and the last sample of the 3): −0 from the direct
            // write; samples summed by col2im: +0.
            assert!(
                dx0.contains(&0x8000_0000) && (n > 1 || dx0.iter().all(|&b| b == 0x8000_0000)),
                "no −0 in the reference"
            );
            assert_eq!(
                bits(conv_input_adjoint_with(sh, &gy, &w, true).unwrap()),
                dx0
            );
            assert_eq!(
                bits(conv_forward_with(sh, &x, &w, true).unwrap()),
                bits(conv_forward_with(sh, &x, &w, false).unwrap())
            );
            assert_eq!(
                bits(conv_weight_adjoint_with(sh, &x, &gy, true).unwrap()),
                bits(conv_weight_adjoint_with(sh, &x, &gy, false).unwrap())
            );
        }
    }

    /// The left-product kernel gives the bits of the `gemm_into` groups it replaces (forward,
    /// input adjoint and weight adjoint), for LeNet's
    /// and ResNet-18's kinds of layers (5×5, 3×3 padded, strided, 1×1 pointwise and strided,
    /// planes from 32×32 down to 2×2, so groups of 1 to 64 samples) and batches with a full,
    /// a partial and a single group; values of mixed sign and magnitude.
    #[test]
    fn left_product_kernel_has_the_bits_of_gemm_into() {
        let mut state = 7u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 40) as f32 / (1u64 << 24) as f32;
            (2.0 * u - 1.0) * [1.0, 1e-3, 37.0, 0.25][(state >> 20) as usize % 4]
        };
        // (c, h, o, k, stride, padding)
        let layers = [
            (1, 28, 6, 5, 1, 0),
            (6, 12, 16, 5, 1, 0),
            (3, 32, 64, 3, 1, 1),
            (64, 8, 64, 3, 1, 1),
            (64, 8, 128, 3, 2, 1),
            (64, 8, 128, 1, 2, 0),
            (128, 4, 128, 1, 1, 0),
            (256, 2, 512, 3, 1, 1),
            (40, 2, 24, 1, 1, 0),
        ];
        let mut kernel_used = 0;
        for (c, h, o, k, stride, padding) in layers {
            for n in [1usize, 7, 70] {
                let sh = ConvShape::new([n, c, h, h], [o, c, k, k], stride, padding).unwrap();
                let x: Vec<f32> = (0..n * c * h * h).map(|_| next()).collect();
                let w: Vec<f32> = (0..o * c * k * k).map(|_| next()).collect();
                let want = conv_forward_with(sh, &x, &w, false).unwrap();
                let got = conv_forward_with(sh, &x, &w, true).unwrap();
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "c {c} h {h} o {o} k {k} stride {stride} padding {padding} n {n}"
                );
                let gy: Vec<f32> = (0..n * sh.output_len()).map(|_| next()).collect();
                let (dx0, dx1) = (
                    conv_input_adjoint_with(sh, &gy, &w, false).unwrap(),
                    conv_input_adjoint_with(sh, &gy, &w, true).unwrap(),
                );
                assert_eq!(
                    dx1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    dx0.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "input adjoint: c {c} h {h} o {o} k {k} stride {stride} padding {padding} n {n}"
                );
                let (dw0, dw1) = (
                    conv_weight_adjoint_with(sh, &x, &gy, false).unwrap(),
                    conv_weight_adjoint_with(sh, &x, &gy, true).unwrap(),
                );
                assert_eq!(
                    dw1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    dw0.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "weight adjoint: c {c} h {h} o {o} k {k} stride {stride} padding {padding} n {n}"
                );
                let nb = sh.padded(sh.group().min(n));
                let (kk, np) = (sh.g.rows(), nb * sh.positions());
                let bp = sh.group().min(n) * sh.positions();
                kernel_used += usize::from(LeftProduct::new(o, kk, np).is_some());
                kernel_used += usize::from(LeftProduct::new(kk, o, np).is_some());
                kernel_used += usize::from(LeftProduct::new(o, bp, kk).is_some());
            }
        }
        if super::super::dense_gemm::available() {
            assert!(
                kernel_used >= 60,
                "the kernel ran on {kernel_used} of 81 products"
            );
        } else {
            eprintln!("no AVX-512 on this CPU: the kernel did not run");
        }
    }
}
