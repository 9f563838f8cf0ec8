//! Constant values: ONNX `TensorProto`s (initializers, `Constant` nodes) decoded into float or
//! integer data with a checked shape.
use super::proto::tensor_proto::{DataLocation, DataType};
use super::proto::TensorProto;
use crate::tensor::Tensor;

/// Largest element count of any tensor or value the importer accepts (2^36). Keeps the shape
/// arithmetic of hostile files from overflowing.
pub(super) const MAX_ELEMENTS: usize = 1 << 36;

/// The elements of a constant.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Data {
    /// Floating point (FLOAT, DOUBLE, FLOAT16, BFLOAT16), as f32.
    Float(Vec<f32>),
    /// Integers and booleans, as i64.
    Int(Vec<i64>),
}

/// A decoded constant tensor.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Value {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Value {
    /// The float tensor, or `None` for integer data.
    pub fn to_tensor(&self) -> Option<Tensor> {
        match &self.data {
            Data::Float(v) => Tensor::from_vec(&self.shape, v.clone()),
            Data::Int(_) => None,
        }
    }

    /// The integer elements, or `None` for float data.
    pub fn ints(&self) -> Option<&[i64]> {
        match &self.data {
            Data::Int(v) => Some(v),
            Data::Float(_) => None,
        }
    }

    /// The single element of a scalar (or one-element) float tensor.
    pub fn float_scalar(&self) -> Option<f32> {
        match &self.data {
            Data::Float(v) if v.len() == 1 => Some(v[0]),
            _ => None,
        }
    }
}

/// A checked element count of a shape: `None` when it overflows or exceeds [`MAX_ELEMENTS`].
pub(super) fn elements(shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
}

/// Decodes a tensor; the error message does not name the node (the caller adds it).
pub(super) fn decode(t: &TensorProto) -> Result<Value, String> {
    if t.data_location() == DataLocation::External || !t.external_data.is_empty() {
        return Err("tensor data stored in an external file is not supported".into());
    }
    if t.segment.is_some() {
        return Err("segmented tensors are not supported".into());
    }
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d} in {:?}", t.dims)))
        .collect::<Result<Vec<_>, _>>()?;
    let n = elements(&shape).ok_or_else(|| format!("shape {shape:?} is too large"))?;
    let raw = t.raw_data.as_deref();
    let dt = DataType::try_from(t.data_type())
        .map_err(|_| format!("unknown data type {}", t.data_type()))?;
    let data = match dt {
        DataType::Float => Data::Float(match raw {
            Some(r) => le::<4, f32>(r, n, f32::from_le_bytes)?,
            None => counted(t.float_data.clone(), n)?,
        }),
        DataType::Double => Data::Float(match raw {
            Some(r) => le::<8, f32>(r, n, |b| f64::from_le_bytes(b) as f32)?,
            None => counted(t.double_data.iter().map(|&v| v as f32).collect(), n)?,
        }),
        DataType::Float16 => Data::Float(match raw {
            Some(r) => le::<2, f32>(r, n, |b| f16_to_f32(u16::from_le_bytes(b)))?,
            None => counted(
                t.int32_data.iter().map(|&v| f16_to_f32(v as u16)).collect(),
                n,
            )?,
        }),
        DataType::Bfloat16 => Data::Float(match raw {
            Some(r) => le::<2, f32>(r, n, |b| {
                f32::from_bits(u32::from(u16::from_le_bytes(b)) << 16)
            })?,
            None => counted(
                t.int32_data
                    .iter()
                    .map(|&v| f32::from_bits((v as u32 & 0xffff) << 16))
                    .collect(),
                n,
            )?,
        }),
        DataType::Int64 => Data::Int(match raw {
            Some(r) => le::<8, i64>(r, n, i64::from_le_bytes)?,
            None => counted(t.int64_data.clone(), n)?,
        }),
        DataType::Int32 => Data::Int(match raw {
            Some(r) => le::<4, i64>(r, n, |b| i64::from(i32::from_le_bytes(b)))?,
            None => counted(t.int32_data.iter().map(|&v| i64::from(v)).collect(), n)?,
        }),
        DataType::Int8 => Data::Int(match raw {
            Some(r) => le::<1, i64>(r, n, |b| i64::from(b[0] as i8))?,
            None => counted(t.int32_data.iter().map(|&v| i64::from(v)).collect(), n)?,
        }),
        DataType::Uint8 | DataType::Bool => Data::Int(match raw {
            Some(r) => le::<1, i64>(r, n, |b| i64::from(b[0]))?,
            None => counted(t.int32_data.iter().map(|&v| i64::from(v)).collect(), n)?,
        }),
        other => {
            return Err(format!(
                "data type {} is not supported",
                other.as_str_name()
            ))
        }
    };
    Ok(Value { shape, data })
}

/// The typed field's elements, checked against the shape's element count.
fn counted<T>(v: Vec<T>, n: usize) -> Result<Vec<T>, String> {
    if v.len() == n {
        Ok(v)
    } else {
        Err(format!("holds {} elements, its shape needs {n}", v.len()))
    }
}

/// Little-endian elements of `raw_data`, checked against the shape's element count.
fn le<const B: usize, T>(raw: &[u8], n: usize, f: impl Fn([u8; B]) -> T) -> Result<Vec<T>, String> {
    if raw.len() != n * B {
        return Err(format!(
            "raw data has {} bytes, its shape needs {} ({n} elements of {B} bytes)",
            raw.len(),
            n * B
        ));
    }
    Ok(raw
        .chunks_exact(B)
        .map(|c| f(c.try_into().unwrap_or([0; B])))
        .collect())
}

/// IEEE half to single precision.
pub(super) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal half: normalise into a single-precision normal.
            let shift = m.leading_zeros() - 21;
            sign | ((127 - 15 + 1 - shift) << 23) | (((m << shift) & 0x3ff) << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Encodes a float tensor as an ONNX FLOAT initializer with `raw_data`.
pub(super) fn float_tensor(name: &str, shape: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// Encodes an INT64 initializer with `raw_data`.
pub(super) fn int_tensor(name: &str, shape: &[usize], data: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: Some(DataType::Int64 as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x0200), 2f32.powi(-15));
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn raw_and_typed_data_are_checked() {
        let t = float_tensor("w", &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(
            decode(&t).map(|v| v.to_tensor()),
            Ok(Tensor::from_vec(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]))
        );
        let mut short = t.clone();
        short.raw_data.as_mut().map(|r| r.pop());
        assert!(decode(&short).is_err());
        let typed = TensorProto {
            dims: vec![3],
            data_type: Some(DataType::Int64 as i32),
            int64_data: vec![1, -1, 0],
            ..Default::default()
        };
        assert_eq!(
            decode(&typed).map(|v| v.ints().map(<[i64]>::to_vec)),
            Ok(Some(vec![1, -1, 0]))
        );
        let huge = TensorProto {
            dims: vec![1 << 40, 1 << 40],
            data_type: Some(DataType::Float as i32),
            ..Default::default()
        };
        assert!(decode(&huge).is_err());
        let negative = TensorProto {
            dims: vec![-1],
            data_type: Some(DataType::Float as i32),
            ..Default::default()
        };
        assert!(decode(&negative).is_err());
    }
}
