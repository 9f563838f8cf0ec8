//! Element-wise activations: ReLU and Clip (ReLU6 = Clip(0, 6)). Also fused onto
//! convolutions and fully connected layers.

/// An activation applied element-wise.
#[derive(Clone, Copy, Debug, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub enum Activation {
    /// Identity.
    #[default]
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, min), max)`.
    Clip { min: f32, max: f32 },
}

impl Activation {
    /// Applies the activation to one value.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Clip { min, max } => x.max(min).min(max),
        }
    }

    /// The `(lo, hi)` clamp equivalent to this activation.
    pub fn bounds(self) -> (f32, f32) {
        match self {
            Activation::None => (f32::NEG_INFINITY, f32::INFINITY),
            Activation::Relu => (0.0, f32::INFINITY),
            Activation::Clip { min, max } => (min, max),
        }
    }
}

pub mod cpu_f32;
pub mod reference;
#[cfg(test)]
mod tests;
pub mod vulkan;
