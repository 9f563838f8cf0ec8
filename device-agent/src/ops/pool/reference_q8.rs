//! Plain 8-bit pooling, the test oracle of the QUInt8 kernels.
//!
//! Max pooling picks the largest code (quantization is monotonic) and maps it to the
//! output's quantization; average pooling sums `x − z_x` in integers and requantizes the sum
//! with `M = s_x / (s_y · count)`, `count` the divisor of the F32 op.
use super::reference::window;
use super::Pool;
use crate::quant::{requant_table_of, Multiplier, QParams, QTensor};
use crate::Result;

/// Max (`max = true`) or average pooling of `x` into `out`'s quantization.
pub fn pool(p: &Pool, max: bool, x: &QTensor, out: QParams) -> Result<QTensor> {
    let shape = p.output_shape("reference", x.shape())?;
    let s = x.shape();
    let (h, w, oh, ow) = (s[2], s[3], shape[2], shape[3]);
    let xq = x.qparams();
    let table = requant_table_of(xq, out);
    let mut y = QTensor::zeros(&shape, out);
    for (i, v) in y.data_mut().iter_mut().enumerate() {
        let (ox, oy, nc) = (i % ow, (i / ow) % oh, i / (ow * oh));
        let ((hs, he), (ys, ye)) = window(oy, p.stride[0], p.kernel[0], p.pads[0], p.pads[2], h);
        let ((ws, we), (xs, xe)) = window(ox, p.stride[1], p.kernel[1], p.pads[1], p.pads[3], w);
        let plane = &x.data()[nc * h * w..(nc + 1) * h * w];
        if max {
            let mut m = 0u8;
            for yy in ys..ye {
                for xx in xs..xe {
                    m = m.max(plane[yy * w + xx]);
                }
            }
            *v = table[m as usize];
        } else {
            let mut acc = 0i32;
            for yy in ys..ye {
                for xx in xs..xe {
                    acc += i32::from(plane[yy * w + xx]) - i32::from(xq.zero_point);
                }
            }
            let count = if p.count_include_pad {
                (he - hs) * (we - ws)
            } else {
                ((ye - ys) * (xe - xs)) as isize
            };
            *v = average_code(acc, count.max(1) as usize, xq, out);
        }
    }
    Ok(y)
}

/// Global average pooling of `x` into `out`'s quantization.
pub fn global_average(x: &QTensor, out: QParams) -> QTensor {
    let s = x.shape();
    let hw = (s[2] * s[3]).max(1);
    let xq = x.qparams();
    let data = x
        .data()
        .chunks(hw)
        .map(|c| {
            let acc: i32 = c
                .iter()
                .map(|&v| i32::from(v) - i32::from(xq.zero_point))
                .sum();
            average_code(acc, hw, xq, out)
        })
        .collect();
    QTensor::from_vec(&[s[0], s[1], 1, 1], data, out).expect("one code per plane")
}

/// `clamp(z_y + round(s_x·acc / (s_y·count)))` with the fixed-point multiplier.
pub(crate) fn average_code(acc: i32, count: usize, xq: QParams, out: QParams) -> u8 {
    average_multiplier(count, xq, out).to_code(acc, i32::from(out.zero_point), 0, 255)
}

/// The multiplier of an average over `count` values.
pub(crate) fn average_multiplier(count: usize, xq: QParams, out: QParams) -> Multiplier {
    Multiplier::new(f64::from(xq.scale) / (f64::from(out.scale) * count as f64))
}
