//! The Vulkan GPU backend (ash): every op of the IR as compute shaders in F32 and F16.
//!
//! - **Device** ([`device`]): the loader is opened at run time; the device is chosen by
//!   `ULAYER_VK_DEVICE` (index or part of the name) or by type (integrated first, as a
//!   phone's GPU, then discrete, virtual, CPU such as lavapipe). `ulayer-agent devices` lists
//!   them with the features that matter here.
//! - **Memory** ([`memory`]): in the *unified* model (integrated or CPU device with
//!   DEVICE_LOCAL+HOST_VISIBLE memory) tensor buffers are mapped and the CPU writes inputs and
//!   reads output slices in place; in the *staged* model (discrete GPUs) tensors move through
//!   host staging buffers by copy commands in the same submission. `ULAYER_VK_MEMORY=unified|staged`
//!   forces one.
//! - **Shaders** (`ops/<op>/*.comp`): compiled by build.rs with naga into `f32` (F32
//!   storage and arithmetic), `f16` (F16 storage, F16 element-wise arithmetic, F32
//!   accumulators in reductions) and `f16s` (F16 storage, F32 arithmetic: devices without
//!   shaderFloat16). Devices without 16-bit storage run F16 requests in F32 (reported).
//!   Pipelines are built at prepare time through a pipeline cache saved on disk, keyed by
//!   vendor, device, driver version and the driver's cache UUID.
//! - **Slices**: every shader computes a channel range × row range of its output and writes
//!   nothing else; only the slice is read back into the shared output tensor.
//! - **Time**: each `run` brackets its dispatches with timestamps, converted to
//!   CLOCK_MONOTONIC ([`timing`]); the executor puts them in the layer's span.
//!
//! - **QUInt8** (processor-friendly quantization, [`Backend::prepare_quantized`]): the same
//!   shaders compiled with QUInt8 activations (`q8`: F16 parameters and arithmetic; `q8s`:
//!   F32 arithmetic for devices without shaderFloat16; `q8f`: no 16-bit storage either).
//!   Inputs are uploaded as the QTensor's bytes (4 codes to a shader word) and dequantized on
//!   load; weights are the model's per-channel 8-bit weights dequantized (`s_w·w_q`) and
//!   biases `s_x·s_w·b_q`, both stored as F16; outputs are requantized on store (round to
//!   nearest, saturated, the fused activation's clamp applied first). Every op of the IR runs
//!   this way, including those the CPU runs as F32 islands (BatchNorm, LRN, Softmax, MatMul);
//!   a Constant is quantized once at prepare time and copied by the host.
//! - **Transfers**: in the staged model each layer's upload and download copies are bracketed
//!   by their own timestamps; their GPU time is reported by [`Backend::last_transfer_ns`]
//!   and lands in the trace's `LayerSpan::transfer_ns` (0 in the unified, zero-copy model).
use super::{Backend, Precision, Processor};
use crate::exec::trace::monotonic_ns;
use crate::graph::Node;
use crate::ops::Op;
use crate::quant::{QParams, QTensor, QuantNode, SharedQTensor};
use crate::tensor::{SharedTensor, Slice, Tensor};
use crate::{Error, Result};
use ash::vk;
use context::{Context, BINDINGS, PUSH_BYTES};
use memory::{ensure, BufKind, Buffer};
use std::cell::Cell;
use std::sync::{Arc, Mutex};

mod context;
pub mod device;
mod memory;
mod network;
pub mod shaders;
pub mod timing;

pub use device::{list_devices, DeviceInfo, MemoryModel};
pub use network::{records_whole, GpuNetwork};
pub use timing::Calibration;

/// A buffer a dispatch binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bind {
    /// The `i`-th input of the node.
    Input(usize),
    /// The output tensor.
    Output,
    /// The `i`-th parameter buffer of the prepared node (weights, bias...).
    Param(usize),
    /// Nothing (a dummy buffer).
    None,
}

/// One compute dispatch: a shader, its four bindings, push constants and work-group counts.
#[derive(Clone, Debug)]
pub(crate) struct Dispatch {
    pub shader: &'static str,
    pub binds: [Bind; BINDINGS as usize],
    pub push: Vec<u32>,
    pub groups: [u32; 3],
}

/// An op prepared for the GPU: which dispatches compute a slice.
pub(crate) trait VkKernel: Send + Sync + std::fmt::Debug {
    /// The shaders it may dispatch (their pipelines are built at prepare time).
    fn shaders(&self) -> Vec<&'static str>;
    /// Appends the dispatches computing `slice` (non-empty, inside the output) to `out`.
    fn dispatches(&self, slice: &Slice, out: &mut Vec<Dispatch>) -> Result<()>;
}

/// What an op's `vulkan.rs` prepares: the kernel and the parameter tensors to upload.
pub(crate) type Prepared = (Box<dyn VkKernel>, Vec<Vec<f32>>);

/// Packs an f32 into a push-constant word.
pub(crate) fn pf(x: f32) -> u32 {
    x.to_bits()
}

/// Packs a count into a push-constant word (errors past u32).
pub(crate) fn pu(node: &str, x: usize) -> Result<u32> {
    u32::try_from(x).map_err(|_| {
        Error::node(
            node,
            format!("{x} is too large for the GPU (32-bit indices)"),
        )
    })
}

/// Work groups for `total` items at `per_group` each on one axis; shaders loop over the rest.
pub(crate) fn groups_1d(total: usize, per_group: usize) -> [u32; 3] {
    [total.div_ceil(per_group).clamp(1, 65535) as u32, 1, 1]
}

/// Work groups for `total` items at one group each (x then y); shaders loop over the rest.
pub(crate) fn groups_items(total: usize) -> [u32; 3] {
    let x = total.clamp(1, 65535);
    [x as u32, total.div_ceil(x).clamp(1, 65535) as u32, 1]
}

/// The output of a slice seen as `[outer, C, H, inner]` (same view as the CPU's `Geom`).
pub(crate) fn view4(shape: &[usize]) -> [usize; 4] {
    match shape.len() {
        0 => [1, 1, 1, 1],
        1 => [1, shape[0], 1, 1],
        2 => [shape[0], shape[1], 1, 1],
        3 => [shape[0], shape[1], shape[2], 1],
        _ => [shape[0], shape[1], shape[2], shape[3..].iter().product()],
    }
}

