//! The CPU backend: F32 kernels vectorised for AVX-512, AVX2+FMA, NEON or portable Rust
//! (chosen once at start-up, see [`isa`]), and QUInt8 kernels for quantized models (`q8`:
//! 8-bit integer products on AVX-512 VNNI, AVX-VNNI, AVX-512BW, AVX2 or portable Rust, see
//! [`simd_q8`]), run on a rayon pool owned by the backend.
//!
//! Every op computes any slice (output-channel range × output-row range) of its output
//! straight into the shared output tensor, writing nothing outside it; ops that reorder
//! across channels ([`Op::sliceable`] false) accept only the whole output.
//!
//! Kernels live with their op (`ops/<op>/cpu_f32.rs`, `ops/<op>/cpu_q8.rs`); this folder
//! holds what they share: the SIMD layers ([`simd`], [`isa`], [`simd_q8`]), the
//! matrix-product engines ([`gemm`], [`gemm_q8`]), aligned and
//! per-thread buffers ([`buf`]), the slice geometry ([`Geom`]) and the task runner
//! ([`CpuCtx`]).
use super::{Backend, Precision, Processor};
use crate::graph::Node;
use crate::ops::{self, Op};
use crate::tensor::{SharedTensor, Slice, Tensor};
use crate::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};

pub mod buf;
pub(crate) mod bytes;
pub mod gemm;
pub mod gemm_q8;
pub mod isa;
pub mod plan;
pub(crate) mod q8;
pub mod rows;
pub mod simd;
pub mod simd_q8;
pub(crate) mod team;
#[cfg(test)]
pub(crate) mod testutil;
#[cfg(test)]
pub(crate) mod testutil_q8;

pub use isa::{default_isa, isa_name, Isa};

/// What kernels need to run: the instruction set, the thread count and the pool.
#[derive(Debug)]
pub struct CpuCtx {
    pub(crate) isa: Isa,
    pub(crate) threads: usize,
    pool: Option<rayon::ThreadPool>,
    /// A session ([`CpuCtx::install`] from outside the pool) is running: its helpers hold
    /// every worker until it ends.
    session_open: AtomicBool,
}

impl CpuCtx {
    /// A context with `threads` workers (a pool only when `threads > 1`) for `isa`.
    pub fn new(isa: Isa, threads: usize) -> Result<CpuCtx> {
        if !isa.supported() {
            return Err(Error::Other(format!(
                "CPU backend: this CPU cannot run {} kernels",
                isa.name()
            )));
        }
        let threads = threads.max(1);
        let pool = if threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("ulayer-cpu-{i}"))
                    .build()
                    .map_err(|e| {
                        Error::Other(format!("CPU backend: cannot start {threads} threads: {e}"))
                    })?,
            )
        } else {
            None
        };
        Ok(CpuCtx {
            isa,
            threads,
            pool,
            session_open: AtomicBool::new(false),
        })
    }

    /// The instruction set the kernels use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on the pool (directly when already on it, or without a pool) with the other
    /// workers in a [`team`] that stays awake between the forks of [`CpuCtx::for_each_task`]
    /// until `f` returns: wrap a whole inference in it. While another thread's session holds
    /// the workers, `f` runs on this thread and its forks serially: waiting for the pool
    /// could wait for this very thread (a session that joins it).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let Some(p) = self
            .pool
            .as_ref()
            .filter(|p| p.current_thread_index().is_none())
        else {
            return f();
        };
        if self
            .session_open
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return f();
        }
        struct Close<'a>(&'a AtomicBool);
        impl Drop for Close<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::SeqCst);
            }
        }
        let _close = Close(&self.session_open);
        let owner = self.owner();
        p.install(|| team::session(owner, self.threads - 1, f))
    }

    /// Names the pool for [`team`] (its address, stable while `self` is borrowed).
    fn owner(&self) -> usize {
        self.pool
            .as_ref()
            .map_or(0, |p| p as *const rayon::ThreadPool as usize)
    }

    /// Runs `f(0..n)` on up to `threads` workers, each claiming the next task index: on the
    /// team of the [`CpuCtx::install`] this runs in, or in a team of its own; serially when
    /// called from inside a task.
    pub fn for_each_task(&self, n: usize, f: impl Fn(usize) + Sync) {
        let serial = |f: &(dyn Fn(usize) + Sync)| (0..n).for_each(f);
        let Some(pool) = self.pool.as_ref().filter(|_| self.threads.min(n) > 1) else {
            return serial(&f);
        };
        if team::run_on_current(self.owner(), n, &f) {
            return;
        }
        if pool.current_thread_index().is_some() || self.session_open.load(Ordering::SeqCst) {
            // A fork inside a task, on a pool thread outside any session, or while another
            // thread's session holds the workers.
            return serial(&f);
        }
        self.install(|| {
            if !team::run_on_current(self.owner(), n, &f) {
                serial(&f);
            }
        });
    }
}

