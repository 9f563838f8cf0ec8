//! QUInt8 tensors: the storage every value of a quantized model has between layers, the
//! shared view that lets several workers write disjoint slices of one, and the value type the
//! executor carries ([`Value`]: an F32 tensor or a QUInt8 one).
use crate::tensor::Tensor;
use std::marker::PhantomData;

/// The linear quantization of one tensor: `real = scale · (q − zero_point)`, `q ∈ 0..=255`.
///
/// Activations are asymmetric (the zero point places real 0 exactly on an integer, so that
/// zero padding and ReLU are exact).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QParams {
    /// Size of one step (> 0, finite).
    pub scale: f32,
    /// The code of real 0.
    pub zero_point: u8,
}

impl QParams {
    /// The parameters covering `[min, max]` (widened to include 0), with 256 codes:
    /// `scale = (max − min) / 255`, `zero_point = round(−min / scale)` (ties to even), the
    /// formula of onnxruntime's `compute_scale_zp` for QUInt8. A degenerate or non-finite
    /// range gives `scale = 1, zero_point = 0`.
    pub fn from_range(min: f32, max: f32) -> QParams {
        let (lo, hi) = (min.min(0.0), max.max(0.0));
        if !(lo.is_finite() && hi.is_finite()) || hi - lo <= f32::MIN_POSITIVE {
            return QParams {
                scale: 1.0,
                zero_point: 0,
            };
        }
        let scale = (hi - lo) / 255.0;
        let zp = (-lo / scale).round_ties_even().clamp(0.0, 255.0);
        QParams {
            scale,
            zero_point: zp as u8,
        }
    }

    /// `clamp(round(x / scale) + zero_point, 0, 255)`, rounding half to even (as ONNX
    /// `QuantizeLinear`). NaN maps to the zero point.
    #[inline]
    pub fn quantize(&self, x: f32) -> u8 {
        let v = (x / self.scale).round_ties_even() + f32::from(self.zero_point);
        if v.is_nan() {
            return self.zero_point;
        }
        v.clamp(0.0, 255.0) as u8
    }

    /// `scale · (q − zero_point)`.
    #[inline]
    pub fn dequantize(&self, q: u8) -> f32 {
        self.scale * (f32::from(q) - f32::from(self.zero_point))
    }

    /// The code of a real bound, saturated to `0..=255` (for clamps: ReLU6's 6, ReLU's 0);
    /// infinite bounds give 0 or 255.
    pub fn code_of(&self, x: f32) -> u8 {
        if x == f32::NEG_INFINITY {
            0
        } else if x == f32::INFINITY {
            255
        } else {
            self.quantize(x)
        }
    }

    /// The real range the 256 codes span.
    pub fn range(&self) -> (f32, f32) {
        (self.dequantize(0), self.dequantize(255))
    }
}

/// A dense, row-major (NCHW for 4-D) tensor of QUInt8 codes with its quantization.
///
/// `data` may be longer than the tensor: a buffer [refitted](QTensor::refit) to a smaller
/// value keeps its storage, and only the first `len` codes are the tensor's.
#[derive(Debug)]
pub struct QTensor {
    shape: Vec<usize>,
    len: usize,
    data: Vec<u8>,
    q: QParams,
}

/// Copies the tensor's codes only, not the rest of a refitted buffer's storage.
impl Clone for QTensor {
    fn clone(&self) -> Self {
        QTensor {
            shape: self.shape.clone(),
            len: self.len,
            data: self.data().to_vec(),
            q: self.q,
        }
    }
}

impl PartialEq for QTensor {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape && self.q == other.q && self.data() == other.data()
    }
}

impl QTensor {
    /// A tensor of real zeros (every code the zero point).
    pub fn zeros(shape: &[usize], q: QParams) -> QTensor {
        let len = shape.iter().product();
        QTensor {
            shape: shape.to_vec(),
            len,
            data: vec![q.zero_point; len],
            q,
        }
    }

    /// A tensor from its shape, codes and parameters; `None` when the sizes disagree.
    pub fn from_vec(shape: &[usize], data: Vec<u8>, q: QParams) -> Option<QTensor> {
        (shape.iter().product::<usize>() == data.len()).then(|| QTensor {
            shape: shape.to_vec(),
            len: data.len(),
            data,
            q,
        })
    }

    /// Quantizes an F32 tensor with `q`.
    pub fn quantize(t: &Tensor, q: QParams) -> QTensor {
        let mut out = QTensor::zeros(t.shape(), q);
        quantize_into(t.data(), q, out.data_mut());
        out
    }