/// Push constants `[outer, C, H, inner, c0, c1, r0, r1]` of an output slice.
pub(crate) fn slice_push(node: &str, shape: &[usize], s: &Slice) -> Result<Vec<u32>> {
    let v = view4(shape);
    [
        v[0],
        v[1],
        v[2],
        v[3],
        s.channels.start,
        s.channels.end,
        s.rows.start,
        s.rows.end,
    ]
    .iter()
    .map(|&x| pu(node, x))
    .collect()
}

/// Elements of an output slice.
pub(crate) fn slice_len(shape: &[usize], s: &Slice) -> usize {
    let v = view4(shape);
    v[0] * s.channels.len() * s.rows.len() * v[3]
}

/// Timestamp queries of a run: 0 before the uploads (staged), 1 and 2 around the dispatches,
/// 3 after the downloads (staged).
const QUERIES: u32 = 4;

/// The inputs of a run: F32/F16 tensors or QUInt8 ones.
#[derive(Clone, Copy)]
enum Ins<'a> {
    F32(&'a [&'a Tensor]),
    Q8(&'a [&'a QTensor]),
}

impl Ins<'_> {
    fn len(&self) -> usize {
        match self {
            Ins::F32(v) => v.len(),
            Ins::Q8(v) => v.len(),
        }
    }
}

/// The output of a run.
#[derive(Clone, Copy)]
enum Outs<'a, 'b> {
    F32(&'a SharedTensor<'b>),
    Q8(&'a SharedQTensor<'b>),
}

impl Outs<'_, '_> {
    fn len(&self) -> usize {
        match self {
            Outs::F32(o) => o.len(),
            Outs::Q8(o) => o.len(),
        }
    }
}

/// The quantization a node prepared for QUInt8 expects.
#[derive(Clone, Debug)]
struct QuantIo {
    inputs: Vec<QParams>,
    output: QParams,
    /// A Constant's codes (written by the host).
    constant: Option<Vec<u8>>,
}

impl QuantIo {
    /// The QUInt8 push-constant words (`QP` in common.glsl) of a dispatch with `binds`: the
    /// quantization of the input at binding 0, of a second input at binding 2 or 3, and of
    /// the output.
    fn push_words(&self, binds: &[Bind]) -> [u32; 6] {
        let of = |b: Option<&Bind>| match b {
            Some(Bind::Input(k)) => self.inputs.get(*k).copied(),
            _ => None,
        };
        let a = of(binds.first()).unwrap_or(self.output);
        let b = of(binds.get(2)).or_else(|| of(binds.get(3))).unwrap_or(a);
        let y = self.output;
        let z = |q: QParams| pf(f32::from(q.zero_point));
        [pf(a.scale), z(a), pf(b.scale), z(b), pf(y.scale), z(y)]
    }
}

/// Options of [`VulkanBackend::with_options`].
#[derive(Clone, Debug, Default)]
pub struct VulkanOptions {
    /// Device index or part of its name; `None`: `ULAYER_VK_DEVICE`, else by type.
    pub device: Option<String>,
    /// Memory model; `None`: `ULAYER_VK_MEMORY`, else the device's natural one.
    pub memory: Option<MemoryModel>,
    /// Convolution shaders; `None`: `ULAYER_VK_CONV` (`tiled`, `small` or `direct`), else
    /// [`ConvShaders::SmallTiles`] on GPUs and [`ConvShaders::Direct`] on CPU devices.
    pub conv: Option<ConvShaders>,
    /// How long a wait for the GPU polls its fence (yielding the core between polls) before
    /// it blocks in the driver; `None`: `ULAYER_VK_FENCE_POLL_US` (microseconds), else 0
    /// (block at once).
    pub fence_poll: Option<std::time::Duration>,
}

/// Which shaders compute (non-depthwise) convolutions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvShaders {
    /// Implicit matrix products on 64×64 output tiles staged in shared memory (`conv2d`,
    /// `conv2d_1x1`).
    Tiled,
    /// As `Tiled`, and 1×1 outputs with fewer than 64 such tiles on 8×8 tiles with K split
    /// four ways (`conv2d_pw_small`): late layers keep a large GPU busy. GPUs' default.
    SmallTiles,
    /// Barrier-free, shared-memory-free shaders, 8 channels of one pixel per invocation
    /// (`conv2d_direct`, `conv2d_pw_direct`): on a CPU Vulkan (lavapipe) invocations are SIMD
    /// lanes and barriers are coroutine switches. CPU devices' default.
    Direct,
}

impl ConvShaders {
    /// From its name in `ULAYER_VK_CONV`.
    pub fn parse(s: &str) -> Result<ConvShaders> {
        match s {
            "tiled" => Ok(ConvShaders::Tiled),
            "small" => Ok(ConvShaders::SmallTiles),
            "direct" => Ok(ConvShaders::Direct),
            other => Err(Error::Other(format!(
                "ULAYER_VK_CONV must be 'tiled', 'small' or 'direct', not '{other}'"
            ))),
        }
    }
}

/// A node prepared for the GPU.
#[derive(Debug)]
pub struct VulkanPrepared {
    node: String,
    kernel: Box<dyn VkKernel>,
    params: Vec<Buffer>,
    inputs: Vec<Vec<usize>>,
    output: Vec<usize>,
    sliceable: bool,
    /// Shader precision: "f32", "f16" or "f16s".
    variant: &'static str,
    /// Tensors (parameters; activations unless quantized) stored as f16.
    f16: bool,
    /// QUInt8 execution: the quantization of the inputs and output.
    quant: Option<QuantIo>,
}

impl VulkanPrepared {
    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The shader precision in use: "f32", "f16" (F16 storage and arithmetic), "f16s"
    /// (F16 storage, F32 arithmetic), or for QUInt8 "q8" (F16 arithmetic), "q8s" (F32
    /// arithmetic, F16 parameters), "q8f" (F32).
    pub fn variant(&self) -> &'static str {
        self.variant
    }
}

