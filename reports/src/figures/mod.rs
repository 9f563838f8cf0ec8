//! Figures as inline SVG, drawn with plotters' SVG backend. Each figure carries its stamp
//! (device, SoC, runs, date, weights) inside the SVG as well as in the HTML caption, so a
//! figure copied out of the report still says what it shows.
use crate::error::Error;
use plotters::prelude::*;

pub mod bars;
pub mod trace;

/// What every figure states about its data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stamp {
    pub device: String,
    pub soc: String,
    /// e.g. "30 runs per configuration" or "10–30 runs per configuration".
    pub runs: String,
    /// UTC date of the campaign, YYYY-MM-DD.
    pub date: String,
    /// "real", "seeded", "mixed (...)" or "unknown".
    pub weights: String,
}

impl Stamp {
    /// The stamp as one line.
    pub fn line(&self) -> String {
        format!(
            "Device: {} · SoC: {} · {} · {} · weights: {}",
            self.device, self.soc, self.runs, self.date, self.weights
        )
    }
}

/// A drawn figure.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figure {
    /// Anchor id in the HTML.
    pub id: String,
    pub title: String,
    /// The SVG document (no XML prolog), ready to inline.
    pub svg: String,
    /// What the figure shows and how it was computed (plain text).
    pub caption: String,
    pub stamp: Stamp,
}

/// Distinct colours for series (Okabe–Ito, readable by colour-blind readers and in print).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(80, 80, 80),
];

/// Colour of series `i`.
pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Font family of every label (the browser picks the face).
pub const FONT: &str = "sans-serif";

pub(crate) fn plot_err(figure: &str) -> impl Fn(String) -> Error + '_ {
    move |msg| Error::Plot {
        figure: figure.to_string(),
        msg,
    }
}

/// Draws the stamp line at the foot of an area.
pub(crate) fn draw_stamp<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    stamp: &Stamp,
) -> std::result::Result<(), String> {
    area.draw(&Text::new(
        stamp.line(),
        (8, 6),
        (FONT, 12).into_font().color(&RGBColor(60, 60, 60)),
    ))
    .map_err(|e| e.to_string())
}

/// Removes the XML prolog plotters may write, for inlining.
pub(crate) fn inline_svg(svg: String) -> String {
    match svg.find("<svg") {
        Some(i) => svg[i..].to_string(),
        None => svg,
    }
}
