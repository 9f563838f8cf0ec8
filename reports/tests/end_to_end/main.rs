//! The reports crate's end-to-end tests, in one test binary (each test binary links polars;
//! one binary saves the links' time and disk).
mod common;

mod browser;
mod report_e2e;
