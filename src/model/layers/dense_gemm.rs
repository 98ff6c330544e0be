//! y = x·Wᵀ in f32 with W packed once and an AVX-512 kernel that performs, for every output, the
//! very floating-point operations of the `gemm` crate's call in [`super::gemm::gemm_into`]: the
//! same k-blocks (the crate's `kc`), each block a chain of FMAs from +0 in increasing k, the block
//! sums added to the output left to right — so the bits are the crate's, on any batch, thread count
//! or CPU that has the kernel (tested against `gemm_into` below, and through the dense loop in
//! tests/smoothing_dense_mc.rs).
//!
//! Why the bits agree: for f32 on x86 the crate runs its FMA kernel (MR = 16, NR = 6). For our
//! call (dst row-major, rows > 1 and out > 1) it transposes to m′ = out, n′ = rows and cuts the
//! depth into blocks of `kc` = `kernel_params(m′, n′, k, 16, 6, 4).kc` (`k.min(512)` when m′, n′
//! ≤ 64). In its microkernel every output has one accumulator, zero-initialised, updated by
//! `acc = fma(w, x, acc)` for each depth of the block in order; the first block stores `1·acc`
//! (exact), each later block stores `fma(1, acc, dst)` = `dst + acc` rounded once. Packing copies
//! values and does not round. The shapes that take another route in the crate (k ≤ 2, one row or
//! one output, m′·n′ ≤ 256: its gemv, gevv and horizontal kernels) are refused here
//! ([`PackedLinear::new`] returns `None`) and go through `gemm_into` as before.

// The AVX-512 intrinsics and `avx512*` target features are stable since Rust 1.89, the crate's
// `rust-version`.

use super::gemm::{Mat, gemm_into};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// f32 lanes of one AVX-512 register.
const LANES: usize = 16;
/// Rows of x per register tile.
const TILE_ROWS: usize = 8;
/// Registers of outputs per tile (a panel is `LANES · vectors` outputs wide).
const MAX_VECTORS: usize = 3;

/// The `gemm` crate's f32 FMA kernel shape (its `MR`, `NR`) and the size of f32, which with the
/// cache sizes fix its k-blocking.
const GEMM_MR: usize = 16;
const GEMM_NR: usize = 6;

/// The depth blocks `(start, len)` in which the `gemm` crate sums `rows × k · k × out` (our call:
/// dst row-major), or `None` when the crate takes another route than its blocked FMA kernel.
pub(crate) fn gemm_k_blocks(rows: usize, k: usize, out: usize) -> Option<Vec<(usize, usize)>> {
    // The crate transposes a row-major dst: m′ = out, n′ = rows.
    let (m, n) = (out, rows);
    if m <= 1 || n <= 1 || k <= 2 || m * n <= 16 * 16 {
        return None;
    }
    let kc = if m <= 64 && n <= 64 {
        k.min(512)
    } else {
        gemm_common::cache::kernel_params(m, n, k, GEMM_MR, GEMM_NR, std::mem::size_of::<f32>()).kc
    };
    if kc == 0 {
        return None;
    }
    let mut blocks = Vec::new();
    let mut start = 0;
    while start < k {
        let len = kc.min(k - start);
        blocks.push((start, len));
        start += len;
    }
    Some(blocks)
}

/// Whether this CPU runs the kernel (AVX-512F; it implies the FMA the crate's kernel uses).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The self-check's verdict per shape `(rows, inp, out)` ([`PackedLinear::new`]).
type Verdicts = HashMap<(usize, usize, usize), bool>;

/// A linear layer's W (`out × inp`, row-major) packed for a fixed number of rows per call: per
/// depth block, per panel of outputs, `[depth][panel width]` with zeros past `out`.
pub(crate) struct PackedLinear {
    inp: usize,
    rows: usize,
    blocks: Vec<(usize, usize)>,
    /// Per panel: first output and width in registers.
    panels: Vec<(usize, usize)>,
    /// Per (block, panel): offset into `data`.
    offsets: Vec<usize>,
    data: Vec<f32>,
}

