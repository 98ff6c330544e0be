use candle_core::{DType, Device, Tensor};
use oodcert::model::layers::{conv2d_im2col, max_pool2};
use std::time::Instant;
fn t<F: FnMut() -> Tensor>(name: &str, mut f: F) { f(); let s = Instant::now(); for _ in 0..5 { f(); } eprintln!("{name}: {:.1} ms", s.elapsed().as_secs_f64() * 200.0); }
#[test]
fn timing() {
    let d = Device::Cpu;
    let x = Tensor::rand(0f32, 1., (1000, 1, 28, 28), &d).unwrap();
    let w1 = Tensor::rand(0f32, 1., (6, 1, 5, 5), &d).unwrap();
    let h = Tensor::rand(0f32, 1., (1000, 6, 14, 14), &d).unwrap();
    let w2 = Tensor::rand(0f32, 1., (16, 6, 5, 5), &d).unwrap();
    let a = Tensor::rand(0f32, 1., (1000, 6, 28, 28), &d).unwrap();
    t("conv1 im2col", || conv2d_im2col(&x, &w1, 1, 2).unwrap());
    t("conv1 candle", || x.conv2d(&w1, 2, 1, 1, 1).unwrap());
    t("conv2 im2col", || conv2d_im2col(&h, &w2, 1, 0).unwrap());
    t("conv2 candle", || h.conv2d(&w2, 0, 1, 1, 1).unwrap());
    t("pool1 reshape", || max_pool2(&a).unwrap());
    t("pool1 candle", || a.max_pool2d(2).unwrap());
    t("relu", || a.relu().unwrap());
    t("im2col only conv2", || h.apply_op1(oodcert::model::layers::Im2Col(oodcert::model::layers::ConvGeometry{n:1000,c:6,h:14,w:14,kh:5,kw:5,stride:1,padding:0})).unwrap());
    let _ = DType::F32;
}
