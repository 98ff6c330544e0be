//! Gradient checks (f64, CPU) for every layer kind and every architecture: first-order input and
//! weight gradients, and the second-order quantity GReg needs — the weight gradient of
//! Q = Σₙ ‖∇ₓ S(xₙ)‖₂ with S = −logsumexp(logits) — by double backprop, all against central
//! finite differences. Runs in its own test binary because double backprop needs
//! `CANDLE_GRAD_DO_NOT_DETACH` set before any thread's first `backward()`.

use candle_core::{DType, Device, Tensor, Var};
use oodcert::model::layers::{
    BasicBlock, BatchNorm2d, Conv2d, Layer, Linear, Normalize, forward_layers, max_pool2,
};
use oodcert::model::{
    Arch, Classifier, DOUBLE_BACKPROP_ENV, Model, ModelSpec, double_backprop_probe,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Once;

static ENABLE: Once = Once::new();

/// Turns on candle's double backprop for this process, then checks it on the calling thread.
fn enable_double_backprop() {
    ENABLE.call_once(|| {
        // SAFETY: `set_var` is unsafe because another thread could read or write the environment
        // at the same moment. Every test in this binary calls this function before doing anything
        // else, and `Once` blocks all of them until the write has finished; no test thread
        // touches the environment (or candle, which reads it) before that point.
        unsafe { std::env::set_var(DOUBLE_BACKPROP_ENV, "1") };
    });
    let d = double_backprop_probe().unwrap();
    assert!(
        (d - 24.0).abs() < 1e-12,
        "d/dw (dy/dx) for y=(wx)² at w=2,x=3 is {d}, not 24"
    );
}

const H: f64 = 1e-6;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A tensor of U(−scale, scale) (or U(lo, lo + width)) entries.
fn uniform(r: &mut ChaCha8Rng, shape: &[usize], lo: f64, hi: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| lo + (hi - lo) * r.random::<f64>()).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn var(r: &mut ChaCha8Rng, shape: &[usize], lo: f64, hi: f64) -> Var {
    Var::from_tensor(&uniform(r, shape, lo, hi)).unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_scalar::<f64>().unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// S(x) = −logsumexp(z) per row of logits z `(n, K)`, stable form.
fn energy(z: &Tensor) -> Tensor {
    let m = z.max_keepdim(1).unwrap().detach();
    let lse = z
        .broadcast_sub(&m)
        .unwrap()
        .exp()
        .unwrap()
        .sum_keepdim(1)
        .unwrap()
        .log()
        .unwrap();
    (lse + m).unwrap().squeeze(1).unwrap().neg().unwrap()
}

/// Q = Σₙ ‖∇ₓ S(xₙ)‖₂ where `net` maps x to logits; the returned tensor keeps its graph.
fn grad_norm_sum(net: &dyn Fn(&Tensor) -> Tensor, x: &Var) -> Tensor {
    let s = energy(&net(x.as_tensor())).sum_all().unwrap();
    let g = s
        .backward()
        .unwrap()
        .remove(x.as_tensor())
        .expect("input gradient");
    let n = g.dims()[0];
    let sq = g.sqr().unwrap().reshape((n, ())).unwrap().sum(1).unwrap();
    (sq + 1e-12).unwrap().sqrt().unwrap().sum_all().unwrap()
}

/// Compares d f / d v (by `backward`) with central differences at up to `per_var` entries of
/// each var; panics with the worst entry if |analytic − fd| > 1e-7 + 1e-5·|fd|.
fn check(label: &str, f: &dyn Fn() -> Tensor, vars: &[(&str, &Var)], per_var: usize, seed: u64) {
    let grads = f().backward().unwrap();
    let mut r = rng(seed);
    let mut largest_fd = 0.0f64;
    for (name, v) in vars {
        let analytic = grads
            .get(v.as_tensor())
            .map(|g| values(&g.detach()))
            .unwrap_or_else(|| vec![0.0; v.elem_count()]);
        let original = values(v.as_tensor());
        let shape = v.dims().to_vec();
        let n = original.len();
        let picks: Vec<usize> = if n <= per_var {
            (0..n).collect()
        } else {
            (0..per_var).map(|_| r.random_range(0..n)).collect()
        };
        for i in picks {
            let at = |delta: f64| {
                let mut w = original.clone();
                w[i] += delta;
                v.set(&Tensor::from_vec(w, shape.as_slice(), &Device::Cpu).unwrap())
                    .unwrap();
                scalar(&f().detach())
            };
            let fd = (at(H) - at(-H)) / (2.0 * H);
            v.set(&Tensor::from_vec(original.clone(), shape.as_slice(), &Device::Cpu).unwrap())
                .unwrap();
            let a = analytic[i];
            largest_fd = largest_fd.max(fd.abs());
            assert!(
                (a - fd).abs() <= 1e-7 + 1e-5 * fd.abs(),
                "{label}: d/d{name}[{i}]: analytic {a:.10e} vs finite difference {fd:.10e}"
            );
        }
    }
    assert!(
        largest_fd > 1e-5,
        "{label}: all finite differences ≈ 0 ({largest_fd:e}): a toothless check"
    );
}

/// Runs the three checks on a network `layers` (ending in logits) with input `x0`:
/// first order w.r.t. x and the weights of L = Σ S(x), second order w.r.t. the weights of Q.
fn check_layers(label: &str, layers: &[Layer], x0: Tensor, weights: &[(&str, &Var)], train: bool) {
    enable_double_backprop();
    let x = Var::from_tensor(&x0).unwrap();
    let net = |t: &Tensor| forward_layers(layers, t, train).unwrap();
    let first = || energy(&net(x.as_tensor())).sum_all().unwrap();
    let mut all = vec![("x", &x)];
    all.extend_from_slice(weights);
    check(&format!("{label} first order"), &first, &all, 12, 1);
    let second = || grad_norm_sum(&net, &x);
    check(&format!("{label} second order"), &second, weights, 12, 2);
}

fn linear(r: &mut ChaCha8Rng, name: &str, inp: usize, out: usize) -> (Linear, Var, Var) {
    let b = 1.0 / (inp as f64).sqrt();
    let w = var(r, &[out, inp], -2.0 * b, 2.0 * b);
    let bias = var(r, &[out], -b, b);
    (
        Linear::new(name, w.clone(), Some(bias.clone())).unwrap(),
        w,
        bias,
    )
}

#[allow(clippy::too_many_arguments)]
fn conv(
    r: &mut ChaCha8Rng,
    name: &str,
    inp: usize,
    out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    bias: bool,
) -> (Conv2d, Var, Option<Var>) {
    let b = 1.0 / ((inp * k * k) as f64).sqrt();
    let w = var(r, &[out, inp, k, k], -2.0 * b, 2.0 * b);
    let bv = bias.then(|| var(r, &[out], -b, b));
    (
        Conv2d::new(name, w.clone(), bv.clone(), stride, pad).unwrap(),
        w,
        bv,
    )
}

fn batch_norm(r: &mut ChaCha8Rng, name: &str, c: usize) -> (BatchNorm2d, Var, Var) {
    let g = var(r, &[c], 0.5, 1.5);
    let b = var(r, &[c], -0.3, 0.3);
    let rm = var(r, &[c], -0.2, 0.2);
    let rv = var(r, &[c], 0.5, 2.0);
    (
        BatchNorm2d::new(name, g.clone(), b.clone(), rm, rv).unwrap(),
        g,
        b,
    )
}

#[test]
fn double_backprop_self_test_gives_24() {
    enable_double_backprop();
    // On a fresh thread too (candle reads the flag once per thread).
    std::thread::spawn(|| assert!((double_backprop_probe().unwrap() - 24.0).abs() < 1e-12))
        .join()
        .unwrap();
}

#[test]
fn linear_and_relu() {
    let mut r = rng(10);
    let (l1, w1, b1) = linear(&mut r, "fc1", 6, 8);
    let (l2, w2, b2) = linear(&mut r, "fc2", 8, 4);
    let layers = [Layer::Linear(l1), Layer::Relu, Layer::Linear(l2)];
    let x = uniform(&mut r, &[3, 6], -1.0, 1.0);
    let ws = [
        ("fc1.w", &w1),
        ("fc1.b", &b1),
        ("fc2.w", &w2),
        ("fc2.b", &b2),
    ];
    check_layers("linear+relu", &layers, x, &ws, false);
}

#[test]
fn normalize_and_flatten() {
    let mut r = rng(11);
    let norm = Normalize::new(&[0.3, 0.6], &[0.2, 0.5], DType::F64, &Device::Cpu).unwrap();
    let (l, w, b) = linear(&mut r, "fc", 2 * 3 * 3, 5);
    let layers = [Layer::Normalize(norm), Layer::Flatten, Layer::Linear(l)];
    let x = uniform(&mut r, &[2, 2, 3, 3], 0.0, 1.0);
    check_layers(
        "normalize+flatten",
        &layers,
        x,
        &[("fc.w", &w), ("fc.b", &b)],
        false,
    );
}

#[test]
fn conv2d_strides_and_paddings() {
    // (in, out, k, stride, pad, h, w): stride 2 with even and odd sizes exercises
    // conv_transpose2d's output padding in the input gradient.
    for (i, &(cin, cout, k, s, p, h, w)) in [
        (2, 3, 3, 1, 1, 5, 5),
        (2, 3, 3, 2, 1, 6, 6),
        (2, 3, 3, 2, 1, 7, 7),
        (3, 2, 1, 2, 0, 6, 6),
        (1, 2, 5, 1, 2, 6, 7),
        (2, 2, 5, 1, 0, 7, 6),
    ]
    .iter()
    .enumerate()
    {
        let mut r = rng(20 + i as u64);
        let (c, cw, cb) = conv(&mut r, "conv", cin, cout, k, s, p, true);
        let (oh, ow) = c.output_hw(h, w).unwrap();
        let (l, lw, lb) = linear(&mut r, "fc", cout * oh * ow, 4);
        let layers = [Layer::Conv2d(c), Layer::Flatten, Layer::Linear(l)];
        let x = uniform(&mut r, &[2, cin, h, w], 0.0, 1.0);
        let cb = cb.unwrap();
        let ws = [
            ("conv.w", &cw),
            ("conv.b", &cb),
            ("fc.w", &lw),
            ("fc.b", &lb),
        ];
        check_layers(&format!("conv2d case {i}"), &layers, x, &ws, false);
    }
}

#[test]
fn max_pool_reshape_trick() {
    for (i, &(h, w)) in [(6, 6), (7, 5)].iter().enumerate() {
        let mut r = rng(30 + i as u64);
        let (c, cw, cb) = conv(&mut r, "conv", 2, 3, 3, 1, 1, true);
        let (l, lw, lb) = linear(&mut r, "fc", 3 * (h / 2) * (w / 2), 4);
        let layers = [
            Layer::Conv2d(c),
            Layer::Relu,
            Layer::MaxPool2,
            Layer::Flatten,
            Layer::Linear(l),
        ];
        let x = uniform(&mut r, &[2, 2, h, w], 0.0, 1.0);
        let cb = cb.unwrap();
        let ws = [
            ("conv.w", &cw),
            ("conv.b", &cb),
            ("fc.w", &lw),
            ("fc.b", &lb),
        ];
        check_layers(&format!("maxpool {h}×{w}"), &layers, x, &ws, false);
    }
}

/// The custom max-pool ops: ties go to the first window entry (PyTorch), NaN propagates, the
/// unpool (the gradient) and the gather are adjoint; ReLU keeps NaN and has derivative 0 at 0.
#[test]
fn max_pool_and_relu_ops_ties_nan_adjoint() {
    use oodcert::model::layers::{MaxGather2, MaxUnpool2, relu};
    let dev = Device::Cpu;
    // One 2×4 plane, two windows: [1 1; 0 1] (tie) and [NaN 2; 3 -1].
    let x = Tensor::from_vec(
        vec![1.0, 1.0, f64::NAN, 2.0, 0.0, 1.0, 3.0, -1.0],
        (1, 1, 2, 4),
        &dev,
    )
    .unwrap();
    let y = values(&max_pool2(&x).unwrap());
    assert_eq!(y[0], 1.0);
    assert!(y[1].is_nan(), "NaN must propagate: {y:?}");
    let g = Tensor::from_vec(vec![5.0, 7.0], (1, 1, 1, 2), &dev).unwrap();
    let up = values(&g.apply_op2(&x, MaxUnpool2).unwrap());
    assert_eq!(up[0], 5.0, "a tie routes to the first entry: {up:?}");
    assert_eq!(up[1] + up[4] + up[5], 0.0);
    assert_eq!(up[2], 7.0, "the NaN entry is the maximum: {up:?}");
    // Adjointness on random data.
    let mut r = rng(36);
    let x = uniform(&mut r, &[3, 2, 7, 6], -1.0, 1.0);
    let g = uniform(&mut r, &[3, 2, 3, 3], -1.0, 1.0);
    let u = uniform(&mut r, &[3, 2, 7, 6], -1.0, 1.0);
    let lhs = scalar(
        &(g.apply_op2(&x, MaxUnpool2).unwrap() * &u)
            .unwrap()
            .sum_all()
            .unwrap(),
    );
    let rhs = scalar(
        &(u.apply_op2(&x, MaxGather2).unwrap() * &g)
            .unwrap()
            .sum_all()
            .unwrap(),
    );
    assert!((lhs - rhs).abs() < 1e-12, "{lhs} vs {rhs}");
    // ReLU: NaN stays, derivative 0 at 0 and 1 above.
    let v = Var::from_tensor(&Tensor::from_vec(vec![-1.0, 0.0, 2.0], 3, &dev).unwrap()).unwrap();
    let y = relu(v.as_tensor()).unwrap();
    assert_eq!(values(&y), [0.0, 0.0, 2.0]);
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(values(grads.get(&v).unwrap()), [0.0, 0.0, 1.0]);
    let nan = Tensor::from_vec(vec![f64::NAN], 1, &dev).unwrap();
    assert!(values(&relu(&nan).unwrap())[0].is_nan());
}

#[test]
fn max_pool_forward_equals_candle_and_drops_odd_edges() {
    let mut r = rng(35);
    let x = uniform(&mut r, &[2, 3, 6, 8], -1.0, 1.0);
    let ours = values(&max_pool2(&x).unwrap());
    let candle = values(&x.max_pool2d(2).unwrap());
    assert_eq!(ours, candle);
    let odd = uniform(&mut r, &[1, 1, 5, 3], -1.0, 1.0);
    let y = max_pool2(&odd).unwrap();
    assert_eq!(y.dims(), [1, 1, 2, 1]);
    let v = values(&odd);
    let expect0 = [v[0], v[1], v[3], v[4]]
        .into_iter()
        .fold(f64::MIN, f64::max);
    assert_eq!(values(&y)[0], expect0);
    assert!(max_pool2(&uniform(&mut r, &[1, 1, 1, 4], 0.0, 1.0)).is_err());
}

#[test]
fn global_avg_pool() {
    let mut r = rng(40);
    let (c, cw, _) = conv(&mut r, "conv", 2, 5, 3, 1, 1, false);
    let (l, lw, lb) = linear(&mut r, "fc", 5, 3);
    let layers = [
        Layer::Conv2d(c),
        Layer::Relu,
        Layer::GlobalAvgPool,
        Layer::Linear(l),
    ];
    let x = uniform(&mut r, &[2, 2, 5, 4], 0.0, 1.0);
    check_layers(
        "global avg pool",
        &layers,
        x,
        &[("conv.w", &cw), ("fc.w", &lw), ("fc.b", &lb)],
        false,
    );
}

#[test]
fn batch_norm_eval_and_train() {
    for train in [false, true] {
        let mut r = rng(50);
        let (c, cw, _) = conv(&mut r, "conv", 2, 3, 3, 1, 1, false);
        let (bn, g, b) = batch_norm(&mut r, "bn", 3);
        let (l, lw, lb) = linear(&mut r, "fc", 3 * 4 * 4, 4);
        let layers = [
            Layer::Conv2d(c),
            Layer::BatchNorm2d(bn),
            Layer::Relu,
            Layer::Flatten,
            Layer::Linear(l),
        ];
        let x = uniform(&mut r, &[3, 2, 4, 4], 0.0, 1.0);
        let ws = [
            ("conv.w", &cw),
            ("bn.gamma", &g),
            ("bn.beta", &b),
            ("fc.w", &lw),
            ("fc.b", &lb),
        ];
        check_layers(&format!("batchnorm train={train}"), &layers, x, &ws, train);
    }
}

#[test]
fn batch_norm_train_statistics_match_pytorch_semantics() {
    let mut r = rng(55);
    let (bn, g, b) = batch_norm(&mut r, "bn", 2);
    let rm0 = values(bn.running_mean());
    let rv0 = values(bn.running_var());
    let x = uniform(&mut r, &[3, 2, 2, 3], -1.0, 2.0);
    let y = bn.forward(&x, true).unwrap();
    let (xv, yv) = (values(&x), values(&y));
    let (gv, bv) = (values(g.as_tensor()), values(b.as_tensor()));
    for c in 0..2 {
        let idx: Vec<usize> = (0..3)
            .flat_map(|n| (0..6).map(move |k| n * 12 + c * 6 + k))
            .collect();
        let m = idx.iter().map(|&i| xv[i]).sum::<f64>() / 18.0;
        let var = idx.iter().map(|&i| (xv[i] - m).powi(2)).sum::<f64>() / 18.0;
        for &i in &idx {
            let expect = gv[c] * (xv[i] - m) / (var + 1e-5).sqrt() + bv[c];
            assert!((yv[i] - expect).abs() < 1e-12);
        }
        let rm = values(bn.running_mean())[c];
        let rv = values(bn.running_var())[c];
        assert!((rm - (0.9 * rm0[c] + 0.1 * m)).abs() < 1e-12);
        assert!((rv - (0.9 * rv0[c] + 0.1 * var * 18.0 / 17.0)).abs() < 1e-12);
    }
    // Eval mode is the affine map given by eval_scale_shift.
    let (s, t) = bn.eval_scale_shift().unwrap();
    let ye = values(&bn.forward(&x, false).unwrap());
    let (sv, tv) = (values(&s), values(&t));
    for (i, (xi, yi)) in xv.iter().zip(&ye).enumerate() {
        let c = (i / 6) % 2;
        assert!((yi - (sv[c] * xi + tv[c])).abs() < 1e-12);
    }
}

#[test]
fn basic_block_identity_and_projection() {
    for (train, stride, cin, cout) in [
        (false, 1, 3, 3),
        (false, 2, 2, 3),
        (true, 2, 2, 3),
        (true, 1, 3, 3),
    ] {
        let mut r = rng(60 + stride as u64 + 10 * train as u64);
        let (c1, c1w, _) = conv(&mut r, "b.conv1", cin, cout, 3, stride, 1, false);
        let (bn1, g1, _) = batch_norm(&mut r, "b.bn1", cout);
        let (c2, c2w, _) = conv(&mut r, "b.conv2", cout, cout, 3, 1, 1, false);
        let (bn2, g2, b2) = batch_norm(&mut r, "b.bn2", cout);
        let (shortcut, sw) = if stride != 1 || cin != cout {
            let (sc, scw, _) = conv(&mut r, "b.shortcut.0", cin, cout, 1, stride, 0, false);
            let (sbn, _, _) = batch_norm(&mut r, "b.shortcut.1", cout);
            (Some((sc, sbn)), Some(scw))
        } else {
            (None, None)
        };
        let block = BasicBlock::new("b", c1, bn1, c2, bn2, shortcut);
        let (l, lw, _) = linear(&mut r, "fc", cout, 4);
        let layers = [
            Layer::BasicBlock(Box::new(block)),
            Layer::GlobalAvgPool,
            Layer::Linear(l),
        ];
        let x = uniform(&mut r, &[2, cin, 6, 6], -1.0, 1.0);
        let mut ws = vec![
            ("conv1.w", &c1w),
            ("bn1.g", &g1),
            ("conv2.w", &c2w),
            ("bn2.g", &g2),
            ("bn2.b", &b2),
            ("fc.w", &lw),
        ];
        if let Some(sw) = &sw {
            ws.push(("shortcut.w", sw));
        }
        check_layers(
            &format!("basic block train={train} stride={stride}"),
            &layers,
            x,
            &ws,
            train,
        );
    }
}

/// Checks a whole [`Model`] on `x0`: first and second order w.r.t. the named weights.
fn check_model(spec: ModelSpec, names: &[&str], train: bool, n: usize, per_var: usize, seed: u64) {
    enable_double_backprop();
    let shape = spec.input_shape;
    let model = Model::init(spec, &Device::Cpu, DType::F64, seed).unwrap();
    let vars = model.trainable_vars();
    let picked: Vec<(&str, &Var)> = names
        .iter()
        .map(|n| {
            let v = &vars
                .iter()
                .find(|(name, _)| name == n)
                .unwrap_or_else(|| panic!("no {n}"))
                .1;
            (*n, v)
        })
        .collect();
    let mut r = rng(seed);
    let x = Var::from_tensor(&uniform(
        &mut r,
        &[n, shape[0], shape[1], shape[2]],
        0.0,
        1.0,
    ))
    .unwrap();
    let net = |t: &Tensor| model.forward_t(t, train).unwrap().1;
    let label = format!("{:?} train={train}", model.spec().arch);
    let first = || energy(&net(x.as_tensor())).sum_all().unwrap();
    let mut all = vec![("x", &x)];
    all.extend_from_slice(&picked);
    check(&format!("{label} first order"), &first, &all, per_var, 3);
    let second = || grad_norm_sum(&net, &x);
    check(
        &format!("{label} second order"),
        &second,
        &picked,
        per_var,
        4,
    );
}

fn spec(arch: Arch, shape: [usize; 3], k: usize) -> ModelSpec {
    let c = shape[0];
    ModelSpec {
        arch,
        input_shape: shape,
        num_classes: k,
        mean: vec![0.45; c],
        std: vec![0.25; c],
    }
}

#[test]
fn mlp_model() {
    let s = spec(
        Arch::Mlp {
            hidden: vec![10, 8],
        },
        [1, 3, 4],
        4,
    );
    check_model(
        s,
        &[
            "fc1.weight",
            "fc1.bias",
            "fc2.weight",
            "fc3.weight",
            "fc3.bias",
        ],
        false,
        3,
        6,
        70,
    );
}

#[test]
fn lenet_model() {
    let s = spec(Arch::Lenet, [1, 13, 12], 5);
    check_model(
        s,
        &[
            "conv1.weight",
            "conv1.bias",
            "conv2.weight",
            "fc1.weight",
            "fc3.weight",
        ],
        false,
        2,
        6,
        71,
    );
}

/// ResNet-18 at full width is costly in f64: two entries per tensor, spread over all stages.
#[test]
fn resnet18_model_eval() {
    let names = [
        "conv1.weight",
        "layer2.0.conv1.weight",
        "layer2.0.shortcut.0.weight",
        "layer3.0.shortcut.1.weight",
        "layer4.1.bn2.bias",
        "linear.weight",
    ];
    check_model(spec(Arch::Resnet18, [1, 8, 8], 3), &names, false, 2, 2, 72);
}

/// Train mode couples the samples through BatchNorm; batch 4 keeps ≥ 4 values per channel in
/// layer4 (1×1 spatial) so the finite differences stay well conditioned.
#[test]
fn resnet18_model_train() {
    let names = [
        "bn1.weight",
        "layer1.0.conv1.weight",
        "layer2.0.shortcut.0.weight",
        "layer4.1.bn2.bias",
        "linear.weight",
    ];
    check_model(spec(Arch::Resnet18, [1, 8, 8], 3), &names, true, 4, 2, 73);
}

/// The GEMM convolution equals candle's conv2d (f64 and f32), and its two adjoint ops satisfy
/// ⟨W ⋆ x, g⟩ = ⟨x, ConvInputAdjoint(g, W)⟩ = ⟨W, ConvWeightAdjoint(x, g)⟩; batches larger than
/// the weight-gradient chunk, strides, paddings and pointwise kernels included.
#[test]
fn gemm_conv_equals_candle_conv_and_its_adjoints_are_adjoint() {
    use oodcert::model::layers::{ConvInputAdjoint, ConvWeightAdjoint, conv2d_auto};
    let mut r = rng(80);
    for &(n, c, h, w, out, k, s, p) in &[
        (2, 3, 7, 6, 4, 3, 1, 1),
        (1, 2, 8, 8, 3, 3, 2, 1),
        (3, 1, 9, 7, 2, 5, 1, 2),
        (2, 4, 6, 6, 5, 1, 2, 0),
        (1, 2, 5, 5, 2, 5, 1, 0),
        (11, 3, 5, 4, 2, 1, 1, 0),
        (19, 2, 6, 5, 3, 3, 2, 0),
    ] {
        let x = uniform(&mut r, &[n, c, h, w], -1.0, 1.0);
        let wt = uniform(&mut r, &[out, c, k, k], -1.0, 1.0);
        let y = conv2d_auto(&x, &wt, s, p).unwrap();
        let ours = values(&y);
        let reference = values(&x.conv2d(&wt, p, s, 1, 1).unwrap());
        assert_eq!(ours.len(), reference.len());
        let err = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-12, "conv {n}×{c}×{h}×{w} k{k} s{s} p{p}: {err:e}");
        // f32 as well.
        let x32 = x.to_dtype(DType::F32).unwrap();
        let w32 = wt.to_dtype(DType::F32).unwrap();
        let a = values(
            &conv2d_auto(&x32, &w32, s, p)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap(),
        );
        let err32 = a
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err32 < 1e-5, "f32: {err32:e}");
        // The adjoint identities.
        let g = uniform(&mut r, y.dims(), -1.0, 1.0);
        let dx = g
            .apply_op2(
                &wt,
                ConvInputAdjoint {
                    stride: s,
                    padding: p,
                    h,
                    w,
                },
            )
            .unwrap();
        let dw = x
            .apply_op2(
                &g,
                ConvWeightAdjoint {
                    stride: s,
                    padding: p,
                    kh: k,
                    kw: k,
                },
            )
            .unwrap();
        assert_eq!(dx.dims(), x.dims());
        assert_eq!(dw.dims(), wt.dims());
        let yg = scalar(&(&y * &g).unwrap().sum_all().unwrap());
        let xdx = scalar(&(&x * dx).unwrap().sum_all().unwrap());
        let wdw = scalar(&(&wt * dw).unwrap().sum_all().unwrap());
        for (name, v) in [("input", xdx), ("weight", wdw)] {
            assert!(
                (yg - v).abs() < 1e-10 * (1.0 + yg.abs()),
                "{name} adjoint, case {n}×{c}×{h}×{w} k{k} s{s} p{p}: {yg} vs {v}"
            );
        }
    }
}

