//! Clock alignment: maps the device's `CLOCK_MONOTONIC` nanoseconds onto the power monitor's
//! sample index from the sync pulses that bracket every job (DESIGN.md §3).
//!
//! 1. **Find** each pattern with a matched filter: the Pearson correlation of the power trace
//!    with the pattern's busy/idle template (built from the bursts' device-ns intervals at the
//!    nominal 5000 samples/s) at every lag. Prefix sums make each lag cost O(segments), so the
//!    whole trace is searched at full resolution. The opening and closing patterns are paired
//!    by their known distance (± the largest credible drift), which tells them apart even
//!    though they are the same pattern.
//! 2. **Refine** every burst edge to a fraction of a sample: half-height crossing of the local
//!    levels, with linear interpolation between the two samples around it. An edge whose
//!    neighbourhood is not at the expected idle/busy levels (e.g. the closing pattern's first
//!    rising edge, right after back-to-back inference at burst power) or lies in a gap of the
//!    trace is left out, with the reason.
//! 3. **Fit** `sample_index = a + b · device_ns` by least squares over the edges, with one
//!    nuisance term: how much longer the bursts last in the power trace than on the device
//!    clock (rising edges early and falling edges late by the same amount — a device's power
//!    response, or the emitter's stamping, widens every burst alike), so that the bursts'
//!    centres pin the clock. Edges more than [`MAX_RESIDUAL_SAMPLES`] off are dropped (and
//!    named) while enough remain; a fit that is still not credible is refused ([`AlignError`]
//!    says why, with the numbers).
use monsoon::{Sample, SAMPLE_RATE_HZ};
use serde::{Deserialize, Serialize};
use ulayer::protocol::{Interval, JobReport};

/// Samples per device nanosecond at the nominal rate.
pub const NOMINAL_SAMPLES_PER_NS: f64 = SAMPLE_RATE_HZ as f64 / 1e9;
/// A fit whose predicted mapping error (twice the standard error of `a + b·t`, at the
/// job's first and last edge) exceeds this many samples (0.2 ms, the lab's target) is
/// refused. Against the simulator (activity polled every 200 µs at real-time priority) a
/// 30-edge fit predicts about 0.3 samples and maps within 0.35 samples of the true clock over
/// a 60 s job; the bound is reported with the results (`clock_residual_samples`, and
/// `mapping_error_samples` in each result.json).
pub const MAX_MAPPING_ERROR_SAMPLES: f64 = 1.0;
/// A fit whose edge residuals have an RMS above this (samples) is refused. Each edge is
/// located to the monitor's time resolution of the power (one sample on a real monitor and
/// on the simulator, RMS about 0.5 samples), but a loaded host delays the emitter's stamps,
/// so the edges' scatter is bounded loosely here and the mapping's own uncertainty tightly
/// ([`MAX_MAPPING_ERROR_SAMPLES`]).
pub const MAX_RESIDUAL_RMS_SAMPLES: f64 = 3.0;
/// A fit with an edge further off than this (samples) is refused; edges further off are
/// first dropped as outliers while enough remain.
pub const MAX_RESIDUAL_SAMPLES: f64 = 5.0;
/// A fit in which the bursts look longer or shorter in the trace than on the device clock by
/// more than this (samples, 5 ms) is refused.
pub const MAX_WIDENING_SAMPLES: f64 = 25.0;
/// A fit whose rate differs from 5000 Hz by more than this (ppm) is refused.
pub const MAX_DRIFT_PPM: f64 = 500.0;
/// Lowest matched-filter correlation accepted for a pattern.
pub const MIN_CORRELATION: f64 = 0.5;
/// Lowest burst contrast over the within-level noise accepted for a pattern.
pub const MIN_CONTRAST_SNR: f64 = 5.0;
/// Fewest usable edges for a fit (with at least [`MIN_EDGES_PER_PATTERN`] in each pattern,
/// so that the drift is pinned by the job's whole length).
pub const MIN_EDGES: usize = 6;
/// Fewest usable edges in each of the two patterns.
pub const MIN_EDGES_PER_PATTERN: usize = 2;
/// Longest trace accepted (samples): 8 hours at 5 kHz. Guards the dense buffer against a
/// corrupt index.
pub const MAX_TRACE_SAMPLES: u64 = 8 * 3600 * SAMPLE_RATE_HZ as u64;

