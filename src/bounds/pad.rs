//! Zero padding of a `(c, h, w)` input (ONNX `Pad`, mode constant 0, spatial axes only) as a
//! [`LinearMap`]: a 0/1 matrix that copies every input entry to one output entry.

use super::linear_map::LinearMap;

/// `(c, h, w)` → `(c, h + top + bottom, w + left + right)`, new entries 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Pad {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub top: usize,
    pub bottom: usize,
    pub left: usize,
    pub right: usize,
}

impl Pad {
    /// The output side (h', w').
    pub fn out_hw(&self) -> (usize, usize) {
        (
            self.h + self.top + self.bottom,
            self.w + self.left + self.right,
        )
    }

    /// The output index of input entry i.
    fn dest(&self, i: usize) -> usize {
        let (ho, wo) = self.out_hw();
        let hw = self.h * self.w;
        let (ch, r, c) = (i / hw, i % hw / self.w, i % self.w);
        ch * ho * wo + (r + self.top) * wo + c + self.left
    }
}

impl LinearMap for Pad {
    fn in_dim(&self) -> usize {
        self.c * self.h * self.w
    }
    fn out_dim(&self) -> usize {
        let (ho, wo) = self.out_hw();
        self.c * ho * wo
    }
    fn apply(&self, x: &[f64], _abs: bool) -> Vec<f64> {
        let mut y = vec![0.0; self.out_dim()];
        for (i, v) in x.iter().enumerate().take(self.in_dim()) {
            y[self.dest(i)] = *v;
        }
        y
    }
    fn apply_t(&self, y: &[f64], _abs: bool) -> Vec<f64> {
        (0..self.in_dim()).map(|i| y[self.dest(i)]).collect()
    }
    fn fan_in(&self) -> usize {
        1
    }
    fn fan_out(&self) -> usize {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ⟨Pad x, y⟩ = ⟨x, Padᵀ y⟩ and the padded image has the input at the offset, zeros around.
    #[test]
    fn pad_places_the_input_and_its_adjoint_gathers() {
        let p = Pad {
            c: 2,
            h: 2,
            w: 3,
            top: 1,
            bottom: 0,
            left: 2,
            right: 1,
        };
        let x: Vec<f64> = (1..=12).map(|v| v as f64).collect();
        let y = p.apply(&x, false);
        assert_eq!(y.len(), 2 * 3 * 6);
        assert_eq!(y[6 + 2], 1.0);
        assert_eq!(y[18 + 6 + 2 + 6 + 2], 12.0);
        assert_eq!(y.iter().filter(|v| **v != 0.0).count(), 12);
        let z: Vec<f64> = (0..36).map(|v| (v * 7 % 11) as f64).collect();
        let lhs: f64 = y.iter().zip(&z).map(|(a, b)| a * b).sum();
        let rhs: f64 = x.iter().zip(p.apply_t(&z, false)).map(|(a, b)| a * b).sum();
        assert_eq!(lhs, rhs);
    }
}
