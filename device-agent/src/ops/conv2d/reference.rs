//! Plain convolution, the test oracle: direct loops in f64, never optimised.
use super::Conv2d;
use crate::tensor::Tensor;
use crate::Result;

/// The whole output of `c` applied to the NCHW tensor `x`.
pub fn conv2d(c: &Conv2d, x: &Tensor) -> Result<Tensor> {
    let shape = c.output_shape("reference", x.shape())?;
    let (n, cin, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (cout, oh, ow) = (shape[1], shape[2], shape[3]);
    let [kh, kw] = c.kernel();
    let (cin_g, cout_g) = (cin / c.groups, cout / c.groups);
    let (xd, wd) = (x.data(), c.weight.data());
    let mut out = Tensor::zeros(&shape);
    let od = out.data_mut();
    for b in 0..n {
        for oc in 0..cout {
            let g = oc / cout_g;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = c.bias.as_ref().map_or(0.0, |b| b.data()[oc] as f64);
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
                                if ix < 0 || ix >= w as isize {
                                    continue;
                                }
                                let xv =
                                    xd[((b * cin + ic) * h + iy as usize) * w + ix as usize] as f64;
                                let wv = wd[((oc * cin_g + ci) * kh + ky) * kw + kx] as f64;
                                acc += xv * wv;
                            }
                        }
                    }
                    od[((b * cout + oc) * oh + oy) * ow + ox] = c.activation.apply(acc as f32);
                }
            }
        }
    }
    Ok(out)
}
