//! The whole network on the GPU in one submission: activations stay in device buffers from
//! layer to layer, and the inference is recorded once into a command buffer that every run
//! resubmits.
//!
//! [`VulkanBackend::run`] serves one slice of one layer (what the cooperative executor needs):
//! it uploads the layer's inputs, dispatches, reads the slice back and waits — a host round
//! trip per layer. When every layer runs on the GPU (the `gpu` mechanism) none of that is
//! needed: [`GpuNetwork`] takes an [`Executor`]'s prepared layers and its buffer-slot
//! assignment (values whose lifetimes do not overlap share a buffer), gives each slot a device
//! buffer, and records, once:
//!
//! 1. the uploads of the graph inputs (staged memory model; in the unified model the CPU
//!    writes the input buffers in place);
//! 2. per layer: a timestamp, its dispatches, a timestamp, and a compute→compute barrier
//!    (which also orders the reuse of a slot after its last reader);
//! 3. the downloads of the graph outputs.
//!
//! A run writes the inputs (as F16 where the layers store F16), submits, waits on one fence,
//! reads the outputs and converts every layer's timestamps to CLOCK_MONOTONIC for the trace
//! (the upload's GPU time is the first layer's `transfer_ns`, the download's the last one's).
//! This is how ncnn and onnxruntime run a network on a GPU, and the baseline the cooperative
//! mechanisms are compared with. QUInt8 layers are not recorded here (their outputs hold one
//! code per word, their inputs four): the quantized `gpu` mechanism keeps the per-layer path.
use super::context::Context;
use super::memory::{BufKind, Buffer};
use super::{barrier, descriptor_pool, record_dispatch, vk_err, Bind, MemoryModel, VulkanBackend};
use crate::backend::{Precision, Processor};
use crate::coop::Runner;
use crate::exec::trace::{monotonic_ns, LayerSpan, Trace};
use crate::exec::{Executor, Source};
use crate::tensor::{Slice, Tensor};
use crate::{Error, Result};
use ash::vk;
use std::sync::Arc;

/// The whole network recorded into one command buffer (see the module documentation).
pub struct GpuNetwork {
    exec: Executor<VulkanBackend>,
    ctx: Arc<Context>,
    f16: bool,
    pool: vk::CommandPool,
    cmd: vk::CommandBuffer,
    fence: vk::Fence,
    dpool: vk::DescriptorPool,
    queries: vk::QueryPool,
    /// Device buffers: one per graph input, then one per executor slot.
    inputs: Vec<Buffer>,
    slots: Vec<Buffer>,
    /// Host-visible copies of the inputs and outputs (staged model only).
    in_staging: Vec<Buffer>,
    out_staging: Vec<Option<Buffer>>,
    /// Shape of each graph output.
    out_shapes: Vec<Vec<usize>>,
    dummy: Buffer,
}

impl std::fmt::Debug for GpuNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuNetwork")
            .field("layers", &self.exec.layers())
            .field("device", &self.ctx.info.name)
            .field("memory", &self.ctx.model)
            .finish()
    }
}

/// Query indices: 0 and 1 around the uploads, `2 + 2i` and `3 + 2i` around layer `i`, then
/// two around the downloads.
fn query_count(layers: usize) -> u32 {
    (2 * layers + 4) as u32
}

