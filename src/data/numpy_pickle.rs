//! Lifts a single numpy array out of a (gzip'd) Python pickle without Python: a small pickle
//! virtual machine (PEP 307 / PEP 3154 opcodes) that understands exactly what `pickle.dump(ndarray)`
//! emits — `numpy.core.multiarray._reconstruct`, the `numpy.dtype` object, and the raw payload as
//! BINBYTES/SHORT_BINBYTES/BINBYTES8 (protocol ≥ 3) or `_codecs.encode(str, 'latin1')` (protocol 2).
//! Any other opcode or object graph is a `BadFile`; nothing is ever executed.

use super::bytes::checked_product;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// A numpy array recovered from a pickle: dtype string (e.g. `u1`, `i8`), byte order
/// (`<`, `>`, `|`, `=`), shape, and the raw C-ordered payload bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct PickledArray {
    /// numpy dtype name without byte order, e.g. `u1`, `i8`, `f4`.
    pub dtype: String,
    /// Byte-order character from the dtype state.
    pub byte_order: char,
    /// Array shape.
    pub shape: Vec<usize>,
    /// Raw payload.
    pub data: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Value {
    Mark,
    None,
    Bool(bool),
    Int(i64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    Global(String, String),
    Call(Box<Value>, Vec<Value>),
    Built(Box<Value>, Box<Value>),
}

struct Cursor<'a> {
    path: &'a Path,
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| {
                Error::bad_file(self.path, format!("pickle truncated at byte {}", self.pos))
            })?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<usize> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]) as usize)
    }
    fn u32(&mut self) -> Result<usize> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
    }
    fn i32(&mut self) -> Result<i64> {
        let s = self.take(4)?;
        Ok(i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as i64)
    }
    fn u64(&mut self) -> Result<usize> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        usize::try_from(u64::from_le_bytes(a))
            .map_err(|_| Error::bad_file(self.path, "pickle length does not fit in memory"))
    }
    fn line(&mut self) -> Result<String> {
        let rest = &self.b[self.pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or_else(|| Error::bad_file(self.path, "pickle truncated inside a text line"))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
    fn utf8(&mut self, n: usize) -> Result<String> {
        let path = self.path;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec())
            .map_err(|_| Error::bad_file(path, "pickle string is not UTF-8"))
    }
}

/// Runs the restricted pickle machine and returns the top-of-stack value at STOP.
fn run(path: &Path, bytes: &[u8]) -> Result<Value> {
    let bad = |m: String| Error::bad_file(path, format!("unsupported pickle: {m}"));
    let mut c = Cursor {
        path,
        b: bytes,
        pos: 0,
    };
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: HashMap<usize, Value> = HashMap::new();
    let pop = |stack: &mut Vec<Value>| -> Result<Value> {
        stack
            .pop()
            .ok_or_else(|| Error::bad_file(path, "pickle stack underflow"))
    };
    let pop_mark = |stack: &mut Vec<Value>| -> Result<Vec<Value>> {
        let m = stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| Error::bad_file(path, "pickle MARK missing"))?;
        let items = stack.split_off(m + 1);
        stack.pop();
        Ok(items)
    };
    loop {
        let at = c.pos;
        let op = c.u8()?;
        match op {
            0x80 => {
                c.u8()?; // PROTO n
            }
            0x95 => {
                c.u64()?; // FRAME: a length hint only
            }
            b'.' => return pop(&mut stack),
            b'(' => stack.push(Value::Mark),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'K' => stack.push(Value::Int(c.u8()? as i64)),
            b'M' => stack.push(Value::Int(c.u16()? as i64)),
            b'J' => stack.push(Value::Int(c.i32()?)),
            0x8a => {
                // LONG1: little-endian two's complement of n bytes
                let n = c.u8()? as usize;
                if n > 8 {
                    return Err(bad(format!("LONG1 of {n} bytes at byte {at}")));
                }
                let s = c.take(n)?;
                let mut v: i64 = 0;
                for (i, &b) in s.iter().enumerate() {
                    v |= (b as i64) << (8 * i);
                }
                if n > 0 && n < 8 && s[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                stack.push(Value::Int(v));
            }
            b'I' => {
                let l = c.line()?;
                let v = match l.as_str() {
                    "00" => Value::Bool(false),
                    "01" => Value::Bool(true),
                    s => Value::Int(s.parse().map_err(|_| bad(format!("INT {s:?}")))?),
                };
                stack.push(v);
            }
            0x8c => {
                let n = c.u8()? as usize;
                stack.push(Value::Str(c.utf8(n)?));
            }
            b'X' => {
                let n = c.u32()?;
                stack.push(Value::Str(c.utf8(n)?));
            }
            0x8d => {
                let n = c.u64()?;
                stack.push(Value::Str(c.utf8(n)?));
            }
            b'U' => {
                // SHORT_BINSTRING (protocol 1/2 str)
                let n = c.u8()? as usize;
                stack.push(Value::Bytes(c.take(n)?.to_vec()));
            }
            b'T' => {
                let n = c.u32()?;
                stack.push(Value::Bytes(c.take(n)?.to_vec()));
            }
            b'C' => {
                let n = c.u8()? as usize;
                stack.push(Value::Bytes(c.take(n)?.to_vec()));
            }
            b'B' => {
                let n = c.u32()?;
                stack.push(Value::Bytes(c.take(n)?.to_vec()));
            }
            0x8e | 0x96 => {
                let n = c.u64()?;
                stack.push(Value::Bytes(c.take(n)?.to_vec()));
            }
            b')' => stack.push(Value::Tuple(vec![])),
            0x85 => {
                let a = pop(&mut stack)?;
                stack.push(Value::Tuple(vec![a]));
            }
            0x86 => {
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                stack.push(Value::Tuple(vec![a, b]));
            }
            0x87 => {
                let cc = pop(&mut stack)?;
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                stack.push(Value::Tuple(vec![a, b, cc]));
            }
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Tuple(items));
            }
            b'c' => {
                let m = c.line()?;
                let n = c.line()?;
                stack.push(Value::Global(m, n));
            }
            0x93 => {
                let n = pop(&mut stack)?;
                let m = pop(&mut stack)?;
                match (m, n) {
                    (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(m, n)),
                    _ => return Err(bad(format!("STACK_GLOBAL of non-strings at byte {at}"))),
                }
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let f = pop(&mut stack)?;
                let args = match args {
                    Value::Tuple(a) => a,
                    _ => return Err(bad(format!("REDUCE with non-tuple arguments at byte {at}"))),
                };
                stack.push(Value::Call(Box::new(f), args));
            }
            b'b' => {
                let state = pop(&mut stack)?;
                let obj = pop(&mut stack)?;
                stack.push(Value::Built(Box::new(obj), Box::new(state)));
            }
            0x94 => {
                let top = stack
                    .last()
                    .cloned()
                    .ok_or_else(|| bad("MEMOIZE on empty stack".into()))?;
                memo.insert(memo.len(), top);
            }
            b'q' | b'r' => {
                let k = if op == b'q' {
                    c.u8()? as usize
                } else {
                    c.u32()?
                };
                let top = stack
                    .last()
                    .cloned()
                    .ok_or_else(|| bad("PUT on empty stack".into()))?;
                memo.insert(k, top);
            }
            b'h' | b'j' => {
                let k = if op == b'h' {
                    c.u8()? as usize
                } else {
                    c.u32()?
                };
                let v = memo
                    .get(&k)
                    .cloned()
                    .ok_or_else(|| bad(format!("GET of unknown memo {k}")))?;
                stack.push(v);
            }
            _ => return Err(bad(format!("opcode 0x{op:02x} at byte {at}"))),
        }
    }
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Bool(b) => Some(*b as i64),
        _ => None,
    }
}