/// The output of a layer seen by the slice primitive as `[outer, C, H, inner]`: channels are
/// dimension 1 and rows dimension 2 (see [`crate::tensor::channels_rows`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geom {
    pub outer: usize,
    pub c: usize,
    pub h: usize,
    pub inner: usize,
}

impl Geom {
    /// The geometry of an output shape.
    pub fn of(shape: &[usize]) -> Geom {
        match shape.len() {
            0 => Geom {
                outer: 1,
                c: 1,
                h: 1,
                inner: 1,
            },
            1 => Geom {
                outer: 1,
                c: shape[0],
                h: 1,
                inner: 1,
            },
            2 => Geom {
                outer: shape[0],
                c: shape[1],
                h: 1,
                inner: 1,
            },
            _ => Geom {
                outer: shape[0],
                c: shape[1],
                h: shape[2],
                inner: shape[3..].iter().product(),
            },
        }
    }

    /// Calls `f(offset, len)` for each contiguous run of the slice, in memory order.
    pub fn spans(&self, slice: &Slice, mut f: impl FnMut(usize, usize)) {
        let len = slice.rows.len() * self.inner;
        if len == 0 {
            return;
        }
        for o in 0..self.outer {
            for c in slice.channels.clone() {
                f(
                    ((o * self.c + c) * self.h + slice.rows.start) * self.inner,
                    len,
                );
            }
        }
    }

    /// Number of contiguous runs of the slice.
    pub fn span_count(&self, slice: &Slice) -> usize {
        self.outer * slice.channels.len()
    }
}

/// Runs `f(channel index, offset, len)` over the contiguous runs of `slice` of an output of
/// geometry `g`, in parallel tasks of at least `MIN_TASK` elements (long runs are cut, always
/// on a row boundary, so that row-wise kernels such as padding see whole rows).
pub fn par_spans(ctx: &CpuCtx, g: Geom, slice: &Slice, f: impl Fn(usize, usize, usize) + Sync) {
    const MIN_TASK: usize = 16 * 1024;
    let len = slice.rows.len() * g.inner;
    let spans = g.span_count(slice);
    if len == 0 || spans == 0 {
        return;
    }
    let nc = slice.channels.len();
    let span_at = |i: usize| {
        let (o, c) = (i / nc, slice.channels.start + i % nc);
        (c, ((o * g.c + c) * g.h + slice.rows.start) * g.inner)
    };
    let total = len * spans;
    let piece = (total / (ctx.threads * 4).max(1)).max(MIN_TASK);
    if len >= piece {
        // Cut each run into pieces.
        let per = len.div_ceil(piece);
        let step = len.div_ceil(per).next_multiple_of(g.inner.max(1));
        ctx.for_each_task(spans * per, |t| {
            let (c, off) = span_at(t / per);
            let a = (t % per) * step;
            let b = (a + step).min(len);
            if a < b {
                f(c, off + a, b - a);
            }
        });
    } else {
        // Group whole runs.
        let group = piece.div_ceil(len);
        ctx.for_each_task(spans.div_ceil(group), |t| {
            for i in t * group..((t + 1) * group).min(spans) {
                let (c, off) = span_at(i);
                f(c, off, len);
            }
        });
    }
}

/// The kernel a node runs, with what `prepare` computed for it.
#[derive(Debug)]
enum Kernel {
    Conv(ops::conv2d::cpu_f32::PreparedConv),
    Gemm(ops::gemm::cpu_f32::PreparedGemm),
    /// Ops without prepared state: run from the op itself.
    Plain(Op),
    /// A node of a quantized model (QUInt8 storage, see [`q8`]).
    Q8(Box<q8::Q8Prepared>),
}