/// Why no credible clock map came out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AlignError {
    #[error("empty power trace: no finite samples")]
    EmptyTrace,
    #[error("power trace spans {span} sample indices (more than {max}); is an index corrupt?")]
    TraceTooLong { span: u64, max: u64 },
    #[error("job report unusable for alignment: {0}")]
    BadReport(String),
    #[error("{which} sync pattern not found: best matched-filter correlation {correlation:.3} (needs ≥ {min:.2})")]
    PatternNotFound {
        which: &'static str,
        correlation: f64,
        min: f64,
    },
    #[error("opening and closing patterns found (correlation {open:.3} and {close:.3}) but never {expected:.0} ± {tolerance:.0} samples apart as the device clock says")]
    PatternsNotPaired {
        open: f64,
        close: f64,
        expected: f64,
        tolerance: f64,
    },
    #[error("{which} sync pattern too faint: burst contrast {contrast_w:.4} W over noise {noise_w:.4} W (SNR {snr:.1}, needs ≥ {min:.1})")]
    LowContrast {
        which: &'static str,
        contrast_w: f64,
        noise_w: f64,
        snr: f64,
        min: f64,
    },
    #[error("only {opening} + {closing} usable pulse edges (needs ≥ {MIN_EDGES} in all, ≥ {MIN_EDGES_PER_PATTERN} per pattern); left out: {rejected}")]
    TooFewEdges {
        opening: usize,
        closing: usize,
        rejected: String,
    },
    #[error("clock fit not credible: edge residual rms {rms:.3} / max {max:.3} samples (limits {MAX_RESIDUAL_RMS_SAMPLES} / {MAX_RESIDUAL_SAMPLES}) over {edges} edges: {detail}")]
    ResidualTooLarge {
        rms: f64,
        max: f64,
        edges: usize,
        /// Each edge's residual, samples.
        detail: String,
    },
    #[error(
        "clock fit not credible: drift {ppm:.1} ppm from 5000 Hz (limit ±{MAX_DRIFT_PPM} ppm)"
    )]
    DriftImplausible { ppm: f64 },
    #[error("clock fit not credible: predicted mapping error ±{error:.2} samples (2 standard errors; limit {MAX_MAPPING_ERROR_SAMPLES}) from {edges} edges with residual rms {rms:.2} samples: more or sharper pulse edges needed")]
    MappingUncertain { error: f64, edges: usize, rms: f64 },
    #[error("clock fit not credible: bursts {samples:+.1} samples longer in the trace than on the device clock (limit ±{MAX_WIDENING_SAMPLES})")]
    WideningImplausible { samples: f64 },
}

/// `sample_index = a + b · device_ns`, with how well the pulse edges fit it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockMap {
    /// Offset: the sample index of device time 0 (samples).
    pub a: f64,
    /// Samples per device nanosecond (nominally 5e-6).
    pub b: f64,
    /// RMS of the edges' residuals about the fit, samples.
    pub residual_rms_samples: f64,
    /// Largest absolute edge residual, samples.
    pub residual_max_samples: f64,
    /// Edges the fit used.
    pub edges: usize,
    /// Edges left out, each with why.
    #[serde(default)]
    pub rejected: Vec<String>,
    /// Matched-filter correlation of the opening and closing patterns.
    #[serde(default)]
    pub correlation: [f64; 2],
    /// Burst contrast (busy − idle power) of the opening and closing patterns, W.
    #[serde(default)]
    pub contrast_w: [f64; 2],
    /// Predicted mapping error: twice the standard error of `a + b·t` at the job's first and
    /// last edge (the larger), samples.
    #[serde(default)]
    pub mapping_error_samples: f64,
    /// How much longer the bursts last in the trace than on the device clock, samples
    /// (fitted, so that only the bursts' centres pin the clock; see [`align`]).
    #[serde(default)]
    pub burst_widening_samples: f64,
    /// The edges the fit used.
    #[serde(default)]
    pub fit: Vec<EdgeFit>,
}

