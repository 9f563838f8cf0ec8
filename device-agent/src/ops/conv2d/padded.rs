//! The im2col gather of the CPU convolutions (F32 and 8-bit), from padded input planes.
//!
//! Once per layer run the input planes are copied with the padding around them (real 0: 0.0,
//! or the input's zero point), big enough for every window. Row `k = (ci·kh + ky)·kw + kx` of
//! the im2col matrix is then, along each output row, a plain run of the padded plane that
//! starts at an offset fixed at prepare; no bound is tested per run. Before, each fetched row
//! paid four divisions and the bound clamps of every output row it crossed: a fixed cost per
//! task that made a 2% channel slice of a 3×3, 13×13 8-bit layer cost 40% of the whole.
//! The copy costs `C·Hp·Wp` elements per layer against the `C·kh·kw·N` it gathers from.
use super::cpu_f32::ConvGeom;
use std::cell::RefCell;

/// The padded planes' shape: `hp × wp`, the input at row `pt`, column `pl`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Padded {
    pub hp: usize,
    pub wp: usize,
    pt: usize,
    pl: usize,
}

impl Padded {
    /// Planes that hold the input and every window of the output.
    pub fn of(g: &ConvGeom) -> Padded {
        let reach = |o: usize, s: usize, k: usize, d: usize| (o.max(1) - 1) * s + (k - 1) * d + 1;
        Padded {
            hp: (g.pt + g.h).max(reach(g.oh, g.sh, g.kh, g.dh)),
            wp: (g.pl + g.w).max(reach(g.ow, g.sw, g.kw, g.dw)),
            pt: g.pt,
            pl: g.pl,
        }
    }

    /// Elements of one padded plane.
    pub fn plane(&self) -> usize {
        self.hp * self.wp
    }

    /// Copies the planes of `image` (each `h × w`) into `dst`, `fill` around them.
    pub fn fill<T: Copy>(&self, image: &[T], h: usize, w: usize, fill: T, dst: &mut [T]) {
        let wp = self.wp;
        if h * w == 0 {
            // An empty input: all padding (and no chunks of zero length to split).
            dst.fill(fill);
            return;
        }
        let interior = self.pt * wp..(self.pt + h) * wp;
        for (src, plane) in image
            .chunks_exact(h * w)
            .zip(dst.chunks_exact_mut(self.plane()))
        {
            plane[..interior.start].fill(fill);
            for (s, row) in src
                .chunks_exact(w)
                .zip(plane[interior.clone()].chunks_exact_mut(wp))
            {
                row[..self.pl].fill(fill);
                row[self.pl..self.pl + w].copy_from_slice(s);
                row[self.pl + w..].fill(fill);
            }
            plane[interior.end..].fill(fill);
        }
    }
}

/// A layer's im2col gather, fixed at prepare: the padded planes' shape and where each row of
/// `B` starts in them (`ci·Hp·Wp + ky·dh·Wp + kx·dw`).
#[derive(Debug)]
pub(crate) struct Im2colPlan {
    pub pad: Padded,
    pub k_off: Vec<usize>,
}

impl Im2colPlan {
    pub fn new(g: &ConvGeom) -> Im2colPlan {
        let pad = Padded::of(g);
        let k_off = (0..g.cin_g)
            .flat_map(|ci| {
                (0..g.kh).flat_map(move |ky| {
                    (0..g.kw).map(move |kx| ci * pad.plane() + ky * g.dh * pad.wp + kx * g.dw)
                })
            })
            .collect();
        Im2colPlan { pad, k_off }
    }

    /// Where output position `(oy, ox)`'s window starts, relative to a row of `B`'s offset.
    #[inline(always)]
    pub fn at(&self, g: &ConvGeom, oy: usize, ox: usize) -> usize {
        oy * g.sh * self.pad.wp + ox * g.sw
    }
}

thread_local! {
    static CODES: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static REALS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `len` elements of this thread's buffer in `cell` (kept between layers; a
/// fresh one if the thread's is in use).
fn with_buffer<T: Copy + Default, R>(
    cell: &RefCell<Vec<T>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    match cell.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < len {
                v.resize(len, T::default());
            }
            f(&mut v[..len])
        }
        Err(_) => f(&mut vec![T::default(); len]),
    }
}

/// This thread's byte buffer for padded 8-bit planes.
pub(crate) fn with_codes<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    CODES.with(|c| with_buffer(c, len, f))
}

/// This thread's f32 buffer for padded planes.
pub(crate) fn with_reals<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    REALS.with(|c| with_buffer(c, len, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(h: usize, w: usize, k: usize, s: usize, pads: [usize; 4]) -> ConvGeom {
        let o = |i: usize, a: usize, b: usize| (i + a + b - k) / s + 1;
        ConvGeom {
            n: 1,
            cin: 2,
            h,
            w,
            cout: 1,
            oh: o(h, pads[0], pads[2]),
            ow: o(w, pads[1], pads[3]),
            kh: k,
            kw: k,
            sh: s,
            sw: s,
            dh: 1,
            dw: 1,
            pt: pads[0],
            pl: pads[1],
            groups: 1,
            cin_g: 2,
            cout_g: 1,
        }
    }

    #[test]
    fn padded_planes_hold_every_window_and_the_input_in_place() {
        // Asymmetric pads, a stride that leaves input columns unread.
        for (h, w, k, s, pads) in [
            (5, 4, 3, 1, [1, 1, 1, 1]),
            (6, 7, 3, 2, [0, 0, 1, 1]),
            (4, 4, 2, 2, [0; 4]),
        ] {
            let g = geom(h, w, k, s, pads);
            let p = Padded::of(&g);
            let image: Vec<u8> = (1..=(2 * h * w) as u8).collect();
            let mut dst = vec![0xAA; 2 * p.plane()];
            p.fill(&image, h, w, 0, &mut dst);
            for c in 0..2 {
                for y in 0..p.hp {
                    for x in 0..p.wp {
                        let (iy, ix) =
                            (y as isize - pads[0] as isize, x as isize - pads[1] as isize);
                        let inside = (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                        let want = if inside {
                            image[c * h * w + iy as usize * w + ix as usize]
                        } else {
                            0
                        };
                        assert_eq!(dst[c * p.plane() + y * p.wp + x], want, "{c} {y} {x}");
                    }
                }
            }
            let plan = Im2colPlan::new(&g);
            let last = plan.k_off[2 * k * k - 1] + plan.at(&g, g.oh - 1, g.ow - 1);
            let corner = ((g.oh - 1) * s + k - 1) * p.wp + (g.ow - 1) * s + k - 1;
            assert_eq!(last, p.plane() + corner, "the last tap of the last window");
            assert!(
                last < 2 * p.plane(),
                "the last window's last tap lies in the planes"
            );
        }
    }
}
