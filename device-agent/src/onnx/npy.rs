//! NumPy `.npy` files of little-endian f32 (`'<f4'`, C order), the exchange format with the
//! Python reference tools (`tools/ort_run.py`).
//!
//! Written here rather than taken from a crate: the format for one dtype is a fixed magic, a
//! small header dict and raw data (about 100 lines with the checks), while the `.npy` crates
//! bring a Python-literal parser and its grammar (npyz: py_literal → pest) or ndarray with
//! them, too much compile time for 2 cores.
use crate::tensor::Tensor;
use crate::{Error, Result};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Largest element count a `.npy` may claim (2^36), so a damaged header cannot ask for an
/// absurd allocation or overflow.
const MAX_ELEMENTS: usize = 1 << 36;

/// Encodes a tensor as a version 1.0 `.npy` file.
pub fn to_bytes(t: &Tensor) -> Vec<u8> {
    let dims: Vec<String> = t.shape().iter().map(ToString::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + 4 * t.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in t.data() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes a tensor to a `.npy` file.
pub fn write(path: &Path, t: &Tensor) -> Result<()> {
    std::fs::write(path, to_bytes(t)).map_err(|cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    })
}

/// Reads a `.npy` file of f32.
pub fn read(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    from_bytes(&bytes, path)
}

/// Decodes a `.npy` file of f32 held in memory; `path` names it in errors.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Tensor> {
    let err = |msg: String| Error::Decode {
        path: path.to_path_buf(),
        msg,
    };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(err("not a .npy file".into()));
    }
    let (len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(err(format!(".npy version {v} is not supported"))),
    };
    let header = bytes
        .get(start..start + len)
        .ok_or_else(|| err("truncated header".into()))?;
    let header = std::str::from_utf8(header).map_err(|_| err("header is not text".into()))?;
    let descr = quoted(field(header, "descr").ok_or_else(|| err("header has no 'descr'".into()))?);
    if !matches!(descr, Some("<f4") | Some("=f4")) {
        return Err(err(format!(
            "dtype {descr:?} is not little-endian float32 ('<f4')"
        )));
    }
    if !field(header, "fortran_order").is_some_and(|v| v.starts_with("False")) {
        return Err(err("Fortran-ordered arrays are not supported".into()));
    }
    let shape = field(header, "shape")
        .and_then(tuple)
        .ok_or_else(|| err("header has no valid 'shape'".into()))?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| err(format!("shape {shape:?} is too large")))?;
    let data = &bytes[start + len..];
    if data.len() != 4 * n {
        return Err(err(format!(
            "{} data bytes, shape {shape:?} needs {}",
            data.len(),
            4 * n
        )));
    }
    let values = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Tensor::from_vec(&shape, values).ok_or_else(|| err("size mismatch".into()))
}

/// The text after `'key':` in the header dict.
fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}

/// The leading quoted string.
fn quoted(s: &str) -> Option<&str> {
    let q = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = &s[1..];
    body.find(q).map(|end| &body[..end])
}

/// The leading tuple of integers, `(2, 3)`, `(3,)` or `()`.
fn tuple(s: &str) -> Option<Vec<usize>> {
    let body = s.strip_prefix('(')?;
    let body = &body[..body.find(')')?];
    body.split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.trim_end_matches('L').parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_shapes() {
        for shape in [vec![], vec![3], vec![2, 3], vec![1, 3, 4, 5], vec![0, 2]] {
            let n = shape.iter().product();
            let t = Tensor::from_vec(&shape, (0..n).map(|i| i as f32 * 0.5 - 1.0).collect())
                .expect("sizes agree");
            let bytes = to_bytes(&t);
            assert_eq!((bytes.len() - 4 * n) % 64, 0);
            assert_eq!(from_bytes(&bytes, Path::new("t.npy")).ok(), Some(t));
        }
    }

    #[test]
    fn bad_files_are_errors() {
        let t = Tensor::from_vec(&[2, 2], vec![1.0; 4]).expect("sizes agree");
        let bytes = to_bytes(&t);
        for cut in 0..bytes.len() {
            assert!(
                from_bytes(&bytes[..cut], Path::new("t.npy")).is_err(),
                "prefix of {cut} bytes accepted"
            );
        }
        let mut f8 = bytes.clone();
        let at = f8
            .windows(3)
            .position(|w| w == b"<f4")
            .expect("descr written");
        f8[at + 2] = b'8';
        assert!(from_bytes(&f8, Path::new("t.npy")).is_err());
    }
}