impl ClockMap {
    /// Drift of the monitor's sample clock against the device clock, ppm (positive: the
    /// monitor samples faster than 5000 per device second).
    pub fn drift_ppm(&self) -> f64 {
        (self.b / NOMINAL_SAMPLES_PER_NS - 1.0) * 1e6
    }

    /// Fractional sample index of a device time.
    pub fn sample_at(&self, device_ns: u64) -> f64 {
        self.a + self.b * device_ns as f64
    }

    /// Device time (ns) of a fractional sample index.
    pub fn device_ns_at(&self, sample: f64) -> f64 {
        (sample - self.a) / self.b
    }
}

/// The power trace on a dense index grid: `p[k]` is sample `first + k`, NaN where missing.
pub(crate) struct Dense {
    pub first: u64,
    pub p: Vec<f64>,
}

impl Dense {
    /// Main-channel power of every sample; missing and non-finite samples become NaN.
    pub fn new(samples: &[Sample]) -> Result<Dense, AlignError> {
        let finite = |s: &&Sample| s.main_power_w().is_finite();
        let (lo, hi) = samples
            .iter()
            .filter(finite)
            .fold((u64::MAX, 0u64), |(lo, hi), s| {
                (lo.min(s.index), hi.max(s.index))
            });
        if lo > hi {
            return Err(AlignError::EmptyTrace);
        }
        let span = hi - lo + 1;
        if span > MAX_TRACE_SAMPLES {
            return Err(AlignError::TraceTooLong {
                span,
                max: MAX_TRACE_SAMPLES,
            });
        }
        let mut p = vec![f64::NAN; span as usize];
        for s in samples.iter().filter(finite) {
            p[(s.index - lo) as usize] = s.main_power_w();
        }
        Ok(Dense { first: lo, p })
    }

    fn get(&self, k: i64) -> f64 {
        usize::try_from(k)
            .ok()
            .and_then(|k| self.p.get(k).copied())
            .unwrap_or(f64::NAN)
    }

    /// Mean and standard deviation of the finite samples in `[lo, hi)`, with their count.
    fn stats(&self, lo: i64, hi: i64) -> (f64, f64, usize) {
        let (mut n, mut s, mut q) = (0usize, 0.0, 0.0);
        for k in lo..hi {
            let v = self.get(k);
            if v.is_finite() {
                n += 1;
                s += v;
                q += v * v;
            }
        }
        if n == 0 {
            return (f64::NAN, f64::NAN, 0);
        }
        let m = s / n as f64;
        (m, (q / n as f64 - m * m).max(0.0).sqrt(), n)
    }
}

/// Prefix sums of count, sum and sum of squares of the finite samples.
struct Prefix {
    n: Vec<u32>,
    s: Vec<f64>,
    q: Vec<f64>,
}

impl Prefix {
    fn new(d: &Dense) -> Prefix {
        let len = d.p.len() + 1;
        let (mut n, mut s, mut q) = (
            Vec::with_capacity(len),
            Vec::with_capacity(len),
            Vec::with_capacity(len),
        );
        n.push(0);
        s.push(0.0);
        q.push(0.0);
        let (mut cn, mut cs, mut cq) = (0u32, 0.0f64, 0.0f64);
        for &v in &d.p {
            if v.is_finite() {
                cn += 1;
                cs += v;
                cq += v * v;
            }
            n.push(cn);
            s.push(cs);
            q.push(cq);
        }
        Prefix { n, s, q }
    }

    /// (count, sum, sum of squares) over `[lo, hi)`, clamped to the trace.
    fn range(&self, lo: usize, hi: usize) -> (f64, f64, f64) {
        let last = self.n.len() - 1;
        let (lo, hi) = (lo.min(last), hi.min(last));
        if hi <= lo {
            return (0.0, 0.0, 0.0);
        }
        (
            f64::from(self.n[hi] - self.n[lo]),
            self.s[hi] - self.s[lo],
            self.q[hi] - self.q[lo],
        )
    }
}

/// One pattern as the device emitted it: segments in samples from the first burst's start.
struct Template {
    which: &'static str,
    /// `(start, end, busy)` in nominal samples relative to the first burst's start.
    segments: Vec<(f64, f64, bool)>,
    /// Device time of the first burst's start.
    t0: u64,
    bursts: Vec<Interval>,
}

