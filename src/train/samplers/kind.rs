//! Which auxiliary-outlier sampler a run uses: `random | greedy | greg-plus | dos`.

use std::fmt;
use std::str::FromStr;

use crate::bad_input;
use crate::error::Error;

/// The outlier sampler (method.md, "GReg+ : energy-based sampling").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SamplerKind {
    /// A uniform random auxiliary batch (no selection).
    Random,
    /// The B lowest-energy candidates of the pool.
    Greedy,
    /// GReg+: energy rank window, k-means on normalised features, lowest (and highest) energy
    /// per cluster, random fill (Sharifi et al., ECCV 2024).
    GregPlus,
    /// Diverse Outlier Sampling (Jiang et al., ICLR 2024): the most ID-like sample per cluster.
    Dos,
}

impl SamplerKind {
    /// All kinds, in the order their names are listed in messages.
    pub const ALL: [SamplerKind; 4] = [Self::Random, Self::Greedy, Self::GregPlus, Self::Dos];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::Greedy => "greedy",
            Self::GregPlus => "greg-plus",
            Self::Dos => "dos",
        }
    }

    /// Whether the sampler clusters penultimate features (and so needs them).
    pub fn clusters(self) -> bool {
        matches!(self, Self::GregPlus | Self::Dos)
    }
}

impl fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SamplerKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                bad_input!("unknown sampler {s:?}: expected one of random, greedy, greg-plus, dos")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in SamplerKind::ALL {
            assert_eq!(k.name().parse::<SamplerKind>().unwrap(), k);
            assert_eq!(k.to_string(), k.name());
        }
    }

    #[test]
    fn unknown_name_is_a_clear_error() {
        for bad in ["", "greg_plus", "GREEDY", "dos "] {
            let err = bad.parse::<SamplerKind>().unwrap_err().to_string();
            assert!(
                err.contains("unknown sampler") && err.contains("greg-plus"),
                "{err}"
            );
        }
    }
}
