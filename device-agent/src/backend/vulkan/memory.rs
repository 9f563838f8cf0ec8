//! Buffers: one allocation each, persistently mapped where host-visible.
use super::context::Context;
use crate::{Error, Result};
use ash::vk;
use std::sync::Arc;

/// What a buffer is for; with the memory model this picks its memory type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BufKind {
    /// Read and written by shaders. Mapped in the unified model, device-local otherwise.
    Device,
    /// Written by the CPU, copied to a `Device` buffer (staged model).
    Upload,
    /// Copied from a `Device` buffer, read by the CPU (staged model).
    Readback,
}

/// A buffer and its memory.
pub(crate) struct Buffer {
    ctx: Arc<Context>,
    pub buf: vk::Buffer,
    mem: vk::DeviceMemory,
    pub size: u64,
    /// The mapping of the whole buffer, or null when not host-visible.
    pub ptr: *mut u8,
}

// SAFETY: the handles are plain identifiers usable from any thread; the mapping is only
// accessed under the backend's run lock or before the buffer is shared (prepare).
unsafe impl Send for Buffer {}
unsafe impl Sync for Buffer {}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("size", &self.size)
            .field("mapped", &!self.ptr.is_null())
            .finish()
    }
}

impl Buffer {
    /// A buffer of at least `size` bytes (rounded up to 16).
    pub fn new(ctx: &Arc<Context>, size: u64, kind: BufKind) -> Result<Buffer> {
        let size = size.max(16).div_ceil(16) * 16;
        let d = &ctx.dev.device;
        let info = vk::BufferCreateInfo::default()
            .size(size)
            .usage(
                vk::BufferUsageFlags::STORAGE_BUFFER
                    | vk::BufferUsageFlags::TRANSFER_SRC
                    | vk::BufferUsageFlags::TRANSFER_DST,
            )
            .sharing_mode(vk::SharingMode::EXCLUSIVE);
        let err = |what: &str, e: vk::Result| {
            Error::Other(format!("Vulkan: {what} of {size} bytes failed: {e}"))
        };
        // SAFETY: valid create infos on a live device; every object is destroyed in Drop or
        // on the error paths below.
        unsafe {
            let buf = d.create_buffer(&info, None).map_err(|e| err("buffer", e))?;
            let req = d.get_buffer_memory_requirements(buf);
            let Some((type_index, host)) = ctx.memory_type(req.memory_type_bits, kind) else {
                d.destroy_buffer(buf, None);
                return Err(Error::Other(format!(
                    "Vulkan: no memory type for a {kind:?} buffer on '{}'",
                    ctx.info.name
                )));
            };
            let alloc = vk::MemoryAllocateInfo::default()
                .allocation_size(req.size)
                .memory_type_index(type_index);
            let mem = match d.allocate_memory(&alloc, None) {
                Ok(m) => m,
                Err(e) => {
                    d.destroy_buffer(buf, None);
                    return Err(err("allocation", e));
                }
            };
            if let Err(e) = d.bind_buffer_memory(buf, mem, 0) {
                d.destroy_buffer(buf, None);
                d.free_memory(mem, None);
                return Err(err("binding", e));
            }
            let ptr = if host {
                match d.map_memory(mem, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty()) {
                    Ok(p) => p as *mut u8,
                    Err(e) => {
                        d.destroy_buffer(buf, None);
                        d.free_memory(mem, None);
                        return Err(err("mapping", e));
                    }
                }
            } else {
                std::ptr::null_mut()
            };
            Ok(Buffer {
                ctx: ctx.clone(),
                buf,
                mem,
                size,
                ptr,
            })
        }
    }

    /// Writes `data` at element 0, as f16 when `f16`. The buffer must be mapped and large
    /// enough, and no GPU work may be using it.
    pub fn write_f32(&self, data: &[f32], f16: bool) {
        let esz = if f16 { 2 } else { 4 };
        assert!(!self.ptr.is_null() && (data.len() * esz) as u64 <= self.size);
        // SAFETY: the mapping covers `size` bytes (checked above), is aligned to at least
        // minMemoryMapAlignment (≥ 64), and no one else accesses it now (caller's contract).
        unsafe {
            if f16 {
                use half::slice::HalfFloatSliceExt;
                std::slice::from_raw_parts_mut(self.ptr as *mut half::f16, data.len())
                    .convert_from_f32_slice(data);
            } else {
                std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr as *mut f32, data.len());
            }
        }
    }

    /// Reads `dst.len()` elements starting at element `at` into `dst`, from f16 when `f16`.
    pub fn read_f32(&self, at: usize, dst: &mut [f32], f16: bool) {
        let esz = if f16 { 2 } else { 4 };
        assert!(!self.ptr.is_null() && ((at + dst.len()) * esz) as u64 <= self.size);
        // SAFETY: as in `write_f32`; the GPU finished writing (the caller waited its fence).
        unsafe {
            if f16 {
                use half::slice::HalfFloatSliceExt;
                std::slice::from_raw_parts((self.ptr as *const half::f16).add(at), dst.len())
                    .convert_to_f32_slice(dst);
            } else {
                std::ptr::copy_nonoverlapping(
                    (self.ptr as *const f32).add(at),
                    dst.as_mut_ptr(),
                    dst.len(),
                );
            }
        }
    }
}

impl Buffer {
    /// Writes `data` (QUInt8 codes, 4 to a shader word) at byte 0. The buffer must be mapped
    /// and large enough, and no GPU work may be using it.
    pub fn write_bytes(&self, data: &[u8]) {
        assert!(!self.ptr.is_null() && data.len() as u64 <= self.size);
        // SAFETY: as in `write_f32`: the mapping covers `size` bytes and no one else uses it.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr, data.len()) }
    }

    /// Reads `dst.len()` codes stored one per 32-bit word (the QUInt8 shaders' output)
    /// starting at element `at`, narrowing each to a byte.
    pub fn read_codes(&self, at: usize, dst: &mut [u8]) {
        assert!(!self.ptr.is_null() && ((at + dst.len()) * 4) as u64 <= self.size);
        // SAFETY: as in `read_f32`; the words are in range (checked above) and 4-aligned.
        let src =
            unsafe { std::slice::from_raw_parts((self.ptr as *const u32).add(at), dst.len()) };
        for (d, &w) in dst.iter_mut().zip(src) {
            *d = w.min(255) as u8;
        }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let d = &self.ctx.dev.device;
        // SAFETY: owners drop buffers only when no submitted work uses them (every run waits
        // for its fence before returning).
        unsafe {
            if !self.ptr.is_null() {
                d.unmap_memory(self.mem);
            }
            d.destroy_buffer(self.buf, None);
            d.free_memory(self.mem, None);
        }
    }
}

/// Makes `slot` hold a buffer of at least `size` bytes (a new one, grown by half, if not).
pub(crate) fn ensure(
    ctx: &Arc<Context>,
    slot: &mut Option<Buffer>,
    size: u64,
    kind: BufKind,
) -> Result<()> {
    if slot.as_ref().is_none_or(|b| b.size < size) {
        *slot = None;
        *slot = Some(Buffer::new(ctx, size + size / 2, kind)?);
    }
    Ok(())
}