/// A node prepared for the CPU: its kernel and the shapes it was prepared for.
#[derive(Debug)]
pub struct CpuPrepared {
    node: String,
    kernel: Kernel,
    inputs: Vec<Vec<usize>>,
    output: Vec<usize>,
    sliceable: bool,
}

impl CpuPrepared {
    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The output shape it was prepared for.
    pub fn output_shape(&self) -> &[usize] {
        &self.output
    }
}

/// The CPU processor backend (F32, and QUInt8 for quantized models).
#[derive(Debug)]
pub struct CpuBackend {
    ctx: CpuCtx,
}

impl CpuBackend {
    /// A backend on `threads` worker threads (at least 1) with the default instruction set
    /// ([`default_isa`]: the best detected, or `ULAYER_CPU_ISA`).
    pub fn new(threads: usize) -> Result<CpuBackend> {
        CpuBackend::with_isa(threads, default_isa())
    }

    /// A backend forced to one instruction set (errors if this CPU lacks it).
    pub fn with_isa(threads: usize, isa: Isa) -> Result<CpuBackend> {
        Ok(CpuBackend {
            ctx: CpuCtx::new(isa, threads)?,
        })
    }

    /// The instruction set in use.
    pub fn isa(&self) -> Isa {
        self.ctx.isa
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.ctx.threads
    }

    /// The task runner (for kernels and tests).
    pub fn ctx(&self) -> &CpuCtx {
        &self.ctx
    }
}

/// Checks a slice against an output shape; non-sliceable ops need the whole output.
pub(crate) fn check_slice(
    node: &str,
    shape: &[usize],
    slice: &Slice,
    sliceable: bool,
) -> Result<()> {
    let (c, h) = crate::tensor::channels_rows(shape);
    if slice.channels.start > slice.channels.end
        || slice.rows.start > slice.rows.end
        || slice.channels.end > c
        || slice.rows.end > h
    {
        return Err(Error::node(
            node,
            format!("slice {slice:?} outside output {shape:?} ({c} channels, {h} rows)"),
        ));
    }
    if !sliceable && !slice.is_empty() && *slice != Slice::whole(shape) {
        return Err(Error::node(node, format!("this op reorders across channels and computes only its whole output, not {slice:?}")));
    }
    Ok(())
}

impl Backend for CpuBackend {
    type Prepared = CpuPrepared;

    fn processor(&self) -> Processor {
        Processor::Cpu
    }

    fn prepare(
        &self,
        node: &Node,
        input_shapes: &[&[usize]],
        output_shape: &[usize],
        precision: Precision,
    ) -> Result<CpuPrepared> {
        if precision != Precision::F32 {
            return Err(Error::node(
                &node.name,
                format!("the CPU backend runs {precision} only on a quantized model (ulayer::quant, Executor::new_quantized); this call prepares f32"),
            ));
        }
        let expected = node.op.output_shape(&node.name, input_shapes)?;
        if expected != output_shape {
            return Err(Error::node(
                &node.name,
                format!("output shape {output_shape:?} given, the op produces {expected:?}"),
            ));
        }
        let isa = self.ctx.isa;
        let kernel = match &node.op {
            Op::Conv2d(c) => Kernel::Conv(ops::conv2d::cpu_f32::prepare(
                &node.name,
                c,
                input_shapes[0],
                output_shape,
                isa,
            )?),
            Op::Gemm(g) => Kernel::Gemm(ops::gemm::cpu_f32::prepare(
                &node.name,
                g,
                input_shapes[0],
                output_shape,
                isa,
            )?),
            op => Kernel::Plain(op.clone()),
        };
        Ok(CpuPrepared {
            node: node.name.clone(),
            kernel,
            inputs: input_shapes.iter().map(|s| s.to_vec()).collect(),
            output: output_shape.to_vec(),
            sliceable: node.op.sliceable(),
        })
    }

    fn run(
        &self,
        p: &CpuPrepared,
        inputs: &[&Tensor],
        out: &SharedTensor<'_>,
        slice: &Slice,
    ) -> Result<()> {
        let node = p.node.as_str();
        super::check_run_shapes(node, inputs, &p.inputs, out, &p.output)?;
        check_slice(node, &p.output, slice, p.sliceable)?;
        if slice.is_empty() {
            return Ok(());
        }
        let ctx = &self.ctx;
        // SAFETY (all arms): shapes were checked above against those the kernel was prepared
        // for, the slice lies inside the output, and the caller of `run` owns the slice of
        // `out` (the `SharedTensor` contract).
        match &p.kernel {
            Kernel::Conv(k) => ops::conv2d::cpu_f32::run(ctx, k, inputs[0], out, slice),
            Kernel::Gemm(k) => ops::gemm::cpu_f32::run(ctx, k, inputs[0], out, slice),
            Kernel::Plain(op) => run_plain(ctx, node, op, inputs, out, slice),
            Kernel::Q8(_) => Err(Error::node(
                node,
                "prepared for QUInt8: run it with `run_quantized`",
            )),
        }
    }

