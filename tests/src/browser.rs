//! The HTML report in headless chromium: no console errors, and a screenshot that shows
//! plots (not blank, many colours, the series colours covering visible areas).
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `$ULAB_CHROMIUM`, else the first chromium-like browser on `PATH`.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ULAB_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Runs chromium headless on `page`, writing `png`; returns its log (stderr + stdout).
pub fn screenshot(chromium: &Path, page: &Path, png: &Path, profile: &Path) -> String {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--enable-logging=stderr", "--v=0"])
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1200,3000")
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", chromium.display()));
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > Duration::from_secs(120) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish in 120 s");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("wait for chromium: {e}"),
        }
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("chromium output: {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    )
}

/// Width, height and RGB pixels of a PNG.
pub fn decode(png_path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let bytes = std::fs::read(png_path).unwrap_or_else(|e| panic!("{}: {e}", png_path.display()));
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec
        .read_info()
        .unwrap_or_else(|e| panic!("PNG header: {e}"));
    let size = reader
        .output_buffer_size()
        .unwrap_or_else(|| panic!("PNG too large"));
    let mut buf = vec![0; size];
    let info = reader
        .next_frame(&mut buf)
        .unwrap_or_else(|e| panic!("PNG frame: {e}"));
    let channels = info.color_type.samples();
    let px = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|c| match channels {
            1 | 2 => [c[0], c[0], c[0]],
            _ => [c[0], c[1], c[2]],
        })
        .collect();
    (info.width, info.height, px)
}

/// Renders `html` in headless chromium (scratch files under `work`) and asserts: no console
/// errors or refused loads, a screenshot of at least 1000×2000 pixels that is not blank, has
/// the colour variety of plots, and shows the series colours (Okabe–Ito blue and orange) over
/// visible areas. Returns `false`, saying so, only when no chromium can be found.
pub fn assert_report_renders_with_plots(html: &Path, work: &Path) -> bool {
    let Some(chromium) = find_chromium() else {
        eprintln!(
            "SKIPPED: no chromium found (apt-get install chromium, or set ULAB_CHROMIUM): the \
             HTML report was not rendered in a browser"
        );
        return false;
    };
    let png_path = work.join("shot.png");
    let log = screenshot(&chromium, html, &png_path, &work.join("profile"));
    for bad in ["Uncaught", "ERROR:CONSOLE", "Refused to", "net::ERR_"] {
        assert!(!log.contains(bad), "chromium reported {bad:?}:\n{log}");
    }
    assert!(
        png_path.is_file(),
        "no screenshot written; chromium said:\n{log}"
    );
    if let Some(keep) = std::env::var_os("ULAB_REPORT_SCREENSHOT") {
        // For a look by eye: where to copy the screenshot.
        let _ = std::fs::copy(&png_path, keep);
    }
    let (w, h, px) = decode(&png_path);
    assert!(w >= 1000 && h >= 2000, "screenshot {w}×{h}");
    let non_white = px.iter().filter(|p| p.iter().any(|&c| c < 240)).count();
    let share = non_white as f64 / px.len() as f64;
    let mut colours: std::collections::HashSet<[u8; 3]> = std::collections::HashSet::new();
    for p in &px {
        colours.insert([p[0] & 0xF8, p[1] & 0xF8, p[2] & 0xF8]);
    }
    let near = |p: &[u8; 3], c: [u8; 3]| p.iter().zip(c).all(|(a, b)| a.abs_diff(b) <= 12);
    let blue = px.iter().filter(|p| near(p, [0, 114, 178])).count();
    let orange = px.iter().filter(|p| near(p, [230, 159, 0])).count();
    eprintln!(
        "screenshot {w}×{h}: {:.1}% non-white, {} colours, {blue} blue and {orange} orange pixels",
        share * 100.0,
        colours.len()
    );
    assert!(
        share > 0.03,
        "page looks blank: {:.2}% non-white",
        share * 100.0
    );
    assert!(
        colours.len() > 40,
        "too few colours ({}) for plots",
        colours.len()
    );
    assert!(
        blue > 2000 && orange > 2000,
        "bars missing: {blue} blue, {orange} orange pixels"
    );
    true
}
