//! The Monte Carlo loop of a dense ReLU network on the CPU (`Normalize → Flatten → Linear (→ ReLU →
//! Linear)*`, f32) with the noise fused into the forward pass: each rayon task takes a block of
//! [`DENSE_ROWS`] noisy copies, draws and checks their noise (`NoiseKey::add_noise_checked`),
//! normalises them and runs the layers' GEMMs on its own thread into its own buffers — no tensor,
//! no allocation per op, no hand-off between thread pools. The float operations are those of
//! `infer_layers` (normalise, GEMMs of exactly [`DENSE_ROWS`] rows with the same kernel, bias,
//! ReLU), so the logits, and the scores computed from them as before, have the same bits
//! (tested against the tensor path in `tests/smoothing_dense_mc.rs`). Where the CPU has AVX-512
//! the GEMMs of long runs use W packed once (`model::layers::dense_gemm`: the `gemm` crate's
//! summation order, operation for operation, so again the same bits; only a block's own rows are
//! computed). The few candidate inputs of copies that fail the coupling check are scored through
//! the same layers ([`DenseMc::score_rows`]).

use super::noise::NoiseKey;
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::model::layers::gemm::{Mat, gemm_into};
use crate::model::layers::packed_dense::{PackedDense, PackedRun};
use crate::model::layers::relu::relu_in_place;
use crate::model::layers::{DENSE_ROWS, add_bias};
use crate::score::{ScoreKind, score_logits};
use crate::train::dense_step::DenseNet;
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

/// One linear layer's parameters, copied once per Monte Carlo run.
struct Dense {
    /// W, `(out, in)` row-major.
    w: Vec<f32>,
    /// b, `(out)`, if any.
    b: Option<Vec<f32>>,
    inp: usize,
    out: usize,
}

/// A dense ReLU network read off a model for the fused Monte Carlo loop.
pub struct DenseMc<'m> {
    model: &'m dyn Classifier,
    mean: Vec<f32>,
    std: Vec<f32>,
    plane: usize,
    layers: Vec<Dense>,
    /// The layers on the packed AVX-512 kernel (the same bits as `gemm_into`), when the CPU
    /// has it and every layer's shapes allow it.
    packed: Option<PackedRun>,
}

thread_local! {
    /// Each thread's [`Scratch`] for [`DenseMc::noisy_logits`] and [`DenseMc::score_rows`].
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Runs `f` on this thread's [`Scratch`] (a nested call on the same thread, were a layer ever
/// to run on rayon, gets a fresh one instead of a borrow panic).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Per-task buffers (the block's noisy inputs, then activations), reused across blocks.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    a: Vec<f32>,
    /// The packed kernel's second activation buffer.
    b: Vec<f32>,
}

impl<'m> DenseMc<'m> {
    /// The model as a dense ReLU network in f32 on the CPU, if it is one.
    pub fn of(model: &'m dyn Classifier, device: &Device) -> Result<Option<Self>> {
        let Some(m) = model.as_model() else {
            return Ok(None);
        };
        let Some(net) = DenseNet::of(m) else {
            return Ok(None);
        };
        if !device.is_cpu() || net.dtype() != DType::F32 {
            return Ok(None);
        }
        let (mean, std, plane) = net.normalisation();
        let mut layers = Vec::new();
        for l in net.linears() {
            layers.push(Dense {
                w: l.weight().flatten_all()?.to_vec1::<f32>()?,
                b: l.bias().map(|b| b.to_vec1::<f32>()).transpose()?,
                inp: l.in_features(),
                out: l.out_features(),
            });
        }
        Ok(Some(DenseMc {
            model,
            mean: mean.to_vec(),
            std: std.to_vec(),
            plane,
            layers,
            packed: None,
        }))
    }

