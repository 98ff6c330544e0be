//! The training configuration: a TOML file, validated up front (unknown keys and out-of-range values
//! are errors naming the key), with `--set key=value` overrides applied before validation.

use crate::error::{Error, Result};
use crate::model::Arch;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A whole training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Seed of every random choice (initialisation, batch order, samplers).
    #[serde(default)]
    pub seed: u64,
    pub data: DataConfig,
    pub model: ModelConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    pub train: LoopConfig,
    #[serde(default)]
    pub loss: LossConfig,
    #[serde(default)]
    pub sampler: SamplerConfig,
}

/// Which data to train on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// In-distribution training set, e.g. `mnist:train`.
    pub id: String,
    /// Auxiliary outliers for the energy and gradient terms, e.g. `fashion-mnist:train`.
    #[serde(default)]
    pub aux: Option<String>,
    /// Use only the first N in-distribution training images (0 = all).
    #[serde(default)]
    pub limit: usize,
}

/// The network to build (normalisation is computed from the ID training data unless given).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `mlp`, `lenet` or `resnet18`.
    pub arch: String,
    /// Hidden widths of the MLP.
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// Per-channel normalisation; computed from the ID training set when absent.
    #[serde(default)]
    pub mean: Option<Vec<f32>>,
    #[serde(default)]
    pub std: Option<Vec<f32>>,
    /// Start from this checkpoint (pretrain-then-fine-tune) instead of a random initialisation.
    #[serde(default)]
    pub init_from: Option<String>,
    /// K+1 outputs, the last an absent class for outliers (DOS, Jiang et al. ICLR 2024). From a
    /// K-output `init_from` the K rows are copied and the absent row is drawn under the seed.
    /// (Omitted from the serialised config when false, so older configs hash as before.)
    #[serde(default, skip_serializing_if = "is_false")]
    pub absent_class: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// The optimiser, with PyTorch's semantics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// `sgd` or `adam`.
    pub kind: String,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            kind: "sgd".into(),
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Learning-rate schedule over optimiser steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// `constant`, `cosine` (annealed per step to `lr_min`) or `multistep`.
    pub kind: String,
    pub lr_min: f64,
    /// Epochs at which `multistep` multiplies the rate by `gamma`.
    pub milestones: Vec<usize>,
    pub gamma: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            kind: "cosine".into(),
            lr_min: 0.0,
            milestones: vec![],
            gamma: 0.1,
        }
    }
}

/// The loop: how long, how big, how often to log and checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Auxiliary batch size (defaults to `batch_size`).
    #[serde(default)]
    pub aux_batch_size: Option<usize>,
    /// Stop after this many optimiser steps (0 = no limit).
    #[serde(default)]
    pub max_steps: usize,
    /// Write a resumable checkpoint every N steps (0 = only at the end).
    #[serde(default)]
    pub checkpoint_every: usize,
    /// Write a `train_log.csv` row every N steps.
    #[serde(default = "one")]
    pub log_every: usize,
    /// How gradients are formed: `auto` (the closed-form step for dense ReLU nets on the CPU,
    /// `train::dense_step`; candle's autograd graph otherwise) or `autograd` (always the graph).
    #[serde(default = "auto")]
    pub backward: String,
    /// Collapse detection (`train::collapse`): no check before this step (default 100).
    /// Omitted from the serialised config when unset, so older configs hash as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collapse_warmup: Option<usize>,
    /// Consecutive collapsed checks (one every 10 steps) that stop a run with exit 1 (default
    /// 10; 0 turns the check off). Omitted from the serialised config when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collapse_window: Option<usize>,
}

fn auto() -> String {
    "auto".into()
}

fn one() -> usize {
    1
}

