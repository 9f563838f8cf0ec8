//! The power-trace excerpt: the whole job (idle baseline, sync pulses, measured runs) and a
//! zoom on one inference with its layer boundaries, placed on the sample axis through the
//! clock map `sample = a + b · device_ns`.
use super::{draw_stamp, inline_svg, plot_err, Stamp, FONT};
use crate::error::Result;
use crate::job::Job;
use plotters::prelude::*;

/// Monitor samples per second.
pub const RATE_HZ: f64 = 5000.0;
/// Most points drawn per panel (min/max buckets beyond that).
const MAX_POINTS: usize = 1500;
/// Most layer boundaries drawn in the zoom.
const MAX_BOUNDARIES: usize = 400;

const CPU: RGBColor = RGBColor(0, 114, 178);
const GPU: RGBColor = RGBColor(213, 94, 0);
const PULSE: RGBColor = RGBColor(230, 159, 0);
const RUNS: RGBColor = RGBColor(86, 180, 233);
const IDLE: RGBColor = RGBColor(160, 160, 160);

/// What the excerpt is drawn from.
pub struct TracePlot<'a> {
    pub config: &'a str,
    /// (sample index, main-channel watts), in index order.
    pub samples: &'a [(u64, f64)],
    /// `(a, b)` of the clock map.
    pub clock: (f64, f64),
    pub job: &'a Job,
    /// Which measured run to zoom on.
    pub run: usize,
}

fn series_in(samples: &[(u64, f64)], from: f64, to: f64) -> Vec<(f64, f64)> {
    samples
        .iter()
        .filter(|(i, _)| (*i as f64) >= from && (*i as f64) <= to)
        .map(|&(i, w)| (i as f64, w))
        .collect()
}

/// Min/max envelope in at most `MAX_POINTS` buckets (keeps the pulses' edges sharp).
fn envelope(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let per = points.len().div_ceil(MAX_POINTS / 2);
    let mut out = Vec::with_capacity(MAX_POINTS + 2);
    for chunk in points.chunks(per) {
        let (mut lo, mut hi) = (chunk[0], chunk[0]);
        for p in chunk {
            if p.1 < lo.1 {
                lo = *p;
            }
            if p.1 > hi.1 {
                hi = *p;
            }
        }
        if lo.0 <= hi.0 {
            out.extend([lo, hi]);
        } else {
            out.extend([hi, lo]);
        }
    }
    out
}

