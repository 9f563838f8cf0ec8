//! Reading PyTorch's legacy (pre-zip, torch < 1.6) `.pth` serialisation into named f32
//! tensors.
//!
//! Layout of such a file: five pickles back to back, then raw storages.
//! 1. the magic number `0x1950a86a20f9469cfc6c`;
//! 2. the protocol version `1001`;
//! 3. `sys_info` (endianness, type sizes);
//! 4. the object itself (here an ordered state dict whose tensors are
//!    `_rebuild_tensor_v2` calls over persistent-id storages);
//! 5. the list of storage keys;
//!
//! then, for each key in that order, a little-endian `u64` element count followed by the
//! elements.
use crate::fetch::cached_file;
use crate::{Error, Result};
use pickle::{DType, StorageRef, TensorRef, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod pickle;

/// One tensor of a state dict, converted to f32 (integer tensors such as
/// `num_batches_tracked` keep their value, as f32).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// State-dict key, e.g. `_conv_stem.weight`.
    pub name: String,
    /// Shape (row-major); empty for a scalar.
    pub shape: Vec<usize>,
    /// Elements in row-major order.
    pub data: Vec<f32>,
}

/// Where the fetched EfficientNet-Lite0 weights live in `cache` (whether fetched or not).
pub fn efficientnet_lite0_pth(cache: &Path) -> PathBuf {
    cache.join(crate::spec::EFFICIENTNET_LITE0_PTH)
}

/// [`efficientnet_lite0_pth`], or [`Error::NotFetched`] when the file is not there.
pub fn efficientnet_lite0_pth_checked(cache: &Path) -> Result<PathBuf> {
    cached_file(cache, crate::spec::EFFICIENTNET_LITE0_PTH)
}

/// Reads a legacy-format `.pth` holding a state dict (or a dict with a `state_dict` entry)
/// and returns its tensors in state-dict order.
///
/// Errors: [`Error::Io`] when the file cannot be read, [`Error::Pth`] with the byte offset
/// when it is truncated, corrupt, in the zip-based format, or uses a pickle feature outside
/// what such checkpoints need.
pub fn read_pth(path: &Path) -> Result<Vec<NamedTensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(path, &bytes)
}