/// The loss L = CE + λ_S·L_S + λ_∇·L_∇ (method.md); λ's of 0 give plain cross-entropy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    /// λ_S, weight of the energy-margin term.
    pub lambda_energy: f64,
    /// λ_∇, weight of the gradient penalty.
    pub lambda_grad: f64,
    /// Weight of the Outlier Exposure term (uniform-posterior CE on outliers; Hendrycks et al. 2019).
    pub lambda_oe: f64,
    /// β, weight of the absent-class cross-entropy of the outliers (DOS; needs
    /// `model.absent_class`). Omitted from the serialised config when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub lambda_absent: f64,
    pub m_in: f64,
    pub m_out: f64,
    /// Temperature T of the energy.
    pub temperature: f64,
    /// `per-sample` (the paper) or `group-scaled` (the authors' code).
    pub penalty_form: String,
    /// `l2` or `l1`, the norm of ∇ₓS in the penalty.
    pub penalty_norm: String,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            lambda_energy: 0.0,
            lambda_grad: 0.0,
            lambda_oe: 0.0,
            lambda_absent: 0.0,
            m_in: -25.0,
            m_out: -7.0,
            temperature: 1.0,
            penalty_form: "per-sample".into(),
            penalty_norm: "l2".into(),
        }
    }
}

/// How auxiliary outliers are drawn for each step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplerConfig {
    /// `random` (no selection: the next auxiliary batch), `greedy`, `greg-plus` or `dos`.
    pub kind: String,
    /// Candidate pool per step = `pool_factor` × the selected batch (selecting samplers only).
    pub pool_factor: usize,
    /// Clusters (k = min(num_cluster, B)) for greg-plus and dos.
    pub num_cluster: usize,
    /// Energy-rank window [rank_start, rank_end) of the pool kept by greg-plus.
    pub rank_start: usize,
    pub rank_end: usize,
    /// greg-plus two-way: also the highest-energy sample per cluster, which feeds L_∇.
    pub two_way: bool,
    /// k-means++ restarts.
    pub n_init: usize,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            kind: "random".into(),
            pool_factor: 4,
            num_cluster: 64,
            rank_start: 0,
            rank_end: 10_000,
            two_way: false,
            n_init: 3,
        }
    }
}

impl SamplerConfig {
    /// The validated sampler parameters for auxiliary batches of size `b`.
    pub fn params(&self, b: usize) -> Result<crate::train::samplers::SamplerParams> {
        use crate::train::samplers::{SamplerKind, SamplerParams};
        let kind: SamplerKind = self.kind.parse()?;
        let mut p = SamplerParams::new(kind, b);
        p.num_cluster = self.num_cluster;
        p.rank_start = self.rank_start;
        p.rank_end = self.rank_end;
        p.two_way = self.two_way;
        p.n_init = self.n_init;
        p.check()?;
        if self.pool_factor == 0 || self.pool_factor > 1000 {
            return Err(Error::BadInput(format!(
                "config key `sampler.pool_factor` = {} must be in [1, 1000]",
                self.pool_factor
            )));
        }
        Ok(p)
    }
}

const ARCHS: [&str; 3] = ["mlp", "lenet", "resnet18"];
const SAMPLERS: [&str; 4] = ["random", "greedy", "greg-plus", "dos"];

fn range(key: &str, v: f64, lo: f64, hi: f64) -> Result<()> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(())
    } else {
        Err(Error::BadInput(format!(
            "config key `{key}` = {v} is out of range [{lo}, {hi}]"
        )))
    }
}

fn one_of(key: &str, v: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(Error::BadInput(format!(
            "config key `{key}` = \"{v}\" is not one of {}",
            allowed.join(", ")
        )))
    }
}

