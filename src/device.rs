//! Choosing the compute device: CPU by default, CUDA behind the `cuda` cargo feature.

use crate::error::{Error, Result};
use candle_core::Device;

/// Parses `cpu` or `cuda[:N]` into a candle device, with a clear error when CUDA is not built in.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal: usize = match s.strip_prefix("cuda:") {
                None => 0,
                Some(n) => n
                    .parse()
                    .map_err(|_| Error::BadInput(format!("--device {s}: expected cuda:N")))?,
            };
            cuda(ordinal)
        }
        other => Err(Error::BadInput(format!(
            "--device {other}: expected cpu or cuda[:N]"
        ))),
    }
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal)
        .map_err(|e| Error::BadInput(format!("cannot open CUDA device {ordinal}: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_ordinal: usize) -> Result<Device> {
    Err(Error::BadInput(
        "this oodcert binary was built without CUDA; rebuild with `cargo build --release --features cuda` (see shared/spec/candle-notes.md)".into(),
    ))
}

/// A short description of a device for manifests.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda".into(),
        Device::Metal(_) => "metal".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rejects_junk() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device("tpu").is_err());
        assert!(parse_device("cuda:x").is_err());
        #[cfg(not(feature = "cuda"))]
        assert!(
            parse_device("cuda")
                .unwrap_err()
                .to_string()
                .contains("--features cuda")
        );
    }
}
