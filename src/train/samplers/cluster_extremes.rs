//! Per-cluster energy extremes: the lowest-energy member of each cluster (the most ID-like, GReg+
//! step 4 and DOS) and the highest-energy one (two-way GReg+).

/// The positions (into `labels`/`energies`) of the lowest- and highest-energy member of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extremes {
    /// Position of the member of lowest energy (the first on ties).
    pub lowest: usize,
    /// Position of the member of highest energy (the first on ties).
    pub highest: usize,
}

/// For clusters 0..k, the energy extremes of their members; `None` for an empty cluster. Labels
/// ≥ k are ignored. `labels` and `energies` are parallel.
pub fn cluster_extremes(labels: &[usize], energies: &[f32], k: usize) -> Vec<Option<Extremes>> {
    let mut out: Vec<Option<Extremes>> = vec![None; k];
    for (i, (&l, &e)) in labels.iter().zip(energies).enumerate() {
        let Some(slot) = out.get_mut(l) else { continue };
        match slot {
            None => {
                *slot = Some(Extremes {
                    lowest: i,
                    highest: i,
                })
            }
            Some(x) => {
                if e < energies[x.lowest] {
                    x.lowest = i;
                }
                if e > energies[x.highest] {
                    x.highest = i;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes_per_cluster_with_empty_and_ties() {
        let labels = [0, 1, 0, 0, 1, 3];
        let energies = [-2.0, 5.0, -7.0, 4.0, 5.0, 1.0];
        let ex = cluster_extremes(&labels, &energies, 4);
        assert_eq!(
            ex[0],
            Some(Extremes {
                lowest: 2,
                highest: 3
            })
        );
        assert_eq!(
            ex[1],
            Some(Extremes {
                lowest: 1,
                highest: 1
            })
        );
        assert_eq!(ex[2], None);
        assert_eq!(
            ex[3],
            Some(Extremes {
                lowest: 5,
                highest: 5
            })
        );
    }
}
