//! Requantisation: turning a 32-bit accumulator back into 8-bit codes with integer
//! arithmetic only.
//!
//! A real multiplier `M > 0` (e.g. `s_x · s_w / s_y` for a convolution) is represented as
//! `M ≈ m0 · 2^−shift` in one of two forms:
//!
//! - **narrow** (`M < 0.5`, every convolution and fully connected layer in practice):
//!   `shift = 32` and `m0 = round(M · 2^32) < 2^31`, i.e. `M` in Q0.32 fixed point;
//! - **wide** (`M >= 0.5`): `m0 ∈ [2^30, 2^31)` (31 significant bits), `shift ∈ [1, 31]`.
//!
//! Applying it to an accumulator is **one** rounding of the exact 64-bit product:
//!
//! ```text
//! apply(acc) = (acc · m0 + 2^(shift−1)) >> shift        (arithmetic shift)
//! ```
//!
//! i.e. round to nearest with ties towards +∞ — TFLite's "single rounding" form, and the
//! rounding of Arm's `SQRDMULH`/`SRSHL` pair. Unlike gemmlowp's two-step
//! `SaturatingRoundingDoublingHighMul` + `RoundingDivideByPOT`, nothing is rounded twice: the
//! result is the integer nearest to `acc · m0 · 2^−shift`.
//!
//! Why narrow multipliers are Q0.32 rather than 31 significant bits with a longer shift: the
//! result is then exactly the high half of the 64-bit product, so the SIMD kernels need no
//! per-channel variable shift, and the rounding constant, the bias (`(acc + bias)·m0 =
//! acc·m0 + bias·m0`) and the output zero point (`+ zp·2^32`) fold into one 64-bit constant
//! added to the product. That removed 3 of 13 vector operations per 16 outputs and made the
//! short-K 1×1 expansions 8–12% faster (BENCHMARKS.md). The cost is precision: `M` is held to
//! `2^−33` absolute instead of `2^−31` relative, so `apply` differs from `acc · M` by at most
//! `1/2 + |acc| · 2^−33`. The largest accumulator of an 8-bit product of depth `K` is
//! `K · 255 · 128`; for the deepest layer in the zoo (`K = 4608`, a 3×3 over 512 channels)
//! that extra error is under 0.02 of a code step, for the usual `K <= 1152` under 0.005.
//!
//! Every kernel (reference, scalar, AVX2, AVX-512, NEON) computes exactly this, so the
//! optimised kernels match the reference bit for bit.
//!
//! SIMD kernels keep the shifted product in 32 bits; for `M > 0.5` they first clamp the
//! accumulator to `±`[`Multiplier::acc_bound`], which cannot change an 8-bit result (the
//! clamped product still saturates the output).

/// A positive real multiplier in fixed point: `M ≈ m0 · 2^−shift`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Multiplier {
    /// Narrow (`M < 0.5`): `round(M · 2^32)`, below `2^31`. Wide: `2^30 <= m0 < 2^31`.
    /// 0 for `M = 0`.
    pub m0: i32,
    /// Narrow: 32. Wide: `1..=31`.
    pub shift: u32,
}

impl Multiplier {
    /// The fixed-point form of `real` (see the module documentation). `real <= 0` or NaN
    /// gives the zero multiplier; `real >= 2^30` saturates to `≈ 2^30` (no quantized layer
    /// has such a ratio: it would mean one input step spans 2^30 output steps).
    pub fn new(real: f64) -> Multiplier {
        if real.is_nan() || real <= 0.0 {
            return Multiplier { m0: 0, shift: 32 };
        }
        if real < 0.5 {
            // Exact scaling by a power of two, then one rounding.
            let m0 = (real * 2f64.powi(32)).round();
            if m0 < 2f64.powi(31) {
                return Multiplier {
                    m0: m0 as i32,
                    shift: 32,
                };
            }
            // Rounds up to 2^31: that is the wide form of 0.5.
        }
        if real >= (1u64 << 30) as f64 {
            return Multiplier {
                m0: i32::MAX,
                shift: 1,
            };
        }
        // real = frac · 2^exp with frac in [0.5, 1).
        let mut exp = real.log2().floor() as i32 + 1;
        let mut frac = real / 2f64.powi(exp);
        // log2 can be off by one ulp at powers of two.
        if frac >= 1.0 {
            exp += 1;
            frac /= 2.0;
        } else if frac < 0.5 {
            exp -= 1;
            frac *= 2.0;
        }
        let mut m0 = (frac * (1u64 << 31) as f64).round() as i64;
        if m0 == 1 << 31 {
            m0 /= 2;
            exp += 1;
        }
        Multiplier {
            m0: m0 as i32,
            shift: (31 - exp).clamp(1, 31) as u32,
        }
    }

    /// Whether this is the narrow form (`shift == 32`, see the module documentation).
    pub fn is_narrow(self) -> bool {
        self.shift == 32
    }

    /// The real value represented.
    pub fn to_f64(self) -> f64 {
        f64::from(self.m0) * 2f64.powi(-(self.shift as i32))
    }

