//! Grouped bar charts: categories along one axis, one bar per series in each category
//! (or all series in one slot, `overlay`, when each category has a value in only one).
use super::{colour, draw_stamp, inline_svg, plot_err, Stamp, FONT};
use crate::error::Result;
use plotters::prelude::*;

/// A grouped bar chart.
#[derive(Clone, Debug, Default)]
pub struct Bars {
    pub title: String,
    /// The value axis' description.
    pub value_desc: String,
    pub categories: Vec<String>,
    /// (name, one value per category; `None` draws no bar).
    pub series: Vec<(String, Vec<Option<f64>>)>,
    /// A dashed reference line at this value (e.g. 1.0 for "same as the baseline").
    pub reference: Option<f64>,
    /// Categories down the vertical axis (for many or long names, e.g. layers).
    pub horizontal: bool,
    /// Every series in the same slot (each category has a value in one series only).
    pub overlay: bool,
    /// Value axis upper bound; default: 1.15 × the largest value.
    pub max: Option<f64>,
    pub width: u32,
}

impl Bars {
    /// Draws the chart as SVG with `stamp` at its foot.
    pub fn svg(&self, stamp: &Stamp) -> Result<String> {
        let err = plot_err(&self.title);
        let n = self.categories.len().max(1);
        let width = if self.width == 0 { 960 } else { self.width };
        let height = if self.horizontal {
            (120 + 18 * n as u32).max(260)
        } else {
            420
        };
        let longest = self
            .categories
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(4) as u32;
        let vmax = self
            .max
            .or_else(|| {
                let m = self
                    .series
                    .iter()
                    .flat_map(|(_, v)| v.iter().flatten())
                    .chain(self.reference.iter())
                    .copied()
                    .filter(|x| x.is_finite())
                    .fold(0.0_f64, f64::max);
                // Headroom for the legend box in the upper right of vertical charts.
                let head = if self.horizontal {
                    1.15
                } else {
                    1.2 + 0.07 * self.series.len() as f64
                };
                Some(if m > 0.0 { m * head } else { 1.0 })
            })
            .unwrap_or(1.0);
        let mut buf = String::new();
        {
            let root = SVGBackend::with_string(&mut buf, (width, height)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
            let (main, foot) = root.split_vertically(height - 24);
            let cat_range = -0.5..(n as f64 - 0.5);
            let labels = self.categories.clone();
            let cat_label = move |x: &f64| -> String {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            };
            let slots = if self.overlay {
                1
            } else {
                self.series.len().max(1)
            };
            let slot_w = 0.8 / slots as f64;
            let mut builder = ChartBuilder::on(&main);
            builder
                .caption(&self.title, (FONT, 18))
                .margin(12)
                .margin_right(24);
            if self.horizontal {
                builder
                    .x_label_area_size(40)
                    .y_label_area_size((longest * 7 + 16).clamp(60, 260));
                let mut chart = builder
                    .build_cartesian_2d(0.0..vmax, cat_range)
                    .map_err(|e| err(e.to_string()))?;
                chart
                    .configure_mesh()
                    .disable_y_mesh()
                    .y_labels(n)
                    .y_label_formatter(&cat_label)
                    .x_desc(&self.value_desc)
                    .label_style((FONT, 12))
                    .draw()
                    .map_err(|e| err(e.to_string()))?;
                for (k, (name, values)) in self.series.iter().enumerate() {
                    let c = colour(k);
                    let off = if self.overlay { 0.0 } else { k as f64 * slot_w };
                    let rects = values.iter().enumerate().filter_map(|(i, v)| {
                        let v = (*v)?;
                        let y0 = i as f64 - 0.4 + off;
                        Some(Rectangle::new([(0.0, y0), (v, y0 + slot_w)], c.filled()))
                    });
                    chart
                        .draw_series(rects)
                        .map_err(|e| err(e.to_string()))?
                        .label(name)
                        .legend(move |(x, y)| {
                            Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled())
                        });
                }
                if let Some(r) = self.reference {
                    chart
                        .draw_series(DashedLineSeries::new(
                            [(r, -0.5), (r, n as f64 - 0.5)],
                            6,
                            4,
                            BLACK.stroke_width(1),
                        ))
                        .map_err(|e| err(e.to_string()))?;
                }
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font((FONT, 12))
                    .position(SeriesLabelPosition::LowerRight)
                    .draw()
                    .map_err(|e| err(e.to_string()))?;
            } else {
                builder.x_label_area_size(40).y_label_area_size(64);
                let mut chart = builder
                    .build_cartesian_2d(cat_range, 0.0..vmax)
                    .map_err(|e| err(e.to_string()))?;
                chart
                    .configure_mesh()
                    .disable_x_mesh()
                    .x_labels(n)
                    .x_label_formatter(&cat_label)
                    .y_desc(&self.value_desc)
                    .label_style((FONT, 12))
                    .draw()
                    .map_err(|e| err(e.to_string()))?;
                for (k, (name, values)) in self.series.iter().enumerate() {
                    let c = colour(k);
                    let off = if self.overlay { 0.0 } else { k as f64 * slot_w };
                    let rects = values.iter().enumerate().filter_map(|(i, v)| {
                        let v = (*v)?;
                        let x0 = i as f64 - 0.4 + off;
                        Some(Rectangle::new([(x0, 0.0), (x0 + slot_w, v)], c.filled()))
                    });
                    chart
                        .draw_series(rects)
                        .map_err(|e| err(e.to_string()))?
                        .label(name)
                        .legend(move |(x, y)| {
                            Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled())
                        });
                }
                if let Some(r) = self.reference {
                    chart
                        .draw_series(DashedLineSeries::new(
                            [(-0.5, r), (n as f64 - 0.5, r)],
                            6,
                            4,
                            BLACK.stroke_width(1),
                        ))
                        .map_err(|e| err(e.to_string()))?;
                }
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font((FONT, 12))
                    .position(SeriesLabelPosition::UpperRight)
                    .draw()
                    .map_err(|e| err(e.to_string()))?;
            }
            draw_stamp(&foot, stamp).map_err(&err)?;
            root.present().map_err(|e| err(e.to_string()))?;
        }
        Ok(inline_svg(buf))
    }
}
