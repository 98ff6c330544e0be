//! The training loop: mini-batches in a seeded order, loss, backward, optimiser step, log rows,
//! periodic checkpoints, and the final model written atomically.

use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::model::{Classifier, Model, ModelSpec};
use crate::score;
use crate::train::checkpoint;
use crate::train::collapse::{self, CollapseMonitor};
use crate::train::config::TrainConfig;
use crate::train::dense_step::{DenseNet, dense_step};
use crate::train::log::{LogRow, TrainLog};
use crate::train::optim::Optimizer;
use crate::train::samplers::{self, CandidatePool, SamplerKind, SamplerParams};
use crate::train::schedule::learning_rate;
use crate::train::second_order;
use crate::train::step::{LossTerms, StepInput, graph_step, needs_second_order};
use candle_core::{DType, Device, Tensor};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Where and how to run.
pub struct TrainOptions {
    pub out: PathBuf,
    pub data_root: PathBuf,
    pub device: Device,
    /// Continue from the newest checkpoint in `out` (error if the config differs).
    pub resume: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// What a finished run produced.
pub struct TrainOutcome {
    pub steps: usize,
    pub model_path: PathBuf,
    pub last: Option<LogRow>,
    pub id_train: Dataset,
    pub aux_train: Option<Dataset>,
}

/// Per-channel mean and standard deviation (population) of a dataset's pixels.
pub fn channel_stats(d: &Dataset) -> (Vec<f32>, Vec<f32>) {
    let [c, h, w] = d.shape;
    let plane = h * w;
    let mut sum = vec![0f64; c];
    let mut sq = vec![0f64; c];
    for i in 0..d.len() {
        let img = d.image(i);
        for ch in 0..c {
            for &v in &img[ch * plane..(ch + 1) * plane] {
                sum[ch] += v as f64;
                sq[ch] += (v as f64) * (v as f64);
            }
        }
    }
    let n = (d.len() * plane) as f64;
    let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    let std: Vec<f32> = (0..c)
        .map(|ch| {
            let m = sum[ch] / n;
            ((sq[ch] / n - m * m).max(0.0).sqrt().max(1e-6)) as f32
        })
        .collect();
    (mean, std)
}

/// A 64-bit seed for one named random stream of a run (SHA-256 of seed, tag and index).
pub fn stream_seed(seed: u64, tag: &str, index: u64) -> u64 {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(tag.as_bytes());
    h.update(index.to_le_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().unwrap_or([0; 8]))
}

/// The order of the ID training set in `epoch`: a seeded permutation, independent of the step at
/// which a run was resumed.
fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng =
        rand_chacha::ChaCha8Rng::seed_from_u64(stream_seed(seed, "batch-order", epoch as u64));
    idx.shuffle(&mut rng);
    idx
}