    /// `round(acc · m0 · 2^−shift)`, ties towards +∞, saturated to i32.
    #[inline(always)]
    pub fn apply(self, acc: i32) -> i32 {
        let p = i64::from(acc) * i64::from(self.m0) + (1i64 << (self.shift - 1));
        (p >> self.shift).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
    }

    /// `clamp(apply(acc) + zero_point, lo, hi)` as a code: the store of every quantized kernel.
    #[inline(always)]
    pub fn to_code(self, acc: i32, zero_point: i32, lo: i32, hi: i32) -> u8 {
        (i64::from(self.apply(acc)) + i64::from(zero_point)).clamp(i64::from(lo), i64::from(hi))
            as u8
    }

    /// The largest `|acc|` a SIMD kernel must keep before multiplying so that the shifted
    /// product fits in 32 bits: `floor(2^30 / M)` when `M > 0.5`, else `i32::MAX` (no clamp
    /// needed). Clamping to it never changes an 8-bit result.
    pub fn acc_bound(self) -> i32 {
        let m = self.to_f64();
        if m <= 0.5 {
            i32::MAX
        } else {
            ((1u64 << 30) as f64 / m).floor().max(1.0) as i32
        }
    }
}

/// The requantisation of one output channel of a product (convolution, fully connected):
/// `code = clamp(M·(acc + bias) + zero_point, lo, hi)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelRequant {
    /// The multiplier `s_x · s_w[c] / s_y`.
    pub mult: Multiplier,
    /// Added to the accumulator first (the quantized bias, with zero-point corrections).
    pub bias: i32,
}

/// Requantisation of a sum of two QUInt8 operands into a third: with `A = round(s_a/s_y ·
/// 2^shift)` and `B = round(s_b/s_y · 2^shift)`,
///
/// ```text
/// y = clamp(z_y + ((A·(a − z_a) + B·(b − z_b) + 2^(shift−1)) >> shift), lo, hi)
/// ```
///
/// `shift` is chosen so that `max(A, B) ∈ [2^20, 2^21)`: the sum fits in 31 bits for any
/// codes, so a SIMD kernel computes it in 32-bit lanes; the ratios carry 21 significant bits
/// (relative error ≤ 2^−21, under 2.5e−4 of a step on the largest result).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddRequant {
    pub a: i32,
    pub b: i32,
    pub shift: u32,
    pub za: i32,
    pub zb: i32,
    pub zy: i32,
    pub lo: i32,
    pub hi: i32,
}

impl AddRequant {
    /// The requantisation of `a + b` from operands quantized with `qa`, `qb` into `qy`,
    /// clamped to codes `lo..=hi`.
    pub fn new(
        qa: super::QParams,
        qb: super::QParams,
        qy: super::QParams,
        lo: u8,
        hi: u8,
    ) -> AddRequant {
        let ra = f64::from(qa.scale) / f64::from(qy.scale);
        let rb = f64::from(qb.scale) / f64::from(qy.scale);
        let big = ra.max(rb).max(f64::MIN_POSITIVE);
        // 2^20 <= big · 2^shift < 2^21.
        let shift = (20 - big.log2().floor() as i32).clamp(1, 31);
        let fix = |r: f64| {
            (r * 2f64.powi(shift))
                .round()
                .clamp(0.0, ((1 << 21) - 1) as f64) as i32
        };
        AddRequant {
            a: fix(ra),
            b: fix(rb),
            shift: shift as u32,
            za: i32::from(qa.zero_point),
            zb: i32::from(qb.zero_point),
            zy: i32::from(qy.zero_point),
            lo: i32::from(lo),
            hi: i32::from(hi),
        }
    }

    /// The code of `a + b`.
    #[inline(always)]
    pub fn apply(&self, a: u8, b: u8) -> u8 {
        let s = self.a * (i32::from(a) - self.za) + self.b * (i32::from(b) - self.zb);
        let r = (s + (1 << (self.shift - 1))) >> self.shift;
        (r + self.zy).clamp(self.lo, self.hi) as u8
    }
}