impl Template {
    fn new(which: &'static str, bursts: &[Interval], gap_ms: u32) -> Result<Template, AlignError> {
        let bad = |m: String| AlignError::BadReport(format!("{which} pattern: {m}"));
        let first = bursts
            .first()
            .ok_or_else(|| bad("no bursts recorded".into()))?;
        let rel = |t: u64| t.saturating_sub(first.start_ns) as f64 * NOMINAL_SAMPLES_PER_NS;
        let mut segments = Vec::with_capacity(bursts.len() * 2);
        for (k, b) in bursts.iter().enumerate() {
            if b.end_ns <= b.start_ns {
                return Err(bad(format!(
                    "burst {k} ends ({}) before it starts ({})",
                    b.end_ns, b.start_ns
                )));
            }
            let gap_end = match bursts.get(k + 1) {
                Some(next) if next.start_ns < b.end_ns => {
                    return Err(bad(format!("burst {} starts before burst {k} ends", k + 1)))
                }
                Some(next) => rel(next.start_ns),
                None => rel(b.end_ns) + f64::from(gap_ms) * 1e-3 * f64::from(SAMPLE_RATE_HZ),
            };
            segments.push((rel(b.start_ns), rel(b.end_ns), true));
            if gap_end > rel(b.end_ns) {
                segments.push((rel(b.end_ns), gap_end, false));
            }
        }
        if !segments.iter().any(|s| !s.2) {
            return Err(bad("no idle gap between bursts".into()));
        }
        Ok(Template {
            which,
            segments,
            t0: first.start_ns,
            bursts: bursts.to_vec(),
        })
    }

    fn len(&self) -> usize {
        self.segments.last().map_or(0, |s| s.1.ceil() as usize)
    }

    /// Pearson correlation of the trace with the template placed at `lag` (dense index of the
    /// first burst's start). NaN when a tenth or more of the window is missing.
    fn correlation(&self, pre: &Prefix, lag: usize) -> f64 {
        let (mut n, mut s, mut q, mut nb, mut sb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for &(a, b, busy) in &self.segments {
            let (c, cs, cq) = pre.range(lag + a.round() as usize, lag + b.round() as usize);
            n += c;
            s += cs;
            q += cq;
            if busy {
                nb += c;
                sb += cs;
            }
        }
        if n < 0.9 * self.len() as f64 {
            return f64::NAN;
        }
        let den = ((n * nb - nb * nb) * (n * q - s * s)).sqrt();
        if den > 0.0 {
            (n * sb - nb * s) / den
        } else {
            f64::NAN
        }
    }

    /// Best lags, one per cluster of lags whose correlation is at least `thr`, strongest
    /// first (at most `keep`), and the largest correlation seen anywhere.
    fn candidates(
        &self,
        pre: &Prefix,
        samples: usize,
        thr: f64,
        keep: usize,
    ) -> (Vec<(usize, f64)>, f64) {
        let mut best_any = f64::NEG_INFINITY;
        let mut found: Vec<(usize, f64)> = Vec::new();
        let mut cur: Option<(usize, f64)> = None;
        for lag in 0..samples.saturating_sub(self.len()) {
            let r = self.correlation(pre, lag);
            if r.is_finite() {
                best_any = best_any.max(r);
            }
            if r >= thr {
                if cur.is_none_or(|c| r > c.1) {
                    cur = Some((lag, r));
                }
            } else if let Some(c) = cur.take() {
                found.push(c);
            }
        }
        found.extend(cur);
        found.sort_by(|x, y| y.1.total_cmp(&x.1));
        found.truncate(keep);
        (found, best_any)
    }
}

/// One pulse edge located in the trace.
#[derive(Debug, Clone)]
struct Edge {
    name: String,
    device_ns: u64,
    /// Dense-grid position (fractional).
    x: f64,
    rising: bool,
}

impl Edge {
    /// −½ for a rising edge, +½ for a falling one: the edge's share of a burst widening.
    fn side(&self) -> f64 {
        if self.rising {
            -0.5
        } else {
            0.5
        }
    }
}

/// One edge the fit used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeFit {
    /// E.g. "opening burst 2 falling edge".
    pub name: String,
    /// When the device says it happened.
    pub device_ns: u64,
    /// Where the trace shows it (fractional sample index).
    pub sample: f64,
    /// `sample − (a + b · device_ns)`.
    pub residual: f64,
}