/// The bytes of a payload value: raw bytes, or `_codecs.encode(str, 'latin1')`.
fn payload_bytes(path: &Path, v: &Value) -> Result<Vec<u8>> {
    match v {
        Value::Bytes(b) => Ok(b.clone()),
        Value::Call(f, args) => match (f.as_ref(), args.as_slice()) {
            (Value::Global(m, n), [Value::Str(s), Value::Str(enc)])
                if m == "_codecs" && n == "encode" && (enc == "latin1" || enc == "latin-1") =>
            {
                s.chars()
                    .map(|ch| {
                        u8::try_from(ch as u32).map_err(|_| {
                            Error::bad_file(path, "latin1 payload has a character above U+00FF")
                        })
                    })
                    .collect()
            }
            _ => Err(Error::bad_file(
                path,
                "unsupported pickle: array payload is neither bytes nor _codecs.encode",
            )),
        },
        _ => Err(Error::bad_file(
            path,
            "unsupported pickle: array payload is not bytes",
        )),
    }
}

/// Parses a pickle (already gunzipped) holding one numpy ndarray.
pub fn parse_numpy_pickle(path: &Path, bytes: &[u8]) -> Result<PickledArray> {
    if bytes.is_empty() {
        return Err(Error::bad_file(path, "file is empty"));
    }
    let bad = |m: &str| Error::bad_file(path, format!("not a pickled numpy array: {m}"));
    let top = run(path, bytes)?;
    let Value::Built(obj, state) = top else {
        return Err(bad("top object is not a reconstructed ndarray"));
    };
    match obj.as_ref() {
        Value::Call(f, _) if matches!(f.as_ref(), Value::Global(m, n) if m.starts_with("numpy") && n == "_reconstruct") =>
            {}
        _ => return Err(bad("top object is not numpy's _reconstruct")),
    }
    // ndarray.__setstate__ state: (version, shape, dtype, is_fortran, data)
    let Value::Tuple(st) = state.as_ref() else {
        return Err(bad("array state is not a tuple"));
    };
    let [_, Value::Tuple(shape), dtype, fortran, data] = st.as_slice() else {
        return Err(bad(
            "array state is not (version, shape, dtype, fortran, data)",
        ));
    };
    if as_int(fortran) != Some(0) {
        return Err(Error::bad_file(
            path,
            "pickled array is Fortran-ordered; only C order is supported",
        ));
    }
    let shape = shape
        .iter()
        .map(|d| as_int(d).and_then(|i| usize::try_from(i).ok()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("shape is not a tuple of non-negative integers"))?;
    // dtype: Built(Call(Global numpy.dtype, (name, False, True)), (3, byteorder, ...))
    let Value::Built(dcall, dstate) = dtype else {
        return Err(bad("dtype is not a numpy.dtype object"));
    };
    let dtype_name = match dcall.as_ref() {
        Value::Call(f, args) if matches!(f.as_ref(), Value::Global(_, n) if n == "dtype") => {
            match args.first() {
                Some(Value::Str(s)) => s.clone(),
                _ => return Err(bad("dtype name missing")),
            }
        }
        _ => return Err(bad("dtype is not a numpy.dtype object")),
    };
    let byte_order = match dstate.as_ref() {
        Value::Tuple(t) => match t.get(1) {
            Some(Value::Str(s)) => s.chars().next().unwrap_or('|'),
            _ => '|',
        },
        _ => '|',
    };
    let data = payload_bytes(path, data)?;
    let item = match dtype_name.as_str() {
        "u1" | "i1" | "b1" => 1,
        "u2" | "i2" | "f2" => 2,
        "u4" | "i4" | "f4" => 4,
        "u8" | "i8" | "f8" => 8,
        d => {
            return Err(Error::bad_file(
                path,
                format!("pickled dtype {d:?} is not supported"),
            ));
        }
    };
    let want = checked_product(path, &shape)?
        .checked_mul(item)
        .ok_or_else(|| bad("shape overflows"))?;
    if data.len() != want {
        return Err(Error::bad_file(
            path,
            format!(
                "pickled array payload has {} bytes, shape {shape:?} of {dtype_name} needs {want}",
                data.len()
            ),
        ));
    }
    Ok(PickledArray {
        dtype: dtype_name,
        byte_order,
        shape,
        data,
    })
}

impl PickledArray {
    /// The payload as unsigned bytes (dtype `u1` only).
    pub fn as_u8(&self, path: &Path) -> Result<&[u8]> {
        if self.dtype != "u1" {
            return Err(Error::bad_file(
                path,
                format!("expected a uint8 array, found {}", self.dtype),
            ));
        }
        Ok(&self.data)
    }

    /// The payload as i64 values (dtype `i8` little-endian, or `u1`).
    pub fn as_i64(&self, path: &Path) -> Result<Vec<i64>> {
        match (self.dtype.as_str(), self.byte_order) {
            ("i8", '<' | '=' | '|') => Ok(self
                .data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect()),
            ("u1", _) => Ok(self.data.iter().map(|&b| b as i64).collect()),
            (d, o) => Err(Error::bad_file(
                path,
                format!("expected int64 labels, found {o}{d}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact layout `pickle.dumps(np.arange(3, dtype=np.uint8), protocol=4)` produces, minus FRAME.
    fn proto4_u8(payload: &[u8], dims: &[u8]) -> Vec<u8> {
        let mut b = vec![0x80, 4];
        let s = |b: &mut Vec<u8>, t: &str| {
            b.push(0x8c);
            b.push(t.len() as u8);
            b.extend_from_slice(t.as_bytes());
        };
        s(&mut b, "numpy.core.multiarray");
        s(&mut b, "_reconstruct");
        b.push(0x93);
        s(&mut b, "numpy");
        s(&mut b, "ndarray");
        b.extend_from_slice(&[
            0x93, 0x94, b'K', 0, 0x85, b'C', 1, b'b', 0x87, b'R', b'(', b'K', 1,
        ]);
        b.push(b'(');
        for &d in dims {
            b.extend_from_slice(&[b'K', d]);
        }
        b.push(b't');
        s(&mut b, "numpy");
        s(&mut b, "dtype");
        b.push(0x93);
        s(&mut b, "u1");
        b.extend_from_slice(&[0x89, 0x88, 0x87, b'R', b'(', b'K', 3]);
        s(&mut b, "|");
        b.extend_from_slice(&[
            b'N', b'N', b'N', b'J', 255, 255, 255, 255, b'J', 255, 255, 255, 255, b'K', 0, b't',
            b'b', 0x89,
        ]);
        b.push(b'B');
        b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(payload);
        b.extend_from_slice(b"tb.");
        b
    }

    #[test]
    fn lifts_payload_and_rejects_defects() {
        let p = Path::new("x.pkl");
        let ok = proto4_u8(&[1, 2, 3, 4, 5, 6], &[2, 3]);
        let a = parse_numpy_pickle(p, &ok).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.dtype, "u1");
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
        // payload length disagreeing with the shape
        assert!(parse_numpy_pickle(p, &proto4_u8(&[1, 2, 3], &[2, 3])).is_err());
        // truncation anywhere is an error, never a panic
        for cut in 0..ok.len() {
            assert!(parse_numpy_pickle(p, &ok[..cut]).is_err(), "cut at {cut}");
        }
        // an unknown opcode
        assert!(
            parse_numpy_pickle(p, &[0x80, 4, b'Z', b'.'])
                .unwrap_err()
                .to_string()
                .contains("opcode")
        );
    }
}
