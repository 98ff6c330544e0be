//! The GReg gradient penalty by exact double backprop equals central finite differences of the
//! penalty w.r.t. the weights (f64, tiny ReLU MLP and LeNet-free conv-free nets), in both forms and
//! both norms; and the energy margin / OE terms equal their formulas.
//!
//! Needs CANDLE_GRAD_DO_NOT_DETACH=1 from process start (.cargo/config.toml sets it for tests).

mod common;

use candle_core::{DType, Device, Tensor, Var};
use oodcert::model::{Arch, Classifier, Model, ModelSpec};
use oodcert::score::energy;
use oodcert::train::losses::{
    InputGradient, PenaltyForm, PenaltyNorm, energy_margin, grad_penalty, outlier_exposure,
};

fn tiny_model(seed: u64) -> Model {
    let spec = ModelSpec {
        arch: Arch::Mlp { hidden: vec![7, 5] },
        input_shape: [1, 3, 2],
        num_classes: 3,
        mean: vec![0.3],
        std: vec![0.7],
    };
    Model::init(spec, &Device::Cpu, DType::F64, seed).unwrap()
}

fn batch(seed: u64, n: usize) -> Tensor {
    // Deterministic pseudo-random pixels in [0,1] (splitmix64).
    Tensor::from_vec(
        common::splitmix_unit(seed, n * 6),
        (n, 1, 3, 2),
        &Device::Cpu,
    )
    .unwrap()
}

/// The penalty as a function of the current weights, masks from margins.
fn penalty(
    model: &Model,
    x: &Tensor,
    n_in: usize,
    m: (f64, f64),
    form: PenaltyForm,
    norm: PenaltyNorm,
) -> (Tensor, f64, f64) {
    let xv = Var::from_tensor(x).unwrap();
    let logits = model.logits(xv.as_tensor()).unwrap();
    let s = energy(&logits, 1.0).unwrap();
    let n = x.dim(0).unwrap();
    let p = grad_penalty(
        InputGradient::Autograd(xv.as_tensor()),
        &s,
        n_in,
        n_in..n,
        m.0,
        m.1,
        form,
        norm,
    )
    .unwrap();
    (p.loss, p.frac_in_masked, p.frac_aux_masked)
}

#[test]
fn penalty_weight_gradient_matches_finite_differences() {
    assert_eq!(
        std::env::var("CANDLE_GRAD_DO_NOT_DETACH").as_deref(),
        Ok("1"),
        "run through cargo test (.cargo/config.toml sets the flag)"
    );
    let model = tiny_model(3);
    let x = batch(11, 8);
    let n_in = 4;
    // Margins at the medians of each group so that both masks are mixed (some rows penalised).
    let s: Vec<f64> = energy(&model.logits(&x).unwrap(), 1.0)
        .unwrap()
        .to_vec1()
        .unwrap();
    let mut si = s[..n_in].to_vec();
    si.sort_by(f64::total_cmp);
    let mut sa = s[n_in..].to_vec();
    sa.sort_by(f64::total_cmp);
    let m = ((si[1] + si[2]) / 2.0, (sa[1] + sa[2]) / 2.0);
    for form in [PenaltyForm::PerSample, PenaltyForm::GroupScaled] {
        for norm in [PenaltyNorm::L2, PenaltyNorm::L1] {
            let (loss, fi, fa) = penalty(&model, &x, n_in, m, form, norm);
            assert_eq!(
                (fi, fa),
                (0.5, 0.5),
                "masks must be mixed for the test to bite"
            );
            let lv = loss.to_scalar::<f64>().unwrap();
            assert!(lv > 0.0);
            let grads = loss.backward().unwrap();
            let mut checked = 0;
            for (name, var) in model.trainable_vars() {
                let g = grads
                    .get(var.as_tensor())
                    .unwrap_or_else(|| panic!("{form:?}/{norm:?}: no gradient for {name}"))
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                let w0 = var
                    .as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                // A few coordinates per tensor.
                for j in (0..w0.len()).step_by(w0.len().div_ceil(3).max(1)) {
                    let h = 1e-6;
                    let eval = |delta: f64| {
                        let mut w = w0.clone();
                        w[j] += delta;
                        var.set(&Tensor::from_vec(w, var.shape(), &Device::Cpu).unwrap())
                            .unwrap();
                        let v = penalty(&model, &x, n_in, m, form, norm)
                            .0
                            .to_scalar::<f64>()
                            .unwrap();
                        var.set(&Tensor::from_vec(w0.clone(), var.shape(), &Device::Cpu).unwrap())
                            .unwrap();
                        v
                    };
                    let fd = (eval(h) - eval(-h)) / (2.0 * h);
                    let tol = 1e-5 * (1.0 + fd.abs());
                    assert!(
                        (g[j] - fd).abs() < tol,
                        "{form:?}/{norm:?} {name}[{j}]: double backprop {} vs finite difference {fd}",
                        g[j]
                    );
                    checked += 1;
                }
            }
            assert!(checked >= 6);
        }
    }
}

