//! The evaluation-mode forward pass for values only (no autograd graph, PyTorch's `no_grad`):
//! parameters enter detached, so no op records its inputs and every activation is freed as soon
//! as the next layer has read it; on the CPU, BatchNorm (with a following ReLU) and the residual
//! sum (with its ReLU) overwrite the convolution output they follow ([`super::in_place`]).
//! Same float operations in the same order as [`super::forward_layers`] with `train = false`:
//! the results are bit-identical, only time and memory differ.

use super::in_place::{AddInPlace, BnEvalInPlace, ChannelBiasInPlace, ReluInPlace};
use super::{BasicBlock, BatchNorm2d, Conv2d, Layer, add_channel_bias, conv2d_auto};
use crate::error::Result;
use candle_core::{DType, Tensor};

/// An activation and whether this pass produced it (then no one else holds its storage and it
/// may be overwritten).
struct Act {
    t: Tensor,
    owned: bool,
}

impl Act {
    /// Whether the in-place CPU kernels apply.
    fn in_place_ok(&self) -> bool {
        self.owned
            && self.t.device().is_cpu()
            && matches!(self.t.dtype(), DType::F32 | DType::F64)
            && self.t.is_contiguous()
    }
}

/// W ⋆ x + b with the parameters detached.
fn conv(c: &Conv2d, x: &Tensor) -> Result<Tensor> {
    let y = conv2d_auto(x, &c.weight().detach(), c.stride(), c.padding())?;
    Ok(match c.bias() {
        Some(b) => add_channel_bias(&y, &b.detach())?,
        None => y,
    })
}

/// W ⋆ x + b, then ReLU when `relu`, the bias (and ReLU) added in place on the convolution's
/// fresh output on the CPU; returns whether the ReLU was applied.
fn conv_bias_relu(c: &Conv2d, x: &Tensor, relu: bool) -> Result<(Act, bool)> {
    let y = Act {
        t: conv2d_auto(x, &c.weight().detach(), c.stride(), c.padding())?,
        owned: true,
    };
    match c.bias() {
        Some(b) if y.in_place_ok() && b.dtype() == y.t.dtype() => {
            y.t.inplace_op2(&b.detach(), &ChannelBiasInPlace { relu })?;
            Ok((y, relu))
        }
        Some(b) => Ok((
            Act {
                t: add_channel_bias(&y.t, &b.detach())?,
                owned: true,
            },
            false,
        )),
        None => Ok((y, false)),
    }
}

/// BatchNorm in eval mode, then ReLU when `relu`; in place when `x` is ours.
fn batch_norm(bn: &BatchNorm2d, x: Act, relu: bool) -> Result<Act> {
    if x.in_place_ok() && x.t.dtype() == bn.weight().dtype() {
        let op = BnEvalInPlace::new(
            bn.running_mean(),
            bn.running_var(),
            bn.weight(),
            bn.bias(),
            bn.eps(),
            relu,
        )?;
        x.t.inplace_op1(&op)?;
        return Ok(x);
    }
    let y = bn.forward(&x.t, false)?.detach();
    let y = if relu { super::relu(&y)? } else { y };
    Ok(Act { t: y, owned: true })
}

/// relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x)), as [`BasicBlock::forward`] in eval mode.
fn basic_block(b: &BasicBlock, x: &Tensor) -> Result<Act> {
    let own = |t| Act { t, owned: true };
    let y = batch_norm(b.bn1(), own(conv(b.conv1(), x)?), true)?;
    let y = batch_norm(b.bn2(), own(conv(b.conv2(), &y.t)?), false)?;
    let s = match b.shortcut() {
        Some((c, bn)) => batch_norm(bn, own(conv(c, x)?), false)?.t,
        None => x.clone(),
    };
    if y.in_place_ok() && s.dtype() == y.t.dtype() {
        y.t.inplace_op2(&s.contiguous()?, &AddInPlace { relu: true })?;
        return Ok(y);
    }
    Ok(own(super::relu(&(y.t + s)?)?))
}

/// Rows of every GEMM of a dense layer in evaluation: the `gemm` crate picks its kernel and
/// k-blocking from the shapes (another summation order below about 100 rows, or at one row), so
/// the rows go through GEMMs of exactly this many rows, the last chunk padded with zero rows:
/// every image's logits are then computed by the same calls whatever batch it is in
/// (tests/model_inference.rs; the convolutions' rule is `MIN_COLS` in conv_gemm.rs).
pub const DENSE_ROWS: usize = 128;

/// Batches from which [`dense_run_packed`] packs W once instead of letting every chunk's GEMM
/// pack it (a performance choice only: both paths give the same bits).
const PACK_FROM_ROWS: usize = 2 * DENSE_ROWS;

