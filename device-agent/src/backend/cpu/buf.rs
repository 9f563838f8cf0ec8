//! A 64-byte-aligned f32 buffer (packed weights, per-thread scratch) and the per-thread scratch.
use std::cell::RefCell;

/// Elements of padding so that the start can be moved to a 64-byte boundary.
const ALIGN_F32: usize = 16;

/// A zero-initialised f32 buffer whose first element is 64-byte aligned.
#[derive(Clone, Debug, Default)]
pub struct AlignedVec {
    buf: Vec<f32>,
    off: usize,
    len: usize,
}

impl AlignedVec {
    /// `len` zeros.
    pub fn zeros(len: usize) -> Self {
        let buf = vec![0.0f32; len + ALIGN_F32];
        let addr = buf.as_ptr() as usize;
        let off = (64 - addr % 64) % 64 / 4;
        AlignedVec { buf, off, len }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements.
    pub fn as_slice(&self) -> &[f32] {
        &self.buf[self.off..self.off + self.len]
    }

    /// The elements, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.buf[self.off..self.off + self.len]
    }

    /// Pointer to element 0.
    pub fn as_ptr(&self) -> *const f32 {
        self.as_slice().as_ptr()
    }
}

thread_local! {
    static SCRATCH: RefCell<AlignedVec> = RefCell::new(AlignedVec::zeros(0));
}

/// Runs `f` with this thread's scratch buffer of at least `len` elements (contents
/// unspecified). Not re-entrant: `f` must not call `with_scratch` again.
pub fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < len {
            *s = AlignedVec::zeros(len.next_power_of_two());
        }
        f(&mut s.as_mut_slice()[..len])
    })
}
