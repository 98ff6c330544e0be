//! Shards: `--shard k/N` certifies the k-th (0-based) of N contiguous slices of the run's sample
//! list, slice k = [⌊kM/N⌋, ⌊(k+1)M/N⌋) of M samples. `--shard env` and `--shard env/N` take k
//! (and N) from a Slurm job array (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN,
//! SLURM_ARRAY_TASK_COUNT) or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX; N must be given).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Slice `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// k, 0-based.
    pub index: u64,
    /// N ≥ 1.
    pub count: u64,
}

impl Shard {
    /// Parses `k/N`, `env` or `env/N`, reading variables from the process environment.
    pub fn parse(text: &str) -> Result<Shard> {
        Shard::parse_with(text, |v| std::env::var(v).ok())
    }

    /// [`Shard::parse`] with an injected environment (for tests).
    pub fn parse_with(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Shard> {
        let bad = |msg: String| Error::BadInput(format!("--shard {text}: {msg}"));
        let num = |s: &str, what: &str| -> Result<u64> {
            s.trim()
                .parse::<u64>()
                .map_err(|_| bad(format!("{what} '{s}' is not a non-negative integer")))
        };
        let (k_text, n_text) = match text.split_once('/') {
            Some((k, n)) => (k.trim(), Some(n)),
            None => (text.trim(), None),
        };
        let given_n = n_text.map(|n| num(n, "N")).transpose()?;
        let (index, count) = if k_text == "env" {
            let k8s = env("JOB_COMPLETION_INDEX");
            let slurm = env("SLURM_ARRAY_TASK_ID");
            match (k8s, slurm) {
                (Some(_), Some(_)) => {
                    return Err(bad(
                        "both JOB_COMPLETION_INDEX and SLURM_ARRAY_TASK_ID are set".into(),
                    ));
                }
                (Some(k), None) => {
                    let n = given_n.ok_or_else(|| {
                        bad("a Kubernetes Indexed Job does not export N: use --shard env/N (N = .spec.completions)".into())
                    })?;
                    (num(&k, "JOB_COMPLETION_INDEX")?, n)
                }
                (None, Some(k)) => {
                    let min = env("SLURM_ARRAY_TASK_MIN")
                        .map(|m| num(&m, "SLURM_ARRAY_TASK_MIN"))
                        .transpose()?
                        .unwrap_or(0);
                    let k = num(&k, "SLURM_ARRAY_TASK_ID")?;
                    let k = k.checked_sub(min).ok_or_else(|| {
                        bad(format!(
                            "SLURM_ARRAY_TASK_ID {k} < SLURM_ARRAY_TASK_MIN {min}"
                        ))
                    })?;
                    let n = match (given_n, env("SLURM_ARRAY_TASK_COUNT")) {
                        (Some(n), _) => n,
                        (None, Some(c)) => num(&c, "SLURM_ARRAY_TASK_COUNT")?,
                        (None, None) => {
                            return Err(bad(
                                "SLURM_ARRAY_TASK_COUNT is not set; use --shard env/N".into(),
                            ));
                        }
                    };
                    (k, n)
                }
                (None, None) => {
                    return Err(bad("neither JOB_COMPLETION_INDEX (Kubernetes) nor SLURM_ARRAY_TASK_ID (Slurm) is set".into()));
                }
            }
        } else {
            let n = given_n.ok_or_else(|| bad("expected k/N, env or env/N".into()))?;
            (num(k_text, "k")?, n)
        };
        if count == 0 || index >= count {
            return Err(bad(format!(
                "need 0 <= k < N, got k = {index}, N = {count}"
            )));
        }
        Ok(Shard { index, count })
    }

    /// The slice of `0..total` this shard certifies.
    pub fn range(&self, total: u64) -> Range<u64> {
        let cut = |k: u64| ((k as u128 * total as u128) / self.count as u128) as u64;
        cut(self.index)..cut(self.index + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_tile_the_sample_list() {
        for total in [0u64, 1, 7, 10, 101] {
            for n in 1..=8u64 {
                let mut next = 0;
                for k in 0..n {
                    let r = Shard { index: k, count: n }.range(total);
                    assert_eq!(r.start, next);
                    next = r.end;
                }
                assert_eq!(next, total);
            }
        }
    }
}
