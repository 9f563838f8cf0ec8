//! Dense NCHW tensors of f32 and the shared output view that lets several workers (CPU
//! threads, the GPU) write disjoint slices of one tensor at the same time.
use std::marker::PhantomData;
use std::ops::Range;

/// A dense, row-major (NCHW for 4-D) tensor of f32.
///
/// `data` may be longer than the tensor: a buffer [refitted](Tensor::refit) to a smaller
/// value keeps its storage, and only the first `len` elements are the tensor's.
#[derive(Debug)]
pub struct Tensor {
    shape: Vec<usize>,
    len: usize,
    data: Vec<f32>,
}

/// Copies the tensor's elements only, not the rest of a refitted buffer's storage.
impl Clone for Tensor {
    fn clone(&self) -> Self {
        Tensor {
            shape: self.shape.clone(),
            len: self.len,
            data: self.data().to_vec(),
        }
    }
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape && self.data() == other.data()
    }
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        let len = shape.iter().product();
        Tensor {
            shape: shape.to_vec(),
            len,
            data: vec![0.0; len],
        }
    }

    /// A tensor from its shape and data; `None` when the sizes disagree.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Option<Self> {
        (shape.iter().product::<usize>() == data.len()).then(|| Tensor {
            shape: shape.to_vec(),
            len: data.len(),
            data,
        })
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &[f32] {
        &self.data[..self.len]
    }

    /// The elements, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data[..self.len]
    }

    /// Consumes the tensor, returning its elements.
    pub fn into_vec(mut self) -> Vec<f32> {
        self.data.truncate(self.len);
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Same data, new shape; `None` when the element counts differ.
    pub fn reshaped(mut self, shape: &[usize]) -> Option<Self> {
        (shape.iter().product::<usize>() == self.len).then(|| {
            self.shape = shape.to_vec();
            self
        })
    }

    /// Same storage, a new shape of any element count, for a buffer that holds one value after
    /// another (the executor's). Within the storage it has ever had this neither allocates
    /// nor writes: the elements are whatever the storage held. Growing past it extends the
    /// storage with zeros.
    pub fn refit(&mut self, shape: &[usize]) {
        self.len = shape.iter().product();
        if self.len > self.data.len() {
            self.data.resize(self.len, 0.0);
        }
        self.shape.clear();
        self.shape.extend_from_slice(shape);
    }

    /// A view through which disjoint slices may be written concurrently.
    pub fn shared(&mut self) -> SharedTensor<'_> {
        SharedTensor {
            ptr: self.data.as_mut_ptr(),
            len: self.len,
            shape: self.shape.clone(),
            _life: PhantomData,
        }
    }
}

/// Which part of a layer's output one worker computes: a range of output channels and a
/// range of output rows (height). For 2-D outputs (fully connected), `channels` ranges over
/// output neurons and `rows` is `0..1`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Slice {
    /// Output channels `[start, end)`.
    pub channels: Range<usize>,
    /// Output rows `[start, end)`.
    pub rows: Range<usize>,
}

impl Slice {
    /// The whole output of a tensor with this shape.
    pub fn whole(shape: &[usize]) -> Self {
        let (c, h) = channels_rows(shape);
        Slice {
            channels: 0..c,
            rows: 0..h,
        }
    }

    /// True when the slice covers nothing.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty() || self.rows.is_empty()
    }
}

/// The (channels, rows) extent of an output shape as the slice primitive sees it:
/// NCHW → (C, H); NC → (C, 1); rank 1 → (len, 1); rank 3 (N, C, L) → (C, L).
pub fn channels_rows(shape: &[usize]) -> (usize, usize) {
    match shape.len() {
        0 => (1, 1),
        1 => (shape[0], 1),
        2 => (shape[1], 1),
        _ => (shape[1], shape[2]),
    }
}

/// A mutable view of a tensor's storage that several workers may write at once, each into
/// its own disjoint [`Slice`]. This is the "shared output tensor" of the μLayer method:
/// no worker's result is copied or merged afterwards.
///
/// Written by hand because the disjointness is a property of the execution plan (channel and
/// row ranges of an NCHW layout interleave in memory), which no borrow-splitting helper of
/// std or rayon can express.
#[derive(Debug)]
pub struct SharedTensor<'a> {
    ptr: *mut f32,
    len: usize,
    shape: Vec<usize>,
    _life: PhantomData<&'a mut [f32]>,
}

// SAFETY: the view is only handed to workers whose slices are disjoint (the executor and the
// backends guarantee this); each element is written by at most one worker.
unsafe impl Send for SharedTensor<'_> {}
unsafe impl Sync for SharedTensor<'_> {}

impl<'a> SharedTensor<'a> {
    /// The shape of the tensor being written.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A mutable sub-slice `[start, start + n)` of the storage.
    ///
    /// # Safety
    /// The caller must be the only writer (and reader) of these elements for the lifetime of
    /// the returned slice; ranges handed to concurrent workers must not overlap.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn range_mut(&self, start: usize, n: usize) -> &mut [f32] {
        assert!(
            start + n <= self.len,
            "range {start}+{n} outside tensor of {}",
            self.len
        );
        std::slice::from_raw_parts_mut(self.ptr.add(start), n)
    }

    /// The raw pointer to element 0, for kernels that write strided patterns.
    pub fn as_ptr(&self) -> *mut f32 {
        self.ptr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refit_keeps_the_storage_and_clone_copies_only_the_tensor() {
        let mut t = Tensor::from_vec(&[2, 3], (0..6).map(|i| i as f32).collect()).expect("t");
        let ptr = t.data().as_ptr();
        t.refit(&[1, 2]);
        assert_eq!(
            (t.shape(), t.data(), t.len()),
            (&[1, 2][..], &[0.0, 1.0][..], 2)
        );
        assert_eq!(t, Tensor::from_vec(&[1, 2], vec![0.0, 1.0]).expect("u"));
        let c = t.clone();
        assert_eq!((c.data.len(), c.into_vec()), (2, vec![0.0, 1.0]));
        // Back within the storage: no allocation, the elements are what the storage held.
        t.refit(&[3, 2]);
        assert_eq!(t.data().as_ptr(), ptr);
        assert_eq!(t.data(), &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        // Past it: grown, the new elements zero.
        t.refit(&[7]);
        assert_eq!(t.data()[6], 0.0);
        assert_eq!(t.clone().into_vec().len(), 7);
    }

    #[test]
    fn from_vec_checks_size() {
        assert!(Tensor::from_vec(&[2, 3], vec![0.0; 6]).is_some());
        assert!(Tensor::from_vec(&[2, 3], vec![0.0; 5]).is_none());
    }

    #[test]
    fn whole_slice_of_nchw_and_fc() {
        assert_eq!(
            Slice::whole(&[1, 8, 5, 5]),
            Slice {
                channels: 0..8,
                rows: 0..5
            }
        );
        assert_eq!(
            Slice::whole(&[1, 1000]),
            Slice {
                channels: 0..1000,
                rows: 0..1
            }
        );
    }
}
