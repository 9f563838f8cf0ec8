//! Test helpers shared by every op's `tests.rs`: seeded data, every available backend
//! variant, slice partitions, and the checks that a kernel matches its reference and that a
//! union of disjoint slices equals the whole output.
use super::{CpuBackend, Isa};
use crate::backend::{Backend, Precision};
use crate::graph::Node;
use crate::ops::Op;
use crate::tensor::{channels_rows, Slice, Tensor};

/// SplitMix64: a small seeded generator for test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[-1, 1)`.
    pub fn sym(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    /// Uniform integer in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    /// A tensor of uniform values in `[-scale, scale)`.
    pub fn tensor(&mut self, shape: &[usize], scale: f32) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(shape, (0..n).map(|_| self.sym() * scale).collect())
            .expect("sized from shape")
    }
}

/// One backend per instruction set this machine supports, with 1 and 3 threads.
pub fn backends() -> Vec<CpuBackend> {
    Isa::available()
        .into_iter()
        .flat_map(|isa| [1, 3].map(|t| CpuBackend::with_isa(t, isa).expect("supported ISA")))
        .collect()
}

/// `|a − b| <= atol + rtol·|b|` element-wise (rtol 1e-4, atol 1e-5 scaled by `scale`).
#[track_caller]
pub fn assert_close(got: &Tensor, want: &Tensor, scale: f32, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    for (i, (a, b)) in got.data().iter().zip(want.data()).enumerate() {
        let tol = 1e-5 * scale.max(1.0) + 1e-4 * b.abs();
        assert!(
            (a - b).abs() <= tol || (a.is_infinite() && a == b),
            "{what}: element {i}: got {a}, want {b}"
        );
    }
}

/// A sentinel no kernel produces.
const SENTINEL: u32 = 0x7FC0_D00D;

/// Runs `op` on `inputs` computing `slices` one after the other on `backend`; the output
/// starts filled with a sentinel NaN.
pub fn run_slices(backend: &CpuBackend, op: &Op, inputs: &[&Tensor], slices: &[Slice]) -> Tensor {
    let node = Node {
        name: "t".into(),
        op: op.clone(),
        inputs: (0..inputs.len()).map(|i| format!("x{i}")).collect(),
        output: "y".into(),
    };
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let shape = op.output_shape("t", &shapes).expect("valid test op");
    let p = backend
        .prepare(&node, &shapes, &shape, Precision::F32)
        .expect("prepare");
    let mut out = Tensor::from_vec(
        &shape,
        vec![f32::from_bits(SENTINEL); shape.iter().product()],
    )
    .expect("sized");
    {
        let shared = out.shared();
        for s in slices {
            backend.run(&p, inputs, &shared, s).expect("run");
        }
    }
    out
}

/// Random disjoint slices covering an output of `shape`: a grid of channel cuts × row cuts.
pub fn random_partition(rng: &mut Rng, shape: &[usize]) -> Vec<Slice> {
    let (c, h) = channels_rows(shape);
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

/// The μLayer split: channels at 5/8 (CPU part), the rest split again by rows.
pub fn ulayer_partition(shape: &[usize]) -> Vec<Slice> {
    let (c, h) = channels_rows(shape);
    let c1 = c * 5 / 8;
    let r1 = h / 2;
    vec![
        Slice {
            channels: 0..c1,
            rows: 0..h,
        },
        Slice {
            channels: c1..c,
            rows: 0..r1,
        },
        Slice {
            channels: c1..c,
            rows: r1..h,
        },
    ]
}

/// Checks `op` on `inputs` against `want` on every backend: whole output within tolerance,
/// then the μLayer partition and `partitions` random partitions equal to the whole output
/// bit for bit, and one random slice alone writes exactly its own elements.
#[track_caller]
pub fn check_op(op: &Op, inputs: &[&Tensor], want: &Tensor, scale: f32, seed: u64) {
    let mut rng = Rng::new(seed);
    let shape = want.shape().to_vec();
    let (c, h) = channels_rows(&shape);
    for b in backends() {
        let what = format!(
            "{} on {} × {} threads",
            op.kind(),
            b.isa().name(),
            b.threads()
        );
        let whole = run_slices(&b, op, inputs, &[Slice::whole(&shape)]);
        assert_close(&whole, want, scale, &what);
        if !op.sliceable() {
            continue;
        }
        let mut parts = vec![ulayer_partition(&shape)];
        parts.extend((0..3).map(|_| random_partition(&mut rng, &shape)));
        for p in parts {
            let got = run_slices(&b, op, inputs, &p);
            assert!(
                got.data()
                    .iter()
                    .zip(whole.data())
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{what}: union of {p:?} differs from the whole output"
            );
        }
        // One slice writes its elements and nothing else.
        let c0 = rng.below(c);
        let r0 = rng.below(h);
        let s = Slice {
            channels: c0..c0 + 1 + rng.below(c - c0),
            rows: r0..r0 + 1 + rng.below(h - r0),
        };
        let got = run_slices(&b, op, inputs, std::slice::from_ref(&s));
        let g = super::Geom::of(&shape);
        for (i, v) in got.data().iter().enumerate() {
            let ch = (i / (g.h * g.inner)) % g.c;
            let row = (i / g.inner) % g.h;
            let inside = s.channels.contains(&ch) && s.rows.contains(&row);
            assert_eq!(
                v.to_bits() != SENTINEL,
                inside,
                "{what}: slice {s:?}, element {i} (channel {ch}, row {row}) {}",
                if inside {
                    "not written"
                } else {
                    "written outside the slice"
                }
            );
        }
    }
}