/// SHA-256 of a configuration as recorded in checkpoints (a resumed run must match it).
pub fn config_sha256(cfg: &TrainConfig) -> String {
    let s = serde_json::to_string(cfg).unwrap_or_default();
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The auxiliary-outlier batch at `step`: positions `[step·A, (step+1)·A)` of an endless sequence of
/// seeded permutations of the auxiliary set (so a resumed run draws the same batches).
fn aux_batch(seed: u64, step: usize, a: usize, m: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(a);
    let mut cached: Option<(usize, Vec<usize>)> = None;
    for pos in step * a..(step + 1) * a {
        let (e, i) = (pos / m, pos % m);
        if cached.as_ref().is_none_or(|c| c.0 != e) {
            let mut idx: Vec<usize> = (0..m).collect();
            let mut rng =
                rand_chacha::ChaCha8Rng::seed_from_u64(stream_seed(seed, "aux-order", e as u64));
            idx.shuffle(&mut rng);
            cached = Some((e, idx));
        }
        if let Some((_, idx)) = &cached {
            out.push(idx[i]);
        }
    }
    out
}

/// Trains a model as `cfg` says, writing `model.safetensors`, `train_log.csv` and checkpoints in
/// `opts.out`.
pub fn train(cfg: &TrainConfig, opts: &TrainOptions) -> Result<TrainOutcome> {
    cfg.check()?;
    if let Some(aux) = &cfg.data.aux {
        data::class_filter::check_disjoint(&cfg.data.id, std::slice::from_ref(aux), "`data.aux`")?;
    }
    let mut id = data::load(&cfg.data.id, &opts.data_root)?;
    data::class_filter::check_training_labels(&id, "`data.id`")?;
    if cfg.data.limit > 0 {
        id = id.take(cfg.data.limit);
    }
    id.validate()?;
    let k = id.num_classes();
    if k < 2 {
        return Err(Error::BadInput(format!(
            "`data.id` = {} has {k} class(es); a classifier needs labelled data with at least 2 classes",
            cfg.data.id
        )));
    }
    let aux = match (&cfg.data.aux, cfg.uses_aux()) {
        (Some(spec), true) => {
            let a = data::load_as(spec, &opts.data_root, id.shape)?;
            a.validate()?;
            Some(a)
        }
        (Some(spec), false) => {
            eprintln!(
                "oodcert: note: `data.aux` = {spec} is not used (every outlier loss weight is 0)"
            );
            None
        }
        _ => None,
    };
    let (mean, std) = match (&cfg.model.mean, &cfg.model.std) {
        (Some(m), Some(s)) => (m.clone(), s.clone()),
        _ => channel_stats(&id),
    };
    let absent = cfg.model.absent_class;
    let spec = ModelSpec {
        arch: cfg.arch()?,
        input_shape: id.shape,
        // DOS: one output more, the absent class (last).
        num_classes: k + usize::from(absent),
        mean,
        std,
    };
    spec.check()?;
    let model = match &cfg.model.init_from {
        Some(p) => init_from(Path::new(p), &spec, k, cfg, &opts.device)?,
        None => {
            let m = Model::init(spec, &opts.device, DType::F32, cfg.seed)?;
            if absent { m.into_absent_class()? } else { m }
        }
    };
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| Error::io(format!("creating {}", opts.out.display()), e))?;

    let n = id.len();
    let bs = cfg.train.batch_size.min(n);
    let steps_per_epoch = n.div_ceil(bs);
    let mut total = cfg.train.epochs * steps_per_epoch;
    if cfg.train.max_steps > 0 {
        total = total.min(cfg.train.max_steps);
    }
    let csha = config_sha256(cfg);
    let mut opt = Optimizer::new(&cfg.optim, model.trainable_vars());
    let mut start = 0;
    let mut collapse_window = Vec::new();
    if opts.resume
        && let Some(r) = checkpoint::load(&opts.out, &csha, &opts.device)?
    {
        copy_weights(&r.model, &model)?;
        opt.load_state(&r.optim_state, r.step as u64)?;
        start = r.step;
        collapse_window = r.collapse_window;
        eprintln!(
            "oodcert: resuming {} at step {start}/{total}",
            opts.out.display()
        );
    }
    let terms = LossTerms::from_config(cfg)?;
    // The closed-form step where it applies (dense ReLU nets on the CPU) unless the config asks
    // for the autograd graph.
    let dense = (cfg.train.backward == "auto")
        .then(|| DenseNet::of(&model))
        .flatten();
    eprintln!(
        "oodcert: gradients by {}",
        if dense.is_some() {
            "the closed-form dense step"
        } else {
            "autograd"
        }
    );
    eprintln!(
        "oodcert: training {:?} on {} ({} images){} for {total} steps → {}",
        cfg.arch()?,
        id.name,
        n,
        aux.as_ref().map_or(String::new(), |a| format!(
            ", outliers {} ({})",
            a.name,
            a.len()
        )),
        opts.out.display()
    );
    // Only the autograd penalty needs second-order gradients; every other step runs here, where
    // candle frees each reverse pass as it goes (`second_order`).
    let second = dense.is_none() && needs_second_order(&terms, &model);
    second_order::run(second, || {
        let aux_b = cfg.train.aux_batch_size.unwrap_or(bs);
        let sampler = cfg.sampler.params(aux_b)?;
        let mut log = TrainLog::open_with(&opts.out, start, absent)?;
        let pb = progress_bar(opts.progress, total as u64, start as u64);
        let mut order = (usize::MAX, Vec::new());
        let mut last = None;
        let mut collapse = CollapseMonitor::new(
            cfg.train
                .collapse_warmup
                .unwrap_or(collapse::DEFAULT_WARMUP),
            cfg.train
                .collapse_window
                .unwrap_or(collapse::DEFAULT_WINDOW),
        );
        collapse.restore(collapse_window);
        for step in start..total {
            let epoch = step / steps_per_epoch;
            if order.0 != epoch {
                order = (epoch, epoch_order(cfg.seed, epoch, n));
            }
            let pos = step % steps_per_epoch;
            let idx = &order.1[pos * bs..((pos + 1) * bs).min(n)];
            let picked = match &aux {
                Some(a) => Some(select_outliers(
                    cfg,
                    &sampler,
                    &model,
                    a,
                    step,
                    &opts.device,
                )?),
                None => None,
            };
            let batch = Batch {
                id: &id,
                idx,
                aux: aux
                    .as_ref()
                    .zip(picked.as_ref())
                    .map(|(a, p)| (a, &p.0[..], &p.1[..])),
            };
            let lr = learning_rate(&cfg.schedule, cfg.optim.lr, step, total, steps_per_epoch);
            let log_now = (step + 1) % cfg.train.log_every == 0 || step + 1 == total;
            let row = train_step(
                &terms,
                &model,
                dense.as_ref(),
                &mut opt,
                &batch,
                lr,
                log_now,
                &opts.device,
            )
            .map_err(|e| match e {
                Error::CheckFailed(m) => Error::CheckFailed(format!("step {}: {m}", step + 1)),
                other => other,
            })?;
            if let Some(mut row) = row {
                row.step = step + 1;
                row.epoch = (step + 1) as f64 / steps_per_epoch as f64;
                let terms = match row.loss_absent {
                    Some(a) => format!("L_abs {a:.4}"),
                    None => format!("L_S {:.4} L_∇ {:.4}", row.loss_energy, row.loss_grad),
                };
                pb.set_message(format!(
                    "loss {:.4} ce {:.4} {terms} acc {:.3} |∇S| {:.3}",
                    row.loss, row.ce, row.acc, row.grad_norm_in
                ));
                log.write(&row)?;
                last = Some(row);
            }
            if collapse.due(step + 1) {
                let labels: Vec<i64> = idx.iter().map(|&i| id.labels[i]).collect();
                let signs = collapse::inspect(&model, &id.batch(idx, &opts.device)?, &labels)?;
                collapse.record(step + 1, lr, &signs)?;
            }
            pb.inc(1);
            let every = cfg.train.checkpoint_every;
            if every > 0 && (step + 1) % every == 0 && step + 1 < total {
                checkpoint::save(
                    &opts.out,
                    step + 1,
                    &model,
                    &opt,
                    &csha,
                    &collapse.window_signs(),
                )?;
            }
        }
        pb.finish_and_clear();
        checkpoint::save(
            &opts.out,
            total,
            &model,
            &opt,
            &csha,
            &collapse.window_signs(),
        )?;
        let model_path = opts.out.join("model.safetensors");
        model.save(&model_path)?;
        Ok(TrainOutcome {
            steps: total,
            model_path,
            last,
            id_train: id,
            aux_train: aux,
        })
    })
}

