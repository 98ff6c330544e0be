//! The Monte Carlo engine: scores of noisy copies x + σ·z of one input, in batches.
//!
//! Copy c of sample i always gets the noise of [`NoiseKey::add_noise`]`(i, c)`, whatever the batch
//! size or thread count; batches are filled in parallel (rayon) and scored one batch at a time,
//! so memory is O(batch·d) whatever the number of copies. On the CPU the scoring and visit of
//! one batch overlap the computation of the next (the noise, or for dense nets the fused noise
//! and layers of [`DenseMc`]), with the same results in the same order.

use super::coupling::Coupling;
use super::dense_mc::DenseMc;
use super::noise::NoiseKey;
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::score::{ScoreKind, score_batch};
use candle_core::{Device, Tensor};
use indicatif::ProgressBar;
use rayon::prelude::*;
use std::ops::Range;

/// Something that scores a batch of inputs (larger = more OOD), e.g. a model's energy.
pub trait BatchScorer: Sync {
    /// Values per input (`c·h·w`).
    fn dim(&self) -> usize;
    /// Scores of `count` inputs stored row-major in `x` (`count·dim` values).
    fn score_flat(&self, x: &[f32], count: usize) -> Result<Vec<f64>>;
    /// The fused Monte Carlo loop of a dense ReLU network ([`DenseMc`]), with the score kind and
    /// temperature, when this scorer has one (same scores as [`Self::score_flat`] on the noisy
    /// copies, faster).
    fn dense_mc(&self) -> Result<Option<(DenseMc<'_>, ScoreKind, f64)>> {
        Ok(None)
    }
    /// Whether [`Self::score_flat`] may run on a rayon worker beside the filling of the next
    /// batch (true for host-side scorers; a GPU device keeps its calls on the caller's thread).
    fn overlaps(&self) -> bool {
        true
    }
}

/// A [`Classifier`] scored by [`score_batch`] on a device.
pub struct ModelScorer<'a> {
    /// The classifier.
    pub model: &'a dyn Classifier,
    /// Where the forward passes run.
    pub device: Device,
    /// Which score.
    pub kind: ScoreKind,
    /// Temperature T of the energy.
    pub temperature: f64,
}

impl BatchScorer for ModelScorer<'_> {
    fn dim(&self) -> usize {
        self.model.spec().input_shape.iter().product()
    }

    fn score_flat(&self, x: &[f32], count: usize) -> Result<Vec<f64>> {
        let [c, h, w] = self.model.spec().input_shape;
        let t = Tensor::from_slice(x, (count, c, h, w), &self.device)?;
        score_batch(self.model, &t, self.kind, self.temperature)
    }

    fn dense_mc(&self) -> Result<Option<(DenseMc<'_>, ScoreKind, f64)>> {
        Ok(DenseMc::of(self.model, &self.device)?.map(|m| (m, self.kind, self.temperature)))
    }

    fn overlaps(&self) -> bool {
        self.device.is_cpu()
    }
}

/// A host-side scorer from a closure `(x, count) -> scores` (analytic models in tests).
pub struct FnScorer<F> {
    /// Values per input.
    pub dim: usize,
    /// The scoring function.
    pub f: F,
}

impl<F: Fn(&[f32], usize) -> Result<Vec<f64>> + Sync> BatchScorer for FnScorer<F> {
    fn dim(&self) -> usize {
        self.dim
    }

    fn score_flat(&self, x: &[f32], count: usize) -> Result<Vec<f64>> {
        (self.f)(x, count)
    }
}

/// Copies from which a call packs a dense net's weights for the AVX-512 kernel
/// ([`DenseMc::packed`]).
const PACK_MIN_COPIES: u64 = 2048;

/// The scorer's [`DenseMc`], packed when `copies` is long enough to repay it.
fn dense_for(
    scorer: &dyn BatchScorer,
    copies: Range<u64>,
) -> Result<Option<(DenseMc<'_>, ScoreKind, f64)>> {
    let long = copies.end.saturating_sub(copies.start) >= PACK_MIN_COPIES;
    Ok(scorer
        .dense_mc()?
        .map(|(mc, kind, t)| (if long { mc.packed() } else { mc }, kind, t)))
}

/// A dense ReLU network's [`DenseMc`] layers as a [`BatchScorer`]: the model's own scores, bit for
/// bit, without building tensors per layer (for the candidate inputs of inexact copies).
struct DenseRows<'a> {
    mc: &'a DenseMc<'a>,
    kind: ScoreKind,
    temperature: f64,
}

impl BatchScorer for DenseRows<'_> {
    fn dim(&self) -> usize {
        self.mc.dim()
    }

    fn score_flat(&self, x: &[f32], count: usize) -> Result<Vec<f64>> {
        self.mc.score_rows(x, count, self.kind, self.temperature)
    }
}