impl GpuNetwork {
    /// Records `exec`'s layers (prepared by its [`VulkanBackend`] at F32 or F16). Errors on
    /// QUInt8 layers, naming the first.
    pub fn new(exec: Executor<VulkanBackend>) -> Result<GpuNetwork> {
        let ctx = exec.backend().ctx().clone();
        if let Some(s) = exec.steps().iter().find(|s| s.prepared.quant.is_some()) {
            return Err(Error::node(
                &s.node,
                "prepared for QUInt8: the whole-network GPU runner records F32 and F16 layers only",
            ));
        }
        let f16 = exec.steps().first().is_some_and(|s| s.prepared.f16);
        if let Some(s) = exec.steps().iter().find(|s| s.prepared.f16 != f16) {
            return Err(Error::node(
                &s.node,
                "internal: layers prepared at different storage precisions",
            ));
        }
        let esz = if f16 { 2u64 } else { 4 };
        let staged = ctx.model == MemoryModel::Staged;
        let input_shapes = exec.input_shapes();
        let bytes = |n: usize| n as u64 * esz;
        let inputs = input_shapes
            .iter()
            .map(|s| Buffer::new(&ctx, bytes(s.iter().product()), BufKind::Device))
            .collect::<Result<Vec<_>>>()?;
        let in_staging = if staged {
            input_shapes
                .iter()
                .map(|s| Buffer::new(&ctx, bytes(s.iter().product()), BufKind::Upload))
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let slots = exec
            .slot_lens()
            .into_iter()
            .map(|n| Buffer::new(&ctx, bytes(n), BufKind::Device))
            .collect::<Result<Vec<_>>>()?;
        // An output in a slot was written last by the layer that produced it.
        let out_shapes: Vec<Vec<usize>> = exec
            .output_sources()
            .iter()
            .map(|s| match *s {
                Source::Input(k) => input_shapes[k].clone(),
                Source::Slot(k) => exec
                    .steps()
                    .iter()
                    .rev()
                    .find(|st| st.slot == k)
                    .map(|st| st.shape.clone())
                    .unwrap_or_default(),
            })
            .collect();
        let out_staging = exec
            .output_sources()
            .iter()
            .zip(&out_shapes)
            .map(|(s, shape)| match s {
                Source::Slot(_) if staged => {
                    Buffer::new(&ctx, bytes(shape.iter().product()), BufKind::Readback).map(Some)
                }
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        let dummy = Buffer::new(&ctx, 16, BufKind::Device)?;
        // Every layer's dispatches for its whole output.
        let mut dispatches = Vec::with_capacity(exec.layers());
        for s in exec.steps() {
            let mut v = Vec::new();
            s.prepared
                .kernel
                .dispatches(&Slice::whole(&s.shape), &mut v)?;
            dispatches.push(v);
        }
        let total: usize = dispatches.iter().map(Vec::len).sum();
        let d = &ctx.dev.device;
        // SAFETY: valid create infos on a live device; each object is owned by the returned
        // value and destroyed in Drop (the partial ones below if a later step fails).
        let (pool, cmd, fence, queries) = unsafe {
            let pool = d
                .create_command_pool(
                    &vk::CommandPoolCreateInfo::default().queue_family_index(ctx.dev.queue_family),
                    None,
                )
                .map_err(vk_err("command pool"))?;
            let cmd = match d.allocate_command_buffers(
                &vk::CommandBufferAllocateInfo::default()
                    .command_pool(pool)
                    .level(vk::CommandBufferLevel::PRIMARY)
                    .command_buffer_count(1),
            ) {
                Ok(c) => c[0],
                Err(e) => {
                    d.destroy_command_pool(pool, None);
                    return Err(vk_err("command buffer")(e));
                }
            };
            let fence = match d.create_fence(&vk::FenceCreateInfo::default(), None) {
                Ok(f) => f,
                Err(e) => {
                    d.destroy_command_pool(pool, None);
                    return Err(vk_err("fence")(e));
                }
            };
            let queries = match d.create_query_pool(
                &vk::QueryPoolCreateInfo::default()
                    .query_type(vk::QueryType::TIMESTAMP)
                    .query_count(query_count(exec.layers())),
                None,
            ) {
                Ok(q) => q,
                Err(e) => {
                    d.destroy_fence(fence, None);
                    d.destroy_command_pool(pool, None);
                    return Err(vk_err("query pool")(e));
                }
            };
            (pool, cmd, fence, queries)
        };
        let dpool = match descriptor_pool(d, total.max(1) as u32) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: created above, never submitted.
                unsafe {
                    d.destroy_query_pool(queries, None);
                    d.destroy_fence(fence, None);
                    d.destroy_command_pool(pool, None);
                }
                return Err(e);
            }
        };
        let net = GpuNetwork {
            exec,
            ctx: ctx.clone(),
            f16,
            pool,
            cmd,
            fence,
            dpool,
            queries,
            inputs,
            slots,
            in_staging,
            out_staging,
            out_shapes,
            dummy,
        };
        net.record(&dispatches)?;
        Ok(net)
    }

    /// The device buffer holding the value at `s`.
    fn buffer(&self, s: Source) -> vk::Buffer {
        match s {
            Source::Input(k) => self.inputs[k].buf,
            Source::Slot(k) => self.slots[k].buf,
        }
    }

    /// Records the whole inference into `self.cmd` (once; every run resubmits it).
    fn record(&self, dispatches: &[Vec<super::Dispatch>]) -> Result<()> {
        let ctx = &self.ctx;
        let d = &ctx.dev.device;
        let cmd = self.cmd;
        let steps = self.exec.steps();
        let n_q = query_count(steps.len());
        let staged = ctx.model == MemoryModel::Staged;
        let total: usize = dispatches.iter().map(Vec::len).sum();
        // SAFETY: the command buffer is new (never submitted); every buffer, pipeline and set
        // it references is owned by `self` (or by the executor's prepared layers) and lives
        // as long as the command buffer.
        unsafe {
            let sets = if total > 0 {
                d.allocate_descriptor_sets(
                    &vk::DescriptorSetAllocateInfo::default()
                        .descriptor_pool(self.dpool)
                        .set_layouts(&vec![ctx.set_layout; total]),
                )
                .map_err(vk_err("descriptor sets"))?
            } else {
                Vec::new()
            };
            d.begin_command_buffer(cmd, &vk::CommandBufferBeginInfo::default())
                .map_err(vk_err("begin command buffer"))?;
            d.cmd_reset_query_pool(cmd, self.queries, 0, n_q);
            d.cmd_write_timestamp(cmd, vk::PipelineStageFlags::TOP_OF_PIPE, self.queries, 0);
            if staged {
                for (s, dst) in self.in_staging.iter().zip(&self.inputs) {
                    let region = vk::BufferCopy::default().size(s.size.min(dst.size));
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
            let mut next_set = sets.iter();
            for (i, (step, ds)) in steps.iter().zip(dispatches).enumerate() {
                let p = &step.prepared;
                let q = 2 + 2 * i as u32;
                d.cmd_write_timestamp(cmd, vk::PipelineStageFlags::ALL_COMMANDS, self.queries, q);
                for dsp in ds {
                    let set = *next_set
                        .next()
                        .ok_or_else(|| Error::node(&step.node, "internal: descriptor sets"))?;
                    let buffer_of = |b: Bind| {
                        match b {
                            Bind::Input(k) => step.inputs.get(k).map(|&s| self.buffer(s)),
                            Bind::Output => Some(self.slots[step.slot].buf),
                            Bind::Param(k) => p.params.get(k).map(|b| b.buf),
                            Bind::None => Some(self.dummy.buf),
                        }
                        .ok_or_else(|| {
                            Error::node(&step.node, format!("internal: no buffer for {b:?}"))
                        })
                    };
                    record_dispatch(ctx, cmd, set, dsp, p, &[], buffer_of)?;
                }
                d.cmd_write_timestamp(
                    cmd,
                    vk::PipelineStageFlags::ALL_COMMANDS,
                    self.queries,
                    q + 1,
                );
                // The next layer reads what this one wrote, and may write a slot this one read.
                barrier(
                    d,
                    cmd,
                    vk::AccessFlags::SHADER_WRITE,
                    vk::PipelineStageFlags::COMPUTE_SHADER,
                    vk::AccessFlags::SHADER_READ | vk::AccessFlags::SHADER_WRITE,
                    vk::PipelineStageFlags::COMPUTE_SHADER,
                );
            }
            d.cmd_write_timestamp(
                cmd,
                vk::PipelineStageFlags::ALL_COMMANDS,
                self.queries,
                n_q - 2,
            );
            // The downloads (staged), then what the host reads made visible to it.
            let (src, src_stage) = if staged {
                barrier(
                    d,
                    cmd,
                    vk::AccessFlags::SHADER_WRITE,
                    vk::PipelineStageFlags::COMPUTE_SHADER,
                    vk::AccessFlags::TRANSFER_READ,
                    vk::PipelineStageFlags::TRANSFER,
                );
                for (s, st) in self.exec.output_sources().iter().zip(&self.out_staging) {
                    if let (Source::Slot(k), Some(st)) = (s, st) {
                        let region =
                            vk::BufferCopy::default().size(st.size.min(self.slots[*k].size));
                        d.cmd_copy_buffer(cmd, self.slots[*k].buf, st.buf, &[region]);
                    }
                }
                (
                    vk::AccessFlags::TRANSFER_WRITE,
                    vk::PipelineStageFlags::TRANSFER,
                )
            } else {
                (
                    vk::AccessFlags::SHADER_WRITE,
                    vk::PipelineStageFlags::COMPUTE_SHADER,
                )
            };
            d.cmd_write_timestamp(
                cmd,
                vk::PipelineStageFlags::BOTTOM_OF_PIPE,
                self.queries,
                n_q - 1,
            );
            barrier(
                d,
                cmd,
                src,
                src_stage,
                vk::AccessFlags::HOST_READ,
                vk::PipelineStageFlags::HOST,
            );
            d.end_command_buffer(cmd)
                .map_err(vk_err("end command buffer"))?;
        }
        Ok(())
    }

    /// The layers' executor (its backend, layer count, precision).
    pub fn executor(&self) -> &Executor<VulkanBackend> {
        &self.exec
    }

    /// Runs one inference: one submission, one fence wait.
    pub fn run(&mut self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Trace)> {
        self.exec.check_inputs(inputs)?;
        let calib = self.exec.backend().fresh_calibration()?;
        let start_ns = monotonic_ns();
        let staged = self.ctx.model == MemoryModel::Staged;
        for (k, t) in inputs.iter().enumerate() {
            let target = if staged {
                &self.in_staging[k]
            } else {
                &self.inputs[k]
            };
            target.write_f32(t.data(), self.f16);
        }
        let d = &self.ctx.dev.device;
        // SAFETY: the command buffer was fully recorded in `new`; the fence is unsignalled (it
        // is reset after every wait); no other submission uses these buffers.
        let (t0, t1) = unsafe {
            let cmds = [self.cmd];
            let submit = [vk::SubmitInfo::default().command_buffers(&cmds)];
            let t0 = monotonic_ns();
            d.queue_submit(self.ctx.dev.queue, &submit, self.fence)
                .map_err(vk_err("submit"))?;
            let waited = d.wait_for_fences(&[self.fence], true, u64::MAX);
            let t1 = monotonic_ns();
            waited.map_err(vk_err("wait"))?;
            d.reset_fences(&[self.fence])
                .map_err(vk_err("reset fence"))?;
            (t0, t1)
        };
        let steps = self.exec.steps();
        let n_q = query_count(steps.len()) as usize;
        let mut ts = vec![0u64; n_q];
        if calib.is_some() {
            // SAFETY: every query was written by the submission waited for above.
            unsafe {
                d.get_query_pool_results(
                    self.queries,
                    0,
                    &mut ts,
                    vk::QueryResultFlags::TYPE_64 | vk::QueryResultFlags::WAIT,
                )
                .map_err(vk_err("timestamps"))?;
            }
        }
        let mut outs = Vec::with_capacity(self.out_shapes.len());
        for ((s, shape), st) in self
            .exec
            .output_sources()
            .iter()
            .zip(&self.out_shapes)
            .zip(&self.out_staging)
        {
            outs.push(match *s {
                Source::Input(k) => inputs[k].clone(),
                Source::Slot(k) => {
                    let mut t = Tensor::zeros(shape);
                    let src = st.as_ref().unwrap_or(&self.slots[k]);
                    src.read_f32(0, t.data_mut(), self.f16);
                    t
                }
            });
        }
        let precision = self.exec.precision();
        let last = steps.len().saturating_sub(1);
        let layers = steps
            .iter()
            .enumerate()
            .map(|(i, step)| {
                let (start_ns, end_ns, transfer_ns) = match calib {
                    Some(c) => {
                        let ticks = |a: usize, b: usize| {
                            (ts[b].wrapping_sub(ts[a]) & c.mask) as f64 * c.period_ns
                        };
                        let (s, e) = c.span(ts[2 + 2 * i], ts[3 + 2 * i], t0, t1);
                        let mut transfer = 0.0;
                        if staged && i == 0 {
                            transfer += ticks(0, 1);
                        }
                        if staged && i == last {
                            transfer += ticks(n_q - 2, n_q - 1);
                        }
                        (s, e, transfer as u64)
                    }
                    None => (t0, t1, 0),
                };
                LayerSpan {
                    node: step.node.clone(),
                    kind: step.kind.to_string(),
                    processor: Processor::Gpu,
                    precision,
                    slice: Slice::whole(&step.shape),
                    start_ns,
                    end_ns,
                    transfer_ns,
                }
            })
            .collect();
        Ok((
            outs,
            Trace {
                start_ns,
                end_ns: monotonic_ns(),
                layers,
            },
        ))
    }
}

impl Runner for GpuNetwork {
    fn run(&mut self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Trace)> {
        GpuNetwork::run(self, inputs)
    }
}

impl Drop for GpuNetwork {
    fn drop(&mut self) {
        let d = &self.ctx.dev.device;
        // SAFETY: every submission was waited for; these objects belong to this runner (the
        // buffers are dropped after, with the fields).
        unsafe {
            let _ = d.queue_wait_idle(self.ctx.dev.queue);
            d.destroy_query_pool(self.queries, None);
            d.destroy_descriptor_pool(self.dpool, None);
            d.destroy_fence(self.fence, None);
            d.destroy_command_pool(self.pool, None);
        }
    }
}

/// Whether `precision` on the GPU is recorded whole ([`GpuNetwork`]) rather than run layer by
/// layer: F32 and F16, unless `ULAYER_GPU_PER_LAYER=1` asks for the per-layer path (to
/// measure what keeping activations on the GPU saves).
pub fn records_whole(precision: Precision) -> bool {
    precision != Precision::Quint8
        && !matches!(std::env::var("ULAYER_GPU_PER_LAYER").as_deref(), Ok("1"))
}
