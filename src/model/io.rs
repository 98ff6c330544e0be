//! Model files: safetensors with metadata `oodcert.format` and `oodcert.spec` (the [`ModelSpec`]
//! as JSON), written atomically; loading checks every tensor against the spec.

use super::Classifier;
use super::network::Model;
use super::spec::ModelSpec;
use crate::error::{Error, Result};
use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

/// Metadata key holding the format tag.
pub const FORMAT_KEY: &str = "oodcert.format";
/// Metadata key holding the [`ModelSpec`] as JSON.
pub const SPEC_KEY: &str = "oodcert.spec";
/// The current model-file format tag.
pub const FORMAT_V1: &str = "oodcert-model-v1";
/// The format tag of a (K+1)-output model whose last output is DOS's absent class (a distinct tag,
/// so that a reader that does not know absent classes refuses the file instead of scoring it).
pub const FORMAT_V1_ABSENT_CLASS: &str = "oodcert-model-v1-absent-class";

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let ctx = || format!("writing {}", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".oodcert-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(ctx(), e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(ctx(), e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(ctx(), e))?;
    tmp.persist(path).map_err(|e| Error::io(ctx(), e.error))?;
    Ok(())
}

pub use crate::data::bytes::sha256_file;

/// The error for PyTorch pickle checkpoints, which we refuse to read.
fn pickle_refusal(path: &Path) -> Error {
    Error::BadInput(format!(
        "{}: PyTorch pickle checkpoints (.pt/.pth/.pkl) are not read, because unpickling runs \
         arbitrary code; export the weights in Python with `from safetensors.torch import \
         save_file; save_file(model.state_dict(), \"m.safetensors\")` and import that file",
        path.display()
    ))
}

/// Reads a safetensors file fully into memory, refusing pickles by extension and by content.
pub(crate) fn read_safetensors_bytes(path: &Path) -> Result<Vec<u8>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    if matches!(
        ext.as_deref(),
        Some("pt" | "pth" | "pkl" | "pickle" | "ckpt")
    ) {
        return Err(pickle_refusal(path));
    }
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    // torch.save writes a zip archive ("PK\x03\x04") or a raw pickle (protocol byte 0x80). A
    // safetensors file starts with its u64 LE header length (whose low byte may well be 0x80:
    // the header is padded to a multiple of 8) followed by the header's `{`.
    let safetensors_like = bytes.len() > 8 && bytes[8] == b'{';
    if !safetensors_like && (bytes.starts_with(b"PK\x03\x04") || bytes.first() == Some(&0x80)) {
        return Err(pickle_refusal(path));
    }
    Ok(bytes)
}

/// Metadata and `(name, stored dtype, tensor)` triples of a parsed safetensors file.
pub(crate) type Parsed = (
    HashMap<String, String>,
    Vec<(String, safetensors::Dtype, Tensor)>,
);

/// Parses safetensors bytes: the metadata map and every tensor (on the CPU), with clear errors.
pub(crate) fn parse_safetensors(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let bad = |msg: String| Error::bad_file(path, msg);
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| {
        bad(format!(
            "not a valid safetensors file (truncated or corrupt header): {e}"
        ))
    })?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        bad(format!(
            "not a valid safetensors file (truncated or corrupt): {e}"
        ))
    })?;
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        let dtype = view.dtype();
        let t = match dtype {
            safetensors::Dtype::F16
            | safetensors::Dtype::BF16
            | safetensors::Dtype::F32
            | safetensors::Dtype::F64
            | safetensors::Dtype::I64 => view
                .load(&Device::Cpu)
                .map_err(|e| bad(format!("tensor `{name}` cannot be read: {e}")))?,
            other => {
                return Err(bad(format!(
                    "tensor `{name}` has dtype {other:?}; expected floating point"
                )));
            }
        };
        tensors.push((name, dtype, t));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((meta.metadata().clone().unwrap_or_default(), tensors))
}

/// safetensors bytes with a sorted JSON header, so that equal models give byte-identical files
/// (the `safetensors` crate orders metadata by `HashMap`). Layout: u64 LE header length, JSON
/// header padded with spaces to a multiple of 8, then the tensors' little-endian data in order.
pub(crate) fn serialize_deterministic(
    tensors: &[(String, Tensor)],
    meta: &HashMap<String, String>,
) -> Result<Vec<u8>> {
    use serde_json::{Value, json};
    let mut header = serde_json::Map::new();
    let sorted_meta: BTreeMap<&String, &String> = meta.iter().collect();
    header.insert("__metadata__".into(), json!(sorted_meta));
    let mut data: Vec<u8> = Vec::new();
    let mut sorted: Vec<&(String, Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, t) in sorted {
        let t = t.to_device(&Device::Cpu)?;
        let start = data.len();
        let dtype = match t.dtype() {
            DType::F32 => {
                for v in t.flatten_all()?.to_vec1::<f32>()? {
                    data.extend_from_slice(&v.to_le_bytes());
                }
                "F32"
            }
            DType::F64 => {
                for v in t.flatten_all()?.to_vec1::<f64>()? {
                    data.extend_from_slice(&v.to_le_bytes());
                }
                "F64"
            }
            other => {
                return Err(Error::Internal(format!(
                    "cannot save a {other:?} tensor `{name}`"
                )));
            }
        };
        header.insert(
            name.clone(),
            json!({"dtype": dtype, "shape": t.dims(), "data_offsets": [start, data.len()]}),
        );
    }
    // Deterministic either way: serde_json's Map is sorted, or (with `preserve_order`) in our
    // insertion order, which is sorted too.
    let mut json = serde_json::to_vec(&Value::Object(header))
        .map_err(|e| Error::Internal(format!("serialising a safetensors header: {e}")))?;
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + data.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&data);
    Ok(out)
}

