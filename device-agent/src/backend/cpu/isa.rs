//! Instruction-set selection for the CPU kernels: detected once at start-up, overridable with
//! `ULAYER_CPU_ISA=scalar|avx2|avx512|neon`, logged once at `info`.
use super::simd::{Scalar, Simd, SimdFn};
use std::sync::OnceLock;

/// A SIMD level the kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable Rust, one lane.
    Scalar,
    /// x86-64 AVX2 + FMA, 8 lanes.
    Avx2,
    /// x86-64 AVX-512F, 16 lanes.
    Avx512,
    /// aarch64 NEON (Advanced SIMD), 4 lanes.
    Neon,
}

impl Isa {
    /// The name used in logs, `ULAYER_CPU_ISA` and the agent's info ("avx512", "avx2", ...).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    /// Parses a name as written in `ULAYER_CPU_ISA`.
    pub fn from_name(s: &str) -> Option<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(Isa::Scalar),
            "avx2" => Some(Isa::Avx2),
            "avx512" | "avx512f" => Some(Isa::Avx512),
            "neon" => Some(Isa::Neon),
            _ => None,
        }
    }

    /// True when this machine can run kernels compiled for this level.
    pub fn supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The best level this machine supports.
    pub fn detect() -> Isa {
        [Isa::Avx512, Isa::Avx2, Isa::Neon]
            .into_iter()
            .find(|i| i.supported())
            .unwrap_or(Isa::Scalar)
    }

    /// Every level this machine supports, best first (the tests run each of them).
    pub fn available() -> Vec<Isa> {
        [Isa::Avx512, Isa::Avx2, Isa::Neon, Isa::Scalar]
            .into_iter()
            .filter(|i| i.supported())
            .collect()
    }

    /// f32 lanes in one vector register.
    pub fn lanes(self) -> usize {
        self.dispatch(Lanes)
    }

    /// The GEMM micro-tile: `(rows broadcast, vectors)`; a tile is `rows × vectors·lanes`.
    pub fn gemm_tile(self) -> (usize, usize) {
        self.dispatch(Tile)
    }

    /// Runs `f` instantiated for this level, inside a function compiled with its target
    /// features so that every `#[inline(always)]` kernel body in `f` is compiled for them.
    #[inline]
    pub fn dispatch<F: SimdFn>(self, f: F) -> F::Output {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if self.supported_cached() => {
                // SAFETY: AVX-512F and FMA are present (checked by `supported_cached`).
                unsafe { run_avx512(f) }
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 if self.supported_cached() => {
                // SAFETY: AVX2 and FMA are present (checked by `supported_cached`).
                unsafe { run_avx2(f) }
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon if self.supported_cached() => {
                // SAFETY: NEON is present (checked by `supported_cached`).
                unsafe { run_neon(f) }
            }
            _ => f.call::<Scalar>(),
        }
    }

    /// `supported`, memoised (`is_x86_feature_detected!` is cheap but not free).
    #[inline]
    fn supported_cached(self) -> bool {
        static CACHE: OnceLock<[bool; 4]> = OnceLock::new();
        let c = CACHE
            .get_or_init(|| [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon].map(Isa::supported));
        c[self as usize]
    }
}

struct Lanes;
impl SimdFn for Lanes {
    type Output = usize;
    #[inline(always)]
    fn call<S: Simd>(self) -> usize {
        S::LANES
    }
}

struct Tile;
impl SimdFn for Tile {
    type Output = (usize, usize);
    #[inline(always)]
    fn call<S: Simd>(self) -> (usize, usize) {
        (S::GEMM_ROWS, S::GEMM_VECS)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn run_avx512<F: SimdFn>(f: F) -> F::Output {
    f.call::<super::simd::Avx512>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<F: SimdFn>(f: F) -> F::Output {
    f.call::<super::simd::Avx2>()
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn run_neon<F: SimdFn>(f: F) -> F::Output {
    f.call::<super::simd::Neon>()
}

/// The level the CPU backend uses by default: `ULAYER_CPU_ISA` if set and supported, else the
/// best detected. Chosen and logged once per process.
pub fn default_isa() -> Isa {
    static CHOSEN: OnceLock<Isa> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let detected = Isa::detect();
        let chosen = match std::env::var("ULAYER_CPU_ISA") {
            Ok(v) => match Isa::from_name(&v) {
                Some(i) if i.supported() => i,
                Some(i) => {
                    tracing::warn!(requested = i.name(), using = detected.name(), "ULAYER_CPU_ISA names a level this CPU lacks");
                    detected
                }
                None => {
                    tracing::warn!(requested = %v, using = detected.name(), "ULAYER_CPU_ISA is not one of scalar|avx2|avx512|neon");
                    detected
                }
            },
            Err(_) => detected,
        };
        tracing::info!(isa = chosen.name(), detected = detected.name(), "CPU kernels");
        chosen
    })
}

/// The name of the level the CPU backend uses by default (see [`default_isa`]).
pub fn isa_name() -> &'static str {
    default_isa().name()
}