impl TracePlot<'_> {
    fn sample_of(&self, ns: u64) -> f64 {
        self.clock.0 + self.clock.1 * ns as f64
    }

    /// Draws both panels with `stamp` at the foot.
    pub fn svg(&self, title: &str, stamp: &Stamp) -> Result<String> {
        let err = plot_err(title);
        let (first, last) = match (self.samples.first(), self.samples.last()) {
            (Some(f), Some(l)) => (f.0 as f64, l.0 as f64),
            _ => return Err(err("the trace has no samples".into())),
        };
        // Overview window: the job, with a little margin, within the trace.
        let (mut from, mut to) = match self.job.job {
            Some(j) => (self.sample_of(j.start_ns), self.sample_of(j.end_ns)),
            None => (first, last),
        };
        let margin = (to - from).max(1.0) * 0.03;
        from = (from - margin).max(first);
        to = (to + margin).min(last);
        if to <= from {
            (from, to) = (first, last);
        }
        let overview = envelope(&series_in(self.samples, from, to));
        let wmax = overview
            .iter()
            .map(|p| p.1)
            .fold(0.0_f64, f64::max)
            .max(0.1)
            * 1.1;
        let secs = |s: f64| (s - from) / RATE_HZ;

        let (width, height) = (1100u32, 640u32);
        let mut buf = String::new();
        {
            let root = SVGBackend::with_string(&mut buf, (width, height)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
            let (body, foot) = root.split_vertically(height - 24);
            let (top, bottom) = body.split_vertically(300);

            let mut chart = ChartBuilder::on(&top)
                .caption(
                    format!("{title}: whole job (sync pulses shaded)"),
                    (FONT, 16),
                )
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(0.0..secs(to).max(1e-3), 0.0..wmax)
                .map_err(|e| err(e.to_string()))?;
            chart
                .configure_mesh()
                .x_desc("time since excerpt start, s (monitor sample clock)")
                .y_desc("power, W")
                .label_style((FONT, 12))
                .draw()
                .map_err(|e| err(e.to_string()))?;
            let band = |s0: f64, s1: f64, c: RGBColor, a: f64| {
                Rectangle::new([(secs(s0), 0.0), (secs(s1), wmax)], c.mix(a).filled())
            };
            if let Some(idle) = self.job.idle {
                chart
                    .draw_series([band(
                        self.sample_of(idle.start_ns),
                        self.sample_of(idle.end_ns),
                        IDLE,
                        0.25,
                    )])
                    .map_err(|e| err(e.to_string()))?
                    .label("idle baseline")
                    .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], IDLE.filled()));
            }
            let pulses: Vec<_> = self
                .job
                .pulses_before
                .iter()
                .chain(&self.job.pulses_after)
                .map(|p| {
                    band(
                        self.sample_of(p.start_ns),
                        self.sample_of(p.end_ns),
                        PULSE,
                        0.35,
                    )
                })
                .collect();
            if !pulses.is_empty() {
                chart
                    .draw_series(pulses)
                    .map_err(|e| err(e.to_string()))?
                    .label("sync pulses")
                    .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], PULSE.filled()));
            }
            if let (Some(r0), Some(r1)) = (self.job.runs.first(), self.job.runs.last()) {
                chart
                    .draw_series([band(
                        self.sample_of(r0.start_ns),
                        self.sample_of(r1.end_ns),
                        RUNS,
                        0.25,
                    )])
                    .map_err(|e| err(e.to_string()))?
                    .label("measured runs")
                    .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], RUNS.filled()));
            }
            chart
                .draw_series(LineSeries::new(
                    overview.iter().map(|&(s, w)| (secs(s), w)),
                    BLACK.stroke_width(1),
                ))
                .map_err(|e| err(e.to_string()))?
                .label("main-channel power")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], BLACK));
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font((FONT, 12))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| err(e.to_string()))?;

            self.zoom(&bottom, title, &err)?;
            draw_stamp(&foot, stamp).map_err(&err)?;
            root.present().map_err(|e| err(e.to_string()))?;
        }
        Ok(inline_svg(buf))
    }

    fn zoom<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, plotters::coord::Shift>,
        title: &str,
        err: &impl Fn(String) -> crate::error::Error,
    ) -> Result<()> {
        let Some(run) = self.job.runs.get(self.run).or(self.job.runs.first()) else {
            area.draw(&Text::new(
                "no per-layer spans in job.json: layer boundaries cannot be drawn",
                (20, 40),
                (FONT, 14),
            ))
            .map_err(|e| err(e.to_string()))?;
            return Ok(());
        };
        let s0 = self.sample_of(run.start_ns);
        let s1 = self.sample_of(run.end_ns);
        let pad = ((s1 - s0) * 0.25).max(5.0);
        let (from, to) = (s0 - pad, s1 + pad);
        let ms_per_sample = 1e3 / RATE_HZ;
        let ms = |s: f64| (s - s0) * ms_per_sample;
        let pts = series_in(self.samples, from.floor(), to.ceil());
        let wmax = pts.iter().map(|p| p.1).fold(0.0_f64, f64::max).max(0.1) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "{title}: run {} ({:.2} ms, {:.1} samples) with layer boundaries",
                    self.run,
                    (run.end_ns.saturating_sub(run.start_ns)) as f64 / 1e6,
                    s1 - s0
                ),
                (FONT, 16),
            )
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(ms(from)..ms(to), 0.0..wmax)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("ms since the inference started (device clock through the clock map)")
            .y_desc("power, W")
            .label_style((FONT, 12))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (proc_name, c) in [("cpu", CPU), ("gpu", GPU)] {
            let lines: Vec<_> = run
                .layers
                .iter()
                .filter(|s| s.processor == proc_name)
                .take(MAX_BOUNDARIES)
                .map(|s| {
                    let x = ms(self.sample_of(s.start_ns));
                    PathElement::new([(x, 0.0), (x, wmax)], c.mix(0.6).stroke_width(1))
                })
                .collect();
            if lines.is_empty() {
                continue;
            }
            chart
                .draw_series(lines)
                .map_err(|e| err(e.to_string()))?
                .label(format!("layer start on {}", proc_name.to_uppercase()))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 12, y)], c));
        }
        chart
            .draw_series(
                [s0, s1].map(|s| {
                    PathElement::new([(ms(s), 0.0), (ms(s), wmax)], BLACK.stroke_width(2))
                }),
            )
            .map_err(|e| err(e.to_string()))?
            .label("inference start / end")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], BLACK.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|&(s, w)| (ms(s), w)),
                RGBColor(40, 40, 40).stroke_width(1),
            ))
            .map_err(|e| err(e.to_string()))?;
        chart
            .draw_series(
                pts.iter()
                    .map(|&(s, w)| Circle::new((ms(s), w), 2, RGBColor(40, 40, 40).filled())),
            )
            .map_err(|e| err(e.to_string()))?
            .label("samples (0.2 ms each)")
            .legend(|(x, y)| Circle::new((x + 6, y), 2, BLACK.filled()));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 12))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| err(e.to_string()))?;
        Ok(())
    }
}