/// Per-submission state, used under the backend's lock.
struct RunState {
    ctx: Arc<Context>,
    pool: vk::CommandPool,
    cmd: vk::CommandBuffer,
    fence: vk::Fence,
    dpool: vk::DescriptorPool,
    dpool_sets: u32,
    queries: vk::QueryPool,
    inputs: Vec<Option<Buffer>>,
    in_staging: Vec<Option<Buffer>>,
    out: Option<Buffer>,
    out_staging: Option<Buffer>,
    dummy: Buffer,
    calib: Option<Calibration>,
    dispatches: Vec<Dispatch>,
    /// How long a wait polls the fence before it blocks (see [`VulkanOptions::fence_poll`]).
    fence_poll: std::time::Duration,
}

impl Drop for RunState {
    fn drop(&mut self) {
        let d = &self.ctx.dev.device;
        // SAFETY: every submission was waited for; these objects belong to this state.
        unsafe {
            let _ = d.queue_wait_idle(self.ctx.dev.queue);
            d.destroy_query_pool(self.queries, None);
            d.destroy_descriptor_pool(self.dpool, None);
            d.destroy_fence(self.fence, None);
            d.destroy_command_pool(self.pool, None);
        }
    }
}

fn vk_err(what: &str) -> impl Fn(vk::Result) -> Error + '_ {
    move |e| Error::Other(format!("Vulkan: {what}: {e}"))
}

fn descriptor_pool(d: &ash::Device, sets: u32) -> Result<vk::DescriptorPool> {
    let sizes = [vk::DescriptorPoolSize::default()
        .ty(vk::DescriptorType::STORAGE_BUFFER)
        .descriptor_count(sets * BINDINGS)];
    // SAFETY: valid create info on a live device.
    unsafe {
        d.create_descriptor_pool(
            &vk::DescriptorPoolCreateInfo::default()
                .max_sets(sets)
                .pool_sizes(&sizes),
            None,
        )
    }
    .map_err(vk_err("descriptor pool"))
}