impl PackedLinear {
    /// W packed for calls of up to `rows` rows, summed as the crate sums `rows` rows; `None` when
    /// the CPU lacks the kernel or the `gemm` crate would sum these shapes another way (then
    /// `gemm_into` is the path).
    pub(crate) fn new(w: &[f32], out: usize, inp: usize, rows: usize) -> Option<Self> {
        if !available() || w.len() != out * inp {
            return None;
        }
        let blocks = gemm_k_blocks(rows, inp, out)?;
        let mut panels = Vec::new();
        let mut o = 0;
        while o < out {
            let v = (out - o).div_ceil(LANES).min(MAX_VECTORS);
            panels.push((o, v));
            o += v * LANES;
        }
        let padded = panels.last().map_or(0, |&(o, v)| o + v * LANES);
        let mut offsets = Vec::with_capacity(blocks.len() * panels.len());
        let mut data = vec![0.0f32; inp * padded];
        let mut at = 0;
        for &(k0, kl) in &blocks {
            for &(o0, v) in &panels {
                offsets.push(at);
                let width = v * LANES;
                // Row o of W (contiguous in d) becomes column o − o0 of the panel; the columns
                // past `out` stay zero.
                for (j, o) in (o0..out.min(o0 + width)).enumerate() {
                    let row = &w[o * inp + k0..o * inp + k0 + kl];
                    for (dst, &wv) in data[at + j..].iter_mut().step_by(width).zip(row) {
                        *dst = wv;
                    }
                }
                at += kl * width;
            }
        }
        let packed = PackedLinear {
            inp,
            rows,
            blocks,
            panels,
            offsets,
            data,
        };
        packed.agrees_with_gemm(w, out).then_some(packed)
    }

    /// Whether the kernel gives `gemm_into`'s bits on this shape, checked on a probe input once per
    /// process and shape (the order of the sums is a function of the shape and the CPU): a guard
    /// against a `gemm` release or build (e.g. its `x86-v4` feature) that sums another way than
    /// the module docs describe. A mismatch sends the dense loop back to `gemm_into`.
    fn agrees_with_gemm(&self, w: &[f32], out: usize) -> bool {
        static CHECKED: OnceLock<Mutex<Verdicts>> = OnceLock::new();
        verdict(&CHECKED, (self.rows, self.inp, out), || {
            self.matches_gemm(w, out)
        })
    }

    /// The kernel's and `gemm_into`'s outputs, bit for bit, on a probe of `rows` rows with values
    /// of mixed sign and magnitude (a different order of the sums shows in the bits).
    fn matches_gemm(&self, w: &[f32], out: usize) -> bool {
        let x = probe(self.rows * self.inp, 0x9e37_79b9_7f4a_7c15);
        let mut want = vec![0.0f32; self.rows * out];
        let lhs = Mat::row_major(&x, self.rows, self.inp);
        let rhs = Mat::row_major(w, out, self.inp).t();
        if gemm_into(&mut want, lhs, rhs, false, false).is_err() {
            return false;
        }
        let ld = self.padded_out();
        let mut got = vec![0.0f32; self.rows * ld];
        self.apply(self.rows, &x, self.inp, &mut got, ld);
        same_bits(&got, ld, &want, out)
    }

    /// Outputs per row including the panels' padding: the least row stride of `dst`.
    pub(crate) fn padded_out(&self) -> usize {
        self.panels.last().map_or(0, |&(o, v)| o + v * LANES)
    }

