//! `Classifier::logits_no_grad` (the evaluation forward without autograd, in-place BatchNorm,
//! ReLU and residual sums; src/model/layers/inference.rs) against `Classifier::logits`: the same
//! numbers bit for bit (the training forward on the dense layers' fixed row count), for every
//! architecture, f32 and f64, batch 1 and 5, and the caller's input left untouched; and an
//! image's evaluation logits independent of the batch it is in.

use candle_core::{DType, Device, Tensor};
use oodcert::model::layers::DENSE_ROWS;
use oodcert::model::{Arch, Classifier, Model, ModelSpec};
use rand::{Rng, SeedableRng};

fn spec(arch: Arch, shape: [usize; 3], k: usize) -> ModelSpec {
    let c = shape[0];
    ModelSpec {
        arch,
        input_shape: shape,
        num_classes: k,
        mean: (0..c).map(|i| 0.4 + 0.05 * i as f32).collect(),
        std: (0..c).map(|i| 0.2 + 0.03 * i as f32).collect(),
    }
}

fn input(n: usize, shape: [usize; 3], seed: u64, dtype: DType) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let numel = n * shape.iter().product::<usize>();
    let v: Vec<f64> = (0..numel).map(|_| rng.random::<f64>()).collect();
    Tensor::from_vec(v, (n, shape[0], shape[1], shape[2]), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// A model whose BatchNorms are not the identity: random γ, β, running mean and variance (so a
/// fused kernel that reorders or drops an operation changes some bits).
fn model(s: ModelSpec, dtype: DType, seed: u64) -> Model {
    let m = Model::init(s, &Device::Cpu, dtype, seed).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed + 100);
    for p in m.params() {
        let n = p.var.elem_count();
        let (lo, hi) = match p.name.rsplit('.').next().unwrap() {
            "running_var" => (0.2, 3.0),
            "running_mean" | "bias" => (-0.7, 0.7),
            "weight" if p.var.dims().len() == 1 => (0.3, 2.0),
            _ => continue,
        };
        let v: Vec<f64> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
        let t = Tensor::from_vec(v, p.var.dims(), &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        p.var.set(&t).unwrap();
    }
    m
}

fn bits(t: &Tensor) -> Vec<u64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
        .into_iter()
        .map(f64::to_bits)
        .collect()
}

/// `Classifier::logits` (the training forward) of `x`'s rows inside a batch of exactly
/// `DENSE_ROWS` rows (zero images after them): the shapes the evaluation forward's dense layers
/// always use, so the two paths do the same arithmetic.
fn logits_in_dense_rows(m: &Model, x: &Tensor) -> Tensor {
    let n = x.dim(0).unwrap();
    let mut dims = x.dims().to_vec();
    dims[0] = DENSE_ROWS - n;
    let pad = Tensor::zeros(dims, x.dtype(), x.device()).unwrap();
    let padded = Tensor::cat(&[x, &pad], 0).unwrap();
    m.logits(&padded).unwrap().narrow(0, 0, n).unwrap()
}

#[test]
fn no_grad_logits_equal_logits_bit_for_bit() {
    let cases = [
        spec(
            Arch::Mlp {
                hidden: vec![16, 8],
            },
            [1, 6, 6],
            4,
        ),
        spec(Arch::Lenet, [1, 28, 28], 10),
        spec(Arch::Lenet, [3, 13, 15], 3),
        spec(Arch::Resnet18, [3, 8, 8], 10),
        spec(Arch::Resnet18, [3, 16, 16], 5),
    ];
    for s in cases {
        for dtype in [DType::F32, DType::F64] {
            let m = model(s.clone(), dtype, 7);
            let x = input(5, s.input_shape, 1, dtype);
            let before = bits(&x);
            let want = logits_in_dense_rows(&m, &x);
            let got = m.logits_no_grad(&x).unwrap();
            assert_eq!(got.dims(), want.dims(), "{s:?} {dtype:?}");
            assert_eq!(bits(&got), bits(&want), "{s:?} {dtype:?}");
            assert!(!got.track_op(), "{s:?}: no_grad logits carry a graph");
            assert_eq!(bits(&x), before, "{s:?}: the input was overwritten");
            // At batch 1 too: the same bits as the image's row of the batch of 5.
            let x1 = x.narrow(0, 2, 1).unwrap();
            assert_eq!(
                bits(&m.logits_no_grad(&x1).unwrap()),
                bits(&got.narrow(0, 2, 1).unwrap()),
                "{s:?} {dtype:?} batch 1"
            );
        }
    }
}