    /// The same loop with W packed for the AVX-512 kernel when the CPU has it and every layer's
    /// shapes allow it (same bits; packing costs about as much as the kernel saves on ~10³
    /// copies of the MLP, so the engine packs for longer runs only).
    pub fn packed(mut self) -> Self {
        let last = self.layers.len().saturating_sub(1);
        self.packed = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| PackedDense::new(&l.w, l.b.clone(), l.out, l.inp, i < last))
            .collect::<Option<Vec<_>>>()
            .and_then(PackedRun::new);
        self
    }

    /// Whether the layers run on the packed AVX-512 kernel.
    pub fn uses_packed_kernel(&self) -> bool {
        self.packed.is_some()
    }

    /// Values per input.
    pub fn dim(&self) -> usize {
        self.layers[0].inp
    }

    /// Logits per copy.
    fn classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.out)
    }

    /// The logits `(count, classes)` of copies `start..start + count` of sample `index` and, per
    /// copy, whether its noise is exact (blocks of [`DENSE_ROWS`] copies on rayon): with
    /// [`Self::scores_of_logits`], the engine's `noisy_scores_checked` for one batch.
    #[allow(clippy::too_many_arguments)]
    pub fn noisy_logits(
        &self,
        key: &NoiseKey,
        index: u64,
        x: &[f32],
        sigma: f64,
        start: u64,
        count: usize,
        exact: &mut [bool],
    ) -> Result<Vec<f32>> {
        let (d, k) = (self.dim(), self.classes());
        if x.len() != d || exact.len() < count {
            return Err(Error::Internal(
                "dense Monte Carlo: sizes do not match".into(),
            ));
        }
        let mut logits = vec![0.0f32; count * k];
        logits
            .par_chunks_mut(DENSE_ROWS * k)
            .zip(exact[..count].par_chunks_mut(DENSE_ROWS))
            .enumerate()
            .try_for_each(|(blk, (lg, ex))| {
                let first = start + (blk * DENSE_ROWS) as u64;
                // One scratch per worker thread, kept across batches: no 400 KB buffers
                // allocated and zeroed per rayon split.
                with_scratch(|s| self.block(s, key, index, x, sigma, first, lg, ex))
            })?;
        Ok(logits)
    }

    /// The scores of `count` rows of logits from [`Self::noisy_logits`] (the tensor path's
    /// `score_logits`, so the same bits).
    pub fn scores_of_logits(
        &self,
        logits: Vec<f32>,
        count: usize,
        kind: ScoreKind,
        temperature: f64,
    ) -> Result<Vec<f64>> {
        let t = Tensor::from_vec(logits, (count, self.classes()), &Device::Cpu)?;
        score_logits(self.model, t, kind, temperature)
    }

    /// One block of `ex.len()` ≤ [`DENSE_ROWS`] copies from copy `first`: noise and exactness
    /// into `ex`, logits into `lg`; the rows past the block's copies are zeros (GEMM rows are
    /// independent, so they change nothing).
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        s: &mut Scratch,
        key: &NoiseKey,
        index: u64,
        x: &[f32],
        sigma: f64,
        first: u64,
        lg: &mut [f32],
        ex: &mut [bool],
    ) -> Result<()> {
        let d = self.dim();
        let rows = ex.len();
        s.x.resize(DENSE_ROWS * d, 0.0);
        s.x[rows * d..].fill(0.0);
        for (j, (row, ok)) in s.x.chunks_exact_mut(d).zip(ex.iter_mut()).enumerate() {
            *ok = key.add_noise_checked(index, first + j as u64, sigma, x, row);
            self.normalise(row);
        }
        self.forward(s, rows, lg)
    }

    /// Normalises one input as the tensor path does: (x − mean[c]) / std[c], two f32 roundings.
    fn normalise(&self, row: &mut [f32]) {
        crate::model::layers::normalise_image(row, self.plane, &self.mean, &self.std);
    }

    /// Scores of `count` inputs stored row-major in `x` (no noise): the tensor path's
    /// `score_flat`, bit for bit, through this loop's layers (used for the few candidate inputs
    /// of inexact copies, `Coupling::inexact_intervals`).
    pub fn score_rows(
        &self,
        x: &[f32],
        count: usize,
        kind: ScoreKind,
        temperature: f64,
    ) -> Result<Vec<f64>> {
        let (d, k) = (self.dim(), self.classes());
        if x.len() != count * d {
            return Err(Error::Internal(
                "dense Monte Carlo: sizes do not match".into(),
            ));
        }
        let mut logits = vec![0.0f32; count * k];
        let run = |s: &mut Scratch| -> Result<()> {
            for (xs, lg) in x
                .chunks(DENSE_ROWS * d)
                .zip(logits.chunks_mut(DENSE_ROWS * k))
            {
                let rows = xs.len() / d;
                s.x.resize(DENSE_ROWS * d, 0.0);
                s.x[..xs.len()].copy_from_slice(xs);
                s.x[xs.len()..].fill(0.0);
                for row in s.x.chunks_exact_mut(d).take(rows) {
                    self.normalise(row);
                }
                self.forward(s, rows, lg)?;
            }
            Ok(())
        };
        with_scratch(run)?;
        let t = Tensor::from_vec(logits, (count, k), &Device::Cpu)?;
        score_logits(self.model, t, kind, temperature)
    }

    /// The layers on the normalised inputs in `s.x` (`DENSE_ROWS` rows, those past `rows`
    /// zero): logits of the first `rows` into `lg`.
    fn forward(&self, s: &mut Scratch, rows: usize, lg: &mut [f32]) -> Result<()> {
        if let Some(p) = &self.packed {
            p.block(rows, &s.x, &mut s.a, &mut s.b, lg);
            return Ok(());
        }
        // Activations alternate between two buffers; `h` ends holding the logits.
        let (mut h, mut o) = (std::mem::take(&mut s.x), std::mem::take(&mut s.a));
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            o.resize(DENSE_ROWS * l.out, 0.0);
            let lhs = Mat::row_major(&h[..DENSE_ROWS * l.inp], DENSE_ROWS, l.inp);
            let w = Mat::row_major(&l.w, l.out, l.inp).t();
            gemm_into(&mut o, lhs, w, false, false)?;
            if let Some(b) = &l.b {
                o.chunks_exact_mut(l.out).for_each(|row| add_bias(row, b));
            }
            if i < last {
                relu_in_place(&mut o);
            }
            std::mem::swap(&mut h, &mut o);
        }
        let k = self.classes();
        lg.copy_from_slice(&h[..rows * k]);
        (s.x, s.a) = (h, o);
        Ok(())
    }
}