/// A code-to-code map `x → clamp(round(M·(x − z_x)) + z_y, lo, hi)` as a 256-entry table,
/// computed with [`Multiplier`] (used where a value changes quantization without
/// arithmetic: concatenation inputs, standalone activations, pads).
pub fn requant_table(from: super::QParams, to: super::QParams, lo: u8, hi: u8) -> [u8; 256] {
    let m = Multiplier::new(f64::from(from.scale) / f64::from(to.scale));
    std::array::from_fn(|x| {
        m.to_code(
            x as i32 - i32::from(from.zero_point),
            i32::from(to.zero_point),
            i32::from(lo),
            i32::from(hi),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::QParams;

    /// The exact rounding of `acc · m0 · 2^−shift` (ties up), computed in i128.
    fn exact(m: Multiplier, acc: i32) -> i64 {
        let p = i128::from(acc) * i128::from(m.m0);
        let d = 1i128 << m.shift;
        (p + d / 2).div_euclid(d) as i64
    }

    #[test]
    fn wide_multipliers_keep_31_bits_and_narrow_ones_are_q0_32() {
        for &r in &[0.5, 0.75, 1.0, 1.5, 3.0, 1234.5] {
            let m = Multiplier::new(r);
            assert!(!m.is_narrow() && m.shift <= 31, "{r}: {m:?}");
            assert!(m.m0 >= 1 << 30, "{r}: m0 {}", m.m0);
            assert!(((m.to_f64() - r) / r).abs() <= 2f64.powi(-31), "{r}: {m:?}");
        }
        for &r in &[1e-15, 1e-9, 3.7e-5, 0.001234, 0.25, 0.4999] {
            let m = Multiplier::new(r);
            assert!(m.is_narrow(), "{r}: {m:?}");
            assert!(m.m0 < i32::MAX, "{r}: {m:?}");
            assert!((m.to_f64() - r).abs() <= 2f64.powi(-33), "{r}: {m:?}");
        }
        // Just below 0.5, rounding to 2^31 in Q0.32: the wide form of 0.5.
        let edge = Multiplier::new(0.5 - 2f64.powi(-40));
        assert_eq!((edge.m0, edge.shift), (1 << 30, 31));
        assert_eq!(Multiplier::new(1e-15).m0, 0);
        for r in [0.0, -1.0, f64::NAN] {
            assert_eq!(Multiplier::new(r), Multiplier { m0: 0, shift: 32 }, "{r}");
        }
    }

    #[test]
    fn apply_is_the_single_rounding_of_the_exact_product() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let r = 2f64.powf(-((next() % 4000) as f64) / 100.0) * 1.7;
            let m = Multiplier::new(r);
            let acc = (next() as i64 % (1 << 30)) as i32;
            assert_eq!(i64::from(m.apply(acc)), exact(m, acc), "{m:?} × {acc}");
        }
        // Ties go up.
        let half = Multiplier {
            m0: 1 << 30,
            shift: 31,
        };
        assert_eq!(half.apply(1), 1);
        assert_eq!(half.apply(-1), 0);
        assert_eq!(half.apply(3), 2);
        assert_eq!(half.apply(-3), -1);
    }

    #[test]
    fn rounding_is_nearest() {
        // Against the real product: |apply(acc) − acc·M| <= 1/2 + |acc·M|·2^−31 (wide) or
        // 1/2 + |acc|·2^−33 (narrow).
        for &r in &[0.0123, 0.3, 0.9, 2.5] {
            let m = Multiplier::new(r);
            for acc in (-100_000..100_000).step_by(37) {
                let want = f64::from(acc) * r;
                let got = f64::from(m.apply(acc));
                let err = if m.is_narrow() {
                    f64::from(acc).abs() * 2f64.powi(-33)
                } else {
                    want.abs() * 2f64.powi(-31)
                };
                assert!(
                    (got - want).abs() <= 0.5 + err + 1e-12,
                    "{r} × {acc}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn acc_bound_never_changes_a_code() {
        for &r in &[0.6, 1.0, 7.5, 300.0, 1e6] {
            let m = Multiplier::new(r);
            let b = m.acc_bound();
            for &acc in &[i32::MAX, i32::MIN + 1, b, -b, b + 1, 1 << 29, -(1 << 29)] {
                let clamped = acc.clamp(-b, b);
                assert_eq!(
                    m.to_code(acc, 7, 0, 255),
                    m.to_code(clamped, 7, 0, 255),
                    "{r}: {acc}"
                );
                // The clamped product fits in 32 bits.
                let p = (i64::from(clamped) * i64::from(m.m0)) >> m.shift;
                assert!(p.abs() <= 1 << 31, "{r}: {acc} gives {p}");
            }
        }
        assert_eq!(Multiplier::new(0.4).acc_bound(), i32::MAX);
    }

    #[test]
    fn add_requant_matches_real_arithmetic() {
        let qa = QParams {
            scale: 0.031,
            zero_point: 120,
        };
        let qb = QParams {
            scale: 0.0113,
            zero_point: 3,
        };
        let qy = QParams {
            scale: 0.04,
            zero_point: 100,
        };
        let r = AddRequant::new(qa, qb, qy, 0, 255);
        assert!(r.a.max(r.b) >= 1 << 20 && r.a.max(r.b) < 1 << 21);
        for a in 0..=255u8 {
            for b in (0..=255u8).step_by(7) {
                let real = qa.dequantize(a) + qb.dequantize(b);
                let want = real / qy.scale + 100.0;
                let got = f32::from(r.apply(a, b));
                if (0.5..254.5).contains(&want) {
                    assert!((got - want).abs() <= 0.5 + 1e-3, "{a}+{b}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn tables_requantize_and_clamp() {
        let from = QParams {
            scale: 0.1,
            zero_point: 50,
        };
        let to = QParams {
            scale: 0.2,
            zero_point: 10,
        };
        let t = requant_table(from, to, 10, 255);
        assert_eq!(t[50], 10);
        assert_eq!(t[52], 11); // 0.2 real → code 11
        assert_eq!(t[0], 10); // −5.0 clamped at ReLU's 0
        let id = requant_table(from, from, 0, 255);
        assert!(id.iter().enumerate().all(|(i, &v)| v as usize == i));
    }
}