/// Levels of a pattern found at a lag: idle and busy power, and the noise.
struct Levels {
    low: f64,
    high: f64,
    noise: f64,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Idle and busy levels from the middle half of every segment (clear of the edges' blur).
fn levels(d: &Dense, t: &Template, lag: f64) -> Levels {
    let (mut lows, mut highs, mut noise) = (Vec::new(), Vec::new(), Vec::new());
    for &(a, b, busy) in &t.segments {
        let q = (b - a) / 4.0;
        let (m, sd, n) = d.stats((lag + a + q).round() as i64, (lag + b - q).round() as i64);
        if n >= 3 {
            if busy { &mut highs } else { &mut lows }.push(m);
            noise.push(sd);
        }
    }
    Levels {
        low: median(&mut lows),
        high: median(&mut highs),
        noise: median(&mut noise),
    }
}

/// Locates every edge of a pattern found at `lag`; returns the edges and the reasons for
/// those left out.
fn refine(d: &Dense, t: &Template, lag: f64, lv: &Levels) -> (Vec<Edge>, Vec<String>) {
    let contrast = lv.high - lv.low;
    let (mut edges, mut rejected) = (Vec::new(), Vec::new());
    let seg_len = |k: usize| t.segments.get(k).map(|s| s.1 - s.0);
    for (k, seg) in t.segments.iter().enumerate() {
        if !seg.2 {
            continue;
        }
        let burst = t.segments.iter().take(k).filter(|s| s.2).count();
        let Some(iv) = t.bursts.get(burst) else {
            continue;
        };
        let own = seg.1 - seg.0;
        // Rising edge: before it the previous gap (or, for the first burst, whatever preceded
        // the pattern: assume as long as the burst), after it the burst; falling: the reverse.
        let before_rise = k.checked_sub(1).and_then(seg_len).unwrap_or(own);
        let after_fall = seg_len(k + 1).unwrap_or(own);
        for (rising, at, ns, before, after) in [
            (true, seg.0, iv.start_ns, before_rise, own),
            (false, seg.1, iv.end_ns, own, after_fall),
        ] {
            let name = format!(
                "{} burst {} {} edge",
                t.which,
                burst + 1,
                if rising { "rising" } else { "falling" }
            );
            match edge(d, lag + at, before, after, rising, lv, contrast) {
                Ok(x) => edges.push(Edge {
                    name,
                    device_ns: ns,
                    x,
                    rising,
                }),
                Err(why) => rejected.push(format!("{name}: {why}")),
            }
        }
    }
    (edges, rejected)
}

/// Sub-sample position of one edge expected near `x`, with `before`/`after` samples of level
/// on either side: half-height crossing of the local levels, interpolated linearly.
fn edge(
    d: &Dense,
    x: f64,
    before: f64,
    after: f64,
    rising: bool,
    lv: &Levels,
    contrast: f64,
) -> Result<f64, String> {
    // Search window ±w around the nominal edge; local level windows of m samples beyond it.
    let w = (0.35 * before.min(after)).clamp(3.0, 60.0);
    let m_pre = (0.3 * before).clamp(3.0, 50.0);
    let m_post = (0.3 * after).clamp(3.0, 50.0);
    let lo = (x - w).floor() as i64;
    let hi = (x + w).ceil() as i64;
    let (pre, _, n_pre) = d.stats((lo as f64 - m_pre).floor() as i64, lo);
    let (post, _, n_post) = d.stats(hi + 1, (hi as f64 + 1.0 + m_post).ceil() as i64);
    if n_pre < 3 || n_post < 3 {
        return Err("no samples around it (outside the trace or in a gap)".into());
    }
    let (want_pre, want_post) = if rising {
        (lv.low, lv.high)
    } else {
        (lv.high, lv.low)
    };
    for (what, got, want) in [("before", pre, want_pre), ("after", post, want_post)] {
        if (got - want).abs() > 0.3 * contrast {
            return Err(format!(
                "power {what} it {got:.3} W, expected {want:.3} W (contrast {contrast:.3} W)"
            ));
        }
    }
    let mut s = Vec::with_capacity((hi - lo + 1) as usize);
    for k in lo..=hi {
        let v = d.get(k);
        if !v.is_finite() {
            return Err(format!("sample {} missing", d.first as i64 + k));
        }
        // Normalised so that the edge always goes from 0 to 1.
        let n = (v - pre) / (post - pre);
        s.push(n);
    }
    // Average the first crossing from the left and the last from the right: equal on a clean
    // edge, and symmetric about it when noise crosses the half level more than once.
    let cross = |i: usize| {
        let (a, b) = (s[i - 1], s[i]);
        (i - 1) as f64 + (0.5 - a) / (b - a)
    };
    let first = (1..s.len()).find(|&i| s[i - 1] < 0.5 && s[i] >= 0.5);
    let last = (1..s.len()).rev().find(|&i| s[i - 1] < 0.5 && s[i] >= 0.5);
    match (first, last) {
        (Some(f), Some(l)) => Ok(lo as f64 + (cross(f) + cross(l)) / 2.0),
        _ => Err(format!(
            "no half-height crossing within ±{w:.0} samples of the expected position"
        )),
    }
}

/// A fit of the edges: `x = a + b·t + widening·side` (side −½ rising, +½ falling).
struct Fit {
    a: f64,
    b: f64,
    widening: f64,
    res: Vec<f64>,
    /// Twice the largest standard error of `a + b·t` at the first and last edge, samples.
    mapping_error: f64,
}

/// Least squares with `t` centred for precision. The widening term absorbs a difference
/// between how long the bursts last in the power trace and on the device clock (a power
/// response that rises early or falls late, e.g. the emitter's last 2 ms of polling on a
/// second core, or the monitor's finite edges): it moves rising and falling edges in
/// opposite directions, so only the bursts' centres pin the clock. It is fitted only when
/// both kinds of edge are present.
fn fit(edges: &[Edge]) -> Fit {
    let n = edges.len().max(1) as f64;
    let t_mean = edges.iter().map(|e| e.device_ns as f64).sum::<f64>() / n;
    let both = edges.iter().any(|e| e.rising) && edges.iter().any(|e| !e.rising);
    // Normal equations in (a', b, w) with t centred: x = a' + b·tc + w·s.
    let (mut m, mut v) = ([[0.0f64; 3]; 3], [0.0f64; 3]);
    for e in edges {
        let row = [
            1.0,
            e.device_ns as f64 - t_mean,
            if both { e.side() } else { 0.0 },
        ];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] += row[i] * row[j];
            }
            v[i] += row[i] * e.x;
        }
    }
    if !both {
        m[2][2] = 1.0;
    }
    let sol = solve3(m, v).unwrap_or([f64::NAN; 3]);
    let (a, b, widening) = (sol[0] - sol[1] * t_mean, sol[1], sol[2]);
    let res: Vec<f64> = edges
        .iter()
        .map(|e| e.x - (a + b * e.device_ns as f64 + widening * e.side()))
        .collect();
    // Standard error of the prediction: σ² · rᵀ (XᵀX)⁻¹ r with r = (1, tc, 0).
    let params = if both { 3.0 } else { 2.0 };
    let sigma2 = res.iter().map(|r| r * r).sum::<f64>() / (n - params).max(1.0);
    let (t_lo, t_hi) = edges.iter().fold((f64::MAX, f64::MIN), |(lo, hi), e| {
        (lo.min(e.device_ns as f64), hi.max(e.device_ns as f64))
    });
    let mapping_error = [t_lo, t_hi]
        .iter()
        .map(|&t| {
            let r = [1.0, t - t_mean, 0.0];
            solve3(m, r).map_or(f64::INFINITY, |z| {
                2.0 * (sigma2 * (r[0] * z[0] + r[1] * z[1])).max(0.0).sqrt()
            })
        })
        .fold(0.0, f64::max);
    Fit {
        a,
        b,
        widening,
        res,
        mapping_error,
    }
}