/// Little-endian bytes of the legacy magic number 0x1950a86a20f9469cfc6c.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<NamedTensor>> {
    let mut cur = Cursor::new(path, bytes);
    if bytes.starts_with(b"PK\x03\x04") {
        return Err(cur.error_at(
            0,
            "zip-based checkpoint (torch >= 1.6): only the legacy format is read here",
        ));
    }
    match pickle::unpickle(&mut cur)? {
        Value::BigInt(b) if *b == MAGIC => {}
        _ => return Err(cur.error_at(0, "not a legacy PyTorch file: wrong magic number")),
    }
    let at = cur.pos();
    match pickle::unpickle(&mut cur)? {
        Value::Int(PROTOCOL_VERSION) => {}
        other => {
            return Err(cur.error_at(
                at,
                format!("protocol version {other:?}, expected {PROTOCOL_VERSION}"),
            ))
        }
    }
    let at = cur.pos();
    check_sys_info(&pickle::unpickle(&mut cur)?).map_err(|m| cur.error_at(at, m))?;
    let at = cur.pos();
    let entries = state_dict(pickle::unpickle(&mut cur)?).map_err(|m| cur.error_at(at, m))?;
    let at = cur.pos();
    let keys = match pickle::unpickle(&mut cur)? {
        Value::List(l) => l
            .borrow()
            .iter()
            .map(|k| {
                if let Value::Str(s) = k {
                    Ok(s.to_string())
                } else {
                    Err(cur.error_at(at, "storage key is not a string"))
                }
            })
            .collect::<Result<Vec<_>>>()?,
        _ => return Err(cur.error_at(at, "storage key list is not a list")),
    };

    // Every storage the tensors refer to, by key.
    let mut storages: HashMap<&str, &StorageRef> = HashMap::new();
    for (name, t) in &entries {
        if let Some(prev) = storages.insert(&t.storage.key, &t.storage) {
            if prev.dtype != t.storage.dtype || prev.numel != t.storage.numel {
                return Err(cur.error_at(
                    at,
                    format!(
                        "{name}: storage {} is described twice, differently",
                        t.storage.key
                    ),
                ));
            }
        }
    }
    // The raw storages, in key-list order: a u64 element count, then the elements.
    let mut data: HashMap<&str, &[u8]> = HashMap::new();
    for key in &keys {
        let at = cur.pos();
        let s = storages.get(key.as_str()).ok_or_else(|| {
            cur.error_at(at, format!("storage {key} is listed but no tensor uses it"))
        })?;
        let numel = cur.u64()?;
        if numel != s.numel {
            return Err(cur.error_at(
                at,
                format!(
                    "storage {key} holds {numel} elements, the pickle says {}",
                    s.numel
                ),
            ));
        }
        let len = usize::try_from(numel)
            .ok()
            .and_then(|n| n.checked_mul(s.dtype.size()))
            .ok_or_else(|| cur.error_at(at, format!("storage {key} is too large")))?;
        data.insert(s.key.as_str(), cur.take(len)?);
    }
    if cur.pos() != bytes.len() as u64 {
        return Err(cur.error_at(
            cur.pos(),
            format!(
                "{} unexpected bytes after the last storage",
                bytes.len() as u64 - cur.pos()
            ),
        ));
    }
    entries
        .iter()
        .map(|(name, t)| {
            let raw = data.get(t.storage.key.as_str()).ok_or_else(|| {
                cur.error_at(
                    at,
                    format!(
                        "{name}: storage {} is not in the storage list",
                        t.storage.key
                    ),
                )
            })?;
            let values = gather(t, raw).map_err(|m| cur.error_at(at, format!("{name}: {m}")))?;
            Ok(NamedTensor {
                name: name.clone(),
                shape: t.shape.clone(),
                data: values,
            })
        })
        .collect()
}

fn check_sys_info(v: &Value) -> std::result::Result<(), String> {
    let Value::Dict(d) = v else {
        return Err("sys_info is not a dict".into());
    };
    for (k, v) in d.borrow().iter() {
        if matches!(k, Value::Str(s) if &**s == "little_endian") && !matches!(v, Value::Bool(true))
        {
            return Err("big-endian checkpoints are not supported".into());
        }
    }
    Ok(())
}

/// The (name, tensor) items of the state dict, in order.
fn state_dict(root: Value) -> std::result::Result<Vec<(String, std::rc::Rc<TensorRef>)>, String> {
    let Value::Dict(d) = root else {
        return Err("the checkpoint is not a dict".into());
    };
    let items = d.borrow();
    // A training checkpoint wraps the weights as {'state_dict': ..., 'epoch': ...}.
    if !items.iter().any(|(_, v)| matches!(v, Value::Tensor(_))) {
        if let Some((_, inner @ Value::Dict(_))) = items
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if &**s == "state_dict"))
        {
            return state_dict(inner.clone());
        }
    }
    items
        .iter()
        .map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Tensor(t)) => Ok((k.to_string(), t.clone())),
            (Value::Str(k), other) => {
                Err(format!("state-dict entry {k} is a {other:?}, not a tensor"))
            }
            (other, _) => Err(format!("state-dict key {other:?} is not a string")),
        })
        .collect()
}