/// The starting weights from the checkpoint `p`: as stored when its head matches the config; a
/// K-output checkpoint fine-tuned into an absent-class model gets its K rows copied and the absent
/// row drawn from `nn.Linear`'s default initialisation under `stream_seed(seed, "absent-row", 0)`
/// ([`Model::with_absent_row`]); an absent-class checkpoint into a K-output config is refused.
fn init_from(
    p: &Path,
    spec: &ModelSpec,
    k: usize,
    cfg: &TrainConfig,
    device: &Device,
) -> Result<Model> {
    let m = Model::load_full(p, device)?;
    let s = m.spec();
    if s.input_shape != spec.input_shape || m.id_classes() != k || s.arch != spec.arch {
        return Err(Error::BadInput(format!(
            "`model.init_from` = {} is a {:?} model on {:?} with {} classes; the config asks for {:?} on {:?} with {k}",
            p.display(),
            s.arch,
            s.input_shape,
            m.id_classes(),
            spec.arch,
            spec.input_shape
        )));
    }
    match (m.has_absent_class(), cfg.model.absent_class) {
        (false, true) => {
            eprintln!(
                "oodcert: extending {} to K+1 = {} outputs: its {k} rows copied, the absent row drawn under the seed",
                p.display(),
                k + 1
            );
            m.with_absent_row(stream_seed(cfg.seed, "absent-row", 0))
        }
        (true, false) => Err(Error::BadInput(format!(
            "`model.init_from` = {} has an absent class (K+1 = {} outputs); set `model.absent_class = true` to fine-tune it",
            p.display(),
            k + 1
        ))),
        _ => Ok(m),
    }
}

