//! The core's peak multiply-add rates, 8-bit integer against F32: how much faster an 8-bit
//! kernel can be than an F32 one on this CPU before memory traffic enters at all.
//!
//! Each line times a loop of independent multiply-accumulates that only the execution
//! ports limit (8 accumulators, operands in registers), on 1 thread and on every thread:
//!
//! | form | instructions per group | multiply-adds per 256-bit group |
//! | --- | --- | ---: |
//! | F32 FMA | `vfmadd231ps` | 8 |
//! | 8-bit exact (our AVX2 form) | `vpmaddwd` + `vpaddd` on zero-extended 16-bit pairs | 16 |
//! | 8-bit saturating (`vpmaddubsw` form) | `vpmaddubsw` + `vpmaddwd` by ones + `vpaddd` | 32 |
//! | VNNI | `vpdpbusd` | 32 |
//!
//! plus the 512-bit forms on AVX-512 machines. Written in inline assembly because in Rust
//! (or C) with intrinsics the compiler hoists a product of loop-invariant operands out of
//! the loop, and what is left times the adds.
//!
//! `cargo run --release -p ulayer --example isa_peak [seconds per line]`
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::asm;
    use std::arch::x86_64::*;

    /// One timed form: its name, multiply-adds per loop iteration, and the loop.
    pub struct Form {
        pub name: &'static str,
        pub macs_per_iter: f64,
        pub run: fn(u64),
    }

    /// One timed loop: `$body` repeated `iters` times, 8 accumulators `c0..c7`, operands `a`,
    /// `b` (1.0f in every lane: no denormals in the FMA forms) and `ones`, temporaries `t0`,
    /// `t1`; `$class` is the register class of the vector width.
    macro_rules! form {
        ($fn:ident, $feat:literal, $class:ident, $set:ident, $zero:ident, $($body:literal),+) => {
            #[target_feature(enable = $feat)]
            unsafe fn $fn(iters: u64) {
                let a = $set(0x3f80_0000);
                let b = a;
                let ones = $set(0x0001_0001);
                let [mut c0, mut c1, mut c2, mut c3] = [$zero(); 4];
                let [mut c4, mut c5, mut c6, mut c7] = [$zero(); 4];
                asm!(
                    "/* operands some forms leave unused: {ones} {t0} {t1} */",
                    "2:",
                    $($body,)+
                    "dec {n}",
                    "jnz 2b",
                    n = inout(reg) iters => _,
                    a = in($class) a, b = in($class) b, ones = in($class) ones,
                    c0 = inout($class) c0, c1 = inout($class) c1,
                    c2 = inout($class) c2, c3 = inout($class) c3,
                    c4 = inout($class) c4, c5 = inout($class) c5,
                    c6 = inout($class) c6, c7 = inout($class) c7,
                    t0 = out($class) _, t1 = out($class) _,
                    options(nostack, nomem),
                );
                std::hint::black_box([c0, c1, c2, c3, c4, c5, c6, c7]);
            }
        };
    }
    macro_rules! form256 {
        ($fn:ident, $feat:literal, $($body:literal),+) => {
            form!($fn, $feat, ymm_reg, _mm256_set1_epi32, _mm256_setzero_si256, $($body),+);
        };
    }
    /// The same body at both widths.
    macro_rules! both {
        ($f256:ident, $feat256:literal, $f512:ident, $feat512:literal, $($body:literal),+) => {
            form256!($f256, $feat256, $($body),+);
            form512!($f512, $feat512, $($body),+);
        };
    }
    macro_rules! form512 {
        ($fn:ident, $feat:literal, $($body:literal),+) => {
            form!($fn, $feat, zmm_reg, _mm512_set1_epi32, _mm512_setzero_si512, $($body),+);
        };
    }

    // Eight accumulators, each updated once per iteration; two temporaries alternate so that
    // no product waits for the previous one's add.
    both!(
        fma256,
        "avx2,fma",
        fma512,
        "avx512f",
        "vfmadd231ps {c0}, {a}, {b}",
        "vfmadd231ps {c1}, {a}, {b}",
        "vfmadd231ps {c2}, {a}, {b}",
        "vfmadd231ps {c3}, {a}, {b}",
        "vfmadd231ps {c4}, {a}, {b}",
        "vfmadd231ps {c5}, {a}, {b}",
        "vfmadd231ps {c6}, {a}, {b}",
        "vfmadd231ps {c7}, {a}, {b}"
    );
    both!(
        madd256,
        "avx2",
        madd512,
        "avx512f,avx512bw",
        "vpmaddwd {t0}, {a}, {b}",
        "vpaddd {c0}, {c0}, {t0}",
        "vpmaddwd {t1}, {a}, {b}",
        "vpaddd {c1}, {c1}, {t1}",
        "vpmaddwd {t0}, {a}, {b}",
        "vpaddd {c2}, {c2}, {t0}",
        "vpmaddwd {t1}, {a}, {b}",
        "vpaddd {c3}, {c3}, {t1}",
        "vpmaddwd {t0}, {a}, {b}",
        "vpaddd {c4}, {c4}, {t0}",
        "vpmaddwd {t1}, {a}, {b}",
        "vpaddd {c5}, {c5}, {t1}",
        "vpmaddwd {t0}, {a}, {b}",
        "vpaddd {c6}, {c6}, {t0}",
        "vpmaddwd {t1}, {a}, {b}",
        "vpaddd {c7}, {c7}, {t1}"
    );
    form256!(
        maddubs256,
        "avx2",
        "vpmaddubsw {t0}, {a}, {b}",
        "vpmaddwd {t0}, {t0}, {ones}",
        "vpaddd {c0}, {c0}, {t0}",
        "vpmaddubsw {t1}, {a}, {b}",
        "vpmaddwd {t1}, {t1}, {ones}",
        "vpaddd {c1}, {c1}, {t1}",
        "vpmaddubsw {t0}, {a}, {b}",
        "vpmaddwd {t0}, {t0}, {ones}",
        "vpaddd {c2}, {c2}, {t0}",
        "vpmaddubsw {t1}, {a}, {b}",
        "vpmaddwd {t1}, {t1}, {ones}",
        "vpaddd {c3}, {c3}, {t1}",
        "vpmaddubsw {t0}, {a}, {b}",
        "vpmaddwd {t0}, {t0}, {ones}",
        "vpaddd {c4}, {c4}, {t0}",
        "vpmaddubsw {t1}, {a}, {b}",
        "vpmaddwd {t1}, {t1}, {ones}",
        "vpaddd {c5}, {c5}, {t1}",
        "vpmaddubsw {t0}, {a}, {b}",
        "vpmaddwd {t0}, {t0}, {ones}",
        "vpaddd {c6}, {c6}, {t0}",
        "vpmaddubsw {t1}, {a}, {b}",
        "vpmaddwd {t1}, {t1}, {ones}",
        "vpaddd {c7}, {c7}, {t1}"
    );
    form256!(
        vnni256,
        "avx2,avxvnni",
        "{{vex}} vpdpbusd {c0}, {a}, {b}",
        "{{vex}} vpdpbusd {c1}, {a}, {b}",
        "{{vex}} vpdpbusd {c2}, {a}, {b}",
        "{{vex}} vpdpbusd {c3}, {a}, {b}",
        "{{vex}} vpdpbusd {c4}, {a}, {b}",
        "{{vex}} vpdpbusd {c5}, {a}, {b}",
        "{{vex}} vpdpbusd {c6}, {a}, {b}",
        "{{vex}} vpdpbusd {c7}, {a}, {b}"
    );
    form512!(
        vnni512,
        "avx512f,avx512vnni",
        "vpdpbusd {c0}, {a}, {b}",
        "vpdpbusd {c1}, {a}, {b}",
        "vpdpbusd {c2}, {a}, {b}",
        "vpdpbusd {c3}, {a}, {b}",
        "vpdpbusd {c4}, {a}, {b}",
        "vpdpbusd {c5}, {a}, {b}",
        "vpdpbusd {c6}, {a}, {b}",
        "vpdpbusd {c7}, {a}, {b}"
    );

    /// The forms this CPU can run, F32 first in each width.
    pub fn forms() -> Vec<Form> {
        let mut v = Vec::new();
        // SAFETY (all the closures below): each form runs only after its features were
        // detected.
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            v.push(Form {
                name: "F32 FMA, 256-bit (vfmadd231ps)",
                macs_per_iter: 64.0,
                run: |n| unsafe { fma256(n) },
            });
            v.push(Form {
                name: "8-bit exact, 256-bit (vpmaddwd + vpaddd, 16-bit pairs)",
                macs_per_iter: 128.0,
                run: |n| unsafe { madd256(n) },
            });
            v.push(Form {
                name: "8-bit saturating, 256-bit (vpmaddubsw + vpmaddwd + vpaddd)",
                macs_per_iter: 256.0,
                run: |n| unsafe { maddubs256(n) },
            });
        }
        if is_x86_feature_detected!("avxvnni") {
            v.push(Form {
                name: "8-bit VNNI, 256-bit (vpdpbusd, VEX)",
                macs_per_iter: 256.0,
                run: |n| unsafe { vnni256(n) },
            });
        }
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
            v.push(Form {
                name: "F32 FMA, 512-bit (vfmadd231ps)",
                macs_per_iter: 128.0,
                run: |n| unsafe { fma512(n) },
            });
            v.push(Form {
                name: "8-bit exact, 512-bit (vpmaddwd + vpaddd, 16-bit pairs)",
                macs_per_iter: 256.0,
                run: |n| unsafe { madd512(n) },
            });
        }
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni") {
            v.push(Form {
                name: "8-bit VNNI, 512-bit (vpdpbusd)",
                macs_per_iter: 512.0,
                run: |n| unsafe { vnni512(n) },
            });
        }
        v
    }
}

