//! Positional arguments of the diagnostic examples: argument `i` parsed, or `default` when it is
//! absent (absent without a default: the example's `usage` line as the error).
//! Included by `#[path]` from examples/preactivation_boxes.rs and examples/lenet_l2_coupling.rs.

use oodcert::error::{Error, Result};

pub fn arg<T: std::str::FromStr>(
    args: &[String],
    i: usize,
    default: Option<T>,
    usage: &str,
) -> Result<T> {
    match args.get(i) {
        Some(s) => s
            .parse()
            .map_err(|_| Error::BadInput(format!("argument {i}: cannot parse \"{s}\""))),
        None => default.ok_or_else(|| Error::BadInput(usage.into())),
    }
}
