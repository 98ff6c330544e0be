//! Collapse detection in `oodcert train` (issue #14 item 7, `train::collapse`): an absurd learning
//! rate that kills the network stops with exit 1 and a line saying to lower `optim.lr`, writing
//! no model; the same run at a sane rate is not stopped; `train.collapse_window = 0` turns the
//! check off (and then the collapsed run exits 0, as every run did before the check).

mod common;
use common::{ok, oodcert_in, s, write_toy4};
use std::path::{Path, PathBuf};

fn run(
    dir: &Path,
    data: &Path,
    lr: &str,
    extra: &str,
    out: &str,
) -> (std::process::Output, PathBuf) {
    let text = format!(
        "seed = 1\n[data]\nid = \"path:{}\"\n[model]\narch = \"mlp\"\nhidden = [32, 16]\n\
         [optim]\nkind = \"sgd\"\nlr = {lr}\n[train]\nepochs = 20\nbatch_size = 32\n\
         max_steps = 300\nlog_every = 50\n{extra}",
        data.display()
    );
    let cfg = dir.join(format!("{out}.toml"));
    std::fs::write(&cfg, text).unwrap();
    let o = dir.join(out);
    (
        oodcert_in(
            &["train", "--config", s(&cfg), "--out", s(&o), "--quiet"],
            dir,
        ),
        o,
    )
}

#[test]
fn an_absurd_learning_rate_stops_with_exit_1_and_says_to_lower_it() {
    let t = tempfile::tempdir().unwrap();
    let data = write_toy4(t.path(), 512, 5);
    let (o, dir) = run(t.path(), &data, "5.0", "", "absurd");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    let line = err.lines().last().unwrap();
    assert!(
        line.contains("training collapsed") && line.contains("lower `optim.lr`"),
        "{err}"
    );
    assert!(
        !dir.join("model.safetensors").exists(),
        "no model is written"
    );
    // The same run with the check off ends "successfully" with a dead model: the silent failure.
    let (o, dir) = run(t.path(), &data, "5.0", "collapse_window = 0\n", "off");
    ok(&o);
    assert!(dir.join("model.safetensors").exists());
}

#[test]
fn a_healthy_run_is_not_stopped() {
    let t = tempfile::tempdir().unwrap();
    let data = write_toy4(t.path(), 512, 5);
    // From scratch: at chance during the first steps, which the warm-up covers.
    let (o, dir) = run(t.path(), &data, "0.05", "", "healthy");
    ok(&o);
    assert!(dir.join("model.safetensors").exists());
    // A short warm-up and window on the same healthy run: still no alarm.
    let (o, _) = run(
        t.path(),
        &data,
        "0.05",
        "collapse_warmup = 20\ncollapse_window = 2\n",
        "strict",
    );
    ok(&o);
}

#[test]
fn a_resumed_run_keeps_the_collapse_window() {
    // Checkpoints every 10 steps: the collapsed run stops at its check step N before writing
    // checkpoint N, so it resumes from N − 10 with 9 checks of the window stored. Resumed with
    // the window restored it stops at N again; a window restarted on resume would need 10 new
    // checks and stop 90 steps later.
    let t = tempfile::tempdir().unwrap();
    let data = write_toy4(t.path(), 512, 5);
    let (o, dir) = run(t.path(), &data, "5.0", "checkpoint_every = 10\n", "cut");
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    let stop = |e: &str| -> String {
        let line = e.lines().last().unwrap();
        let i = line.find("step ").unwrap();
        line[i..i + line[i..].find(':').unwrap()].to_string()
    };
    let first = stop(&err);
    let cfg = t.path().join("cut.toml");
    let o = oodcert_in(
        &[
            "train",
            "--config",
            s(&cfg),
            "--out",
            s(&dir),
            "--resume",
            "--quiet",
        ],
        t.path(),
    );
    let err2 = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "stderr: {err2}");
    assert!(err2.contains("resuming"), "{err2}");
    assert_eq!(stop(&err2), first, "{err}\n---\n{err2}");
}