/// One step's data: ID indices and, when a loss term needs them, auxiliary outliers: `low` feeds
/// the energy margin and (unless two-way sampling split them off) the penalty; `high` (two-way
/// GReg+ only) feeds the penalty.
struct Batch<'a> {
    id: &'a Dataset,
    idx: &'a [usize],
    aux: Option<(&'a Dataset, &'a [usize], &'a [usize])>,
}

/// The auxiliary outliers of `step` as (low, high) indices into the auxiliary set. `random` takes
/// the next batch of the seeded auxiliary stream; the selecting samplers draw a pool of
/// `pool_factor`× the batch from that stream, score it in evaluation mode (penultimate features and
/// energies) and select from it (method.md, GReg+).
fn select_outliers(
    cfg: &TrainConfig,
    params: &SamplerParams,
    model: &Model,
    aux: &Dataset,
    step: usize,
    device: &Device,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let m = aux.len();
    if params.kind == SamplerKind::Random {
        return Ok((
            aux_batch(cfg.seed, step, params.batch_size.min(m), m),
            vec![],
        ));
    }
    let pool_n = (cfg.sampler.pool_factor * params.output_size()).min(m);
    let pool_idx = aux_batch(cfg.seed, step, pool_n, m);
    let (features, logits) = model.forward_t(&aux.batch(&pool_idx, device)?, false)?;
    // "Most ID-like" = lowest energy; for an absent-class model DOS's ranking, the lowest
    // absent-class probability (as its log-odds, which orders the same and does not saturate).
    let rank_score = if model.has_absent_class() {
        score::absent_class_log_odds(&logits, cfg.loss.temperature)?
    } else {
        score::energy(&logits, cfg.loss.temperature)?
    };
    let energies = rank_score.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let d = features.dim(1)?;
    let feats = features
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let pool = CandidatePool::new(&feats, &energies, d)?;
    let sel = samplers::select(params, &pool, samplers::step_seed(cfg.seed, step as u64))?;
    let map = |v: &[usize]| v.iter().map(|&i| pool_idx[i]).collect::<Vec<_>>();
    Ok((map(&sel.low), map(&sel.high)))
}

