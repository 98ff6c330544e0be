//! Our models against PyTorch: logits of state_dicts exported by
//! analysis/reference/export_pytorch.py (files in tests/reference/pytorch/) must match PyTorch's
//! to 1e-5 in f32 and to 1e-10 in f64 (eval mode, BatchNorm running statistics included).

use candle_core::{DType, Device, Tensor};
use oodcert::model::{Arch, Classifier, Model, ModelSpec};
use std::collections::HashMap;
use std::path::PathBuf;

fn refdir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference/pytorch")
}

fn metadata(path: &PathBuf) -> HashMap<String, String> {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    meta.metadata().clone().unwrap_or_default()
}

struct Reference {
    spec: ModelSpec,
    input: Tensor,
    logits_f32: Tensor,
    logits_f64: Tensor,
}

fn reference(name: &str) -> Reference {
    let path = refdir().join(format!("{name}_io.safetensors"));
    let spec: ModelSpec = serde_json::from_str(&metadata(&path)["spec"]).unwrap();
    let mut t = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    Reference {
        spec,
        input: t.remove("input").unwrap(),
        logits_f32: t.remove("logits_f32").unwrap(),
        logits_f64: t.remove("logits_f64").unwrap(),
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let d = (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap()).unwrap();
    d.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Logits of `model` (f32) and of its f64 copy against PyTorch's.
fn assert_matches(name: &str, model: &Model, r: &Reference) {
    assert_eq!(model.dtype(), DType::F32);
    let z32 = model.logits(&r.input).unwrap();
    let e32 = max_abs_diff(&z32, &r.logits_f32);
    let z64 = model
        .to_dtype(DType::F64)
        .unwrap()
        .logits(&r.input.to_dtype(DType::F64).unwrap())
        .unwrap();
    let e64 = max_abs_diff(&z64, &r.logits_f64);
    eprintln!("{name}: max |ours − PyTorch| = {e32:.2e} (f32), {e64:.2e} (f64)");
    assert!(e32 <= 1e-5, "{name}: f32 logits differ by {e32:e}");
    assert!(e64 <= 1e-10, "{name}: f64 logits differ by {e64:e}");
    // The check has teeth: the logits are not all tiny.
    let scale = max_abs_diff(&r.logits_f64, &r.logits_f64.zeros_like().unwrap());
    assert!(
        scale > 1e-2,
        "{name}: reference logits too small ({scale:e})"
    );
}

fn check_plain(name: &str) {
    let r = reference(name);
    let model = Model::load_pytorch(
        refdir().join(format!("{name}.safetensors")),
        r.spec.clone(),
        &Device::Cpu,
    )
    .unwrap();
    assert_matches(name, &model, &r);
    // Save in our format and load back: the same logits.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.safetensors");
    model.save(&p).unwrap();
    let back = Model::load(&p, &Device::Cpu).unwrap();
    assert_eq!(
        max_abs_diff(
            &back.logits(&r.input).unwrap(),
            &model.logits(&r.input).unwrap()
        ),
        0.0
    );
}

#[test]
fn mlp_matches_pytorch() {
    check_plain("mlp");
}

#[test]
fn lenet_28x28_matches_pytorch() {
    check_plain("lenet28");
}

#[test]
fn lenet_32x32x3_matches_pytorch() {
    check_plain("lenet32");
}

/// The counter-hash weights of export_pytorch.py's `formula_weight`, bit for bit.
fn formula_weight(index: u64, shape: &[usize], fan_in: usize) -> Tensor {
    let numel: usize = shape.iter().product();
    let b = 1.0 / (fan_in as f64).sqrt();
    let v: Vec<f32> = (0..numel as u64)
        .map(|k| {
            let k = k + index * 1_000_003;
            let mut x = k.wrapping_mul(2_654_435_761) & 0xFFFF_FFFF;
            x ^= x >> 16;
            x = x.wrapping_mul(2_246_822_519) & 0xFFFF_FFFF;
            x ^= x >> 13;
            let u = x as f64 / 4_294_967_296.0;
            ((2.0 * u - 1.0) * b) as f32
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

#[test]
fn resnet18_matches_pytorch_with_torchvision_names() {
    let r = reference("resnet18");
    let small = refdir().join("resnet18.safetensors");
    // The committed file lacks the (formula) conv weights: importing it alone must fail cleanly.
    let err = Model::load_pytorch(&small, r.spec.clone(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing tensor"), "{err}");

    let formula: Vec<(String, Vec<usize>, usize, u64)> =
        serde_json::from_str(&metadata(&small)["formula"]).unwrap();
    assert_eq!(formula.len(), 21, "20 convolutions + fc.weight");
    let mut tensors: Vec<(String, Tensor)> = candle_core::safetensors::load(&small, &Device::Cpu)
        .unwrap()
        .into_iter()
        .collect();
    assert!(tensors.iter().any(|(n, _)| n.contains(".downsample.")));
    assert!(
        tensors
            .iter()
            .any(|(n, _)| n.ends_with("num_batches_tracked"))
    );
    for (name, shape, fan_in, index) in &formula {
        tensors.push((name.clone(), formula_weight(*index, shape, *fan_in)));
    }
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("resnet18_full.safetensors");
    std::fs::write(&full, safetensors::serialize(tensors, None).unwrap()).unwrap();
    let model = Model::load_pytorch(&full, r.spec.clone(), &Device::Cpu).unwrap();
    assert!(matches!(model.spec().arch, Arch::Resnet18));
    let (features, _) = model.forward_t(&r.input, false).unwrap();
    assert_eq!(features.dims(), [r.input.dims()[0], 512]);
    assert_matches("resnet18", &model, &r);
}

#[test]
fn import_aliases_half_precision_and_conflicts() {
    use oodcert::model::pytorch::pytorch_name_to_ours;
    let r = reference("mlp");
    let sd =
        candle_core::safetensors::load(refdir().join("mlp.safetensors"), &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // DataParallel's `module.` prefix, f16 weights, an ignored num_batches_tracked.
    let mut t: Vec<(String, Tensor)> = sd
        .iter()
        .map(|(n, v)| (format!("module.{n}"), v.to_dtype(DType::F16).unwrap()))
        .collect();
    t.push((
        "module.num_batches_tracked".into(),
        Tensor::new(&[3i64], &Device::Cpu).unwrap(),
    ));
    let p = dir.path().join("half.safetensors");
    std::fs::write(&p, safetensors::serialize(t, None).unwrap()).unwrap();
    let m = Model::load_pytorch(&p, r.spec.clone(), &Device::Cpu).unwrap();
    assert_eq!(m.dtype(), DType::F32);
    let err = max_abs_diff(&m.logits(&r.input).unwrap(), &r.logits_f32);
    assert!(err < 1e-2 && err > 0.0, "f16 weights: {err:e}");
    // Two names that alias to one tensor.
    let mut t: Vec<(String, Tensor)> = sd.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    t.push(("module.fc1.bias".into(), sd["fc1.bias"].clone()));
    std::fs::write(&p, safetensors::serialize(t, None).unwrap()).unwrap();
    let e = Model::load_pytorch(&p, r.spec.clone(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("two tensors map to `fc1.bias`"), "{e}");
    // Name mapping rules.
    assert_eq!(
        pytorch_name_to_ours("fc.weight", &Arch::Resnet18).as_deref(),
        Some("linear.weight")
    );
    assert_eq!(
        pytorch_name_to_ours("fc1.weight", &Arch::Lenet).as_deref(),
        Some("fc1.weight")
    );
    assert_eq!(
        pytorch_name_to_ours("module.layer2.0.downsample.1.running_var", &Arch::Resnet18)
            .as_deref(),
        Some("layer2.0.shortcut.1.running_var")
    );
    assert_eq!(
        pytorch_name_to_ours("bn1.num_batches_tracked", &Arch::Resnet18),
        None
    );
}