/// Mismatched operands are errors, not panics.
#[test]
fn gemm_conv_rejects_mismatched_operands() {
    use oodcert::model::layers::{ConvInputAdjoint, conv2d_auto};
    let mut r = rng(81);
    let x = uniform(&mut r, &[2, 3, 5, 5], -1.0, 1.0);
    assert!(conv2d_auto(&x, &uniform(&mut r, &[4, 2, 3, 3], -1.0, 1.0), 1, 0).is_err());
    assert!(conv2d_auto(&x, &uniform(&mut r, &[4, 3, 7, 7], -1.0, 1.0), 1, 0).is_err());
    assert!(conv2d_auto(&x, &uniform(&mut r, &[4, 3, 3, 3], -1.0, 1.0), 0, 0).is_err());
    let g = uniform(&mut r, &[2, 4, 2, 2], -1.0, 1.0);
    let w = uniform(&mut r, &[4, 3, 3, 3], -1.0, 1.0);
    let op = ConvInputAdjoint {
        stride: 1,
        padding: 0,
        h: 5,
        w: 5,
    };
    assert!(
        g.apply_op2(&w, op).is_err(),
        "a 2×2 gradient for a 3×3 output"
    );
}

/// candle's own conv2d, the path of `conv2d_auto` on non-CPU devices: first- and second-order
/// gradients, stride 1 and 2.
#[test]
fn candle_conv2d_fallback_path() {
    enable_double_backprop();
    for (i, &(s, p, h)) in [(1, 1, 5), (2, 1, 6), (2, 1, 7)].iter().enumerate() {
        let mut r = rng(90 + i as u64);
        let x = var(&mut r, &[2, 2, h, h], 0.0, 1.0);
        let w = var(&mut r, &[3, 2, 3, 3], -0.5, 0.5);
        let ho = (h + 2 * p - 3) / s + 1;
        let (l, lw, _) = linear(&mut r, "fc", 3 * ho * ho, 4);
        let net = |t: &Tensor| {
            let y = t.conv2d(w.as_tensor(), p, s, 1, 1).unwrap();
            l.forward(&y.flatten_from(1).unwrap()).unwrap()
        };
        let first = || energy(&net(x.as_tensor())).sum_all().unwrap();
        check(
            &format!("candle conv {i} first order"),
            &first,
            &[("x", &x), ("w", &w), ("fc.w", &lw)],
            12,
            5,
        );
        let second = || grad_norm_sum(&net, &x);
        check(
            &format!("candle conv {i} second order"),
            &second,
            &[("w", &w), ("fc.w", &lw)],
            12,
            6,
        );
    }
}