#[test]
fn group_scaled_is_the_per_sample_penalty_scaled_by_group_sizes() {
    // With every row masked in both groups and equal group sizes n, group-scaled = per-sample / (2n):
    // per-sample = mean_in + mean_aux; group-scaled = (Σ_in/n + Σ_aux/n) / (2n).
    let model = tiny_model(5);
    let x = batch(17, 6);
    let m = (1e9, -1e9); // everything penalised
    let (ps, ..) = penalty(&model, &x, 3, m, PenaltyForm::PerSample, PenaltyNorm::L2);
    let (gs, ..) = penalty(&model, &x, 3, m, PenaltyForm::GroupScaled, PenaltyNorm::L2);
    let (ps, gs) = (
        ps.to_scalar::<f64>().unwrap(),
        gs.to_scalar::<f64>().unwrap(),
    );
    assert!(
        (gs - ps / 6.0).abs() < 1e-9 * ps.abs().max(1.0),
        "{gs} vs {ps}/6"
    );
}

#[test]
fn rows_outside_the_aux_range_are_not_penalised() {
    // Two-way GReg+: rows [n_in, aux.start) feed only L_S. Penalising rows 0..2 and 4..6 of 6 must
    // equal the penalty of the batch with rows 2..4 removed.
    let model = tiny_model(9);
    let x = batch(23, 6);
    let m = (1e9, -1e9);
    let full = {
        let xv = Var::from_tensor(&x).unwrap();
        let s = energy(&model.logits(xv.as_tensor()).unwrap(), 1.0).unwrap();
        grad_penalty(
            InputGradient::Autograd(xv.as_tensor()),
            &s,
            2,
            4..6,
            m.0,
            m.1,
            PenaltyForm::PerSample,
            PenaltyNorm::L2,
        )
        .unwrap()
        .loss
        .to_scalar::<f64>()
        .unwrap()
    };
    let kept = Tensor::cat(
        &[&x.narrow(0, 0, 2).unwrap(), &x.narrow(0, 4, 2).unwrap()],
        0,
    )
    .unwrap();
    let (want, ..) = penalty(&model, &kept, 2, m, PenaltyForm::PerSample, PenaltyNorm::L2);
    let want = want.to_scalar::<f64>().unwrap();
    assert!(
        (full - want).abs() < 1e-12 * want.max(1.0),
        "{full} vs {want}"
    );
}

#[test]
fn penalty_of_unmasked_rows_is_zero() {
    let model = tiny_model(7);
    let x = batch(19, 4);
    let (l, fi, fa) = penalty(
        &model,
        &x,
        2,
        (-1e9, 1e9),
        PenaltyForm::PerSample,
        PenaltyNorm::L2,
    );
    assert_eq!((fi, fa), (0.0, 0.0));
    assert_eq!(l.to_scalar::<f64>().unwrap(), 0.0);
}