/// Gaussian elimination with partial pivoting; `None` when singular.
fn solve3(mut m: [[f64; 3]; 3], mut v: [f64; 3]) -> Option<[f64; 3]> {
    for c in 0..3 {
        let p = (c..3).max_by(|&i, &j| m[i][c].abs().total_cmp(&m[j][c].abs()))?;
        if m[p][c].abs() < 1e-300 {
            return None;
        }
        m.swap(c, p);
        v.swap(c, p);
        for r in c + 1..3 {
            let f = m[r][c] / m[c][c];
            let pivot = m[c];
            for (dst, src) in m[r].iter_mut().zip(pivot).skip(c) {
                *dst -= f * src;
            }
            v[r] -= f * v[c];
        }
    }
    let mut x = [0.0; 3];
    for c in (0..3).rev() {
        let s: f64 = (c + 1..3).map(|k| m[c][k] * x[k]).sum();
        x[c] = (v[c] - s) / m[c][c];
    }
    Some(x)
}

/// Drops the worst edge while it is off the fit by more than [`MAX_RESIDUAL_SAMPLES`] and
/// enough edges remain (e.g. a burst whose start the device stamped late because the
/// stamping thread waited for a core). Returns the kept edges and what was dropped.
fn prune(mut edges: Vec<Edge>, close_t0: u64) -> (Vec<Edge>, Fit, Vec<String>) {
    let mut dropped = Vec::new();
    loop {
        let f = fit(&edges);
        let worst = f
            .res
            .iter()
            .enumerate()
            .max_by(|x, y| x.1.abs().total_cmp(&y.1.abs()))
            .map(|(i, r)| (i, *r));
        let Some((i, r)) = worst else {
            return (edges, f, dropped);
        };
        let closing = edges.iter().filter(|e| e.device_ns >= close_t0).count();
        let in_closing = edges[i].device_ns >= close_t0;
        let left_in_pattern = if in_closing {
            closing
        } else {
            edges.len() - closing
        };
        if r.abs() <= MAX_RESIDUAL_SAMPLES
            || edges.len() <= MIN_EDGES
            || left_in_pattern <= MIN_EDGES_PER_PATTERN
        {
            return (edges, f, dropped);
        }
        let e = edges.remove(i);
        dropped.push(format!("{}: {r:+.2} samples off the fit", e.name));
    }
}

