//! Typed access to a node's ONNX attributes. A missing attribute falls back to the op's
//! default; an attribute of the wrong type, or a value out of range, is an error naming the
//! node.
use super::proto::attribute_proto::AttributeType;
use super::proto::{AttributeProto, TensorProto};
use crate::{Error, Result};

/// Largest kernel, stride, padding, dilation, group or size an attribute may give. Far above
/// any real network; it keeps the shape arithmetic of hostile files from overflowing.
pub(super) const MAX_ATTR_SIZE: i64 = 1 << 24;

/// The attributes of one node.
pub(super) struct Attrs<'a> {
    node: &'a str,
    attrs: &'a [AttributeProto],
}

impl<'a> Attrs<'a> {
    pub fn new(node: &'a str, attrs: &'a [AttributeProto]) -> Self {
        Attrs { node, attrs }
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::node(self.node, msg)
    }

    /// The attribute `name` when present, after checking that it has the type `want` (files
    /// that leave the type unset are accepted when the matching field holds the value).
    fn get(
        &self,
        name: &str,
        want: AttributeType,
        present: impl Fn(&AttributeProto) -> bool,
    ) -> Result<Option<&'a AttributeProto>> {
        let Some(a) = self.attrs.iter().find(|a| a.name() == name) else {
            return Ok(None);
        };
        if !a.ref_attr_name().is_empty() {
            return Err(self.err(format!(
                "attribute '{name}' refers to a function attribute, which is not supported"
            )));
        }
        let ty = a.r#type();
        if ty == want || (ty == AttributeType::Undefined && present(a)) {
            Ok(Some(a))
        } else {
            Err(self.err(format!(
                "attribute '{name}' must be {}, got {}",
                want.as_str_name(),
                ty.as_str_name()
            )))
        }
    }

    /// An INT attribute.
    pub fn int_opt(&self, name: &str) -> Result<Option<i64>> {
        Ok(self
            .get(name, AttributeType::Int, |a| a.i.is_some())?
            .map(|a| a.i()))
    }

    /// An INT attribute or its default.
    pub fn int(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.int_opt(name)?.unwrap_or(default))
    }

    /// A boolean given as an INT attribute (0 or 1).
    pub fn flag(&self, name: &str, default: bool) -> Result<bool> {
        match self.int_opt(name)? {
            None => Ok(default),
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(v) => Err(self.err(format!("attribute '{name}' must be 0 or 1, got {v}"))),
        }
    }

    /// A FLOAT attribute.
    pub fn float_opt(&self, name: &str) -> Result<Option<f32>> {
        Ok(self
            .get(name, AttributeType::Float, |a| a.f.is_some())?
            .map(|a| a.f()))
    }

    /// A FLOAT attribute or its default.
    pub fn float(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self.float_opt(name)?.unwrap_or(default))
    }

    /// An INTS attribute.
    pub fn ints(&self, name: &str) -> Result<Option<&'a [i64]>> {
        Ok(self
            .get(name, AttributeType::Ints, |a| !a.ints.is_empty())?
            .map(|a| a.ints.as_slice()))
    }

    /// A FLOATS attribute.
    pub fn floats(&self, name: &str) -> Result<Option<&'a [f32]>> {
        Ok(self
            .get(name, AttributeType::Floats, |a| !a.floats.is_empty())?
            .map(|a| a.floats.as_slice()))
    }

    /// A STRING attribute (UTF-8).
    pub fn string(&self, name: &str) -> Result<Option<String>> {
        match self.get(name, AttributeType::String, |a| a.s.is_some())? {
            None => Ok(None),
            Some(a) => String::from_utf8(a.s().to_vec())
                .map(Some)
                .map_err(|_| self.err(format!("attribute '{name}' is not UTF-8"))),
        }
    }

    /// A TENSOR attribute.
    pub fn tensor(&self, name: &str) -> Result<Option<&'a TensorProto>> {
        match self.get(name, AttributeType::Tensor, |a| a.t.is_some())? {
            None => Ok(None),
            Some(a) => {
                a.t.as_ref()
                    .map(Some)
                    .ok_or_else(|| self.err(format!("attribute '{name}' holds no tensor")))
            }
        }
    }

    /// True when the node carries an attribute of this name, whatever its type.
    pub fn has(&self, name: &str) -> bool {
        self.attrs.iter().any(|a| a.name() == name)
    }

    /// A size (kernel, stride, dilation, group...) from an INT attribute: within
    /// `[min, MAX_ATTR_SIZE]`.
    pub fn size(&self, name: &str, default: usize, min: usize) -> Result<usize> {
        match self.int_opt(name)? {
            None => Ok(default),
            Some(v) => to_size(self.node, name, v, min),
        }
    }

    /// A pair of sizes from an INTS attribute of exactly two elements (H, W).
    pub fn pair(&self, name: &str, default: [usize; 2], min: usize) -> Result<[usize; 2]> {
        match self.ints(name)? {
            None => Ok(default),
            Some(v) => Ok(fixed::<2>(self.node, name, v, min)?),
        }
    }

    /// ONNX `pads` `[top, left, bottom, right]` from an INTS attribute of four elements.
    pub fn pads(&self, name: &str) -> Result<[usize; 4]> {
        match self.ints(name)? {
            None => Ok([0; 4]),
            Some(v) => Ok(fixed::<4>(self.node, name, v, 0)?),
        }
    }
}

/// One size checked against `[min, MAX_ATTR_SIZE]`.
pub(super) fn to_size(node: &str, what: &str, v: i64, min: usize) -> Result<usize> {
    if v < min as i64 || v > MAX_ATTR_SIZE {
        return Err(Error::node(
            node,
            format!("{what} must be in [{min}, {MAX_ATTR_SIZE}], got {v}"),
        ));
    }
    Ok(v as usize)
}

/// Exactly `N` sizes, each checked against `[min, MAX_ATTR_SIZE]`.
pub(super) fn fixed<const N: usize>(
    node: &str,
    what: &str,
    v: &[i64],
    min: usize,
) -> Result<[usize; N]> {
    if v.len() != N {
        return Err(Error::node(
            node,
            format!("{what} must have {N} elements (2-D ops only), got {v:?}"),
        ));
    }
    let mut out = [0; N];
    for (o, &x) in out.iter_mut().zip(v) {
        *o = to_size(node, what, x, min)?;
    }
    Ok(out)
}
