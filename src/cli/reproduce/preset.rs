//! The main job's protocols: `quick` (≈ 5–8 min on 2 CPU cores, the default) and `paper` (a
//! GPU-sized protocol scaled from the GReg paper's, method.md "Training protocols": LeNet, full
//! epochs, full test sets, more certified samples and n = 10⁵ smoothing samples).

/// Which protocol `oodcert reproduce` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// MLP, 2 + 0.6 + 0.6 epochs of training, 20 certified samples per set, n = 2000.
    Quick,
    /// LeNet, 10 epochs of CE pre-training and 20 of fine-tuning, 500 smoothing-certified
    /// samples per set at n = 100 000, 50 Lipschitz-bounded: sized for a GPU (`--device cuda`).
    Paper,
}

/// One training stage: its name (output folder), TOML config and the stage it starts from.
#[derive(Debug, Clone, Copy)]
pub struct Stage {
    /// Output folder under `--out` and the config's file name under `configs/`.
    pub name: &'static str,
    /// The TOML text of the stage's `TrainConfig`.
    pub config: &'static str,
    /// The stage whose model initialises this one (pretrain → fine-tune).
    pub init_from: Option<&'static str>,
}

/// Everything a preset fixes about the main job (flags still override `--limit`,
/// `--certify-limit` and training keys via `--set`).
#[derive(Debug, Clone, Copy)]
pub struct Protocol {
    /// CE pre-training, then energy and GReg fine-tuning from it.
    pub stages: [Stage; 3],
    /// Samples per dataset certified by the smoothing stage (`--certify-limit` overrides).
    pub certify_limit: usize,
    /// Samples bounded by the Lipschitz stage (CPU-only, ≈ 95 s per LeNet sample on 2 cores;
    /// `--certify-limit` overrides).
    pub lipschitz_limit: usize,
    /// ID validation images for the Lipschitz stage's threshold.
    pub lipschitz_id_val_limit: usize,
    /// Smoothing: selection samples n0 and estimation samples n (Cohen et al. 2019).
    pub smoothing_n0: u64,
    /// Smoothing: estimation samples n.
    pub smoothing_n: u64,
    /// Smoothing: validation images for γ and the clip range.
    pub smoothing_cal_limit: u64,
    /// PGD steps and restarts of `verify` on Lipschitz runs.
    pub verify_lipschitz: (usize, usize),
    /// PGD steps, restarts and fresh Monte Carlo samples of `verify` on smoothing runs.
    pub verify_smoothing: (usize, usize, u64),
}

/// The quick protocol's training configs (also `oodcert train --config …` examples).
pub const QUICK_STAGES: [Stage; 3] = [
    Stage {
        name: "ce",
        config: include_str!("../../../analysis/configs/quick.toml"),
        init_from: None,
    },
    Stage {
        name: "energy",
        config: include_str!("../../../analysis/configs/finetune-energy.toml"),
        init_from: Some("ce"),
    },
    Stage {
        name: "greg",
        config: include_str!("../../../analysis/configs/finetune-greg.toml"),
        init_from: Some("ce"),
    },
];

/// The paper protocol's training configs.
pub const PAPER_STAGES: [Stage; 3] = [
    Stage {
        name: "ce",
        config: include_str!("../../../analysis/configs/pretrain-paper.toml"),
        init_from: None,
    },
    Stage {
        name: "energy",
        config: include_str!("../../../analysis/configs/finetune-energy-paper.toml"),
        init_from: Some("ce"),
    },
    Stage {
        name: "greg",
        config: include_str!("../../../analysis/configs/finetune-greg-paper.toml"),
        init_from: Some("ce"),
    },
];

impl Preset {
    /// The protocol of this preset.
    pub fn protocol(self) -> Protocol {
        match self {
            Preset::Quick => Protocol {
                stages: QUICK_STAGES,
                certify_limit: 20,
                lipschitz_limit: 20,
                lipschitz_id_val_limit: 5000,
                smoothing_n0: 100,
                smoothing_n: 2000,
                smoothing_cal_limit: 1000,
                verify_lipschitz: (20, 3),
                verify_smoothing: (10, 2, 1000),
            },
            Preset::Paper => Protocol {
                stages: PAPER_STAGES,
                certify_limit: 500,
                lipschitz_limit: 50,
                lipschitz_id_val_limit: 10_000,
                smoothing_n0: 100,
                smoothing_n: 100_000,
                smoothing_cal_limit: 5000,
                verify_lipschitz: (50, 5),
                verify_smoothing: (20, 4, 10_000),
            },
        }
    }
}
