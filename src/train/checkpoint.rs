//! Resumable checkpoints: model weights, optimiser state and the step, written as numbered
//! generations and committed by atomically replacing `latest.json`, so a run killed at any moment
//! resumes from the last complete checkpoint.

use crate::error::{Error, Result};
use crate::evidence::{sha256_file, write_atomic};
use crate::model::Model;
use crate::train::collapse::CollapseSigns;
use crate::train::optim::Optimizer;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The commit record of the newest complete checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latest {
    /// Optimiser steps completed.
    pub step: usize,
    pub model_file: String,
    pub model_sha256: String,
    pub optim_file: String,
    pub optim_sha256: String,
    /// SHA-256 of the run's configuration, to refuse resuming a different run.
    pub config_sha256: String,
    /// The collapse monitor's window at this step (`train::collapse`; empty in older records).
    #[serde(default)]
    pub collapse_window: Vec<CollapseSigns>,
}

fn ckpt_dir(out: &Path) -> PathBuf {
    out.join("checkpoints")
}

/// Writes generation `step` (model + optimiser), then commits it in `latest.json` (with the
/// collapse monitor's window `collapse`), then removes older generations.
pub fn save(
    out: &Path,
    step: usize,
    model: &Model,
    opt: &Optimizer,
    config_sha256: &str,
    collapse: &[CollapseSigns],
) -> Result<()> {
    let dir = ckpt_dir(out);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let model_file = format!("step-{step:08}.model.safetensors");
    let optim_file = format!("step-{step:08}.optim.safetensors");
    model.save(dir.join(&model_file))?;
    let state = opt.state();
    let tmp = dir.join(format!(".{optim_file}.tmp"));
    if state.is_empty() {
        // safetensors cannot hold zero tensors: store a marker so the file always exists.
        let mut m: HashMap<String, Tensor> = HashMap::new();
        m.insert(
            "__empty__".into(),
            Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu)?,
        );
        candle_core::safetensors::save(&m, &tmp)?;
    } else {
        let cpu: HashMap<String, Tensor> = state
            .into_iter()
            .map(|(k, v)| Ok((k, v.to_device(&Device::Cpu)?)))
            .collect::<Result<_>>()?;
        candle_core::safetensors::save(&cpu, &tmp)?;
    }
    std::fs::rename(&tmp, dir.join(&optim_file)).map_err(|e| {
        Error::io(
            format!("renaming into {}", dir.join(&optim_file).display()),
            e,
        )
    })?;
    let latest = Latest {
        step,
        model_sha256: sha256_file(dir.join(&model_file))?,
        optim_sha256: sha256_file(dir.join(&optim_file))?,
        model_file,
        optim_file,
        config_sha256: config_sha256.to_string(),
        collapse_window: collapse.to_vec(),
    };
    let text = serde_json::to_string_pretty(&latest)
        .map_err(|e| Error::Internal(format!("serialising checkpoint record: {e}")))?;
    write_atomic(&dir.join("latest.json"), text.as_bytes())?;
    // Only now is the new generation the one to resume from; drop the others.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("step-") && name != latest.model_file && name != latest.optim_file {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// The configuration SHA-256 recorded by the newest checkpoint under `out`, if there is one.
pub fn recorded_config(out: &Path) -> Option<String> {
    let text = std::fs::read_to_string(ckpt_dir(out).join("latest.json")).ok()?;
    serde_json::from_str::<Latest>(&text)
        .ok()
        .map(|l| l.config_sha256)
}

/// A checkpoint read back for resuming.
pub struct Resumed {
    pub step: usize,
    pub model: Model,
    pub optim_state: HashMap<String, Tensor>,
    /// The collapse monitor's window when the checkpoint was written.
    pub collapse_window: Vec<CollapseSigns>,
}

/// Reads the newest complete checkpoint under `out`, if any, verifying hashes and the config.
pub fn load(out: &Path, config_sha256: &str, device: &Device) -> Result<Option<Resumed>> {
    let dir = ckpt_dir(out);
    let latest_path = dir.join("latest.json");
    if !latest_path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&latest_path)
        .map_err(|e| Error::io(format!("reading {}", latest_path.display()), e))?;
    let latest: Latest = serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(&latest_path, format!("not a checkpoint record: {e}")))?;
    if latest.config_sha256 != config_sha256 {
        return Err(Error::BadInput(format!(
            "{} was written by a run with a different configuration; use a new --out directory or the same config",
            out.display()
        )));
    }
    for (f, h) in [
        (&latest.model_file, &latest.model_sha256),
        (&latest.optim_file, &latest.optim_sha256),
    ] {
        let p = dir.join(f);
        if &sha256_file(&p)? != h {
            return Err(Error::bad_file(
                &p,
                "checkpoint file does not match its recorded SHA-256",
            ));
        }
    }
    let model = Model::load_full(dir.join(&latest.model_file), device)?;
    let mut optim_state = candle_core::safetensors::load(dir.join(&latest.optim_file), device)?;
    optim_state.remove("__empty__");
    Ok(Some(Resumed {
        step: latest.step,
        model,
        optim_state,
        collapse_window: latest.collapse_window,
    }))
}
