//! Sound operator norms: the Singla–Feizi convolution bound is ≥ the exact norm of the unrolled
//! matrix (any padding/stride), which is ≥ a power-iteration estimate; max-pool is 1-Lipschitz.

use oodcert::bounds::conv::Conv;
use oodcert::bounds::linear_map::LinearMap;
use oodcert::bounds::net::{Node, forward_nodes};
use oodcert::lipschitz::operator_norm::{
    conv_l2_upper, conv_linf_upper, spectral_upper, unroll_conv,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn power_iteration(map: &dyn LinearMap, iters: usize) -> f64 {
    let mut v: Vec<f64> = (0..map.in_dim())
        .map(|i| ((i * 7919) % 13) as f64 - 6.0)
        .collect();
    let mut s = 0.0;
    for _ in 0..iters {
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        let w = map.apply_t(&map.apply(&v, false), false);
        s = w.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>().sqrt();
        v = w;
    }
    s
}

#[test]
fn conv_bounds_dominate_the_exact_norm() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for (co, ci, k, stride, pad, h) in [
        (3, 2, 3, 1, 1, 6),
        (4, 3, 3, 2, 1, 7),
        (2, 2, 5, 1, 2, 5),
        (5, 3, 1, 2, 0, 6),
        (2, 4, 3, 1, 0, 5),
    ] {
        let ho = (h + 2 * pad - k) / stride + 1;
        let conv = Conv {
            c_out: co,
            c_in: ci,
            kh: k,
            kw: k,
            stride,
            pad,
            h,
            w: h,
            ho,
            wo: ho,
            k: (0..co * ci * k * k)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect(),
        };
        let exact = spectral_upper(conv.out_dim(), conv.in_dim(), &unroll_conv(&conv));
        let pi = power_iteration(&conv, 300);
        assert!(pi <= exact, "power iteration {pi} > exact {exact}");
        assert!(
            exact <= pi * (1.0 + 1e-6),
            "exact {exact} far above power iteration {pi}"
        );
        let (bound, rule) = conv_l2_upper(&conv);
        assert!(
            bound >= exact * (1.0 - 1e-9) && bound >= pi,
            "{rule}: {bound} < exact {exact}"
        );
        // The Singla–Feizi reshapings alone (without the unrolled matrix) must also dominate.
        let big = Conv {
            h: 40,
            w: 40,
            ho: (40 + 2 * pad - k) / stride + 1,
            wo: (40 + 2 * pad - k) / stride + 1,
            ..conv.clone()
        };
        let (sf, rule) = conv_l2_upper(&big);
        // `exact` carries its own (larger) rounding margin, so compare with a 1e-9 tolerance; the
        // power-iteration value is a true lower estimate of the exact norm.
        assert!(
            rule.starts_with("singla-feizi") && sf >= exact * (1.0 - 1e-9) && sf >= pi,
            "{rule}: {sf} < {exact}"
        );
        // ℓ∞: largest absolute row sum of the unrolled matrix.
        let a = unroll_conv(&conv);
        let n = conv.in_dim();
        let row_max = (0..conv.out_dim())
            .map(|i| a[i * n..(i + 1) * n].iter().map(|v| v.abs()).sum::<f64>())
            .fold(0.0, f64::max);
        assert!(conv_linf_upper(&conv) >= row_max);
    }
}

#[test]
fn max_pool_is_one_lipschitz_in_l2_and_linf() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let nodes = [Node::MaxPool2 { c: 2, h: 5, w: 6 }];
    for _ in 0..2000 {
        let a: Vec<f64> = (0..60).map(|_| rng.random_range(-1.0..1.0)).collect();
        let b: Vec<f64> = a.iter().map(|v| v + rng.random_range(-0.3..0.3)).collect();
        let (pa, pb) = (
            forward_nodes(&nodes, a.clone()).unwrap(),
            forward_nodes(&nodes, b.clone()).unwrap(),
        );
        let d2 = |x: &[f64], y: &[f64]| {
            x.iter()
                .zip(y)
                .map(|(p, q)| (p - q) * (p - q))
                .sum::<f64>()
                .sqrt()
        };
        let di = |x: &[f64], y: &[f64]| {
            x.iter()
                .zip(y)
                .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()))
        };
        assert!(d2(&pa, &pb) <= d2(&a, &b) + 1e-15 && di(&pa, &pb) <= di(&a, &b) + 1e-15);
    }
}