/// The explicit input gradient (`ForwardTrace::input_vjp`) equals autograd's ∇ₓ⟨logits, g⟩, and
/// so do the weight gradients of a penalty built on it (second order), for the MLP and LeNet.
#[test]
fn explicit_input_vjp_equals_autograd_to_second_order() {
    enable_double_backprop();
    let cases = [
        (spec(Arch::Mlp { hidden: vec![7, 5] }, [2, 4, 3], 4), 101),
        (spec(Arch::Lenet, [1, 28, 28], 10), 102),
    ];
    for (sp, seed) in cases {
        let model = Model::init(sp, &Device::Cpu, DType::F64, seed).unwrap();
        assert!(model.has_explicit_input_vjp());
        let mut r = rng(seed);
        let [c, h, w] = model.spec().input_shape;
        let k = model.spec().num_classes;
        let x = var(&mut r, &[3, c, h, w], 0.0, 1.0);
        let g = uniform(&mut r, &[3, k], -1.0, 1.0);
        // Autograd: ∇ₓ⟨logits, g⟩ by a full reverse pass.
        let logits = model.logits(x.as_tensor()).unwrap();
        let auto = (&logits * &g)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .remove(x.as_tensor())
            .unwrap();
        let trace = model.forward_traced(x.as_tensor(), false).unwrap();
        assert_eq!(values(&trace.logits), values(&logits));
        let explicit = trace.input_vjp(&model, &g).unwrap();
        let err = values(&auto)
            .iter()
            .zip(values(&explicit))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-12, "{:?}: first order {err:e}", model.spec().arch);
        // Second order: d/dθ ‖∇ₓ⟨logits, g⟩‖² by both routes.
        let pen = |t: &Tensor| t.sqr().unwrap().sum_all().unwrap();
        let ga = pen(&auto).backward().unwrap();
        let ge = pen(&explicit).backward().unwrap();
        let mut compared = 0;
        for (name, v) in model.trainable_vars() {
            let (a, e) = (ga.get(v.as_tensor()), ge.get(v.as_tensor()));
            match (a, e) {
                (Some(a), Some(e)) => {
                    let (a, e) = (values(a), values(e));
                    let scale = a.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                    let err = a
                        .iter()
                        .zip(&e)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f64::max);
                    assert!(err < 1e-10 * scale, "{name}: second order {err:e}");
                    compared += 1;
                }
                (None, None) => {}
                (a, e) => panic!(
                    "{name}: autograd {} vs explicit {}",
                    a.is_some(),
                    e.is_some()
                ),
            }
        }
        assert!(compared >= 3, "only {compared} weights compared");
    }
}

