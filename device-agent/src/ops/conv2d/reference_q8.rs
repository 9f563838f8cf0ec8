//! Plain 8-bit convolution, the test oracle of the QUInt8 kernels: direct loops, exact
//! integer arithmetic (`i64`), never optimised.
use super::Conv2d;
use crate::quant::{activation_codes, Multiplier, QParams, QTensor, QWeights};
use crate::Result;

/// The whole output of `c` (with its 8-bit weights `w`) applied to `x`, quantized with `out`:
/// `code = clamp(z_y + M_c·(b_c + Σ w·(x − z_x)))`, `M_c = s_x·s_w[c]/s_y`, padding
/// contributing real 0.
pub fn conv2d(c: &Conv2d, w: &QWeights, x: &QTensor, out: QParams) -> Result<QTensor> {
    let shape = c.output_shape("reference", x.shape())?;
    let (n, cin, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (cout, oh, ow) = (shape[1], shape[2], shape[3]);
    let [kh, kw] = c.kernel();
    let (cin_g, cout_g) = (cin / c.groups, cout / c.groups);
    let xq = x.qparams();
    let zx = i64::from(xq.zero_point);
    let (lo, hi) = activation_codes(c.activation, out);
    let mut y = QTensor::zeros(&shape, out);
    let yd = y.data_mut();
    for oc in 0..cout {
        let m =
            Multiplier::new(f64::from(xq.scale) * f64::from(w.scales[oc]) / f64::from(out.scale));
        let g = oc / cout_g;
        for b in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = i64::from(w.bias[oc]);
                    for ci in 0..cin_g {
                        let ic = g * cin_g + ci;
                        for ky in 0..kh {
                            let iy = (oy * c.stride[0] + ky * c.dilation[0]) as isize
                                - c.pads[0] as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (ox * c.stride[1] + kx * c.dilation[1]) as isize
                                    - c.pads[1] as isize;
                                if ix < 0 || ix >= wd as isize {
                                    continue;
                                }
                                let xv = i64::from(
                                    x.data()[((b * cin + ic) * h + iy as usize) * wd + ix as usize],
                                );
                                let wv = i64::from(w.data[((oc * cin_g + ci) * kh + ky) * kw + kx]);
                                acc += wv * (xv - zx);
                            }
                        }
                    }
                    let acc = acc.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
                    yd[((b * cout + oc) * oh + oy) * ow + ox] =
                        m.to_code(acc, i32::from(out.zero_point), i32::from(lo), i32::from(hi));
                }
            }
        }
    }
    Ok(y)
}