    fn prepare_quantized(
        &self,
        node: &Node,
        q: &crate::quant::QuantNode<'_>,
        input_shapes: &[&[usize]],
        output_shape: &[usize],
    ) -> Result<CpuPrepared> {
        q8::prepare(self, node, q, input_shapes, output_shape)
    }

    fn run_quantized(
        &self,
        p: &CpuPrepared,
        inputs: &[&crate::quant::QTensor],
        out: &crate::quant::SharedQTensor<'_>,
        slice: &Slice,
    ) -> Result<()> {
        q8::run(self, p, inputs, out, slice)
    }

    fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.ctx.install(f)
    }
}

fn run_plain(
    ctx: &CpuCtx,
    node: &str,
    op: &Op,
    inputs: &[&Tensor],
    out: &SharedTensor<'_>,
    slice: &Slice,
) -> Result<()> {
    match op {
        Op::Activation(a) => ops::activation::cpu_f32::run(ctx, *a, inputs[0], out, slice),
        Op::Dropout => {
            ops::activation::cpu_f32::run(ctx, ops::Activation::None, inputs[0], out, slice)
        }
        Op::BatchNorm(b) => ops::batchnorm::cpu_f32::run(ctx, b, inputs[0], out, slice),
        Op::MaxPool(pl) => ops::pool::cpu_f32::run(
            ctx,
            ops::pool::cpu_f32::Kind::Max,
            pl,
            inputs[0],
            out,
            slice,
        ),
        Op::AveragePool(pl) => ops::pool::cpu_f32::run(
            ctx,
            ops::pool::cpu_f32::Kind::Average,
            pl,
            inputs[0],
            out,
            slice,
        ),
        Op::GlobalAveragePool => ops::pool::cpu_f32::run_global(ctx, inputs[0], out, slice),
        Op::Lrn(l) => ops::lrn::cpu_f32::run(ctx, l, inputs[0], out, slice),
        Op::Add => ops::add::cpu_f32::run(ctx, inputs[0], inputs[1], out, slice),
        Op::Concat { axis } => ops::concat::cpu_f32::run(ctx, *axis, inputs, out, slice),
        Op::Pad(pd) => ops::pad::cpu_f32::run(ctx, pd, inputs[0], out, slice),
        Op::Flatten { .. } | Op::Reshape { .. } => ops::reshape::cpu_f32::run(inputs[0], out),
        Op::Softmax { axis } => ops::softmax::cpu_f32::run(*axis, inputs[0], out),
        Op::MatMul => ops::matmul::cpu_f32::run(inputs[0], inputs[1], out),
        Op::Constant(t) => ops::reshape::cpu_f32::run(t, out),
        Op::Conv2d(_) | Op::Gemm(_) => Err(Error::node(node, "internal: prepared kernel missing")),
    }
}

#[cfg(test)]
mod ctx_tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_thread_joined_inside_a_session_forks_on_the_same_context_without_waiting_for_it() {
        let ctx = CpuCtx::new(default_isa(), 2).expect("ctx");
        let sum = AtomicUsize::new(0);
        let add = |i: usize| {
            sum.fetch_add(i, Ordering::SeqCst);
        };
        ctx.install(|| {
            ctx.for_each_task(8, add);
            // Another thread, joined while this session holds the workers (as the cooperative
            // executor joins its GPU thread): its forks must not wait for the pool.
            std::thread::scope(|s| {
                s.spawn(|| {
                    ctx.for_each_task(8, add);
                    ctx.install(|| ctx.for_each_task(8, add));
                });
            });
            // A nested install runs in place.
            ctx.install(|| ctx.for_each_task(4, add));
        });
        // And a fork outside any session opens its own.
        ctx.for_each_task(8, add);
        assert_eq!(sum.load(Ordering::SeqCst), 28 * 4 + 6);
    }
}