/// Scores `x` itself (no noise) for a batch of inputs, checking the count and finiteness.
pub fn clean_scores(scorer: &dyn BatchScorer, x: &[f32], count: usize) -> Result<Vec<f64>> {
    let s = scorer.score_flat(x, count)?;
    check_scores(&s, count)?;
    Ok(s)
}

/// Scores of the noisy copies `copies` of sample `index` (input `x`) in batches of `batch`,
/// passing each batch's scores, in copy order, to `visit`. Ticks `progress` per forward pass.
#[allow(clippy::too_many_arguments)]
pub fn noisy_scores(
    scorer: &dyn BatchScorer,
    key: &NoiseKey,
    index: u64,
    x: &[f32],
    sigma: f64,
    copies: Range<u64>,
    batch: usize,
    progress: &ProgressBar,
    mut visit: impl FnMut(&[f64]) -> Result<()> + Send,
) -> Result<()> {
    noisy_scores_checked(
        scorer,
        key,
        index,
        x,
        sigma,
        copies,
        batch,
        progress,
        |s, _| visit(s),
    )
}

/// [`noisy_scores`], also passing per copy whether it is exact
/// ([`NoiseKey::add_noise_checked`]: equal to fl₃₂(x + σZ) for the coupled ideal Gaussian Z).
#[allow(clippy::too_many_arguments)]
pub fn noisy_scores_checked(
    scorer: &dyn BatchScorer,
    key: &NoiseKey,
    index: u64,
    x: &[f32],
    sigma: f64,
    copies: Range<u64>,
    batch: usize,
    progress: &ProgressBar,
    visit: impl FnMut(&[f64], &[bool]) -> Result<()> + Send,
) -> Result<()> {
    let dense = dense_for(scorer, copies.clone())?;
    scores_checked_with(
        scorer,
        dense.as_ref(),
        key,
        index,
        x,
        sigma,
        copies,
        batch,
        progress,
        visit,
    )
}