/// The tensor's elements in row-major order, converted to f32.
fn gather(t: &TensorRef, raw: &[u8]) -> std::result::Result<Vec<f32>, String> {
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("element count overflows")?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    let offset = usize::try_from(t.offset).map_err(|_| "offset too large")?;
    // Highest element index touched must lie inside the storage.
    let last = t
        .shape
        .iter()
        .zip(&t.stride)
        .try_fold(offset, |a, (&d, &s)| {
            (d - 1).checked_mul(s).and_then(|x| a.checked_add(x))
        })
        .ok_or("index overflows")?;
    let storage_len = usize::try_from(t.storage.numel).map_err(|_| "storage too large")?;
    if last >= storage_len {
        return Err(format!("shape {:?} stride {:?} offset {offset} reaches past the {storage_len} elements of storage {}", t.shape, t.stride, t.storage.key));
    }
    let size = t.storage.dtype.size();
    let elem = |i: usize| -> f32 {
        let b = &raw[i * size..(i + 1) * size];
        match t.storage.dtype {
            DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            DType::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            DType::F64 => {
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
            DType::I64 => {
                i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
        }
    };
    let mut contiguous = vec![0usize; t.shape.len()];
    let mut acc = 1;
    for i in (0..t.shape.len()).rev() {
        contiguous[i] = acc;
        acc *= t.shape[i];
    }
    let is_contiguous = t
        .shape
        .iter()
        .zip(&t.stride)
        .zip(&contiguous)
        .all(|((&d, &s), &c)| d == 1 || s == c);
    if is_contiguous {
        return Ok((offset..offset + numel).map(elem).collect());
    }
    // General strided layout: walk the indices in row-major order.
    let mut out = Vec::with_capacity(numel);
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        out.push(elem(
            offset
                + index
                    .iter()
                    .zip(&t.stride)
                    .map(|(i, s)| i * s)
                    .sum::<usize>(),
        ));
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < t.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(out)
}

/// A position in the file's bytes; every error carries the offset where it arose.
pub(crate) struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(path: &'a Path, bytes: &'a [u8]) -> Self {
        Cursor {
            path,
            bytes,
            pos: 0,
        }
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos as u64
    }

    pub(crate) fn error_at(&self, offset: u64, message: impl Into<String>) -> Error {
        Error::Pth {
            path: self.path.to_path_buf(),
            offset,
            message: message.into(),
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(self.error_at(
                self.pos(),
                format!(
                    "truncated: needed {n} bytes, {left} left (file is {} bytes)",
                    self.bytes.len()
                ),
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn i32(&mut self) -> Result<i32> {
        self.array().map(i32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// A newline-terminated ASCII line (GLOBAL's operands), without the newline.
    pub(crate) fn line(&mut self) -> Result<String> {
        let rest = &self.bytes[self.pos..];
        let n = rest
            .iter()
            .take(256)
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.error_at(self.pos(), "truncated or overlong GLOBAL name"))?;
        let s = std::str::from_utf8(&rest[..n])
            .map_err(|_| self.error_at(self.pos(), "GLOBAL name is not UTF-8"))?
            .to_string();
        self.pos += n + 1;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tref(shape: Vec<usize>, stride: Vec<usize>, offset: u64, numel: u64) -> TensorRef {
        TensorRef {
            storage: std::rc::Rc::new(StorageRef {
                key: "0".into(),
                dtype: DType::F32,
                numel,
            }),
            offset,
            shape,
            stride,
        }
    }

    fn raw(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn gather_contiguous_and_transposed() {
        let r = raw(&[0., 1., 2., 3., 4., 5.]);
        assert_eq!(
            gather(&tref(vec![2, 3], vec![3, 1], 0, 6), &r),
            Ok(vec![0., 1., 2., 3., 4., 5.])
        );
        assert_eq!(
            gather(&tref(vec![3, 2], vec![1, 3], 0, 6), &r),
            Ok(vec![0., 3., 1., 4., 2., 5.])
        );
        assert_eq!(gather(&tref(vec![2], vec![1], 4, 6), &r), Ok(vec![4., 5.]));
        assert_eq!(gather(&tref(vec![], vec![], 2, 6), &r), Ok(vec![2.]));
    }

    #[test]
    fn gather_refuses_out_of_bounds() {
        let r = raw(&[0., 1., 2., 3.]);
        assert!(gather(&tref(vec![2, 3], vec![3, 1], 0, 4), &r).is_err());
    }

    #[test]
    fn zip_format_is_named() {
        let e = parse(Path::new("new.pth"), b"PK\x03\x04rest")
            .expect_err("zip")
            .to_string();
        assert!(e.contains("new.pth") && e.contains("zip-based"), "{e}");
    }
}
