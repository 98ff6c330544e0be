//! Training: validated config, losses, optimisers, schedules, resumable checkpoints and the loop.

pub mod checkpoint;
pub mod collapse;
pub mod config;
pub mod dense_step;
pub mod log;
pub mod losses;
pub mod optim;
pub mod samplers;
pub mod schedule;
pub mod second_order;
pub mod step;
mod trainer;

pub use config::TrainConfig;
pub use trainer::{TrainOptions, TrainOutcome, channel_stats, config_sha256, stream_seed, train};