/// Randomises every BatchNorm's γ, β and running statistics (a fresh model has γ = 1, β = 0,
/// μ = 0, σ² = 1, under which a wrong scale or shift in a rule would go unseen).
fn randomise_batch_norms(model: &Model, seed: u64) {
    let mut r = rng(seed);
    let mut touched = 0;
    for p in model.params() {
        let n = &p.name;
        let is_bn = n.contains(".bn") || n.starts_with("bn") || n.contains("shortcut.1");
        let (lo, hi) = if !is_bn {
            continue;
        } else if n.ends_with(".weight") {
            (0.5, 1.5)
        } else if n.ends_with(".running_var") {
            (0.5, 2.0)
        } else {
            (-0.3, 0.3)
        };
        p.var.set(&uniform(&mut r, p.var.dims(), lo, hi)).unwrap();
        touched += 1;
    }
    assert!(
        touched >= 4 * 20,
        "only {touched} BatchNorm tensors randomised"
    );
}

/// The same for ResNet-18 (BatchNorm, identity and downsampling BasicBlocks, global average
/// pooling; 12×12 inputs, so that the last stage is 2×2 and the pooling's 1/(h·w) matters): the
/// explicit input gradient equals autograd's in evaluation mode (running statistics) and in
/// training mode (through the batch mean and variance), and so do the weight gradients of a
/// penalty on it, every trainable tensor compared.
#[test]
fn resnet_explicit_input_vjp_equals_autograd_in_train_and_eval_mode() {
    enable_double_backprop();
    let model = Model::init(
        spec(Arch::Resnet18, [2, 12, 12], 3),
        &Device::Cpu,
        DType::F64,
        7,
    )
    .unwrap();
    assert!(model.has_explicit_input_vjp());
    randomise_batch_norms(&model, 70);
    let names: Vec<String> = model.trainable_vars().into_iter().map(|(n, _)| n).collect();
    assert!(
        names.iter().any(|n| n.contains("shortcut.0")),
        "no downsampling block"
    );
    let mut r = rng(71);
    for train in [false, true] {
        let x = var(&mut r, &[4, 2, 12, 12], 0.0, 1.0);
        let g = uniform(&mut r, &[4, 3], -1.0, 1.0);
        let trace = model.forward_traced(x.as_tensor(), train).unwrap();
        // Autograd: ∇ₓ⟨logits, g⟩ by a full reverse pass through the same forward graph.
        let auto = (&trace.logits * &g)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .remove(x.as_tensor())
            .unwrap();
        let explicit = trace.input_vjp(&model, &g).unwrap();
        let (a, e) = (values(&auto), values(&explicit));
        let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = a
            .iter()
            .zip(&e)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            scale > 0.0 && err < 1e-10 * scale,
            "train={train}: first order {err:e} of {scale:e}"
        );
        let pen = |t: &Tensor| t.sqr().unwrap().sum_all().unwrap();
        let ga = pen(&auto).backward().unwrap();
        let ge = pen(&explicit).backward().unwrap();
        // A tensor off the input gradient's path (β, the classifier's bias) has no gradient on
        // one route and none or zeros on the other: a missing gradient reads as zeros.
        let mut nonzero = 0;
        for (name, v) in model.trainable_vars() {
            let len = v.elem_count();
            let get = |gs: &candle_core::backprop::GradStore| {
                gs.get(v.as_tensor()).map_or(vec![0.0; len], values)
            };
            let (a, e) = (get(&ga), get(&ge));
            let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let err = a
                .iter()
                .zip(&e)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(
                err <= 1e-9 * scale,
                "train={train} {name}: second order {err:e} of {scale:e}"
            );
            nonzero += usize::from(scale > 0.0);
        }
        // Every conv and γ (20 + 20 + the classifier's weight) depends on the input gradient.
        assert!(
            nonzero >= 41,
            "train={train}: only {nonzero} of {} nonzero",
            names.len()
        );
    }
}