impl RunState {
    fn new(ctx: &Arc<Context>, fence_poll: std::time::Duration) -> Result<RunState> {
        let d = &ctx.dev.device;
        // SAFETY: valid create infos on a live device; destroyed in Drop.
        unsafe {
            let pool = d
                .create_command_pool(
                    &vk::CommandPoolCreateInfo::default()
                        .queue_family_index(ctx.dev.queue_family)
                        .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER),
                    None,
                )
                .map_err(vk_err("command pool"))?;
            let cmd = d
                .allocate_command_buffers(
                    &vk::CommandBufferAllocateInfo::default()
                        .command_pool(pool)
                        .level(vk::CommandBufferLevel::PRIMARY)
                        .command_buffer_count(1),
                )
                .map_err(vk_err("command buffer"))?[0];
            let fence = d
                .create_fence(&vk::FenceCreateInfo::default(), None)
                .map_err(vk_err("fence"))?;
            let queries = d
                .create_query_pool(
                    &vk::QueryPoolCreateInfo::default()
                        .query_type(vk::QueryType::TIMESTAMP)
                        .query_count(QUERIES),
                    None,
                )
                .map_err(vk_err("query pool"))?;
            let dpool_sets = 64;
            let dpool = descriptor_pool(d, dpool_sets)?;
            let mut st = RunState {
                ctx: ctx.clone(),
                pool,
                cmd,
                fence,
                dpool,
                dpool_sets,
                queries,
                inputs: Vec::new(),
                in_staging: Vec::new(),
                out: None,
                out_staging: None,
                dummy: Buffer::new(ctx, 16, BufKind::Device)?,
                calib: None,
                dispatches: Vec::new(),
                fence_poll,
            };
            st.calibrate()?;
            Ok(st)
        }
    }

    fn begin(&self) -> Result<()> {
        // SAFETY: the command buffer is not in use (every submission is waited for).
        unsafe {
            self.ctx
                .dev
                .device
                .begin_command_buffer(
                    self.cmd,
                    &vk::CommandBufferBeginInfo::default()
                        .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT),
                )
                .map_err(vk_err("begin command buffer"))
        }
    }

    /// Ends, submits and waits for the command buffer; returns the host bracket.
    fn submit_wait(&self) -> Result<(u64, u64)> {
        let d = &self.ctx.dev.device;
        // SAFETY: the command buffer was recorded by `begin` .. here; the fence is unsignalled.
        unsafe {
            d.end_command_buffer(self.cmd)
                .map_err(vk_err("end command buffer"))?;
            let cmds = [self.cmd];
            let submit = [vk::SubmitInfo::default().command_buffers(&cmds)];
            let t0 = monotonic_ns();
            d.queue_submit(self.ctx.dev.queue, &submit, self.fence)
                .map_err(vk_err("submit"))?;
            if !self.fence_poll.is_zero() {
                let t = std::time::Instant::now();
                while !d
                    .get_fence_status(self.fence)
                    .map_err(vk_err("fence status"))?
                    && t.elapsed() < self.fence_poll
                {
                    std::thread::yield_now();
                }
            }
            let waited = d.wait_for_fences(&[self.fence], true, u64::MAX);
            let t1 = monotonic_ns();
            waited.map_err(vk_err("wait"))?;
            d.reset_fences(&[self.fence])
                .map_err(vk_err("reset fence"))?;
            Ok((t0, t1))
        }
    }

    /// Reads queries `first..first + ts.len()`.
    fn timestamps(&self, first: u32, ts: &mut [u64]) -> Result<()> {
        // SAFETY: the queries were written by the submission that was waited for.
        unsafe {
            self.ctx
                .dev
                .device
                .get_query_pool_results(
                    self.queries,
                    first,
                    ts,
                    vk::QueryResultFlags::TYPE_64 | vk::QueryResultFlags::WAIT,
                )
                .map_err(vk_err("timestamps"))?;
        }
        Ok(())
    }

    /// (Re)computes the clock calibration (see [`timing`]).
    fn calibrate(&mut self) -> Result<()> {
        let info = &self.ctx.info;
        if info.timestamp_period_ns <= 0.0 || self.ctx.dev.timestamp_bits == 0 {
            self.calib = None;
            return Ok(());
        }
        let period = info.timestamp_period_ns as f64;
        let bits = self.ctx.dev.timestamp_bits;
        if let Some(f) = self.ctx.dev.calibrate {
            let infos = [
                vk::CalibratedTimestampInfoKHR::default().time_domain(vk::TimeDomainKHR::DEVICE),
                vk::CalibratedTimestampInfoKHR::default()
                    .time_domain(vk::TimeDomainKHR::CLOCK_MONOTONIC),
            ];
            let mut ts = [0u64; 2];
            let mut dev = 0u64;
            // SAFETY: the entry point belongs to this device; arrays sized as declared.
            let r = unsafe {
                f(
                    self.ctx.dev.device.handle(),
                    2,
                    infos.as_ptr(),
                    ts.as_mut_ptr(),
                    &mut dev,
                )
            };
            if r == vk::Result::SUCCESS {
                self.calib = Some(Calibration::from_pair(
                    ts[0],
                    ts[1],
                    period,
                    bits,
                    dev,
                    "calibrated-timestamps",
                ));
                return Ok(());
            }
        }
        let d = &self.ctx.dev.device;
        let mut samples = Vec::with_capacity(8);
        for _ in 0..8 {
            self.begin()?;
            // SAFETY: recording into the command buffer begun above.
            unsafe {
                d.cmd_reset_query_pool(self.cmd, self.queries, 0, 2);
                d.cmd_write_timestamp(
                    self.cmd,
                    vk::PipelineStageFlags::TOP_OF_PIPE,
                    self.queries,
                    0,
                );
                d.cmd_write_timestamp(
                    self.cmd,
                    vk::PipelineStageFlags::BOTTOM_OF_PIPE,
                    self.queries,
                    1,
                );
            }
            let (a, b) = self.submit_wait()?;
            let mut ts = [0u64; 2];
            self.timestamps(0, &mut ts)?;
            samples.push((a, ts[0], b));
        }
        self.calib = Calibration::from_brackets(&samples, period, bits);
        Ok(())
    }

    /// Uploads `params` into device buffers (one submission for the staged model).
    fn upload_params(&mut self, params: &[Vec<f32>], f16: bool) -> Result<Vec<Buffer>> {
        let ctx = self.ctx.clone();
        let esz = if f16 { 2 } else { 4 };
        let mut bufs = Vec::with_capacity(params.len());
        let mut staging = Vec::new();
        for p in params {
            let b = Buffer::new(&ctx, (p.len() * esz) as u64, BufKind::Device)?;
            if b.ptr.is_null() {
                let s = Buffer::new(&ctx, (p.len() * esz) as u64, BufKind::Upload)?;
                s.write_f32(p, f16);
                staging.push((s, b.buf, (p.len() * esz) as u64));
            } else {
                b.write_f32(p, f16);
            }
            bufs.push(b);
        }
        if !staging.is_empty() {
            self.begin()?;
            let d = &ctx.dev.device;
            for (s, dst, n) in &staging {
                // SAFETY: recording; both buffers are alive until the wait below.
                unsafe {
                    d.cmd_copy_buffer(
                        self.cmd,
                        s.buf,
                        *dst,
                        &[vk::BufferCopy::default().size((*n).max(1))],
                    );
                }
            }
            self.submit_wait()?;
        }
        Ok(bufs)
    }

    /// Runs the dispatches of `p` computing `slice` on `inputs`, reading the slice back into
    /// `out`. Returns the span of the dispatches on CLOCK_MONOTONIC and the GPU time of the
    /// staged model's transfer commands (0 in the unified model).
    fn execute(
        &mut self,
        p: &VulkanPrepared,
        inputs: Ins<'_>,
        out: Outs<'_, '_>,
        slice: &Slice,
    ) -> Result<((u64, u64), u64)> {
        let ctx = self.ctx.clone();
        let d = &ctx.dev.device;
        let esz = if p.f16 { 2u64 } else { 4 };
        let staged = ctx.model == MemoryModel::Staged;
        if self
            .calib
            .is_some_and(|c| monotonic_ns().saturating_sub(c.at_ns) > timing::REFRESH_NS)
        {
            self.calibrate()?;
        }
        let n_in = inputs.len();
        if self.inputs.len() < n_in {
            self.inputs.resize_with(n_in, || None);
            self.in_staging.resize_with(n_in, || None);
        }
        let mut in_bytes = Vec::with_capacity(n_in);
        for k in 0..n_in {
            let bytes = match inputs {
                Ins::F32(v) => v[k].len() as u64 * esz,
                Ins::Q8(v) => v[k].len() as u64,
            };
            ensure(&ctx, &mut self.inputs[k], bytes, BufKind::Device)?;
            let target = if staged {
                ensure(&ctx, &mut self.in_staging[k], bytes, BufKind::Upload)?;
                self.in_staging[k].as_ref()
            } else {
                self.inputs[k].as_ref()
            }
            .expect("ensured");
            match inputs {
                Ins::F32(v) => target.write_f32(v[k].data(), p.f16),
                Ins::Q8(v) => target.write_bytes(v[k].data()),
            }
            in_bytes.push(bytes);
        }
        // QUInt8 outputs hold one code per 32-bit word on the GPU (see common.glsl).
        let oesz = if p.quant.is_some() { 4 } else { esz };
        let out_bytes = out.len() as u64 * oesz;
        ensure(&ctx, &mut self.out, out_bytes, BufKind::Device)?;
        if staged {
            ensure(&ctx, &mut self.out_staging, out_bytes, BufKind::Readback)?;
        }
        // Contiguous runs of the slice, adjacent ones merged.
        let g = crate::backend::cpu::Geom::of(&p.output);
        let mut runs: Vec<(usize, usize)> = Vec::new();
        g.spans(slice, |off, len| match runs.last_mut() {
            Some((o, l)) if *o + *l == off => *l += len,
            _ => runs.push((off, len)),
        });
        let mut dispatches = std::mem::take(&mut self.dispatches);
        dispatches.clear();
        p.kernel.dispatches(slice, &mut dispatches)?;
        if dispatches.len() as u32 > self.dpool_sets {
            let sets = (dispatches.len() as u32).next_power_of_two();
            let pool = descriptor_pool(d, sets)?;
            // SAFETY: no set of the old pool is in use (every submission was waited for).
            unsafe { d.destroy_descriptor_pool(self.dpool, None) };
            self.dpool = pool;
            self.dpool_sets = sets;
        }
        self.begin()?;
        let buffer_of = |b: Bind| -> Result<vk::Buffer> {
            match b {
                Bind::Input(k) => self.inputs.get(k).and_then(|b| b.as_ref()).map(|b| b.buf),
                Bind::Output => self.out.as_ref().map(|b| b.buf),
                Bind::Param(k) => p.params.get(k).map(|b| b.buf),
                Bind::None => Some(self.dummy.buf),
            }
            .ok_or_else(|| Error::node(&p.node, format!("internal: no buffer for {b:?}")))
        };
        let cmd = self.cmd;
        let result = (|| -> Result<()> {
            // SAFETY: recording into the begun command buffer; every bound buffer stays
            // alive until the submission is waited for below.
            unsafe {
                d.cmd_reset_query_pool(cmd, self.queries, 0, QUERIES);
                if staged {
                    d.cmd_write_timestamp(
                        cmd,
                        vk::PipelineStageFlags::TOP_OF_PIPE,
                        self.queries,
                        0,
                    );
                    for (k, &bytes) in in_bytes.iter().enumerate() {
                        let (s, dst) = (self.in_staging[k].as_ref(), self.inputs[k].as_ref());
                        let (Some(s), Some(dst)) = (s, dst) else {
                            continue;
                        };
                        let region = vk::BufferCopy::default().size(bytes.max(1));
                        d.cmd_copy_buffer(cmd, s.buf, dst.buf, &[region]);
                    }
                    barrier(
                        d,
                        cmd,
                        vk::AccessFlags::TRANSFER_WRITE,
                        vk::PipelineStageFlags::TRANSFER,
                        vk::AccessFlags::SHADER_READ,
                        vk::PipelineStageFlags::COMPUTE_SHADER,
                    );
                }
                d.cmd_write_timestamp(cmd, vk::PipelineStageFlags::ALL_COMMANDS, self.queries, 1);
                let sets = d
                    .allocate_descriptor_sets(
                        &vk::DescriptorSetAllocateInfo::default()
                            .descriptor_pool(self.dpool)
                            .set_layouts(&vec![ctx.set_layout; dispatches.len()]),
                    )
                    .map_err(vk_err("descriptor sets"))?;
                for (dsp, &set) in dispatches.iter().zip(&sets) {
                    let words = match &p.quant {
                        Some(q) => q.push_words(&dsp.binds).to_vec(),
                        None => Vec::new(),
                    };
                    record_dispatch(&ctx, cmd, set, dsp, p, &words, buffer_of)?;
                }
                d.cmd_write_timestamp(cmd, vk::PipelineStageFlags::ALL_COMMANDS, self.queries, 2);
                if staged {
                    barrier(
                        d,
                        cmd,
                        vk::AccessFlags::SHADER_WRITE,
                        vk::PipelineStageFlags::COMPUTE_SHADER,
                        vk::AccessFlags::TRANSFER_READ,
                        vk::PipelineStageFlags::TRANSFER,
                    );
                    let regions: Vec<_> = runs
                        .iter()
                        .map(|&(off, len)| {
                            vk::BufferCopy::default()
                                .src_offset(off as u64 * oesz)
                                .dst_offset(off as u64 * oesz)
                                .size(len as u64 * oesz)
                        })
                        .collect();
                    let (src, dst) = (
                        self.out.as_ref().expect("ensured"),
                        self.out_staging.as_ref().expect("ensured"),
                    );
                    d.cmd_copy_buffer(cmd, src.buf, dst.buf, &regions);
                    d.cmd_write_timestamp(
                        cmd,
                        vk::PipelineStageFlags::BOTTOM_OF_PIPE,
                        self.queries,
                        3,
                    );
                    barrier(
                        d,
                        cmd,
                        vk::AccessFlags::TRANSFER_WRITE,
                        vk::PipelineStageFlags::TRANSFER,
                        vk::AccessFlags::HOST_READ,
                        vk::PipelineStageFlags::HOST,
                    );
                } else {
                    barrier(
                        d,
                        cmd,
                        vk::AccessFlags::SHADER_WRITE,
                        vk::PipelineStageFlags::COMPUTE_SHADER,
                        vk::AccessFlags::HOST_READ,
                        vk::PipelineStageFlags::HOST,
                    );
                }
            }
            Ok(())
        })();
        let bracket = match result {
            Ok(()) => self.submit_wait(),
            Err(e) => {
                // SAFETY: abandon the recording; the buffer is reset at the next begin.
                unsafe {
                    let _ = d.end_command_buffer(cmd);
                }
                Err(e)
            }
        };
        // SAFETY: the submission (if any) is complete; the sets are no longer used.
        unsafe {
            let _ = d.reset_descriptor_pool(self.dpool, vk::DescriptorPoolResetFlags::empty());
        }
        self.dispatches = dispatches;
        let (t0, t1) = bracket?;
        let readback = if staged {
            self.out_staging.as_ref()
        } else {
            self.out.as_ref()
        };
        let readback = readback.expect("ensured");
        for &(off, len) in &runs {
            match out {
                Outs::F32(o) => {
                    // SAFETY: the caller of `run` owns `slice` of `out`; runs lie inside it.
                    let dst = unsafe { o.range_mut(off, len) };
                    readback.read_f32(off, dst, p.f16);
                }
                Outs::Q8(o) => {
                    // SAFETY: as above, for `run_quantized`.
                    let dst = unsafe { o.range_mut(off, len) };
                    readback.read_codes(off, dst);
                }
            }
        }
        Ok(match self.calib {
            Some(c) => {
                let mut ts = [0u64; QUERIES as usize];
                if staged {
                    self.timestamps(0, &mut ts)?;
                } else {
                    self.timestamps(1, &mut ts[1..3])?;
                }
                let ticks = |a: u64, b: u64| b.wrapping_sub(a) & c.mask;
                let transfer = if staged {
                    ((ticks(ts[0], ts[1]) + ticks(ts[2], ts[3])) as f64 * c.period_ns) as u64
                } else {
                    0
                };
                (c.span(ts[1], ts[2], t0, t1), transfer)
            }
            None => ((t0, t1), 0),
        })
    }
}