/// x Wᵀ + b in chunks of [`DENSE_ROWS`] rows (see there).
fn linear_fixed_rows(l: &super::Linear, x: &Tensor) -> Result<Tensor> {
    let n = x.dim(0)?;
    if n == DENSE_ROWS || n == 0 {
        return l.forward(x);
    }
    let mut outs: Vec<Tensor> = Vec::with_capacity(n.div_ceil(DENSE_ROWS));
    let mut start = 0;
    while start < n {
        let len = DENSE_ROWS.min(n - start);
        let part = x.narrow(0, start, len)?;
        let y = if len == DENSE_ROWS {
            l.forward(&part)?
        } else {
            let mut dims = part.dims().to_vec();
            dims[0] = DENSE_ROWS - len;
            let pad = Tensor::zeros(dims, part.dtype(), part.device())?;
            l.forward(&Tensor::cat(&[&part, &pad], 0)?)?
                .narrow(0, 0, len)?
        };
        outs.push(y);
        start += len;
    }
    Ok(Tensor::cat(&outs, 0)?)
}

/// The number of layers from `layers[0]` that form a run `Linear (ReLU Linear)* ReLU?`.
fn dense_run_len(layers: &[Layer]) -> usize {
    let mut n = 0;
    while let Some(Layer::Linear(_)) = layers.get(n) {
        n += 1;
        if !matches!(layers.get(n), Some(Layer::Relu)) {
            break;
        }
        n += 1;
    }
    n
}

/// A run of dense layers (`run`, from [`dense_run_len`]) of an f32 CPU batch on the AVX-512
/// kernel ([`super::packed_dense::PackedRun`]: each block of [`DENSE_ROWS`] rows through every
/// layer of the run on one rayon task, W packed once, the same bits as layer by layer:
/// tests/model_inference.rs). With `norm`, `x` is the `(n, c, h, w)` batch before
/// `Normalize, Flatten`, and each block's images are first normalised by
/// [`super::normalise_image`], as [`normalise_cpu`] does. Where the kernel refuses a layer (e.g.
/// a 2-class head: the crate sums small shapes another way) the run stops before it. Returns the
/// output and the number of layers of `run` it covers; `None` where the kernel does not apply
/// to the first layer.
fn dense_run_packed(
    norm: Option<&super::Normalize>,
    run: &[Layer],
    x: &Tensor,
) -> Result<Option<(Tensor, usize)>> {
    use super::packed_dense::{PackedDense, PackedRun};
    use rayon::prelude::*;
    let rank = if norm.is_some() { 4 } else { 2 };
    if !x.device().is_cpu() || x.dtype() != DType::F32 || x.rank() != rank {
        return Ok(None);
    }
    let plane = x.dims()[rank - 2..].iter().product::<usize>();
    if let Some(nz) = norm
        && (x.dim(1)? != nz.mean().len() || nz.std().len() != nz.mean().len())
    {
        return Ok(None);
    }
    // The batch's shape first (cheap), then the weights.
    let Some(Layer::Linear(first)) = run.first() else {
        return Ok(None);
    };
    if x.elem_count() != x.dim(0)? * first.in_features() {
        return Ok(None);
    }
    let (mut layers, mut covered) = (Vec::new(), 0);
    for (i, layer) in run.iter().enumerate() {
        let Layer::Linear(l) = layer else { continue };
        let w = l.weight().detach().flatten_all()?.to_vec1::<f32>()?;
        let bias = l.bias().map(|b| b.detach().to_vec1::<f32>()).transpose()?;
        let relu = matches!(run.get(i + 1), Some(Layer::Relu));
        let Some(layer) = PackedDense::new(&w, bias, l.out_features(), l.in_features(), relu)
        else {
            break;
        };
        layers.push(layer);
        covered = i + 1 + usize::from(relu);
    }
    let Some(run) = PackedRun::new(layers) else {
        return Ok(None);
    };
    let (n, inp, out) = (x.dim(0)?, run.inp(), run.out());
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let mut y = vec![0.0f32; n * out];
    y.par_chunks_mut(DENSE_ROWS * out)
        .zip(xs.par_chunks(DENSE_ROWS * inp))
        .for_each_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(x_in, a, b), (yc, xc)| {
                let rows = xc.len() / inp;
                let xc = match norm {
                    Some(nz) => {
                        x_in.clear();
                        x_in.extend_from_slice(xc);
                        for im in x_in.chunks_exact_mut(inp) {
                            super::normalise_image(im, plane, nz.mean(), nz.std());
                        }
                        &x_in[..]
                    }
                    None => xc,
                };
                run.block(rows, xc, a, b, yc);
            },
        );
    Ok(Some((Tensor::from_vec(y, (n, out), x.device())?, covered)))
}