impl TrainConfig {
    /// Reads a TOML file, applies `key=value` overrides, parses and validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading config {}", path.display()), e))?;
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| Error::bad_file(path, one_line(&e.to_string())))?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let cfg: TrainConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| Error::bad_file(path, one_line(&e.to_string())))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Parses and validates a TOML string (no file).
    pub fn from_toml(text: &str) -> Result<TrainConfig> {
        let cfg: TrainConfig = toml::from_str(text)
            .map_err(|e| Error::BadInput(format!("config: {}", one_line(&e.to_string()))))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// The architecture this config builds.
    pub fn arch(&self) -> Result<Arch> {
        match self.model.arch.as_str() {
            "mlp" => Ok(Arch::Mlp {
                hidden: self.model.hidden.clone(),
            }),
            "lenet" => Ok(Arch::Lenet),
            "resnet18" => Ok(Arch::Resnet18),
            other => Err(Error::BadInput(format!(
                "config key `model.arch` = \"{other}\" is not one of {}",
                ARCHS.join(", ")
            ))),
        }
    }

    /// Validates every value; the error names the key.
    pub fn check(&self) -> Result<()> {
        if self.data.id.trim().is_empty() {
            return Err(Error::BadInput("config key `data.id` is empty".into()));
        }
        one_of("model.arch", &self.model.arch, &ARCHS)?;
        if self.model.arch == "mlp" && self.model.hidden.is_empty() {
            return Err(Error::BadInput(
                "config key `model.hidden` must list at least one width for `mlp`".into(),
            ));
        }
        if self.model.arch != "mlp" && !self.model.hidden.is_empty() {
            return Err(Error::BadInput(format!(
                "config key `model.hidden` only applies to `mlp`, not `{}`",
                self.model.arch
            )));
        }
        if self.model.hidden.contains(&0) {
            return Err(Error::BadInput(
                "config key `model.hidden` has a width of 0".into(),
            ));
        }
        if self.model.mean.is_some() != self.model.std.is_some() {
            return Err(Error::BadInput(
                "config keys `model.mean` and `model.std` must be given together".into(),
            ));
        }
        let o = &self.optim;
        one_of("optim.kind", &o.kind, &["sgd", "adam"])?;
        range("optim.lr", o.lr, 0.0, 10.0)?;
        if o.lr == 0.0 {
            return Err(Error::BadInput("config key `optim.lr` must be > 0".into()));
        }
        range("optim.momentum", o.momentum, 0.0, 0.999_999)?;
        range("optim.weight_decay", o.weight_decay, 0.0, 1.0)?;
        range("optim.beta1", o.beta1, 0.0, 0.999_999)?;
        range("optim.beta2", o.beta2, 0.0, 0.999_999_999)?;
        range("optim.eps", o.eps, 1e-30, 1.0)?;
        if o.nesterov && o.kind == "sgd" && o.momentum == 0.0 {
            return Err(Error::BadInput(
                "config key `optim.nesterov` = true needs `optim.momentum` > 0".into(),
            ));
        }
        let s = &self.schedule;
        one_of(
            "schedule.kind",
            &s.kind,
            &["constant", "cosine", "multistep"],
        )?;
        range("schedule.lr_min", s.lr_min, 0.0, o.lr)?;
        range("schedule.gamma", s.gamma, 0.0, 1.0)?;
        if s.milestones.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::BadInput(
                "config key `schedule.milestones` must be strictly increasing".into(),
            ));
        }
        let t = &self.train;
        if t.epochs == 0 {
            return Err(Error::BadInput(
                "config key `train.epochs` must be ≥ 1".into(),
            ));
        }
        if t.batch_size == 0 || t.batch_size > 65_536 {
            return Err(Error::BadInput(format!(
                "config key `train.batch_size` = {} must be in [1, 65536]",
                t.batch_size
            )));
        }
        if t.aux_batch_size == Some(0) {
            return Err(Error::BadInput(
                "config key `train.aux_batch_size` must be ≥ 1".into(),
            ));
        }
        if t.log_every == 0 {
            return Err(Error::BadInput(
                "config key `train.log_every` must be ≥ 1".into(),
            ));
        }
        one_of("train.backward", &t.backward, &["auto", "autograd"])?;
        let l = &self.loss;
        range("loss.lambda_energy", l.lambda_energy, 0.0, 1e6)?;
        range("loss.lambda_grad", l.lambda_grad, 0.0, 1e6)?;
        range("loss.lambda_oe", l.lambda_oe, 0.0, 1e6)?;
        range("loss.lambda_absent", l.lambda_absent, 0.0, 1e6)?;
        range("loss.m_in", l.m_in, -1e6, 1e6)?;
        range("loss.m_out", l.m_out, -1e6, 1e6)?;
        range("loss.temperature", l.temperature, 1e-6, 1e6)?;
        if l.temperature == 1e-6 {
            return Err(Error::BadInput(
                "config key `loss.temperature` must be > 0".into(),
            ));
        }
        if l.m_in >= l.m_out {
            return Err(Error::BadInput(format!(
                "config keys `loss.m_in` ({}) must be below `loss.m_out` ({})",
                l.m_in, l.m_out
            )));
        }
        one_of(
            "loss.penalty_form",
            &l.penalty_form,
            &["per-sample", "group-scaled"],
        )?;
        one_of("loss.penalty_norm", &l.penalty_norm, &["l2", "l1"])?;
        one_of("sampler.kind", &self.sampler.kind, &SAMPLERS)?;
        self.check_absent_class()?;
        self.sampler
            .params(self.train.aux_batch_size.unwrap_or(self.train.batch_size))?;
        if self.sampler.kind != "random" && !self.uses_aux() {
            return Err(Error::BadInput(format!(
                "config key `sampler.kind` = \"{}\" selects auxiliary outliers, but no loss term uses them (set `loss.lambda_energy`, `loss.lambda_grad` or `loss.lambda_absent` > 0)",
                self.sampler.kind
            )));
        }
        if self.uses_aux() && self.data.aux.is_none() {
            return Err(Error::BadInput(
                "config keys `loss.lambda_energy`/`loss.lambda_grad`/`loss.lambda_oe`/`loss.lambda_absent` > 0 need auxiliary outliers: set `data.aux`".into(),
            ));
        }

        Ok(())
    }

    /// DOS's objective CE_{K+1}(ID) + β·CE(outliers → absent class) is the only loss defined for
    /// an absent-class model: the energy margin, the gradient penalty and OE are defined on a
    /// K-output score, and which logits they would read (K or K+1) is not a choice to make
    /// silently, so they are refused; so is an absent class with nothing trained into it.
    fn check_absent_class(&self) -> Result<()> {
        let l = &self.loss;
        if !self.model.absent_class {
            if l.lambda_absent > 0.0 {
                return Err(Error::BadInput(format!(
                    "config key `loss.lambda_absent` = {} needs `model.absent_class = true` (a K+1-output model)",
                    l.lambda_absent
                )));
            }
            return Ok(());
        }
        if l.lambda_absent == 0.0 {
            return Err(Error::BadInput(
                "config key `model.absent_class = true` needs `loss.lambda_absent` > 0 (DOS's β; without it the absent class is never a target)".into(),
            ));
        }
        for (key, v) in [
            ("loss.lambda_energy", l.lambda_energy),
            ("loss.lambda_grad", l.lambda_grad),
            ("loss.lambda_oe", l.lambda_oe),
        ] {
            if v > 0.0 {
                return Err(Error::BadInput(format!(
                    "config key `{key}` = {v} cannot be combined with `model.absent_class = true`: the energy, gradient and OE terms are defined for K-output models; DOS trains with `loss.lambda_absent` alone"
                )));
            }
        }
        if self.sampler.kind == "greg-plus" {
            return Err(Error::BadInput(
                "config key `sampler.kind` = \"greg-plus\" cannot be combined with `model.absent_class = true` (its energy-rank window and two-way picks serve the energy and gradient terms); use `dos`, `greedy` or `random`".into(),
            ));
        }
        Ok(())
    }

    /// True when a loss term needs auxiliary outliers.
    pub fn uses_aux(&self) -> bool {
        self.loss.lambda_energy > 0.0
            || self.loss.lambda_grad > 0.0
            || self.loss.lambda_oe > 0.0
            || self.loss.lambda_absent > 0.0
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Applies one `a.b.c=value` override to a TOML table; the value is parsed as TOML, or taken as a
/// string when it does not parse (so `--set data.id=mnist:train` needs no quotes).
pub fn apply_override(table: &mut toml::Table, kv: &str) -> Result<()> {
    let (key, raw) = kv
        .split_once('=')
        .ok_or_else(|| Error::BadInput(format!("--set `{kv}`: expected key=value")))?;
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(Error::BadInput(format!(
            "--set `{kv}`: malformed key `{key}`"
        )));
    }
    let value: toml::Value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or(toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.trim().to_string()),
    };
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| {
            Error::BadInput(format!("--set `{kv}`: `{p}` is a value, not a section"))
        })?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}