/// Records one dispatch of `p` into `cmd`: writes descriptor set `set` (the buffers
/// `buffer_of` gives for its bindings), binds its pipeline at `p`'s shader precision, pushes its
/// constants followed by `extra` words (QUInt8 quantization), and dispatches. Shared by the
/// per-layer path and the whole-network recording ([`GpuNetwork`]).
///
/// # Safety
/// `cmd` must be recording; `set` must not be in use by pending work; the buffers must outlive
/// the command buffer's execution.
unsafe fn record_dispatch(
    ctx: &Context,
    cmd: vk::CommandBuffer,
    set: vk::DescriptorSet,
    dsp: &Dispatch,
    p: &VulkanPrepared,
    extra: &[u32],
    buffer_of: impl Fn(Bind) -> Result<vk::Buffer>,
) -> Result<()> {
    let d = &ctx.dev.device;
    let infos: Vec<[vk::DescriptorBufferInfo; 1]> = dsp
        .binds
        .iter()
        .map(|&b| {
            Ok([vk::DescriptorBufferInfo::default()
                .buffer(buffer_of(b)?)
                .range(vk::WHOLE_SIZE)])
        })
        .collect::<Result<_>>()?;
    let writes: Vec<_> = infos
        .iter()
        .enumerate()
        .map(|(i, info)| {
            vk::WriteDescriptorSet::default()
                .dst_set(set)
                .dst_binding(i as u32)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .buffer_info(info)
        })
        .collect();
    d.update_descriptor_sets(&writes, &[]);
    let pipeline = ctx.pipeline(dsp.shader, p.variant)?;
    d.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::COMPUTE, pipeline);
    d.cmd_bind_descriptor_sets(
        cmd,
        vk::PipelineBindPoint::COMPUTE,
        ctx.layout,
        0,
        &[set],
        &[],
    );
    let mut push = [0u8; PUSH_BYTES as usize];
    if (dsp.push.len() + extra.len()) * 4 > push.len() {
        return Err(Error::node(&p.node, "internal: push constants too long"));
    }
    for (i, w) in dsp.push.iter().chain(extra).enumerate() {
        push[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    d.cmd_push_constants(cmd, ctx.layout, vk::ShaderStageFlags::COMPUTE, 0, &push);
    d.cmd_dispatch(cmd, dsp.groups[0], dsp.groups[1], dsp.groups[2]);
    Ok(())
}

/// A global memory barrier.
///
/// # Safety
/// `cmd` must be recording.
unsafe fn barrier(
    d: &ash::Device,
    cmd: vk::CommandBuffer,
    src: vk::AccessFlags,
    src_stage: vk::PipelineStageFlags,
    dst: vk::AccessFlags,
    dst_stage: vk::PipelineStageFlags,
) {
    let b = [vk::MemoryBarrier::default()
        .src_access_mask(src)
        .dst_access_mask(dst)];
    d.cmd_pipeline_barrier(
        cmd,
        src_stage,
        dst_stage,
        vk::DependencyFlags::empty(),
        &b,
        &[],
        &[],
    );
}

thread_local! {
    /// The span of the last `run` on this thread (read by the executor).
    static LAST_SPAN: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
    /// The GPU time of the last `run`'s transfer commands on this thread.
    static LAST_TRANSFER: Cell<u64> = const { Cell::new(0) };
}

/// The Vulkan processor backend.
pub struct VulkanBackend {
    ctx: Arc<Context>,
    state: Mutex<RunState>,
    conv: ConvShaders,
}

impl std::fmt::Debug for VulkanBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VulkanBackend")
            .field("device", &self.ctx.info.name)
            .field("memory", &self.ctx.model)
            .finish()
    }
}