#[cfg(target_arch = "x86_64")]
fn main() {
    use std::time::Instant;
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.5);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let forms = x86::forms();
    if forms.is_empty() {
        println!("no AVX2 on this CPU: nothing to time");
        return;
    }
    // Iterations for about `secs` per measurement, from a short calibration run.
    let rate = |run: fn(u64), iters: u64, workers: usize| -> f64 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(move || run(iters));
            }
        });
        iters as f64 * workers as f64 / t.elapsed().as_secs_f64()
    };
    println!(
        "peak multiply-add rates, {threads} threads available; median of 5 runs of ~{secs} s\n"
    );
    println!(
        "{:<62} {:>12} {:>14} {:>10}",
        "form",
        "GMAC/s 1 thr",
        format!("GMAC/s {threads} thr"),
        "vs F32"
    );
    let mut f32_rate = None;
    for f in &forms {
        let probe = rate(f.run, 1_000_000, 1);
        let iters = ((probe * secs) as u64).max(1000);
        let med = |workers: usize| {
            let mut r: Vec<f64> = (0..5).map(|_| rate(f.run, iters, workers)).collect();
            r.sort_by(f64::total_cmp);
            r[2] * f.macs_per_iter / 1e9
        };
        let (one, all) = (med(1), med(threads));
        if f.name.starts_with("F32") {
            f32_rate = Some(one);
        }
        let vs = f32_rate.map_or("-".to_string(), |r| format!("{:.2}×", one / r));
        println!("{:<62} {:>12.1} {:>14.1} {:>10}", f.name, one, all, vs);
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("isa_peak times x86-64 instruction forms only");
}