#[test]
fn energy_margin_and_outlier_exposure_match_formulas() {
    let dev = Device::Cpu;
    let s_in = Tensor::new(&[-30.0f64, -20.0, -25.0], &dev).unwrap();
    let s_aux = Tensor::new(&[-10.0f64, -5.0], &dev).unwrap();
    let l = energy_margin(&s_in, &s_aux, -25.0, -7.0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    // mean(0, 25, 0) + mean(9, 0) = 25/3 + 4.5
    assert!((l - (25.0 / 3.0 + 4.5)).abs() < 1e-12, "{l}");
    let z = Tensor::new(&[[1.0f64, 2.0, 3.0], [0.0, 0.0, 0.0]], &dev).unwrap();
    let oe = outlier_exposure(&z).unwrap().to_scalar::<f64>().unwrap();
    let lse0 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
    let want = ((lse0 - 2.0) + 3f64.ln()) / 2.0;
    assert!((oe - want).abs() < 1e-12, "{oe} vs {want}");
}

/// The explicit input gradient (the trainer's route for MLP/LeNet on the CPU) gives the penalty
/// and its weight gradients of the autograd route: both forms and norms, partial masks, T ≠ 1,
/// and an absent-class model whose energy reads only the first K logits.
#[test]
fn explicit_and_autograd_penalties_agree_with_their_weight_gradients() {
    let x = batch(31, 6);
    for absent in [false, true] {
        let mut model = tiny_model(11);
        if absent {
            model = model.into_absent_class().unwrap();
        }
        let total = model.spec().num_classes;
        let k = if absent { total - 1 } else { total };
        for (form, norm) in [
            (PenaltyForm::PerSample, PenaltyNorm::L2),
            (PenaltyForm::GroupScaled, PenaltyNorm::L1),
        ] {
            let t = 1.7;
            let xv = Var::from_tensor(&x).unwrap();
            let trace = model.forward_traced(xv.as_tensor(), true).unwrap();
            let s = energy(&trace.logits.narrow(1, 0, k).unwrap(), t).unwrap();
            // Margins between the energies so that some rows are masked and some are not.
            let mut sv = s.to_vec1::<f64>().unwrap();
            sv.sort_by(f64::total_cmp);
            let mid = 0.5 * (sv[2] + sv[3]);
            let run = |source| {
                let p = grad_penalty(source, &s, 3, 3..6, mid, mid, form, norm).unwrap();
                (
                    p.loss.to_scalar::<f64>().unwrap(),
                    p.loss.backward().unwrap(),
                    p.frac_in_masked + p.frac_aux_masked,
                )
            };
            let (la, ga, fa) = run(InputGradient::Autograd(xv.as_tensor()));
            let (le, ge, fe) = run(InputGradient::Explicit {
                model: &model,
                trace: &trace,
                id_classes: k,
                temperature: t,
            });
            assert!(
                la > 0.0 && fa > 0.0 && fa < 2.0,
                "the masks must be partial: {fa}"
            );
            assert_eq!(fa, fe);
            assert!(
                (la - le).abs() < 1e-12 * la,
                "absent={absent} {form:?}: {la} vs {le}"
            );
            for (name, v) in model.trainable_vars() {
                let a = ga
                    .get(v.as_tensor())
                    .unwrap_or_else(|| {
                        panic!("absent={absent} {form:?}: no autograd gradient for {name}")
                    })
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                let e = ge
                    .get(v.as_tensor())
                    .unwrap_or_else(|| {
                        panic!("absent={absent} {form:?}: no explicit gradient for {name}")
                    })
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                let scale = a.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
                let err = a
                    .iter()
                    .zip(&e)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                assert!(
                    err < 1e-10 * scale,
                    "absent={absent} {form:?} {name}: {err:e}"
                );
            }
        }
    }
}

/// The same on ResNet-18 (12×12 inputs, f64, BatchNorm in training mode as in a training
/// step, random γ/β, identity and downsampling blocks): the penalty and the gradient of every
/// trainable tensor by the explicit input gradient equal those of autograd's second-order route.
#[test]
fn resnet_explicit_and_autograd_penalties_agree_with_their_weight_gradients() {
    resnet_penalties_agree(DType::F64, 1e-10, 1e-9);
}

/// The same in float32, the dtype training runs in: both routes agree to float32 accuracy (a
/// cast, a dtype-specific kernel or an f32 accumulation gone wrong in the explicit route shows
/// here, not in the f64 test).
#[test]
fn resnet_explicit_and_autograd_penalties_agree_in_float32() {
    resnet_penalties_agree(DType::F32, 1e-5, 1e-4);
}

fn resnet_penalties_agree(dtype: DType, loss_tol: f64, grad_tol: f64) {
    let f64s = |t: &Tensor| {
        t.to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
    };
    let spec = ModelSpec {
        arch: Arch::Resnet18,
        input_shape: [1, 12, 12],
        num_classes: 3,
        mean: vec![0.4],
        std: vec![0.3],
    };
    let model = Model::init(spec, &Device::Cpu, dtype, 13).unwrap();
    assert!(model.has_explicit_input_vjp());
    let gammas = common::splitmix_unit(14, 4096);
    for (i, p) in model.params().iter().enumerate() {
        if p.name.contains("bn") || p.name.contains("shortcut.1") {
            let len = p.var.elem_count();
            let v: Vec<f64> = gammas
                .iter()
                .cycle()
                .skip(i)
                .take(len)
                .map(|u| 0.5 + u)
                .collect();
            p.var
                .set(
                    &Tensor::from_vec(v, len, &Device::Cpu)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap(),
                )
                .unwrap();
        }
    }
    let n = 6;
    let x = Tensor::from_vec(
        common::splitmix_unit(15, n * 144),
        (n, 1, 12, 12),
        &Device::Cpu,
    )
    .unwrap()
    .to_dtype(dtype)
    .unwrap();
    for (form, norm) in [
        (PenaltyForm::PerSample, PenaltyNorm::L2),
        (PenaltyForm::GroupScaled, PenaltyNorm::L1),
    ] {
        let xv = Var::from_tensor(&x).unwrap();
        let trace = model.forward_traced(xv.as_tensor(), true).unwrap();
        let s = energy(&trace.logits, 1.0).unwrap();
        let mut sv = f64s(&s);
        sv.sort_by(f64::total_cmp);
        let mid = 0.5 * (sv[2] + sv[3]);
        let run = |source| {
            let p = grad_penalty(source, &s, 3, 3..n, mid, mid, form, norm).unwrap();
            (
                f64s(&p.loss)[0],
                p.loss.backward().unwrap(),
                p.frac_in_masked + p.frac_aux_masked,
            )
        };
        let (la, ga, fa) = run(InputGradient::Autograd(xv.as_tensor()));
        let (le, ge, fe) = run(InputGradient::Explicit {
            model: &model,
            trace: &trace,
            id_classes: 3,
            temperature: 1.0,
        });
        assert!(fa > 0.0 && fa < 2.0, "the masks must be partial: {fa}");
        assert_eq!(fa, fe);
        assert!((la - le).abs() < loss_tol * la, "{form:?}: {la} vs {le}");
        let mut nonzero = 0;
        for (name, v) in model.trainable_vars() {
            let len = v.elem_count();
            let get = |gs: &candle_core::backprop::GradStore| {
                gs.get(v.as_tensor()).map_or(vec![0.0; len], f64s)
            };
            let (a, e) = (get(&ga), get(&ge));
            let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let err = a
                .iter()
                .zip(&e)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(
                err <= grad_tol * scale,
                "{dtype:?} {form:?} {name}: {err:e} of {scale:e}"
            );
            nonzero += usize::from(scale > 0.0);
        }
        assert!(nonzero >= 41, "{form:?}: only {nonzero} gradients nonzero");
    }
}