impl VulkanBackend {
    /// The backend on the device chosen by `ULAYER_VK_DEVICE` or by type, with the memory
    /// model of `ULAYER_VK_MEMORY` or the device's own. Errors clearly when there is no
    /// Vulkan loader or device.
    pub fn new() -> Result<VulkanBackend> {
        VulkanBackend::with_options(VulkanOptions::default())
    }

    /// The backend with explicit options (environment variables fill what is `None`).
    pub fn with_options(opts: VulkanOptions) -> Result<VulkanBackend> {
        let device = opts
            .device
            .or_else(|| std::env::var("ULAYER_VK_DEVICE").ok());
        let memory = match opts.memory {
            Some(m) => Some(m),
            None => match std::env::var("ULAYER_VK_MEMORY").ok().as_deref() {
                None | Some("") => None,
                Some("unified") => Some(MemoryModel::Unified),
                Some("staged") => Some(MemoryModel::Staged),
                Some(other) => {
                    return Err(Error::Other(format!(
                        "ULAYER_VK_MEMORY must be 'unified' or 'staged', not '{other}'"
                    )))
                }
            },
        };
        let fence_poll = match opts.fence_poll {
            Some(d) => d,
            None => match std::env::var("ULAYER_VK_FENCE_POLL_US").ok().as_deref() {
                None | Some("") => std::time::Duration::ZERO,
                Some(v) => std::time::Duration::from_micros(v.trim().parse().map_err(|_| {
                    Error::Other(format!(
                        "ULAYER_VK_FENCE_POLL_US must be a whole number of microseconds, not '{v}'"
                    ))
                })?),
            },
        };
        let ctx = Arc::new(Context::new(device.as_deref(), memory)?);
        let state = RunState::new(&ctx, fence_poll)?;
        let conv = match opts.conv {
            Some(c) => c,
            None => match std::env::var("ULAYER_VK_CONV").ok().as_deref() {
                None | Some("") if ctx.info.device_type == "cpu" => ConvShaders::Direct,
                None | Some("") => ConvShaders::SmallTiles,
                Some(other) => ConvShaders::parse(other)?,
            },
        };
        Ok(VulkanBackend {
            ctx,
            state: Mutex::new(state),
            conv,
        })
    }

    /// The device in use.
    pub fn info(&self) -> &DeviceInfo {
        &self.ctx.info
    }

    /// The convolution shaders in use (see [`VulkanOptions::conv`]).
    pub fn conv_shaders(&self) -> ConvShaders {
        self.conv
    }

    /// The memory model in use.
    pub fn memory_model(&self) -> MemoryModel {
        self.ctx.model
    }