    /// `dst[r·ldd + o] = Σ_d x[r·ldx + d]·W[o, d]` for `rows` ≤ the packed row count, in the
    /// order of the `gemm` crate's call on the packed row count (module docs: rows are
    /// independent, so the rows past `rows` — zeros in the dense loop — need not be computed);
    /// columns `out..padded_out()` of dst get values to be ignored.
    pub(crate) fn apply(&self, rows: usize, x: &[f32], ldx: usize, dst: &mut [f32], ldd: usize) {
        assert!(
            (1..=self.rows).contains(&rows)
                && ldx >= self.inp
                && ldd >= self.padded_out()
                && x.len() >= (rows - 1) * ldx + self.inp
                && dst.len() >= (rows - 1) * ldd + self.padded_out(),
            "dense gemm: operand sizes"
        );
        #[cfg(target_arch = "x86_64")]
        {
            assert!(available(), "dense gemm: no AVX-512 on this CPU");
            // SAFETY: the CPU has AVX-512F (checked above); every index the kernel reads or
            // writes lies inside the slices (sizes checked above: tiles cover rows < `rows`,
            // depths < `inp`, outputs < `padded_out`; the packed panels were built for them).
            unsafe { self.apply_avx512(rows, x, ldx, dst, ldd) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (x, dst);
            unreachable!("dense gemm: no kernel on this architecture");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn apply_avx512(&self, rows: usize, x: &[f32], ldx: usize, dst: &mut [f32], ldd: usize) {
        let np = self.panels.len();
        for (b, &(k0, kl)) in self.blocks.iter().enumerate() {
            let first = b == 0;
            for (p, &(o0, v)) in self.panels.iter().enumerate() {
                let w = unsafe { self.data.as_ptr().add(self.offsets[b * np + p]) };
                let mut r0 = 0;
                while r0 < rows {
                    let r = TILE_ROWS.min(rows - r0);
                    let xp = unsafe { x.as_ptr().add(r0 * ldx + k0) };
                    let dp = unsafe { dst.as_mut_ptr().add(r0 * ldd + o0) };
                    unsafe { tile_dispatch(r, v, xp, ldx, w, v * LANES, kl, dp, ldd, first) };
                    r0 += r;
                }
            }
        }
    }
}

/// A left product `dst (out × n) = W (out × k) · C (k × n)` (a convolution's GEMM: C its column
/// matrix) with the operations of `gemm_into` on that call, on the tile kernel and without
/// packing: the crate sees m′ = n, n′ = out, and its depth blocks depend on the shapes alone
/// (`gemm_k_blocks`, symmetric in m′ and n′). The kernel's rows are W's rows (read in place,
/// broadcast) and its outputs run along C's rows (read in place, 16 columns per register), so
/// every output is the crate's chain of FMAs over each block and the same block sums: the same
/// bits, checked on a probe of the shape once per process.
pub(crate) struct LeftProduct {
    out: usize,
    k: usize,
    n: usize,
    blocks: Vec<(usize, usize)>,
}

impl LeftProduct {
    /// The row stride C and dst need: `n` rounded up to whole registers (the columns past `n`
    /// are read and written, and ignored).
    pub(crate) fn ld(n: usize) -> usize {
        n.next_multiple_of(LANES)
    }

    /// A row stride for C of at least [`Self::ld`] that is not a multiple of 512 bytes: the
    /// kernel reads one register-row of C per depth, and strides of 1–4 KiB would map all of
    /// them to a few L1 sets.
    pub(crate) fn padded_ld(n: usize) -> usize {
        let ld = Self::ld(n);
        if ld.is_multiple_of(128) {
            ld + LANES
        } else {
            ld
        }
    }

    /// The plan for these shapes, or `None` when the CPU lacks the kernel, the crate takes
    /// another route, or the probe's bits differ from `gemm_into`'s.
    pub(crate) fn new(out: usize, k: usize, n: usize) -> Option<Self> {
        if !available() || out == 0 || k == 0 || n == 0 {
            return None;
        }
        let plan = LeftProduct {
            out,
            k,
            n,
            blocks: gemm_k_blocks(out, k, n)?,
        };
        static CHECKED: OnceLock<Mutex<Verdicts>> = OnceLock::new();
        verdict(&CHECKED, (out, k, n), || plan.matches_gemm()).then_some(plan)
    }

    /// The kernel's and `gemm_into`'s products, bit for bit, on probe operands: once into a
    /// fresh dst and once accumulated onto it.
    fn matches_gemm(&self) -> bool {
        let (w, c) = (probe(self.out * self.k, 1), probe(self.k * self.n, 2));
        let mut want = vec![0.0f32; self.out * self.n];
        let lhs = Mat::row_major(&w, self.out, self.k);
        let rhs = Mat::row_major(&c, self.k, self.n);
        let ld = Self::ld(self.n);
        let mut cp = vec![0.0f32; self.k * ld];
        for (dst, src) in cp.chunks_exact_mut(ld).zip(c.chunks_exact(self.n)) {
            dst[..self.n].copy_from_slice(src);
        }
        let mut got = vec![0.0f32; self.out * ld];
        [false, true].into_iter().all(|accumulate| {
            if gemm_into(&mut want, lhs, rhs, accumulate, false).is_err() {
                return false;
            }
            self.apply_acc(&w, &cp, ld, &mut got, ld, accumulate);
            same_bits(&got, ld, &want, self.n)
        })
    }

    /// `dst[o·ldd + q] = Σ_d W[o·k + d]·C[d·ldc + q]` for q < ld(n) (the crate's bits for q < n).
    pub(crate) fn apply(&self, w: &[f32], c: &[f32], ldc: usize, dst: &mut [f32], ldd: usize) {
        self.apply_acc(w, c, ldc, dst, ldd, false)
    }

    /// [`Self::apply`], adding the product to dst when `accumulate` (`gemm_into`'s flag: every
    /// block's sum added with one rounding).
    pub(crate) fn apply_acc(
        &self,
        w: &[f32],
        c: &[f32],
        ldc: usize,
        dst: &mut [f32],
        ldd: usize,
        accumulate: bool,
    ) {
        let ld = Self::ld(self.n);
        assert!(
            w.len() >= self.out * self.k
                && ldc >= ld
                && ldd >= ld
                && c.len() >= (self.k - 1) * ldc + ld
                && dst.len() >= (self.out - 1) * ldd + ld,
            "left product: operand sizes"
        );
        #[cfg(target_arch = "x86_64")]
        {
            assert!(available(), "left product: no AVX-512 on this CPU");
            // SAFETY: the CPU has AVX-512F (checked above); tiles cover rows < out, depths < k
            // and columns < ld(n), all inside the slices (sizes checked above).
            unsafe { self.apply_avx512(w, c, ldc, dst, ldd, accumulate) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (w, c, dst, accumulate);
            unreachable!("left product: no kernel on this architecture");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn apply_avx512(
        &self,
        w: &[f32],
        c: &[f32],
        ldc: usize,
        dst: &mut [f32],
        ldd: usize,
        accumulate: bool,
    ) {
        let ld = Self::ld(self.n);
        for (b, &(k0, kl)) in self.blocks.iter().enumerate() {
            let mut q0 = 0;
            while q0 < ld {
                let v = ((ld - q0) / LANES).min(MAX_VECTORS);
                let cp = unsafe { c.as_ptr().add(k0 * ldc + q0) };
                let mut r0 = 0;
                while r0 < self.out {
                    let r = TILE_ROWS.min(self.out - r0);
                    let wp = unsafe { w.as_ptr().add(r0 * self.k + k0) };
                    let dp = unsafe { dst.as_mut_ptr().add(r0 * ldd + q0) };
                    let first = b == 0 && !accumulate;
                    unsafe { tile_dispatch(r, v, wp, self.k, cp, ldc, kl, dp, ldd, first) };
                    r0 += r;
                }
                q0 += v * LANES;
            }
        }
    }
}

/// Whether the rows of `got` (stride `ld`, its first `cols` values) equal the rows of the
/// dense `want` (`cols` per row), bit for bit.
fn same_bits(got: &[f32], ld: usize, want: &[f32], cols: usize) -> bool {
    got.chunks_exact(ld)
        .zip(want.chunks_exact(cols))
        .all(|(g, w)| {
            g[..cols]
                .iter()
                .zip(w)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        })
}

/// The cached verdict for `key`, computed by `check` the first time (per process).
fn verdict(
    cache: &OnceLock<Mutex<Verdicts>>,
    key: (usize, usize, usize),
    check: impl FnOnce() -> bool,
) -> bool {
    let cache = cache.get_or_init(Default::default);
    let known = cache.lock().ok().and_then(|c| c.get(&key).copied());
    if let Some(ok) = known {
        return ok;
    }
    let ok = check();
    if let Ok(mut c) = cache.lock() {
        c.insert(key, ok);
    }
    ok
}

/// `len` probe values of mixed sign and magnitude (a different order of the sums shows in the
/// bits), from a seed.
fn probe(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let u = (state >> 40) as f32 / (1u64 << 24) as f32;
            (2.0 * u - 1.0) * [1.0, 1e-3, 37.0, 0.25][(state >> 20) as usize % 4]
        })
        .collect()
}

/// Calls the tile kernel for `r` rows and `v` registers of outputs.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,fma")]
unsafe fn tile_dispatch(
    r: usize,
    v: usize,
    x: *const f32,
    ldx: usize,
    w: *const f32,
    wd: usize,
    kl: usize,
    dst: *mut f32,
    ldd: usize,
    first: bool,
) {
    macro_rules! go {
        ($($r:literal),*) => {
            match (r, v) {
                $(
                    ($r, 1) => unsafe { tile::<$r, 1>(x, ldx, w, wd, kl, dst, ldd, first) },
                    ($r, 2) => unsafe { tile::<$r, 2>(x, ldx, w, wd, kl, dst, ldd, first) },
                    ($r, 3) => unsafe { tile::<$r, 3>(x, ldx, w, wd, kl, dst, ldd, first) },
                )*
                _ => unreachable!("dense gemm: tile shape"),
            }
        };
    }
    go!(1, 2, 3, 4, 5, 6, 7, 8)
}

/// One tile: `R` rows × `V`·16 outputs over depths `0..kl` of a block (the weights of depth d at
/// `w + d·wd`, V registers side by side). Each output's accumulator
/// starts at +0 and takes one FMA per depth in order; the block's sum is stored (`first`) or
/// added to dst with one rounding — the `gemm` crate's operations (module docs).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,fma")]
unsafe fn tile<const R: usize, const V: usize>(
    x: *const f32,
    ldx: usize,
    w: *const f32,
    wd: usize,
    kl: usize,
    dst: *mut f32,
    ldd: usize,
    first: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for d in 0..kl {
        let mut wv = [_mm512_setzero_ps(); V];
        for (i, wi) in wv.iter_mut().enumerate() {
            *wi = unsafe { _mm512_loadu_ps(w.add(d * wd + i * LANES)) };
        }
        for (row, a) in acc.iter_mut().enumerate() {
            let xb = _mm512_set1_ps(unsafe { *x.add(row * ldx + d) });
            for (ai, wi) in a.iter_mut().zip(&wv) {
                *ai = _mm512_fmadd_ps(*wi, xb, *ai);
            }
        }
    }
    for (row, a) in acc.iter().enumerate() {
        for (i, ai) in a.iter().enumerate() {
            let p = unsafe { dst.add(row * ldd + i * LANES) };
            let s = if first {
                *ai
            } else {
                _mm512_add_ps(unsafe { _mm512_loadu_ps(p) }, *ai)
            };
            unsafe { _mm512_storeu_ps(p, s) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of test values: mostly in [−1, 1), with exact zeros, tiny and
    /// large magnitudes mixed in (so that −0 products, cancellation and blocks of very different
    /// size occur).
    struct Values(u64);

    impl Values {
        fn next(&mut self) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (self.0 >> 40) as f32 / (1u64 << 24) as f32;
            match self.0 >> 60 {
                0 => 0.0,
                1 => -(u * 1e-30),
                2 => u * 3e4,
                _ => 2.0 * u - 1.0,
            }
        }
    }

    /// `rows × k · (out × k)ᵀ` through `gemm_into` (the tensor path's and the old dense loop's
    /// GEMM) on `packed_rows` rows, the rows past `rows` zero, as the dense loop calls it.
    fn reference(
        x: &[f32],
        w: &[f32],
        rows: usize,
        packed_rows: usize,
        k: usize,
        out: usize,
    ) -> Vec<f32> {
        let mut xp = x[..rows * k].to_vec();
        xp.resize(packed_rows * k, 0.0);
        let mut dst = vec![0.0f32; packed_rows * out];
        let lhs = Mat::row_major(&xp, packed_rows, k);
        let rhs = Mat::row_major(w, out, k).t();
        gemm_into(&mut dst, lhs, rhs, false, false).unwrap();
        dst.truncate(rows * out);
        dst
    }

    #[test]
    fn packed_kernel_has_the_bits_of_gemm_into() {
        if !available() {
            eprintln!("no AVX-512 on this CPU: the kernel is never used here");
            return;
        }
        let mut v = Values(11);
        // (rows computed, rows packed, k, out): the MLP's layers, partial blocks, one k-block,
        // several uneven k-blocks, outputs in 1, 2 and 3 registers and past them, odd sizes.
        let shapes = [
            (128, 128, 784, 256),
            (104, 128, 784, 256),
            (128, 128, 256, 256),
            (128, 128, 256, 10),
            (1, 128, 256, 10),
            (77, 128, 1025, 17),
            (128, 128, 1500, 37),
            (9, 128, 3, 3),
            (64, 64, 513, 49),
            (60, 60, 700, 5),
            (128, 128, 3072, 97),
            (33, 128, 64, 48),
        ];
        for (rows, packed_rows, k, out) in shapes {
            let x: Vec<f32> = (0..rows * k).map(|_| v.next()).collect();
            let w: Vec<f32> = (0..out * k).map(|_| v.next()).collect();
            let want = reference(&x, &w, rows, packed_rows, k, out);
            let p = PackedLinear::new(&w, out, k, packed_rows)
                .unwrap_or_else(|| panic!("{rows}×{k}×{out} refused"));
            let ldd = p.padded_out() + 3;
            let mut got = vec![f32::NAN; rows * ldd];
            p.apply(rows, &x, k, &mut got, ldd);
            for r in 0..rows {
                for o in 0..out {
                    assert_eq!(
                        got[r * ldd + o].to_bits(),
                        want[r * out + o].to_bits(),
                        "{rows}×{k}×{out} (packed {packed_rows}): row {r} output {o}"
                    );
                }
            }
        }
    }

    #[test]
    fn shapes_the_crate_sums_another_way_are_refused() {
        // One output, one row, k ≤ 2, or m′·n′ ≤ 256 (the crate's gemv, gevv, horizontal kernels).
        for (rows, k, out) in [
            (128, 784, 1),
            (1, 784, 256),
            (128, 2, 256),
            (128, 784, 2),
            (16, 50, 16),
        ] {
            assert!(gemm_k_blocks(rows, k, out).is_none(), "{rows}×{k}×{out}");
        }
        let blocks = gemm_k_blocks(128, 784, 256).unwrap();
        assert_eq!(blocks.iter().map(|b| b.1).sum::<usize>(), 784);
    }

    /// The guard against another summation order: the packed layer matches `gemm_into` on its
    /// probe, and a layer whose largest packed weight is off by one ulp does not.
    #[test]
    fn the_gemm_agreement_check_catches_a_different_sum() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let (out, inp, rows) = (70, 300, 64);
        let mut v = Values(5);
        let w: Vec<f32> = (0..out * inp).map(|_| v.next()).collect();
        let mut p = PackedLinear::new(&w, out, inp, rows).expect("a supported shape");
        assert!(p.matches_gemm(&w, out));
        let i = (0..p.data.len())
            .max_by(|&a, &b| p.data[a].abs().total_cmp(&p.data[b].abs()))
            .unwrap();
        p.data[i] = f32::from_bits(p.data[i].to_bits() + 1);
        assert!(!p.matches_gemm(&w, out));
    }

    /// The left product equals `gemm_into` bit for bit over shapes with one and several depth
    /// blocks (k up to 1 300), widths that are and are not whole registers, and C and dst of
    /// padded strides; shapes the crate sums by another route are refused.
    #[test]
    fn left_product_has_the_bits_of_gemm_into() {
        if !available() {
            eprintln!("no AVX-512 on this CPU: nothing to compare");
            return;
        }
        let mut vals = Values(11);
        let mut checked = 0;
        for &(out, k, n) in &[
            (6usize, 25usize, 576usize),
            (16, 150, 80),
            (64, 576, 1024),
            (128, 1152, 68),
            (512, 1300, 256),
            (24, 40, 65),
            (7, 3, 100),
        ] {
            let Some(lp) = LeftProduct::new(out, k, n) else {
                panic!("shape ({out}, {k}, {n}) refused");
            };
            let w: Vec<f32> = (0..out * k).map(|_| vals.next()).collect();
            let c: Vec<f32> = (0..k * n).map(|_| vals.next()).collect();
            let mut want = vec![0.0f32; out * n];
            let lhs = Mat::row_major(&w, out, k);
            let rhs = Mat::row_major(&c, k, n);
            gemm_into(&mut want, lhs, rhs, false, false).unwrap();
            for ldc in [LeftProduct::ld(n), LeftProduct::padded_ld(n) + 32] {
                let mut cp = vec![f32::NAN; k * ldc];
                for (dst, src) in cp.chunks_exact_mut(ldc).zip(c.chunks_exact(n)) {
                    dst[..n].copy_from_slice(src);
                    dst[n..].fill(0.0);
                }
                let ldd = LeftProduct::ld(n) + 16;
                let mut got = vec![f32::NAN; out * ldd];
                lp.apply(&w, &cp, ldc, &mut got, ldd);
                for o in 0..out {
                    for q in 0..n {
                        assert_eq!(
                            got[o * ldd + q].to_bits(),
                            want[o * n + q].to_bits(),
                            "({out}, {k}, {n}) ldc {ldc} at ({o}, {q})"
                        );
                    }
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 14);
        assert!(
            gemm_k_blocks(64, 1300, 100).unwrap().len() > 1,
            "no multi-block shape"
        );
        assert!(LeftProduct::new(1, 50, 100).is_none() && LeftProduct::new(8, 2, 100).is_none());
    }
}
