//! Optimised CPU F32 element-wise addition. Along each contiguous run of the slice an operand
//! is either contiguous (same shape as the output there: vector loads), constant (broadcast
//! over the spatial dimensions, e.g. a per-channel bias: one splat), or neither (index walk).
use super::reference::broadcast_index;
use crate::backend::cpu::simd::{Simd, SimdFn};
use crate::backend::cpu::{par_spans, CpuCtx, Geom};
use crate::tensor::{SharedTensor, Slice, Tensor};
use crate::Result;

/// How one operand reads along an output run.
#[derive(Clone, Copy)]
enum Along {
    Contiguous,
    Constant,
    Strided,
}

/// Per-dimension strides of operand shape `s` broadcast onto `out` (0 where broadcast).
fn strides(out: &[usize], s: &[usize]) -> Vec<usize> {
    let mut st = vec![0; out.len()];
    let mut stride = 1;
    for d in (0..out.len()).rev() {
        let sd = d as isize - (out.len() as isize - s.len() as isize);
        if sd >= 0 {
            let n = s[sd as usize];
            if n != 1 {
                st[d] = stride;
            }
            stride *= n;
        }
    }
    st
}

fn along(out: &[usize], st: &[usize]) -> Along {
    if out.len() < 3 {
        return Along::Strided;
    }
    let mut expect = 1;
    let mut contiguous = true;
    for d in (2..out.len()).rev() {
        contiguous &= st[d] == expect || out[d] == 1;
        expect *= out[d];
    }
    if contiguous {
        Along::Contiguous
    } else if (2..out.len()).all(|d| st[d] == 0 || out[d] == 1) {
        Along::Constant
    } else {
        Along::Strided
    }
}

/// Computes `slice` of `a + b` into `out`.
pub fn run(
    ctx: &CpuCtx,
    a: &Tensor,
    b: &Tensor,
    out: &SharedTensor<'_>,
    slice: &Slice,
) -> Result<()> {
    let shape = out.shape().to_vec();
    let g = Geom::of(&shape);
    let (sa, sb) = (strides(&shape, a.shape()), strides(&shape, b.shape()));
    let (ka, kb) = (along(&shape, &sa), along(&shape, &sb));
    let (ad, bd) = (a.data(), b.data());
    let base = |st: &[usize], off: usize| -> usize {
        // Offset of output element `off`'s (dim 0, dim 1, dim 2 = first row) in the operand.
        let mut rest = off;
        let mut idx = 0;
        for d in (0..shape.len()).rev() {
            idx += (rest % shape[d]) * st[d];
            rest /= shape[d];
        }
        idx
    };
    par_spans(ctx, g, slice, |_, off, len| {
        // SAFETY: the run lies inside the caller's slice; runs of different tasks are disjoint.
        let dst = unsafe { out.range_mut(off, len) };
        fn operand<'d>(
            k: Along,
            base: usize,
            data: &'d [f32],
            s: &[usize],
            len: usize,
        ) -> Operand<'d> {
            match k {
                Along::Contiguous => Operand::Slice(&data[base..base + len]),
                Along::Constant => Operand::Splat(data[base]),
                Along::Strided => Operand::Gather(s.to_vec()),
            }
        }
        let oa = operand(ka, base(&sa, off), ad, a.shape(), len);
        let ob = operand(kb, base(&sb, off), bd, b.shape(), len);
        match (&oa, &ob) {
            (Operand::Gather(_), _) | (_, Operand::Gather(_)) => {
                for (e, v) in dst.iter_mut().enumerate() {
                    let get = |o: &Operand<'_>, data: &[f32]| match o {
                        Operand::Slice(s) => s[e],
                        Operand::Splat(x) => *x,
                        Operand::Gather(s) => data[broadcast_index(&shape, s, off + e)],
                    };
                    *v = get(&oa, ad) + get(&ob, bd);
                }
            }
            _ => ctx.isa().dispatch(AddMap { a: oa, b: ob, dst }),
        }
    });
    Ok(())
}

enum Operand<'a> {
    Slice(&'a [f32]),
    Splat(f32),
    Gather(Vec<usize>),
}

struct AddMap<'a> {
    a: Operand<'a>,
    b: Operand<'a>,
    dst: &'a mut [f32],
}

impl SimdFn for AddMap<'_> {
    type Output = ();
    #[inline(always)]
    fn call<S: Simd>(self) {
        let n = self.dst.len();
        let l = S::LANES;
        let d = self.dst.as_mut_ptr();
        // SAFETY: slices hold `n` elements (runs of the same length); every access is below `n`.
        unsafe {
            let load = |o: &Operand<'_>, i: usize, m: usize| match o {
                Operand::Slice(s) if m == l => S::load(s.as_ptr().add(i)),
                Operand::Slice(s) => S::load_partial(s.as_ptr().add(i), m),
                Operand::Splat(x) => S::splat(*x),
                Operand::Gather(_) => S::zero(),
            };
            let mut i = 0;
            while i + l <= n {
                S::store(d.add(i), S::add(load(&self.a, i, l), load(&self.b, i, l)));
                i += l;
            }
            if i < n {
                S::store_partial(
                    d.add(i),
                    S::add(load(&self.a, i, n - i), load(&self.b, i, n - i)),
                    n - i,
                );
            }
        }
    }
}