/// The layers of imported graphs (`oodcert import --onnx`): general max/avg pooling (strides,
/// padding, overlapping windows), zero padding, a channel-concat block with an identity branch
/// and a general residual block, each inside a small net, first and second order.
#[test]
fn imported_graph_layers() {
    use oodcert::model::layers::{ConcatBlock, PoolKind, ResidualBlock, WindowPool, ZeroPad};
    let mut r = rng(90);
    let (c1, c1w, c1b) = conv(&mut r, "c1", 2, 3, 3, 1, 1, true);
    let (bn, g, _) = batch_norm(&mut r, "bn", 3);
    let (c2, c2w, _) = conv(&mut r, "c2", 3, 3, 3, 1, 1, false);
    let (cb, cbw, _) = conv(&mut r, "cb", 3, 2, 1, 1, 0, true);
    let mut layers = vec![
        Layer::Pad(ZeroPad { pads: [1, 0, 0, 2] }),
        Layer::Conv2d(c1),
        Layer::Relu,
        Layer::Pool(WindowPool::new(PoolKind::Max, [3, 2], [1, 2], [1, 1]).unwrap()),
        Layer::Residual(Box::new(ResidualBlock {
            main: vec![Layer::BatchNorm2d(bn), Layer::Relu, Layer::Conv2d(c2)],
            shortcut: vec![],
        })),
        Layer::Relu,
        Layer::Concat(Box::new(ConcatBlock {
            branches: vec![vec![], vec![Layer::Conv2d(cb), Layer::Relu]],
        })),
        Layer::Pool(WindowPool::new(PoolKind::Avg, [3, 3], [2, 2], [1, 1]).unwrap()),
        Layer::Flatten,
    ];
    // (2, 2, 6, 5) → pad → (7, 7) → conv → (7, 7) → max-pool 3×2, stride (1, 2), pad 1 →
    // (7, 4) → residual → concat: 5 channels → avg-pool 3×3, stride 2, pad 1 → (4, 2).
    let x = uniform(&mut r, &[2, 2, 6, 5], 0.0, 1.0);
    let out = forward_layers(&layers, &x, false).unwrap();
    assert_eq!(out.dims(), [2, 5 * 4 * 2], "pooling geometry");
    let (l, lw, lb) = linear(&mut r, "fc", 5 * 4 * 2, 3);
    layers.push(Layer::Linear(l));
    check_layers(
        "imported graph layers",
        &layers,
        x,
        &[
            ("c1.w", &c1w),
            ("c1.b", c1b.as_ref().unwrap()),
            ("bn.g", &g),
            ("c2.w", &c2w),
            ("cb.w", &cbw),
            ("fc.w", &lw),
            ("fc.b", &lb),
        ],
        false,
    );
}

