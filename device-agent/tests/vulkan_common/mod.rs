//! Shared helpers of the Vulkan tests (included with `mod vulkan_common;`).
#![allow(dead_code)]
use ulayer::backend::vulkan::{VulkanBackend, VulkanOptions};
use ulayer::backend::{Backend, Precision};
use ulayer::graph::Node;
use ulayer::ops::Op;
use ulayer::{Slice, Tensor};

/// True when this machine has lavapipe's ICD (installed by the README's setup); GPU tests
/// then must run. Without it they report themselves skipped.
pub fn lavapipe_installed() -> bool {
    ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
        .iter()
        .any(|d| {
            std::fs::read_dir(d)
                .map(|r| {
                    r.flatten()
                        .any(|e| e.file_name().to_string_lossy().starts_with("lvp_icd"))
                })
                .unwrap_or(false)
        })
}

/// The backend, or `None` (test skipped, said on stderr) when no Vulkan device can exist here.
pub fn backend_with(opts: VulkanOptions) -> Option<VulkanBackend> {
    match VulkanBackend::with_options(opts) {
        Ok(b) => Some(b),
        Err(e) if !lavapipe_installed() && std::env::var_os("ULAYER_REQUIRE_VULKAN").is_none() => {
            eprintln!("skipped: no Vulkan device ({e}); install mesa-vulkan-drivers");
            None
        }
        Err(e) => panic!("Vulkan backend expected on this machine: {e}"),
    }
}

pub fn backend() -> Option<VulkanBackend> {
    backend_with(VulkanOptions::default())
}

/// Deterministic xorshift generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1).
    pub fn sym(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn tensor(&mut self, shape: &[usize], scale: f32) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(shape, (0..n).map(|_| self.sym() * scale).collect()).unwrap()
    }
}

pub const SENTINEL: f32 = -12345.5;

/// Runs `op` on `inputs` as the union of `slices`, the output starting as SENTINEL.
pub fn run_slices(
    b: &VulkanBackend,
    op: &Op,
    inputs: &[&Tensor],
    slices: &[Slice],
    precision: Precision,
) -> Tensor {
    let node = Node {
        name: "t".into(),
        op: op.clone(),
        inputs: (0..inputs.len()).map(|i| format!("x{i}")).collect(),
        output: "y".into(),
    };
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let shape = op.output_shape("t", &shapes).expect("valid op");
    let p = b
        .prepare(&node, &shapes, &shape, precision)
        .expect("prepare");
    let mut out = Tensor::from_vec(&shape, vec![SENTINEL; shape.iter().product()]).unwrap();
    {
        let shared = out.shared();
        for s in slices {
            b.run(&p, inputs, &shared, s).expect("run");
        }
    }
    out
}

/// Largest |got - want| relative to `max(1e-3, max |want|)`; panics on NaN or sentinel.
pub fn rel_err(got: &Tensor, want: &Tensor, what: &str) -> f32 {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let scale = want.data().iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    got.data()
        .iter()
        .zip(want.data())
        .map(|(g, w)| {
            assert!(g.is_finite() || !w.is_finite(), "{what}: got {g}, want {w}");
            assert!(*g != SENTINEL, "{what}: element not written");
            if g == w {
                0.0
            } else {
                (g - w).abs() / scale
            }
        })
        .fold(0.0, f32::max)
}

/// Channel cuts at multiples of `pack` (plus the end) × row cuts in two.
pub fn packed_partition(shape: &[usize], pack: usize) -> Vec<Slice> {
    let (c, h) = ulayer::tensor::channels_rows(shape);
    let mut cuts: Vec<usize> = (0..c).step_by(pack.max(1) * 3).collect();
    cuts.push(c);
    cuts.dedup();
    let r = h / 2;
    let mut out = Vec::new();
    for w in cuts.windows(2) {
        for rows in [0..r, r..h] {
            if !rows.is_empty() {
                out.push(Slice {
                    channels: w[0]..w[1],
                    rows,
                });
            }
        }
    }
    out
}

/// Random grid of channel cuts × row cuts.
pub fn random_partition(rng: &mut Rng, shape: &[usize]) -> Vec<Slice> {
    let (c, h) = ulayer::tensor::channels_rows(shape);
    let cuts = |rng: &mut Rng, n: usize| {
        let k = 1 + rng.below(3);
        let mut v: Vec<usize> = (0..k).map(|_| rng.below(n + 1)).chain([0, n]).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let (cc, rc) = (cuts(rng, c), cuts(rng, h));
    let mut out = Vec::new();
    for cw in cc.windows(2) {
        for rw in rc.windows(2) {
            out.push(Slice {
                channels: cw[0]..cw[1],
                rows: rw[0]..rw[1],
            });
        }
    }
    out
}
