//! Plain pooling, the test oracle. Padding is ignored by max pooling; average pooling divides
//! by the window's size inside the padded input (`count_include_pad`) or inside the input.
use super::Pool;
use crate::tensor::Tensor;
use crate::Result;

/// Window bounds along one axis: `(start, end)` in the padded frame clipped to the padded
/// input's end, and the same clipped to the input.
pub(crate) fn window(
    o: usize,
    stride: usize,
    k: usize,
    pad_lo: usize,
    pad_hi: usize,
    len: usize,
) -> ((isize, isize), (usize, usize)) {
    let start = (o * stride) as isize - pad_lo as isize;
    let end = (start + k as isize).min((len + pad_hi) as isize);
    let s = start.max(0) as usize;
    let e = (end.max(0) as usize).min(len);
    ((start, end), (s, e.max(s)))
}

/// Max (`max = true`) or average pooling of `x`.
pub fn pool(p: &Pool, max: bool, x: &Tensor) -> Result<Tensor> {
    let shape = p.output_shape("reference", x.shape())?;
    let s = x.shape();
    let (h, w, oh, ow) = (s[2], s[3], shape[2], shape[3]);
    let mut out = Tensor::zeros(&shape);
    for (i, v) in out.data_mut().iter_mut().enumerate() {
        let (ox, oy, nc) = (i % ow, (i / ow) % oh, i / (ow * oh));
        let ((hs, he), (ys, ye)) = window(oy, p.stride[0], p.kernel[0], p.pads[0], p.pads[2], h);
        let ((ws, we), (xs, xe)) = window(ox, p.stride[1], p.kernel[1], p.pads[1], p.pads[3], w);
        let plane = &x.data()[nc * h * w..(nc + 1) * h * w];
        if max {
            let mut m = f32::NEG_INFINITY;
            for y in ys..ye {
                for xx in xs..xe {
                    m = m.max(plane[y * w + xx]);
                }
            }
            *v = m;
        } else {
            let mut sum = 0.0f64;
            for y in ys..ye {
                for xx in xs..xe {
                    sum += plane[y * w + xx] as f64;
                }
            }
            let count = if p.count_include_pad {
                (he - hs) * (we - ws)
            } else {
                ((ye - ys) * (xe - xs)) as isize
            };
            *v = (sum / count.max(1) as f64) as f32;
        }
    }
    Ok(out)
}

/// Global average pooling: the mean of each channel's plane.
pub fn global_average(x: &Tensor) -> Tensor {
    let s = x.shape();
    let hw = s[2] * s[3];
    let data = x
        .data()
        .chunks(hw.max(1))
        .map(|c| (c.iter().map(|&v| v as f64).sum::<f64>() / hw.max(1) as f64) as f32)
        .collect();
    Tensor::from_vec(&[s[0], s[1], 1, 1], data)
        .unwrap_or_else(|| Tensor::zeros(&[s[0], s[1], 1, 1]))
}