impl Model {
    /// Saves every tensor (weights and running statistics) plus the spec as safetensors
    /// metadata, atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let spec = serde_json::to_string(self.spec())
            .map_err(|e| Error::Internal(format!("serialising the model spec: {e}")))?;
        let format = if self.has_absent_class() {
            FORMAT_V1_ABSENT_CLASS
        } else {
            FORMAT_V1
        };
        let meta = HashMap::from([
            (FORMAT_KEY.to_string(), format.to_string()),
            (SPEC_KEY.to_string(), spec),
        ]);
        let bytes = serialize_deterministic(&self.all_tensors(), &meta)?;
        write_atomic(path, &bytes)
    }

    /// Loads a model file written by [`Model::save`] as a K-class scorer; the dtype is the
    /// file's (f32 or f64). A (K+1)-output absent-class (DOS) model is returned as its
    /// [`Model::id_logits_view`], so S(x) is the energy over the K in-distribution logits (a note
    /// on stderr says so); [`Model::load_full`] keeps the absent class.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Model> {
        let path = path.as_ref();
        let m = Self::load_full(path, device)?;
        if !m.has_absent_class() {
            return Ok(m);
        }
        eprintln!(
            "oodcert: note: {} has an absent class (K+1 = {} outputs, DOS); using its {} \
             in-distribution logits (energy over the first K logits)",
            path.display(),
            m.spec().num_classes,
            m.id_classes()
        );
        m.id_logits_view()
    }

    /// Loads a model file exactly as stored, an absent-class model with all K+1 outputs (for
    /// training, resuming and DOS's absent-class score).
    pub fn load_full(path: impl AsRef<Path>, device: &Device) -> Result<Model> {
        let path = path.as_ref();
        let bytes = read_safetensors_bytes(path)?;
        let (meta, tensors) = parse_safetensors(path, &bytes)?;
        let bad = |msg: String| Error::bad_file(path, msg);
        let absent_class = match meta.get(FORMAT_KEY) {
            Some(f) if f == FORMAT_V1 => false,
            Some(f) if f == FORMAT_V1_ABSENT_CLASS => true,
            Some(f) => {
                return Err(bad(format!(
                    "unsupported model format `{f}` (this oodcert reads `{FORMAT_V1}` and \
                     `{FORMAT_V1_ABSENT_CLASS}`)"
                )));
            }
            None => {
                return Err(bad(format!(
                    "not an oodcert model file (no `{FORMAT_KEY}` metadata); a PyTorch \
                     state_dict must be imported together with its architecture spec"
                )));
            }
        };
        let spec_json = meta
            .get(SPEC_KEY)
            .ok_or_else(|| bad(format!("missing `{SPEC_KEY}` metadata")))?;
        let spec: ModelSpec = serde_json::from_str(spec_json)
            .map_err(|e| bad(format!("bad `{SPEC_KEY}` metadata JSON: {e}")))?;
        let mut dtype = None;
        let mut map = HashMap::new();
        for (name, st_dtype, t) in tensors {
            let d = match st_dtype {
                safetensors::Dtype::F32 => DType::F32,
                safetensors::Dtype::F64 => DType::F64,
                other => {
                    return Err(bad(format!(
                        "tensor `{name}` has dtype {other:?}; model files hold F32 or F64"
                    )));
                }
            };
            match dtype {
                None => dtype = Some(d),
                Some(prev) if prev != d => {
                    return Err(bad(format!(
                        "tensor `{name}` is {d:?} but earlier tensors are {prev:?}"
                    )));
                }
                _ => {}
            }
            map.insert(name, t);
        }
        let dtype = dtype.ok_or_else(|| bad("the file holds no tensors".into()))?;
        let m = Model::from_tensors(spec, map, dtype, device, path)?;
        if absent_class {
            m.into_absent_class()
                .map_err(|e| bad(format!("absent-class model: {e}")))
        } else {
            Ok(m)
        }
    }
}