/// One optimiser step (the loss and its gradients from [`dense_step`] when `dense` is given, else
/// from [`graph_step`]); returns a log row when `log_now`.
#[allow(clippy::too_many_arguments)]
fn train_step(
    t: &LossTerms,
    model: &Model,
    dense: Option<&DenseNet<'_>>,
    opt: &mut Optimizer,
    b: &Batch,
    lr: f64,
    log_now: bool,
    device: &Device,
) -> Result<Option<LogRow>> {
    let n_in = b.idx.len();
    let x_in = b.id.batch(b.idx, device)?;
    let y = b.id.batch_labels(b.idx, device)?;
    let (x, n_low, n_high) = match b.aux {
        Some((a, low, high)) => {
            let mut parts = vec![x_in, a.batch(low, device)?];
            if !high.is_empty() {
                parts.push(a.batch(high, device)?);
            }
            (Tensor::cat(&parts, 0)?, low.len(), high.len())
        }
        None => (x_in, 0, 0),
    };
    let input = StepInput {
        x,
        y,
        n_in,
        n_low,
        n_high,
    };
    let r = match dense {
        Some(net) => dense_step(net, t, &input, log_now)?,
        None => graph_step(t, model, &input, log_now)?,
    };
    if !r.loss.is_finite() {
        return Err(Error::CheckFailed(format!(
            "the loss is {}: training diverged; lower `optim.lr` or check the data",
            r.loss
        )));
    }
    let row = if log_now {
        let n = input.n();
        let mean = |v: &[f64], r: std::ops::Range<usize>| {
            if r.is_empty() {
                f64::NAN
            } else {
                let l = r.len() as f64;
                v[r].iter().sum::<f64>() / l
            }
        };
        // The penalty's masks: ID rows with S ≤ m_in, penalised outliers with S ≥ m_out.
        let s = &r.energies;
        let share = |rows: std::ops::Range<usize>, f: &dyn Fn(f64) -> bool| {
            if rows.is_empty() {
                f64::NAN
            } else {
                let l = rows.len() as f64;
                rows.filter(|&i| f(s[i])).count() as f64 / l
            }
        };
        let norms = r.grad_norms.clone().unwrap_or_else(|| vec![f64::NAN; n]);
        Some(LogRow {
            step: 0,
            epoch: 0.0,
            lr,
            loss: r.loss,
            ce: r.ce,
            loss_energy: r.loss_energy,
            loss_grad: r.loss_grad,
            frac_in_masked: share(0..n_in, &|v| v <= t.m_in),
            frac_aux_masked: share(input.penalised(), &|v| v >= t.m_out),
            grad_norm_in: mean(&norms, 0..n_in),
            grad_norm_aux: mean(&norms, n_in..n),
            acc: r.correct.map_or(f64::NAN, |c| c as f64 / n_in as f64),
            loss_absent: r.loss_absent,
        })
    } else {
        None
    };
    opt.step(&r.grads, lr)?;
    Ok(row)
}

/// Copies every trainable weight and buffer of `from` into `to` (same architecture).
fn copy_weights(from: &Model, to: &Model) -> Result<()> {
    let src: std::collections::HashMap<String, Tensor> = from.all_tensors().into_iter().collect();
    for p in to.params() {
        let t = src
            .get(&p.name)
            .ok_or_else(|| Error::BadInput(format!("checkpoint lacks tensor {}", p.name)))?;
        p.var.set(t)?;
    }
    Ok(())
}

fn progress_bar(show: bool, total: u64, start: u64) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(
        Some(total),
        if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    pb.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_position(start);
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_orders_are_permutations_and_differ() {
        let a = epoch_order(1, 0, 100);
        let b = epoch_order(1, 1, 100);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_ne!(a, b);
        assert_eq!(a, epoch_order(1, 0, 100));
        assert_ne!(a, epoch_order(2, 0, 100));
    }

    #[test]
    fn channel_stats_of_known_data() {
        let d = Dataset {
            name: "t".into(),
            images: vec![0.0, 1.0, 0.5, 0.5, 0.0, 0.0, 1.0, 1.0],
            labels: vec![0, 1],
            shape: [2, 1, 2],
            sha256: String::new(),
            selection: None,
        };
        let (m, s) = channel_stats(&d);
        assert_eq!(m, vec![0.25, 0.75]);
        assert!((s[0] - (3.0f32 / 16.0).sqrt()).abs() < 1e-6, "{s:?}");
        assert!((s[1] - 0.25).abs() < 1e-6, "{s:?}");
    }
}