    /// The real values.
    pub fn dequantize(&self) -> Tensor {
        let lut: [f32; 256] = std::array::from_fn(|i| self.q.dequantize(i as u8));
        let data = self.data().iter().map(|&v| lut[v as usize]).collect();
        Tensor::from_vec(&self.shape, data).expect("same element count")
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The codes in row-major order.
    pub fn data(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// The codes, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data[..self.len]
    }

    /// The quantization parameters.
    pub fn qparams(&self) -> QParams {
        self.q
    }

    /// Replaces the quantization parameters (the codes are kept: used when a buffer is reused
    /// for another value).
    pub fn set_qparams(&mut self, q: QParams) {
        self.q = q;
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Same codes, new shape; `None` when the element counts differ.
    pub fn reshaped(mut self, shape: &[usize]) -> Option<QTensor> {
        (shape.iter().product::<usize>() == self.len).then(|| {
            self.shape = shape.to_vec();
            self
        })
    }

    /// Same storage, a new shape of any element count, for a buffer that holds one value after
    /// another (the executor's). Within the storage it has ever had this neither allocates
    /// nor writes: the codes are whatever the storage held. Growing past it extends the
    /// storage with the zero point.
    pub fn refit(&mut self, shape: &[usize]) {
        self.len = shape.iter().product();
        if self.len > self.data.len() {
            self.data.resize(self.len, self.q.zero_point);
        }
        self.shape.clear();
        self.shape.extend_from_slice(shape);
    }

    /// A view through which disjoint slices may be written concurrently.
    pub fn shared(&mut self) -> SharedQTensor<'_> {
        SharedQTensor {
            ptr: self.data.as_mut_ptr(),
            len: self.len,
            shape: self.shape.clone(),
            q: self.q,
            _life: PhantomData,
        }
    }
}

/// Quantizes `src` into `dst` (same length) with `q`; vectorised by the compiler, with
/// AVX2 where the CPU has it (the input of every QUInt8 inference goes through here: 150 528
/// values for a 224 × 224 image).
pub fn quantize_into(src: &[f32], q: QParams, dst: &mut [u8]) {
    assert_eq!(src.len(), dst.len(), "quantize: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { quantize_avx2(src, q, dst) };
    }
    quantize_loop(src, q, dst)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_avx2(src: &[f32], q: QParams, dst: &mut [u8]) {
    quantize_loop(src, q, dst)
}

/// The loop of [`quantize_into`], written so that it vectorises: selects and clamps, then one
/// float-to-integer conversion and a narrowing store (no per-element branch, no saturating
/// float-to-integer cast).
#[inline(always)]
fn quantize_loop(src: &[f32], q: QParams, dst: &mut [u8]) {
    // Round half to even by the float adder (x + 1.5·2^23 − 1.5·2^23, exact for |x| < 2^22
    // in the default rounding mode) rather than `round_ties_even`, which is a libm call on
    // baseline x86-64. Values are clamped first, well inside that range and beyond the codes
    // on both sides.
    const MAGIC: f32 = 12_582_912.0;
    let (s, zp) = (q.scale, f32::from(q.zero_point));
    for (d, &x) in dst.iter_mut().zip(src) {
        // NaN maps to the zero point.
        let x = if x.is_nan() { 0.0 } else { x };
        let v = (x / s).clamp(-512.0, 512.0);
        // `max`/`min` (not `clamp`) also map a NaN left by a degenerate scale into range.
        #[allow(clippy::manual_clamp)]
        let r = ((v + MAGIC) - MAGIC + zp).max(0.0).min(255.0);
        // SAFETY: `r` is finite and within 0 ..= 255 (the saturating `as` does not vectorise).
        *d = unsafe { r.to_int_unchecked::<i32>() } as u8;
    }
}

/// The QUInt8 counterpart of [`crate::SharedTensor`]: a mutable view of a QUInt8 tensor's
/// codes that several workers may write at once, each into its own disjoint slice.
#[derive(Debug)]
pub struct SharedQTensor<'a> {
    ptr: *mut u8,
    len: usize,
    shape: Vec<usize>,
    q: QParams,
    _life: PhantomData<&'a mut [u8]>,
}

// SAFETY: as for `SharedTensor`: the view is only handed to workers whose slices are
// disjoint (the executor and the backends guarantee this); each code is written by at most
// one worker.
unsafe impl Send for SharedQTensor<'_> {}
unsafe impl Sync for SharedQTensor<'_> {}

impl SharedQTensor<'_> {
    /// The shape of the tensor being written.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The quantization of the tensor being written.
    pub fn qparams(&self) -> QParams {
        self.q
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A mutable sub-slice `[start, start + n)` of the codes.
    ///
    /// # Safety
    /// The caller must be the only writer (and reader) of these elements for the lifetime of
    /// the returned slice; ranges handed to concurrent workers must not overlap.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn range_mut(&self, start: usize, n: usize) -> &mut [u8] {
        assert!(
            start + n <= self.len,
            "range {start}+{n} outside tensor of {}",
            self.len
        );
        std::slice::from_raw_parts_mut(self.ptr.add(start), n)
    }

    /// The raw pointer to element 0, for kernels that write strided patterns.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }
}

