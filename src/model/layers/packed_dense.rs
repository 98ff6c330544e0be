//! A run of dense layers `Linear (ReLU Linear)* ReLU?` on the packed AVX-512 kernel
//! ([`super::dense_gemm`]), one block of at most [`super::DENSE_ROWS`] rows through every layer
//! while its activations stay in the core's cache: per layer the GEMM of the `gemm` crate's call
//! (same bits), then the bias added and the ReLU applied as `Linear::forward` and `relu` do. The
//! evaluation forward's fused dense run and the dense Monte Carlo loop both walk it.

use super::dense_gemm::PackedLinear;
use super::relu::relu_in_place;

/// One layer of a [`PackedRun`]: W packed, the bias, and whether a ReLU follows.
pub(crate) struct PackedDense {
    packed: PackedLinear,
    bias: Option<Vec<f32>>,
    inp: usize,
    out: usize,
    relu: bool,
}

impl PackedDense {
    /// W `(out, inp)` row-major packed for blocks of [`super::DENSE_ROWS`] rows; `None` where the
    /// kernel does not apply (no AVX-512, or a shape the crate sums another way).
    pub(crate) fn new(
        w: &[f32],
        bias: Option<Vec<f32>>,
        out: usize,
        inp: usize,
        relu: bool,
    ) -> Option<Self> {
        if bias.as_ref().is_some_and(|b| b.len() != out) {
            return None;
        }
        let packed = PackedLinear::new(w, out, inp, super::DENSE_ROWS)?;
        Some(PackedDense {
            packed,
            bias,
            inp,
            out,
            relu,
        })
    }
}

/// Dense layers that chain (each layer's outputs are the next one's inputs).
pub(crate) struct PackedRun {
    layers: Vec<PackedDense>,
    /// The widest padded activation row.
    width: usize,
}

impl PackedRun {
    /// `None` for no layers, empty inputs or outputs, or layers that do not chain.
    pub(crate) fn new(layers: Vec<PackedDense>) -> Option<Self> {
        let (first, last) = (layers.first()?, layers.last()?);
        if first.inp == 0 || last.out == 0 || layers.windows(2).any(|p| p[0].out != p[1].inp) {
            return None;
        }
        let width = layers.iter().map(|l| l.packed.padded_out()).max()?;
        Some(PackedRun { layers, width })
    }

    /// Inputs per row.
    pub(crate) fn inp(&self) -> usize {
        self.layers[0].inp
    }

    /// Outputs per row.
    pub(crate) fn out(&self) -> usize {
        self.layers[self.layers.len() - 1].out
    }

    /// The first `rows` ≤ [`super::DENSE_ROWS`] rows of `x` (row stride [`Self::inp`]) through
    /// every layer into `y` (`rows` rows of [`Self::out`] values); `a` and `b` are scratch,
    /// resized here and reused across calls. Only the first `rows` rows are computed (each
    /// row's outputs depend on that row alone); activations keep the panels' padded stride.
    pub(crate) fn block(
        &self,
        rows: usize,
        x: &[f32],
        a: &mut Vec<f32>,
        b: &mut Vec<f32>,
        y: &mut [f32],
    ) {
        let len = super::DENSE_ROWS * self.width;
        a.resize(len, 0.0);
        b.resize(len, 0.0);
        let mut ld = self.inp();
        for (k, l) in self.layers.iter().enumerate() {
            let ldo = l.packed.padded_out();
            // The first layer reads the block's inputs, the others the last layer's outputs (b).
            let src: &[f32] = if k == 0 { x } else { b };
            l.packed.apply(rows, src, ld, a, ldo);
            for row in a.chunks_exact_mut(ldo).take(rows) {
                let row = &mut row[..l.out];
                if let Some(bias) = &l.bias {
                    super::add_bias(row, bias);
                }
                if l.relu {
                    relu_in_place(row);
                }
            }
            std::mem::swap(a, b);
            ld = ldo;
        }
        let out = self.out();
        for (dst, src) in y.chunks_exact_mut(out).take(rows).zip(b.chunks_exact(ld)) {
            dst.copy_from_slice(&src[..out]);
        }
    }
}
