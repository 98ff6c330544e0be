//! Constant tensors of an ONNX graph (initializers and `Constant` nodes) as host values, and
//! typed access to node attributes with a check that no unknown attribute is present.

use super::proto::{AttributeProto, NodeProto, TensorProto, data_type};
use crate::error::{Error, Result};

/// The values of a constant tensor.
#[derive(Debug, Clone)]
pub enum ConstData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A constant tensor: dims and values (row-major).
#[derive(Debug, Clone)]
pub struct Const {
    pub dims: Vec<usize>,
    pub data: ConstData,
}

impl Const {
    /// The values as f32, if the tensor is floating point.
    pub fn floats(&self) -> Option<&[f32]> {
        match &self.data {
            ConstData::F32(v) => Some(v),
            ConstData::I64(_) => None,
        }
    }

    /// The values as i64, if the tensor is an integer tensor.
    pub fn ints(&self) -> Option<&[i64]> {
        match &self.data {
            ConstData::I64(v) => Some(v),
            ConstData::F32(_) => None,
        }
    }
}

fn chunks<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            f(b)
        })
        .collect()
}

/// Reads a `TensorProto` (data in `raw_data`, little-endian, or in the typed field).
pub fn read_tensor(t: &TensorProto) -> Result<Const> {
    let name = t.name.clone().unwrap_or_default();
    let bad = |msg: String| Error::BadInput(format!("ONNX tensor `{name}`: {msg}"));
    if t.data_location == Some(1) {
        return Err(bad(
            "its data is stored in an external file; export the model in one file \
             (torch.onnx.export writes external data only for models over 2 GB)"
                .into(),
        ));
    }
    let dims = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("negative dimension {d}"))))
        .collect::<Result<Vec<_>>>()?;
    let numel: usize = dims.iter().product();
    let raw = t.raw_data.as_deref().filter(|r| !r.is_empty());
    let dt = t.data_type.unwrap_or(0);
    let (data, width) = match dt {
        data_type::FLOAT => (
            ConstData::F32(match raw {
                Some(r) => chunks::<4, _>(r, f32::from_le_bytes),
                None => t.float_data.clone(),
            }),
            4,
        ),
        data_type::DOUBLE => (
            ConstData::F32(match raw {
                Some(r) => chunks::<8, _>(r, |b| f64::from_le_bytes(b) as f32),
                None => t.double_data.iter().map(|&v| v as f32).collect(),
            }),
            8,
        ),
        data_type::INT64 => (
            ConstData::I64(match raw {
                Some(r) => chunks::<8, _>(r, i64::from_le_bytes),
                None => t.int64_data.clone(),
            }),
            8,
        ),
        data_type::INT32 => (
            ConstData::I64(match raw {
                Some(r) => chunks::<4, _>(r, |b| i32::from_le_bytes(b) as i64),
                None => t.int32_data.iter().map(|&v| v as i64).collect(),
            }),
            4,
        ),
        other => {
            return Err(bad(format!(
                "data type {other} is not read (supported: FLOAT, DOUBLE, INT32, INT64)"
            )));
        }
    };
    let len = match &data {
        ConstData::F32(v) => v.len(),
        ConstData::I64(v) => v.len(),
    };
    if raw.is_some_and(|r| r.len() != numel * width) || len != numel {
        return Err(bad(format!(
            "holds {len} values for dims {dims:?} ({numel} expected)"
        )));
    }
    if let ConstData::F32(v) = &data
        && let Some(x) = v.iter().find(|x| !x.is_finite())
    {
        return Err(bad(format!("contains a non-finite value ({x})")));
    }
    Ok(Const { dims, data })
}

/// The value of a `Constant` node (`value` tensor, or `value_float(s)` / `value_int(s)`).
pub fn constant_value(node: &NodeProto, label: &str) -> Result<Const> {
    let a = Attrs::new(
        node,
        label,
        &[
            "value",
            "value_float",
            "value_floats",
            "value_int",
            "value_ints",
        ],
    )?;
    if let Some(t) = a.get("value").and_then(|a| a.t.as_ref()) {
        return read_tensor(t);
    }
    if let Some(f) = a.get("value_float").and_then(|a| a.f) {
        return Ok(Const {
            dims: vec![],
            data: ConstData::F32(vec![f]),
        });
    }
    if let Some(v) = a.get("value_floats") {
        return Ok(Const {
            dims: vec![v.floats.len()],
            data: ConstData::F32(v.floats.clone()),
        });
    }
    if let Some(i) = a.get("value_int").and_then(|a| a.i) {
        return Ok(Const {
            dims: vec![],
            data: ConstData::I64(vec![i]),
        });
    }
    if let Some(v) = a.get("value_ints") {
        return Ok(Const {
            dims: vec![v.ints.len()],
            data: ConstData::I64(v.ints.clone()),
        });
    }
    Err(Error::BadInput(format!(
        "{label}: a Constant needs a tensor, float(s) or int(s) value (sparse and string \
         constants are not supported)"
    )))
}

/// A node's attributes, checked against the names an importer understands.
pub struct Attrs<'a> {
    attrs: &'a [AttributeProto],
    label: &'a str,
}

impl<'a> Attrs<'a> {
    /// Fails, naming the attribute, when the node has one outside `known`.
    pub fn new(node: &'a NodeProto, label: &'a str, known: &[&str]) -> Result<Self> {
        for a in &node.attribute {
            let name = a.name.as_deref().unwrap_or("");
            if !known.contains(&name) {
                return Err(Error::BadInput(format!(
                    "{label}: attribute `{name}` is not supported (this operator supports: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            }
        }
        Ok(Self {
            attrs: &node.attribute,
            label,
        })
    }

    /// The attribute `name`, if set.
    pub fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.attrs.iter().find(|a| a.name.as_deref() == Some(name))
    }

    /// An integer attribute, `default` when absent.
    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).and_then(|a| a.i).unwrap_or(default)
    }

    /// A float attribute, `default` when absent.
    pub fn float(&self, name: &str, default: f32) -> f32 {
        self.get(name).and_then(|a| a.f).unwrap_or(default)
    }

    /// A string attribute, `default` when absent.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name)
            .and_then(|a| a.s.as_ref())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .unwrap_or_else(|| default.to_string())
    }

    /// A list of non-negative integers of length `len`, `default` when absent.
    pub fn sizes(&self, name: &str, len: usize, default: usize) -> Result<Vec<usize>> {
        let Some(a) = self.get(name) else {
            return Ok(vec![default; len]);
        };
        if a.ints.len() != len || a.ints.iter().any(|&v| v < 0) {
            return Err(Error::BadInput(format!(
                "{}: attribute `{name}` = {:?}; expected {len} non-negative values (2-d \
                 operators on (N, C, H, W) tensors)",
                self.label, a.ints
            )));
        }
        Ok(a.ints.iter().map(|&v| v as usize).collect())
    }
}