/// Finds the job's sync pulses in the power trace and maps device time to sample index.
pub fn align(samples: &[Sample], report: &JobReport) -> Result<ClockMap, AlignError> {
    let pattern = &report.pattern;
    for (which, got) in [
        ("opening", &report.pulses_before),
        ("closing", &report.pulses_after),
    ] {
        if got.len() != pattern.bursts_ms.len() {
            return Err(AlignError::BadReport(format!(
                "{which} pattern has {} bursts, the pattern {}",
                got.len(),
                pattern.bursts_ms.len()
            )));
        }
    }
    let open = Template::new("opening", &report.pulses_before, pattern.gap_ms)?;
    let close = Template::new("closing", &report.pulses_after, pattern.gap_ms)?;
    if close.t0 <= open.t0 {
        return Err(AlignError::BadReport(
            "closing pattern does not start after the opening one".into(),
        ));
    }
    let d = Dense::new(samples)?;
    let pre = Prefix::new(&d);

    // Matched filter, then pair the two patterns by their distance on the device clock.
    let thr = MIN_CORRELATION;
    let (oc, o_best) = open.candidates(&pre, d.p.len(), thr, 32);
    let (cc, c_best) = close.candidates(&pre, d.p.len(), thr, 32);
    for (which, c, best) in [("opening", &oc, o_best), ("closing", &cc, c_best)] {
        if c.is_empty() {
            return Err(AlignError::PatternNotFound {
                which,
                correlation: if best.is_finite() { best } else { 0.0 },
                min: thr,
            });
        }
    }
    let expected = (close.t0 - open.t0) as f64 * NOMINAL_SAMPLES_PER_NS;
    let tolerance = expected * MAX_DRIFT_PPM * 1e-6 + 10.0;
    let pair = oc
        .iter()
        .flat_map(|o| cc.iter().map(move |c| (*o, *c)))
        .filter(|(o, c)| ((c.0 as f64 - o.0 as f64) - expected).abs() <= tolerance)
        .max_by(|x, y| (x.0 .1 + x.1 .1).total_cmp(&(y.0 .1 + y.1 .1)));
    let Some(((o_lag, o_r), (c_lag, c_r))) = pair else {
        return Err(AlignError::PatternsNotPaired {
            open: oc[0].1,
            close: cc[0].1,
            expected,
            tolerance,
        });
    };

    let mut edges = Vec::new();
    let mut rejected = Vec::new();
    let mut per_pattern = [0usize; 2];
    let mut contrast_w = [0.0; 2];
    for (k, (t, lag)) in [(&open, o_lag), (&close, c_lag)].into_iter().enumerate() {
        let lv = levels(&d, t, lag as f64);
        let contrast = lv.high - lv.low;
        let noise = lv.noise.max(1e-9);
        let snr = contrast / noise;
        if !snr.is_finite() || snr < MIN_CONTRAST_SNR {
            return Err(AlignError::LowContrast {
                which: t.which,
                contrast_w: contrast,
                noise_w: lv.noise,
                snr: if snr.is_finite() { snr } else { 0.0 },
                min: MIN_CONTRAST_SNR,
            });
        }
        contrast_w[k] = contrast;
        let (e, r) = refine(&d, t, lag as f64, &lv);
        per_pattern[k] = e.len();
        edges.extend(e);
        rejected.extend(r);
    }
    let too_few = |per: [usize; 2], rejected: &[String]| AlignError::TooFewEdges {
        opening: per[0],
        closing: per[1],
        rejected: if rejected.is_empty() {
            "none".into()
        } else {
            rejected.join("; ")
        },
    };
    if per_pattern.iter().any(|&n| n < MIN_EDGES_PER_PATTERN) || edges.len() < MIN_EDGES {
        return Err(too_few(per_pattern, &rejected));
    }

    let (edges, f, dropped) = prune(edges, close.t0);
    rejected.extend(dropped);
    let (a, b, res, widening, mapping_error) = (f.a, f.b, f.res, f.widening, f.mapping_error);
    let rms = (res.iter().map(|r| r * r).sum::<f64>() / res.len() as f64).sqrt();
    let max = res.iter().fold(0.0f64, |m, r| m.max(r.abs()));
    let map = ClockMap {
        a: a + d.first as f64,
        b,
        residual_rms_samples: rms,
        residual_max_samples: max,
        edges: edges.len(),
        rejected,
        correlation: [o_r, c_r],
        contrast_w,
        mapping_error_samples: mapping_error,
        burst_widening_samples: widening,
        fit: edges
            .iter()
            .zip(&res)
            .map(|(e, r)| EdgeFit {
                name: e.name.clone(),
                device_ns: e.device_ns,
                sample: e.x + d.first as f64,
                residual: *r,
            })
            .collect(),
    };
    if rms.is_nan() || rms > MAX_RESIDUAL_RMS_SAMPLES || max > MAX_RESIDUAL_SAMPLES {
        return Err(AlignError::ResidualTooLarge {
            rms,
            max,
            edges: edges.len(),
            detail: map
                .fit
                .iter()
                .map(|e| format!("{} {:+.2}", e.name, e.residual))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    if mapping_error.is_nan() || mapping_error > MAX_MAPPING_ERROR_SAMPLES {
        return Err(AlignError::MappingUncertain {
            error: mapping_error,
            edges: edges.len(),
            rms,
        });
    }
    let ppm = map.drift_ppm();
    if ppm.is_nan() || ppm.abs() > MAX_DRIFT_PPM {
        return Err(AlignError::DriftImplausible { ppm });
    }
    if widening.is_nan() || widening.abs() > MAX_WIDENING_SAMPLES {
        return Err(AlignError::WideningImplausible { samples: widening });
    }
    tracing::debug!(
        edges = map.edges,
        rms,
        max,
        drift_ppm = ppm,
        "clock map fitted"
    );
    Ok(map)
}

#[cfg(test)]
pub(crate) mod tests;