#[test]
fn no_grad_logits_of_a_tracked_input_match_too() {
    // An input that is a variable (as for input gradients) must not change the values either.
    let s = spec(Arch::Resnet18, [3, 8, 8], 10);
    let m = model(s.clone(), DType::F32, 3);
    let x = input(3, s.input_shape, 2, DType::F32);
    let xv = candle_core::Var::from_tensor(&x).unwrap();
    let got = m.logits_no_grad(xv.as_tensor()).unwrap();
    assert_eq!(bits(&got), bits(&logits_in_dense_rows(&m, &x)));
    assert_eq!(bits(xv.as_tensor()), bits(&x));
}

fn rand_tensor(dims: &[usize], seed: u64) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

/// The convolution and its input adjoint compute groups of samples per GEMM (padded to a fixed
/// minimum width, src/model/layers/conv_gemm.rs): a sample's output must still not depend on the
/// batch around it, for small and large planes, narrow and wide kernels (the `gemm` crate blocks
/// differently for m ≤ 64), strides and padding.
#[test]
fn convolution_of_a_sample_does_not_depend_on_its_batch() {
    use oodcert::model::layers::{ConvInputAdjoint, conv2d_auto};
    // (c, h, w, o, k, stride, padding)
    let cases = [
        (3, 4, 4, 80, 3, 2, 1),   // 2×2 = 4 positions, wide
        (5, 8, 8, 8, 3, 2, 1),    // 16 positions, narrow
        (6, 8, 8, 72, 3, 1, 1),   // 64 positions
        (4, 10, 10, 16, 1, 1, 0), // 100 positions, pointwise
        (4, 12, 12, 70, 1, 2, 0), // 36 positions, 1×1 stride 2
        (2, 17, 17, 6, 5, 1, 2),  // 289 positions
        (64, 4, 4, 16, 3, 1, 1),  // 16 positions, narrow, k = 576 > 512 (blocked in k)
    ];
    for (case, &(c, h, w, o, k, stride, padding)) in cases.iter().enumerate() {
        let n = 41;
        let x = rand_tensor(&[n, c, h, w], case as u64);
        let wt = rand_tensor(&[o, c, k, k], 50 + case as u64);
        let y = conv2d_auto(&x, &wt, stride, padding).unwrap();
        let want = x.conv2d(&wt, padding, stride, 1, 1).unwrap();
        let err = (&y - &want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(
            err.to_scalar::<f32>().unwrap() < 1e-4,
            "case {case}: vs candle"
        );
        let (_, _, ho, wo) = y.dims4().unwrap();
        let g = rand_tensor(&[n, o, ho, wo], 90 + case as u64);
        let adj = ConvInputAdjoint {
            stride,
            padding,
            h,
            w,
        };
        let dx = g.apply_op2(&wt, adj).unwrap();
        for (start, len) in [(0, 1), (3, 1), (40, 1), (5, 2), (7, 17), (1, 33)] {
            let xs = x.narrow(0, start, len).unwrap();
            let ys = conv2d_auto(&xs, &wt, stride, padding).unwrap();
            assert!(
                bits(&ys) == bits(&y.narrow(0, start, len).unwrap()),
                "case {case}: forward, samples {start}..+{len}"
            );
            let gs = g.narrow(0, start, len).unwrap();
            let dxs = gs.apply_op2(&wt, adj).unwrap();
            assert!(
                bits(&dxs) == bits(&dx.narrow(0, start, len).unwrap()),
                "case {case}: input adjoint, samples {start}..+{len}"
            );
        }
    }
}

/// The evaluation forward of one image does not depend on the batch it is in (batch sizes below,
/// at and above the GEMM kernels' small-shape threshold, and the image at every position of its
/// batch): certify's counts, eval's scores and every CSV are then independent of `--batch`. The
/// batches of 283 and 300 take the packed dense kernel on a CPU with AVX-512
/// (`inference::PACK_FROM_ROWS`), the others candle's GEMMs: equal bits tie the two.
#[test]
fn no_grad_logits_do_not_depend_on_the_batch() {
    let cases = [
        (
            spec(
                Arch::Mlp {
                    hidden: vec![256, 256],
                },
                [1, 28, 28],
                10,
            ),
            DType::F32,
        ),
        (spec(Arch::Lenet, [1, 28, 28], 10), DType::F32),
        (
            spec(
                Arch::Mlp {
                    hidden: vec![100, 70],
                },
                [1, 12, 12],
                3,
            ),
            DType::F64,
        ),
    ];
    for (s, dtype) in cases {
        let shape = s.input_shape;
        let m = model(s, dtype, 11);
        let all = input(300, shape, 12, dtype);
        let whole = m.logits_no_grad(&all).unwrap();
        for (start, len) in [
            (0, 1),
            (5, 1),
            (7, 3),
            (30, 64),
            (1, 65),
            (100, 130),
            (17, 283),
        ] {
            let part = m
                .logits_no_grad(&all.narrow(0, start, len).unwrap())
                .unwrap();
            assert_eq!(
                bits(&part),
                bits(&whole.narrow(0, start, len).unwrap()),
                "{:?} images {start}..{} in a batch of {len} vs 300",
                m.spec().arch,
                start + len
            );
        }
    }
}

/// Layer stacks the fused dense run must cover exactly as layer by layer (`infer_layers` on
/// batches of 256, 300 and 600, which take the packed kernel on a CPU with AVX-512, against
/// chunks of 100 on the layer-by-layer path): a trailing ReLU, a 2-output head the kernel
/// refuses (the run stops before it), dense layers without bias and without a ReLU between,
/// one Linear after Normalize (an MLP with no hidden layer), and the same without Normalize.
#[test]
fn fused_dense_runs_cover_exactly_their_layers() {
    use candle_core::Var;
    use oodcert::model::layers::{Layer, Linear, Normalize, infer_layers};
    let dev = Device::Cpu;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
    let mut lin = |name: &str, i: usize, o: usize, bias: bool| {
        let w: Vec<f32> = (0..i * o).map(|_| rng.random_range(-0.3..0.3)).collect();
        let w = Var::from_tensor(&Tensor::from_vec(w, (o, i), &dev).unwrap()).unwrap();
        let b = bias.then(|| {
            let b: Vec<f32> = (0..o).map(|_| rng.random_range(-0.3..0.3)).collect();
            Var::from_tensor(&Tensor::from_vec(b, o, &dev).unwrap()).unwrap()
        });
        Layer::Linear(Linear::new(name, w, b).unwrap())
    };
    let norm = || {
        Layer::Normalize(
            Normalize::new(
                &[0.4, 0.5, 0.6],
                &[0.2, 0.3, 0.25],
                DType::F32,
                &Device::Cpu,
            )
            .unwrap(),
        )
    };
    let d = 3 * 5 * 6;
    let stacks: Vec<(&str, Vec<Layer>)> = vec![
        (
            "trailing relu",
            vec![
                norm(),
                Layer::Flatten,
                lin("a", d, 40, true),
                Layer::Relu,
                lin("b", 40, 20, true),
                Layer::Relu,
            ],
        ),
        (
            "2-output head",
            vec![
                norm(),
                Layer::Flatten,
                lin("a", d, 40, true),
                Layer::Relu,
                lin("b", 40, 30, true),
                Layer::Relu,
                lin("c", 30, 2, true),
            ],
        ),
        (
            "no bias, no relu between",
            vec![
                Layer::Flatten,
                lin("a", d, 40, false),
                lin("b", 40, 20, true),
                Layer::Relu,
                lin("c", 20, 10, false),
            ],
        ),
        (
            "one linear",
            vec![norm(), Layer::Flatten, lin("a", d, 10, true)],
        ),
        (
            "one linear, relu, no normalize",
            vec![Layer::Flatten, lin("a", d, 40, true), Layer::Relu],
        ),
    ];
    let x = input(600, [3, 5, 6], 22, DType::F32);
    for (name, layers) in &stacks {
        let parts: Vec<Tensor> = (0..600)
            .step_by(100)
            .map(|s| infer_layers(layers, &x.narrow(0, s, 100).unwrap()).unwrap())
            .collect();
        let reference = Tensor::cat(&parts, 0).unwrap();
        for len in [256, 300, 600] {
            let y = infer_layers(layers, &x.narrow(0, 0, len).unwrap()).unwrap();
            assert_eq!(
                bits(&y),
                bits(&reference.narrow(0, 0, len).unwrap()),
                "{name}: a batch of {len} vs chunks of 100"
            );
        }
    }
}