/// [`WindowPool`] against direct loops over the windows (−∞ / zero padding, floor mode).
#[test]
fn window_pool_equals_direct_loops() {
    use oodcert::model::layers::{PoolKind, WindowPool};
    let mut r = rng(91);
    let (n, c, h, w) = (2, 3, 7, 6);
    let x = uniform(&mut r, &[n, c, h, w], -1.0, 1.0);
    let xv = values(&x);
    for kind in [PoolKind::Max, PoolKind::Avg] {
        for (k, s, p) in [
            ([3, 3], [2, 2], [1, 1]),
            ([2, 3], [1, 2], [0, 1]),
            ([3, 2], [3, 1], [1, 0]),
            ([2, 2], [2, 2], [0, 0]),
        ] {
            let pool = WindowPool::new(kind, k, s, p).unwrap();
            let y = pool.forward(&x).unwrap();
            let (ho, wo) = pool.output_hw(h, w).unwrap();
            assert_eq!(y.dims(), [n, c, ho, wo]);
            let yv = values(&y);
            for plane in 0..n * c {
                for i in 0..ho {
                    for j in 0..wo {
                        let mut acc = match kind {
                            PoolKind::Max => f64::NEG_INFINITY,
                            PoolKind::Avg => 0.0,
                        };
                        for a in 0..k[0] {
                            for b in 0..k[1] {
                                let (yy, xx) = (
                                    (s[0] * i + a) as isize - p[0] as isize,
                                    (s[1] * j + b) as isize - p[1] as isize,
                                );
                                let inside =
                                    yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w;
                                let v = if inside {
                                    xv[plane * h * w + yy as usize * w + xx as usize]
                                } else {
                                    match kind {
                                        PoolKind::Max => f64::NEG_INFINITY,
                                        PoolKind::Avg => 0.0,
                                    }
                                };
                                acc = match kind {
                                    PoolKind::Max => acc.max(v),
                                    PoolKind::Avg => acc + v,
                                };
                            }
                        }
                        if kind == PoolKind::Avg {
                            acc /= (k[0] * k[1]) as f64;
                        }
                        let got = yv[(plane * ho + i) * wo + j];
                        assert!(
                            (got - acc).abs() < 1e-12,
                            "{kind:?} k{k:?} s{s:?} p{p:?} at ({plane},{i},{j}): {got} vs {acc}"
                        );
                    }
                }
            }
        }
    }
}