    /// True when the CPU reads and writes the GPU's tensor buffers in place (unified model).
    pub fn zero_copy(&self) -> bool {
        self.ctx.model == MemoryModel::Unified
    }

    /// A sentence on how tensors move (for reports).
    pub fn memory_description(&self) -> &'static str {
        self.ctx.memory_description()
    }

    /// The current clock calibration (None when the queue has no timestamps).
    pub fn calibration(&self) -> Option<Calibration> {
        self.lock().calib
    }

    /// The shader precision `precision` runs with on this device.
    pub fn variant(&self, precision: Precision) -> Result<&'static str> {
        let i = &self.ctx.info;
        match precision {
            Precision::F32 => Ok("f32"),
            Precision::F16 if i.storage_16bit && i.shader_float16 => Ok("f16"),
            Precision::F16 if i.storage_16bit => Ok("f16s"),
            Precision::F16 => Ok("f32"),
            Precision::Quint8 if i.storage_16bit && i.shader_float16 => Ok("q8"),
            Precision::Quint8 if i.storage_16bit => Ok("q8s"),
            Precision::Quint8 => Ok("q8f"),
        }
    }

    /// Saves the pipeline cache now (it is also saved when the backend is dropped).
    pub fn save_pipeline_cache(&self) {
        self.ctx.save_pipeline_cache();
    }

    /// The clock calibration, measured again first when older than [`timing::REFRESH_NS`].
    pub(crate) fn fresh_calibration(&self) -> Result<Option<Calibration>> {
        let mut st = self.lock();
        if st
            .calib
            .is_some_and(|c| monotonic_ns().saturating_sub(c.at_ns) > timing::REFRESH_NS)
        {
            st.calibrate()?;
        }
        Ok(st.calib)
    }

    pub(crate) fn ctx(&self) -> &Arc<Context> {
        &self.ctx
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backend for VulkanBackend {
    type Prepared = VulkanPrepared;

    fn processor(&self) -> Processor {
        Processor::Gpu
    }

    fn prepare(
        &self,
        node: &Node,
        input_shapes: &[&[usize]],
        output_shape: &[usize],
        precision: Precision,
    ) -> Result<VulkanPrepared> {
        let name = node.name.as_str();
        if precision == Precision::Quint8 {
            return Err(Error::node(
                name,
                "QUInt8 needs the model's quantization: prepare with `prepare_quantized`",
            ));
        }
        let variant = self
            .variant(precision)
            .map_err(|e| Error::node(name, e.to_string()))?;
        let expected = node.op.output_shape(name, input_shapes)?;
        if expected != output_shape {
            return Err(Error::node(
                name,
                format!("output shape {output_shape:?} given, the op produces {expected:?}"),
            ));
        }
        let (kernel, params) = prepare_op(name, &node.op, input_shapes, output_shape, self.conv)?;
        for s in kernel.shaders() {
            self.ctx
                .pipeline(s, variant)
                .map_err(|e| Error::node(name, e.to_string()))?;
        }
        let f16 = variant != "f32";
        let params = self.lock().upload_params(&params, f16)?;
        Ok(VulkanPrepared {
            node: node.name.clone(),
            kernel,
            params,
            inputs: input_shapes.iter().map(|s| s.to_vec()).collect(),
            output: output_shape.to_vec(),
            sliceable: node.op.sliceable(),
            variant,
            f16,
            quant: None,
        })
    }

    fn run(
        &self,
        p: &VulkanPrepared,
        inputs: &[&Tensor],
        out: &SharedTensor<'_>,
        slice: &Slice,
    ) -> Result<()> {
        let node = p.node.as_str();
        super::check_run_shapes(node, inputs, &p.inputs, out, &p.output)?;
        crate::backend::cpu::check_slice(node, &p.output, slice, p.sliceable)?;
        if p.quant.is_some() {
            return Err(Error::node(
                node,
                "prepared for QUInt8: run it with `run_quantized`, not `run`",
            ));
        }
        LAST_SPAN.with(|c| c.set(None));
        LAST_TRANSFER.with(|c| c.set(0));
        if slice.is_empty() {
            return Ok(());
        }
        let (span, transfer) = self
            .lock()
            .execute(p, Ins::F32(inputs), Outs::F32(out), slice)?;
        LAST_SPAN.with(|c| c.set(Some(span)));
        LAST_TRANSFER.with(|c| c.set(transfer));
        Ok(())
    }

    fn prepare_quantized(
        &self,
        node: &Node,
        q: &QuantNode<'_>,
        input_shapes: &[&[usize]],
        output_shape: &[usize],
    ) -> Result<VulkanPrepared> {
        let name = node.name.as_str();
        let variant = self.variant(Precision::Quint8)?;
        super::check_quantized_prepare(node, q, input_shapes, output_shape)?;
        let op = dequantized_op(name, &node.op, q)?;
        let constant = match &node.op {
            Op::Constant(t) => Some(QTensor::quantize(t, q.output).data().to_vec()),
            _ => None,
        };
        let (kernel, params) = prepare_op(name, &op, input_shapes, output_shape, self.conv)?;
        if constant.is_none() {
            for s in kernel.shaders() {
                self.ctx
                    .pipeline(s, variant)
                    .map_err(|e| Error::node(name, e.to_string()))?;
            }
        }
        let f16 = variant != "q8f";
        let params = if constant.is_none() {
            self.lock().upload_params(&params, f16)?
        } else {
            Vec::new()
        };
        Ok(VulkanPrepared {
            node: node.name.clone(),
            kernel,
            params,
            inputs: input_shapes.iter().map(|s| s.to_vec()).collect(),
            output: output_shape.to_vec(),
            sliceable: node.op.sliceable(),
            variant,
            f16,
            quant: Some(QuantIo {
                inputs: q.inputs.to_vec(),
                output: q.output,
                constant,
            }),
        })
    }

    fn run_quantized(
        &self,
        p: &VulkanPrepared,
        inputs: &[&QTensor],
        out: &SharedQTensor<'_>,
        slice: &Slice,
    ) -> Result<()> {
        let node = p.node.as_str();
        let Some(q) = &p.quant else {
            return Err(Error::node(
                node,
                "prepared for F32/F16: run it with `run`, not `run_quantized`",
            ));
        };
        if inputs.len() != p.inputs.len()
            || inputs
                .iter()
                .zip(&p.inputs)
                .any(|(t, s)| t.shape() != s.as_slice())
        {
            let got: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
            return Err(Error::node(
                node,
                format!("inputs of shapes {got:?}, prepared for {:?}", p.inputs),
            ));
        }
        if let Some((i, t)) = inputs
            .iter()
            .enumerate()
            .find(|(i, t)| t.qparams() != q.inputs[*i])
        {
            return Err(Error::node(
                node,
                format!(
                    "input {i} quantized as {:?}, prepared for {:?}",
                    t.qparams(),
                    q.inputs[i]
                ),
            ));
        }
        if out.shape() != p.output.as_slice() || out.qparams() != q.output {
            return Err(Error::node(
                node,
                format!(
                    "output tensor {:?} quantized as {:?}, prepared for {:?} as {:?}",
                    out.shape(),
                    out.qparams(),
                    p.output,
                    q.output
                ),
            ));
        }
        crate::backend::cpu::check_slice(node, &p.output, slice, p.sliceable)?;
        LAST_SPAN.with(|c| c.set(None));
        LAST_TRANSFER.with(|c| c.set(0));
        if slice.is_empty() {
            return Ok(());
        }
        if let Some(codes) = &q.constant {
            if codes.len() != out.len() {
                return Err(Error::node(node, "internal: constant of the wrong size"));
            }
            crate::backend::cpu::Geom::of(&p.output).spans(slice, |off, len| {
                // SAFETY: the caller owns `slice` of `out`; the run lies inside it.
                let dst = unsafe { out.range_mut(off, len) };
                dst.copy_from_slice(&codes[off..off + len]);
            });
            return Ok(());
        }
        let (span, transfer) = self
            .lock()
            .execute(p, Ins::Q8(inputs), Outs::Q8(out), slice)?;
        LAST_SPAN.with(|c| c.set(Some(span)));
        LAST_TRANSFER.with(|c| c.set(transfer));
        Ok(())
    }

    fn last_span_ns(&self) -> Option<(u64, u64)> {
        LAST_SPAN.with(|c| c.get())
    }

    fn last_transfer_ns(&self) -> u64 {
        LAST_TRANSFER.with(|c| c.get())
    }
}

/// The op a QUInt8 node computes on the GPU: convolutions and fully connected layers with
/// the model's 8-bit weights dequantized (`s_w[c]·w_q`) and biases `s_x·s_w[c]·b_q` (bias
/// correction included), so that the GPU and the CPU compute the same real products; other
/// ops as they are.
fn dequantized_op(node: &str, op: &Op, q: &QuantNode<'_>) -> Result<Op> {
    let weights = || {
        let w = q
            .weights
            .ok_or_else(|| Error::node(node, "quantized model has no 8-bit weights here"))?;
        let s_x = q
            .inputs
            .first()
            .ok_or_else(|| Error::node(node, "no input quantization"))?
            .scale;
        let bias: Vec<f32> = w
            .bias
            .iter()
            .zip(&w.scales)
            .map(|(&b, &s)| (f64::from(b) * f64::from(s_x) * f64::from(s)) as f32)
            .collect();
        let n = bias.len();
        let bias = Tensor::from_vec(&[n], bias)
            .ok_or_else(|| Error::node(node, "internal: bias of the wrong size"))?;
        Ok::<_, Error>((w.dequantized(), bias))
    };
    Ok(match op {
        Op::Conv2d(c) => {
            let (w, b) = weights()?;
            let mut c = c.clone();
            if w.shape() != c.weight.shape() {
                return Err(Error::node(node, "8-bit weights of the wrong shape"));
            }
            c.weight = w;
            c.bias = Some(b);
            Op::Conv2d(c)
        }
        Op::Gemm(g) => {
            let (w, b) = weights()?;
            let mut g = g.clone();
            if w.shape() != g.weight.shape() {
                return Err(Error::node(node, "8-bit weights of the wrong shape"));
            }
            g.weight = w;
            g.bias = Some(b);
            Op::Gemm(g)
        }
        other => other.clone(),
    })
}

/// Prepares the kernel of one op (the per-op code lives in `ops/<op>/vulkan.rs`);
/// `conv`: see [`VulkanOptions::conv`].
fn prepare_op(
    node: &str,
    op: &Op,
    ins: &[&[usize]],
    out: &[usize],
    conv: ConvShaders,
) -> Result<Prepared> {
    use crate::ops;
    match op {
        Op::Conv2d(c) => ops::conv2d::vulkan::prepare(node, c, ins[0], out, conv),
        Op::Gemm(g) => ops::gemm::vulkan::prepare(node, g, ins[0], out),
        Op::Activation(a) => ops::activation::vulkan::prepare(node, *a, None, out),
        Op::Dropout => ops::activation::vulkan::prepare(node, ops::Activation::None, None, out),
        Op::BatchNorm(b) => {
            ops::activation::vulkan::prepare(node, ops::Activation::None, Some(b), out)
        }
        Op::MaxPool(p) => ops::pool::vulkan::prepare(node, p, true, ins[0], out),
        Op::AveragePool(p) => ops::pool::vulkan::prepare(node, p, false, ins[0], out),
        Op::GlobalAveragePool => ops::pool::vulkan::prepare_global(node, ins[0], out),
        Op::Lrn(l) => ops::lrn::vulkan::prepare(node, l, out),
        Op::Add => ops::add::vulkan::prepare(node, ins[0], ins[1], out),
        Op::Concat { axis } => ops::concat::vulkan::prepare(node, *axis, ins, out),
        Op::Flatten { .. } | Op::Reshape { .. } => {
            ops::concat::vulkan::prepare_copy(node, out, None)
        }
        Op::Constant(t) => ops::concat::vulkan::prepare_copy(node, out, Some(t)),
        Op::Pad(p) => ops::pad::vulkan::prepare(node, p, ins[0], out),
        Op::Softmax { axis } => ops::softmax::vulkan::prepare(node, *axis, out),
        Op::MatMul => ops::matmul::vulkan::prepare(node, ins[0], ins[1], out),
    }
}
