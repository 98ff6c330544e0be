//! Helpers shared by the integration tests (each test file includes them with `mod common;`):
//! the `oodcert` process wrapper, toy IDX files, and saved toy models.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use oodcert::model::{Arch, Model, ModelSpec};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `oodcert` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_oodcert");

/// Scheduler variables `--shard env` reads; removed from every child so the host's own job
/// array never leaks into a test.
const SCHEDULER_VARS: [&str; 4] = [
    "JOB_COMPLETION_INDEX",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_COUNT",
];

/// Runs `oodcert ARGS…` with OODCERT_NO_FETCH=1, no scheduler variables, and `envs` set.
pub fn oodcert<S: AsRef<OsStr>>(args: &[S], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).env("OODCERT_NO_FETCH", "1");
    for v in SCHEDULER_VARS {
        c.env_remove(v);
    }
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// [`oodcert`] with the data directory `OODCERT_DATA` = `data_dir`.
pub fn oodcert_in<S: AsRef<OsStr>>(args: &[S], data_dir: &Path) -> Output {
    oodcert(args, &[("OODCERT_DATA", s(data_dir))])
}

/// Asserts that the command succeeded (showing its exit code and stderr if not); its stdout.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Next value of the 64-bit LCG (Knuth's MMIX constants) the toy data sets are drawn from.
pub fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state
}

/// Writes `DIR/STEM-images-idx3-ubyte` (`n`×`h`×`w` u8 `pixels`) and, given `labels`,
/// `DIR/STEM-labels-idx1-ubyte`; returns the image file's path.
pub fn write_idx(
    dir: &Path,
    stem: &str,
    [n, h, w]: [usize; 3],
    pixels: &[u8],
    labels: Option<&[u8]>,
) -> PathBuf {
    assert_eq!(pixels.len(), n * h * w);
    let mut img = vec![0, 0, 8, 3];
    for d in [n, h, w] {
        img.extend_from_slice(&(d as u32).to_be_bytes());
    }
    img.extend_from_slice(pixels);
    let p = dir.join(format!("{stem}-images-idx3-ubyte"));
    std::fs::write(&p, img).unwrap();
    if let Some(labels) = labels {
        assert_eq!(labels.len(), n);
        let mut lab = vec![0, 0, 8, 1];
        lab.extend_from_slice(&(n as u32).to_be_bytes());
        lab.extend_from_slice(labels);
        std::fs::write(dir.join(format!("{stem}-labels-idx1-ubyte")), lab).unwrap();
    }
    p
}

/// A random f32 MLP (input normalisation mean 0.5, std 0.25; init seed 3) saved as
/// `DIR/m.safetensors`.
pub fn save_mlp(dir: &Path, shape: [usize; 3], hidden: &[usize], classes: usize) -> PathBuf {
    let spec = ModelSpec {
        arch: Arch::Mlp {
            hidden: hidden.to_vec(),
        },
        input_shape: shape,
        num_classes: classes,
        mean: vec![0.5],
        std: vec![0.25],
    };
    let p = dir.join("m.safetensors");
    Model::init(spec, &Device::Cpu, DType::F32, 3)
        .unwrap()
        .save(&p)
        .unwrap();
    p
}

/// `count` pseudo-random values in [0, 1) (splitmix64, 53 bits each): the toy pixels of the
/// training tests.
pub fn splitmix_unit(seed: u64, count: usize) -> Vec<f64> {
    let mut s = seed;
    (0..count)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect()
}

/// Every entry of a tensor (any float dtype, any shape) as f64, in row-major order.
pub fn flat_f64(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// The second line of `DIR/verify_summary.csv`, split at commas.
pub fn verify_summary(dir: &Path) -> Vec<String> {
    let s = std::fs::read_to_string(dir.join("verify_summary.csv")).unwrap();
    s.lines()
        .nth(1)
        .unwrap()
        .split(',')
        .map(String::from)
        .collect()
}

/// Multiplies the positive numbers in the named columns of a CSV by `k` (a tampered run for
/// `verify` to catch).
pub fn inflate(csv_path: &Path, cols: &[&str], k: f64) {
    let text = std::fs::read_to_string(csv_path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let idx: Vec<usize> = cols
        .iter()
        .map(|c| header.iter().position(|h| h == c).unwrap())
        .collect();
    let mut out = header.join(",") + "\n";
    for l in lines {
        let mut f: Vec<String> = l.split(',').map(String::from).collect();
        for &i in &idx {
            let v: f64 = f[i].parse().unwrap();
            if v > 0.0 {
                f[i] = (v * k).to_string();
            }
        }
        out += &(f.join(",") + "\n");
    }
    std::fs::write(csv_path, out).unwrap();
}

/// Four classes of 12×12 images (class c: the c-th vertical strip of width 3 bright, noise from
/// the LCG seeded with `seed`), label i % 4, written as IDX files named `toy4`.
pub fn write_toy4(dir: &Path, n: usize, seed: u64) -> PathBuf {
    let (h, w) = (12usize, 12usize);
    let mut pix = Vec::with_capacity(n * h * w);
    let mut labels = Vec::with_capacity(n);
    let mut st = seed;
    for i in 0..n {
        let c = i % 4;
        labels.push(c as u8);
        for _ in 0..h {
            for x in 0..w {
                let base: u64 = if x / 3 == c { 170 } else { 30 };
                pix.push((base + (lcg(&mut st) >> 33) % 80) as u8);
            }
        }
    }
    write_idx(dir, "toy4", [n, h, w], &pix, Some(&labels))
}