/// A value between layers, as the executor stores it: F32 in F32 execution, QUInt8 in
/// quantized execution (see the module documentation of [`crate::quant`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// 32-bit float storage.
    F32(Tensor),
    /// 8-bit linear quantized storage.
    Q8(QTensor),
}

impl Value {
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Value::F32(t) => t.shape(),
            Value::Q8(t) => t.shape(),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Value::F32(t) => t.len(),
            Value::Q8(t) => t.len(),
        }
    }

    /// True when the value holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Same storage, a new shape of any element count (see [`Tensor::refit`]).
    pub fn refit(&mut self, shape: &[usize]) {
        match self {
            Value::F32(t) => t.refit(shape),
            Value::Q8(t) => t.refit(shape),
        }
    }

    /// Same storage, new shape; `None` when the element counts differ.
    pub fn reshaped(self, shape: &[usize]) -> Option<Value> {
        match self {
            Value::F32(t) => t.reshaped(shape).map(Value::F32),
            Value::Q8(t) => t.reshaped(shape).map(Value::Q8),
        }
    }

    /// The real values (dequantized for QUInt8).
    pub fn to_f32(&self) -> Tensor {
        match self {
            Value::F32(t) => t.clone(),
            Value::Q8(t) => t.dequantize(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refit_keeps_the_storage_and_clone_copies_only_the_tensor() {
        let q = QParams::from_range(-1.0, 1.0);
        let mut t = QTensor::from_vec(&[2, 3], vec![1, 2, 3, 4, 5, 6], q).expect("t");
        t.refit(&[2]);
        assert_eq!((t.shape(), t.data()), (&[2][..], &[1u8, 2][..]));
        assert_eq!(t, QTensor::from_vec(&[2], vec![1, 2], q).expect("u"));
        assert_eq!(t.clone().data.len(), 2);
        t.refit(&[6]);
        assert_eq!(t.data(), &[1, 2, 3, 4, 5, 6]);
        t.refit(&[8]);
        assert_eq!(&t.data()[6..], &[q.zero_point; 2]);
    }

    #[test]
    fn range_includes_zero_and_rounds_zero_point() {
        let q = QParams::from_range(0.5, 6.0);
        assert_eq!(q.zero_point, 0);
        assert!((q.scale - 6.0 / 255.0).abs() < 1e-9);
        let q = QParams::from_range(-1.0, 3.0);
        assert_eq!(q.zero_point, 64); // 1 / (4/255) = 63.75
        assert_eq!(q.quantize(0.0), 64);
        assert_eq!(q.dequantize(64), 0.0);
        let q = QParams::from_range(-2.0, -1.0);
        assert_eq!(q.zero_point, 255);
        assert_eq!(QParams::from_range(0.0, 0.0).scale, 1.0);
        assert_eq!(QParams::from_range(f32::NEG_INFINITY, 1.0).scale, 1.0);
    }

    #[test]
    fn quantize_rounds_half_to_even_and_saturates() {
        let q = QParams {
            scale: 1.0,
            zero_point: 10,
        };
        assert_eq!(q.quantize(0.5), 10);
        assert_eq!(q.quantize(1.5), 12);
        assert_eq!(q.quantize(-2.5), 8);
        assert_eq!(q.quantize(1e9), 255);
        assert_eq!(q.quantize(-1e9), 0);
        assert_eq!(q.quantize(f32::NAN), 10);
        let mut d = [0u8; 4];
        quantize_into(&[0.5, 1.5, -1e9, f32::NAN], q, &mut d);
        assert_eq!(d, [10, 12, 0, 10]);
    }

    #[test]
    fn the_vectorised_quantize_agrees_with_the_scalar_one_on_every_value() {
        // Ties, values around every code, both saturations, infinities and NaN, in runs long
        // enough for the vector loop (and with a tail).
        let q = QParams {
            scale: 0.5,
            zero_point: 131,
        };
        let mut src: Vec<f32> = (-1200..1200).map(|i| i as f32 * 0.125).collect();
        src.extend([
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e30,
            -1e30,
            0.25,
            -0.25,
        ]);
        let want: Vec<u8> = src.iter().map(|&x| q.quantize(x)).collect();
        let mut got = vec![0u8; src.len()];
        quantize_into(&src, q, &mut got);
        assert_eq!(got, want, "dispatched");
        quantize_loop(&src, q, &mut got);
        assert_eq!(got, want, "portable loop");
    }

    #[test]
    fn quantize_dequantize_round_trip_within_half_a_step() {
        let q = QParams::from_range(-3.0, 5.0);
        let t = Tensor::from_vec(&[1, 1, 2, 3], vec![-3.0, -1.1, 0.0, 0.7, 2.2, 5.0]).expect("6");
        let back = QTensor::quantize(&t, q).dequantize();
        for (a, b) in t.data().iter().zip(back.data()) {
            assert!((a - b).abs() <= q.scale / 2.0 + 1e-6, "{a} vs {b}");
        }
    }
}
