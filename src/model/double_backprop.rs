//! Second-order gradients in candle need `CANDLE_GRAD_DO_NOT_DETACH` set before a thread's first
//! `backward()` (candle reads it once per thread); without it they are silently zero.
//! shared/spec/candle-notes.md.

use crate::error::Result;
use candle_core::{DType, Device, Tensor, Var};

/// The environment variable candle reads to keep the graph of gradients.
pub const DOUBLE_BACKPROP_ENV: &str = "CANDLE_GRAD_DO_NOT_DETACH";

/// d/dw (∂y/∂x) for y = (w·x)² at w = 2, x = 3: 4·w·x = 24 when double backprop works on this
/// thread, 0 when candle detaches gradients. Calling it fixes the thread's setting for good.
pub fn double_backprop_probe() -> Result<f64> {
    let w = Var::from_tensor(&Tensor::new(2.0f64, &Device::Cpu)?)?;
    let x = Var::from_tensor(&Tensor::new(3.0f64, &Device::Cpu)?)?;
    let y = w.as_tensor().mul(x.as_tensor())?.sqr()?;
    let grads = y.backward()?;
    let Some(gx) = grads.get(x.as_tensor()) else {
        return Ok(0.0);
    };
    let second = gx.backward()?;
    match second.get(w.as_tensor()) {
        Some(g) => Ok(g.to_dtype(DType::F64)?.to_scalar::<f64>()?),
        None => Ok(0.0),
    }
}

/// Whether second-order gradients flow on this thread (the probe returns 24).
pub fn double_backprop_enabled() -> Result<bool> {
    Ok((double_backprop_probe()? - 24.0).abs() < 1e-9)
}