/// [`noisy_scores_checked`] with the scorer's [`DenseMc`] already built (W is copied and packed
/// once per call of the public functions, not once per use).
#[allow(clippy::too_many_arguments)]
fn scores_checked_with(
    scorer: &dyn BatchScorer,
    dense: Option<&(DenseMc<'_>, ScoreKind, f64)>,
    key: &NoiseKey,
    index: u64,
    x: &[f32],
    sigma: f64,
    copies: Range<u64>,
    batch: usize,
    progress: &ProgressBar,
    mut visit: impl FnMut(&[f64], &[bool]) -> Result<()> + Send,
) -> Result<()> {
    let d = scorer.dim();
    if x.len() != d {
        return Err(Error::BadInput(format!(
            "input has {} values but the model expects {d}",
            x.len()
        )));
    }
    if batch == 0 {
        return Err(Error::BadInput("--batch must be at least 1".into()));
    }
    key.check_range(copies.end, d)?;
    let mut finish = |s: Vec<f64>, exact: &[bool]| -> Result<()> {
        check_scores(&s, exact.len())?;
        visit(&s, exact)?;
        progress.inc(exact.len() as u64);
        Ok(())
    };
    if let Some((mc, kind, t)) = dense {
        // A batch is its logits (from the fused loop's rayon blocks) and exactness flags.
        return pipelined(
            copies,
            batch,
            true,
            Default::default(),
            |start, count, (logits, exact): &mut (Vec<f32>, Vec<bool>)| {
                exact.clear();
                exact.resize(count, true);
                *logits = mc.noisy_logits(key, index, x, sigma, start, count, exact)?;
                Ok(())
            },
            |(logits, exact), _| {
                let s = mc.scores_of_logits(std::mem::take(logits), exact.len(), *kind, *t)?;
                finish(s, exact)
            },
        );
    }
    // A batch is its noisy inputs (rows filled on rayon) and exactness flags.
    pipelined(
        copies,
        batch,
        scorer.overlaps(),
        Default::default(),
        |start, count, (buf, exact): &mut (Vec<f32>, Vec<bool>)| {
            buf.resize(count * d, 0.0);
            exact.resize(count, true);
            buf[..count * d]
                .par_chunks_mut(d.max(1))
                .zip(exact[..count].par_iter_mut())
                .enumerate()
                .for_each(|(j, (row, ok))| {
                    *ok = key.add_noise_checked(index, start + j as u64, sigma, x, row)
                });
            Ok(())
        },
        |(buf, exact), count| {
            finish(
                scorer.score_flat(&buf[..count * d], count)?,
                &exact[..count],
            )
        },
    )
}

/// Runs the batches of `copies` (at most `batch` copies each) in copy order, pipelined: `fill`
/// computes batch b + 1 into one slot while `drain` consumes batch b from the other (scores it
/// and visits it), on two rayon tasks at once ([`rayon::join`]; `fill` itself may use the
/// whole pool, and takes the threads `drain` leaves idle). Each batch is a function of its own
/// copies only, so the results are those of the sequential loop; an error of batch b's drain is
/// reported before one of batch b + 1's fill, and nothing is drained after a failure. `drain`
/// runs on a rayon worker, not on the caller's thread (hence `Send`): it must not rely on the
/// caller's thread-locals. Memory: two slots. Without `overlap`, batch b is drained before
/// batch b + 1 is filled, all on the caller's thread but for `fill`'s own parallelism.
fn pipelined<S: Send>(
    copies: Range<u64>,
    batch: usize,
    overlap: bool,
    slots: [S; 2],
    fill: impl Fn(u64, usize, &mut S) -> Result<()> + Sync,
    mut drain: impl FnMut(&mut S, usize) -> Result<()> + Send,
) -> Result<()> {
    let count_at = |start: u64| (copies.end.saturating_sub(start) as usize).min(batch);
    let [mut cur, mut next] = slots;
    let (mut start, mut count) = (copies.start, count_at(copies.start));
    if count == 0 {
        return Ok(());
    }
    fill(start, count, &mut cur)?;
    loop {
        let ahead = start + count as u64;
        let ahead_count = count_at(ahead);
        let fill_ahead = |next: &mut S| match ahead_count {
            0 => Ok(()),
            n => fill(ahead, n, next),
        };
        if overlap {
            let (drained, filled) =
                rayon::join(|| drain(&mut cur, count), || fill_ahead(&mut next));
            drained?;
            filled?;
        } else {
            drain(&mut cur, count)?;
            fill_ahead(&mut next)?;
        }
        if ahead_count == 0 {
            return Ok(());
        }
        std::mem::swap(&mut cur, &mut next);
        (start, count) = (ahead, ahead_count);
    }
}

/// [`noisy_scores_checked`], passing per copy, besides its score v, an interval that contains
/// the score at the coupled ideal input fl₃₂(x + σZ): [v, v] for an exact copy, else
/// [`Coupling::inexact_intervals`] (a function of the copy's own noise only, whatever the batch;
/// a batch's inexact copies have their candidate inputs scored in one call).
#[allow(clippy::too_many_arguments)]
pub fn noisy_score_intervals(
    scorer: &dyn BatchScorer,
    key: &NoiseKey,
    index: u64,
    x: &[f32],
    sigma: f64,
    copies: Range<u64>,
    batch: usize,
    coupling: Coupling,
    progress: &ProgressBar,
    mut visit: impl FnMut(&[f64], &[(f64, f64)]) -> Result<()> + Send,
) -> Result<()> {
    let mut next = copies.start;
    let mut iv = Vec::new();
    let mut inexact = Vec::new();
    // Candidate inputs go through the dense loop's layers when the scorer has them.
    let dense = dense_for(scorer, copies.clone())?;
    let rows = dense.as_ref().map(|(mc, kind, t)| DenseRows {
        mc,
        kind: *kind,
        temperature: *t,
    });
    let candidates: &dyn BatchScorer = match &rows {
        Some(r) => r,
        None => scorer,
    };
    scores_checked_with(
        scorer,
        dense.as_ref(),
        key,
        index,
        x,
        sigma,
        copies,
        batch,
        progress,
        |s, exact| {
            // The batch's inexact copies, their candidate inputs scored in one call.
            inexact.clear();
            inexact.extend(
                s.iter()
                    .zip(exact)
                    .enumerate()
                    .filter(|(_, (_, ok))| !**ok)
                    .map(|(j, (&v, _))| (next + j as u64, v)),
            );
            let resolved =
                coupling.inexact_intervals(candidates, key, index, sigma, x, &inexact)?;
            let mut resolved = resolved.into_iter();
            iv.clear();
            for (&v, &ok) in s.iter().zip(exact) {
                iv.push(if ok {
                    (v, v)
                } else {
                    resolved.next().ok_or_else(|| {
                        Error::Internal("an inexact copy lost its interval".into())
                    })?
                });
            }
            next += s.len() as u64;
            visit(s, &iv)
        },
    )
}

fn check_scores(s: &[f64], count: usize) -> Result<()> {
    if s.len() != count {
        return Err(Error::Internal(format!(
            "scorer returned {} scores for {count} inputs",
            s.len()
        )));
    }
    if let Some(i) = s.iter().position(|v| !v.is_finite()) {
        return Err(Error::CheckFailed(format!(
            "score of input {i} of a batch is {} (must be finite)",
            s[i]
        )));
    }
    Ok(())
}

/// A progress bar on stderr counting noisy forward passes, with their rate.
pub fn progress_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} noisy passes, {per_sec}, eta {eta}",
    );
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_prefix(what.to_string());
    bar
}