/// `Normalize::forward` of a CPU `(n, c, h, w)` batch in one pass over its values, image planes
/// on the rayon pool: (x − μ_c) / σ_c with μ_c and σ_c in x's dtype, the subtraction and the
/// division each rounded once as candle's broadcast ops round them, so the bits are the same;
/// it spares two full-size tensors and candle's CPU thread pool, whose workers spin at a barrier
/// beside the GEMMs' threads (a third of the MLP's evaluation time on 2 cores).
fn normalise_cpu(nz: &super::Normalize, x: &Tensor) -> Result<Tensor> {
    use super::normalise_image;
    use rayon::prelude::*;
    let (_, c, hh, ww) = x.dims4()?;
    let (mean, std) = (nz.mean(), nz.std());
    if c != mean.len() {
        return nz.forward(x);
    }
    let (plane, image) = (hh * ww, (c * hh * ww).max(1));
    match x.dtype() {
        DType::F32 => {
            let mut v = x.flatten_all()?.to_vec1::<f32>()?;
            v.par_chunks_mut(image)
                .for_each(|im| normalise_image(im, plane, mean, std));
            Ok(Tensor::from_vec(v, x.dims(), x.device())?)
        }
        DType::F64 => {
            let mut v = x.flatten_all()?.to_vec1::<f64>()?;
            let mean: Vec<f64> = mean.iter().map(|&m| f64::from(m)).collect();
            let std: Vec<f64> = std.iter().map(|&s| f64::from(s)).collect();
            v.par_chunks_mut(image)
                .for_each(|im| normalise_image(im, plane, &mean, &std));
            Ok(Tensor::from_vec(v, x.dims(), x.device())?)
        }
        _ => nz.forward(x),
    }
}

/// Applies `layers` in evaluation mode to `x`, values only: the result carries no gradient.
pub fn infer_layers(layers: &[Layer], x: &Tensor) -> Result<Tensor> {
    let mut h = Act {
        t: x.detach(),
        owned: false,
    };
    let mut i = 0;
    while i < layers.len() {
        let next_is_relu = matches!(layers.get(i + 1), Some(Layer::Relu));
        h = match &layers[i] {
            Layer::Conv2d(c) => {
                let (y, relu_done) = conv_bias_relu(c, &h.t, next_is_relu)?;
                i += usize::from(relu_done);
                y
            }
            Layer::BatchNorm2d(bn) => {
                i += usize::from(next_is_relu);
                batch_norm(bn, h, next_is_relu)?
            }
            Layer::Relu if h.in_place_ok() => {
                h.t.inplace_op1(&ReluInPlace)?;
                h
            }
            Layer::BasicBlock(b) => basic_block(b, &h.t)?,
            // Normalize, Flatten and a run of dense layers, fused (an MLP's whole forward).
            Layer::Normalize(nz)
                if h.t.rank() == 4
                    && h.t.dim(0)? >= PACK_FROM_ROWS
                    && matches!(layers.get(i + 1), Some(Layer::Flatten))
                    && let run = dense_run_len(&layers[i + 2..])
                    && run > 0
                    && let Some((y, covered)) =
                        dense_run_packed(Some(nz), &layers[i + 2..i + 2 + run], &h.t)? =>
            {
                i += covered + 1;
                Act { t: y, owned: true }
            }
            Layer::Normalize(nz) if h.t.device().is_cpu() && h.t.rank() == 4 => Act {
                t: normalise_cpu(nz, &h.t)?,
                owned: true,
            },
            Layer::Linear(_)
                if h.t.dim(0)? >= PACK_FROM_ROWS
                    && let run = dense_run_len(&layers[i..])
                    && run > 0
                    && let Some((y, covered)) =
                        dense_run_packed(None, &layers[i..i + run], &h.t)? =>
            {
                i += covered - 1;
                Act { t: y, owned: true }
            }
            Layer::Linear(l) => Act {
                t: linear_fixed_rows(l, &h.t)?.detach(),
                owned: true,
            },
            // The rest as in training code; one layer's graph is dropped at once by the detach.
            // These kinds write a fresh tensor (flatten: a view of what it got); other kinds may
            // return a view of a caller's tensor, so their output is never overwritten.
            other => {
                let owned = match other {
                    Layer::Flatten => h.owned,
                    Layer::Normalize(_) | Layer::Relu | Layer::MaxPool2 | Layer::GlobalAvgPool => {
                        true
                    }
                    _ => false,
                };
                Act {
                    t: other.forward(&h.t, false)?.detach(),
                    owned,
                }
            }
        };
        i += 1;
    }
    Ok(h.t)
}
