//! The 18 bundled labeled photos and the 1000 ImageNet class names.
use crate::fetch::cached_file;
use crate::spec::IMAGENET_CLASSES_JS;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Number of ImageNet-1k classes.
pub const NUM_CLASSES: usize = 1000;

/// A bundled photo and the ImageNet classes a correct answer may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabeledPhoto {
    /// File name, unique among the photos (e.g. `chelsea.png`).
    pub name: String,
    /// Where it is in the cache.
    pub path: PathBuf,
    /// Accepted class indices; the first is the primary label.
    pub accepted: Vec<usize>,
}

impl LabeledPhoto {
    /// The primary label (the first accepted class).
    pub fn primary(&self) -> usize {
        self.accepted.first().copied().unwrap_or(usize::MAX)
    }
}

/// (cache path, accepted classes) of each photo, as listed in DATASETS.md.
const PHOTOS: &[(&str, &[usize])] = &[
    ("photos/chelsea.png", &[281, 282, 285]),
    ("photos/coffee.png", &[967, 968, 504]),
    ("photos/rocket.jpg", &[657, 744, 812]),
    ("photos/camera.png", &[872, 759]),
    ("photos/motorcycle_left.png", &[665, 670]),
    ("photos/grace_hopper.jpg", &[652]),
    ("photos/dog.jpg", &[235, 248, 249, 250]),
    ("photos/eagle.jpg", &[22, 21]),
    ("photos/giraffe.jpg", &[340]),
    ("photos/horses.jpg", &[339]),
    ("photos/kite.jpg", &[978, 977, 701]),
    ("photos/gold_fish.jpg", &[1]),
    ("photos/puppy.jpg", &[207]),
    ("photos/guitar.jpg", &[546]),
    ("photos/camera.jpg", &[759, 622]),
    ("photos/snow.jpg", &[970]),
    ("photos/tent.jpg", &[672, 915]),
    ("photos/black_cat.jpg", &[281, 282, 283, 284, 285]),
];

/// The 18 bundled photos with their accepted labels, in DATASETS.md order. Fails with
/// [`Error::NotFetched`] when a photo is not in `cache` (it does not re-hash them: see
/// [`crate::verify`]).
pub fn bundled_photos(cache: &Path) -> Result<Vec<LabeledPhoto>> {
    PHOTOS
        .iter()
        .map(|(dest, accepted)| {
            let path = cached_file(cache, dest)?;
            let name = dest.rsplit('/').next().unwrap_or(dest).to_string();
            Ok(LabeledPhoto {
                name,
                path,
                accepted: accepted.to_vec(),
            })
        })
        .collect()
}

/// The 1000 ImageNet class names, index → name, from the npm package's
/// `dist/imagenet_classes.js`.
pub fn imagenet_class_names(cache: &Path) -> Result<Vec<String>> {
    let path = cached_file(cache, IMAGENET_CLASSES_JS)?;
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    parse_classes_js(&path, &text)
}

/// Parses `IMAGENET_CLASSES = { 0: 'tench, Tinca tinca', 1: 'a' + 'b', ... }`.
fn parse_classes_js(path: &Path, text: &str) -> Result<Vec<String>> {
    const START: &str = "IMAGENET_CLASSES = {";
    let start = text
        .rfind(START)
        .ok_or_else(|| Error::parse(path, 0, format!("no `{START}` found")))?;
    let mut p = JsParser {
        path,
        text,
        pos: start + START.len(),
    };
    let mut names: Vec<String> = Vec::with_capacity(NUM_CLASSES);
    loop {
        p.skip_ws();
        if p.eat('}') {
            break;
        }
        let key_at = p.pos;
        let key = p.integer()?;
        if key != names.len() {
            return Err(p.error_at(key_at, format!("expected key {}, found {key}", names.len())));
        }
        p.skip_ws();
        p.expect(':')?;
        let mut name = String::new();
        loop {
            p.skip_ws();
            name.push_str(&p.string()?);
            p.skip_ws();
            if !p.eat('+') {
                break;
            }
        }
        names.push(name);
        p.skip_ws();
        if !p.eat(',') {
            p.skip_ws();
            p.expect('}')?;
            break;
        }
    }
    if names.len() != NUM_CLASSES {
        return Err(Error::parse(
            path,
            0,
            format!("{} class names, expected {NUM_CLASSES}", names.len()),
        ));
    }
    Ok(names)
}

struct JsParser<'a> {
    path: &'a Path,
    text: &'a str,
    pos: usize,
}

impl JsParser<'_> {
    fn error_at(&self, pos: usize, message: impl Into<String>) -> Error {
        let line = self.text[..pos.min(self.text.len())].matches('\n').count() + 1;
        Error::parse(self.path, line, message)
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.pos += c.len_utf8();
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error_at(self.pos, format!("expected `{c}`, found {:?}", self.peek())))
        }
    }

    fn integer(&mut self) -> Result<usize> {
        let digits: String = self.text[self.pos..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let v = digits.parse().map_err(|_| {
            self.error_at(
                self.pos,
                format!("expected a class index, found {:?}", self.peek()),
            )
        })?;
        self.pos += digits.len();
        Ok(v)
    }

    /// A single- or double-quoted JavaScript string literal.
    fn string(&mut self) -> Result<String> {
        let at = self.pos;
        let quote = match self.peek() {
            Some(q @ ('\'' | '"')) => q,
            other => return Err(self.error_at(at, format!("expected a string, found {other:?}"))),
        };
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.text[self.pos..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                c if c == quote => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\n' => break,
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, 'r')) => out.push('\r'),
                    Some((_, 'u')) => {
                        let hex: String = chars.by_ref().take(4).map(|(_, h)| h).collect();
                        let ch = u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| self.error_at(at, format!("bad escape \\u{hex}")))?;
                        out.push(ch);
                    }
                    Some((_, other)) => out.push(other),
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(self.error_at(at, "unterminated string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn js(entries: &str) -> String {
        format!(
            "exports.IMAGENET_CLASSES = void 0;\nexports.IMAGENET_CLASSES = {{\n{entries}\n}};\n"
        )
    }

    #[test]
    fn parses_concatenation_and_escapes() {
        let mut entries: Vec<String> = (0..NUM_CLASSES)
            .map(|i| format!("    {i}: 'c{i}',"))
            .collect();
        entries[0] = "    0: 'carpenter\\'s kit, ' +\n        \"tool kit\",".into();
        let names = parse_classes_js(Path::new("c.js"), &js(&entries.join("\n"))).expect("parse");
        assert_eq!(names.len(), NUM_CLASSES);
        assert_eq!(names[0], "carpenter's kit, tool kit");
        assert_eq!(names[999], "c999");
    }

    #[test]
    fn names_the_line_at_fault() {
        let e = parse_classes_js(Path::new("c.js"), &js("    0: 'a',\n    2: 'b'"))
            .expect_err("gap")
            .to_string();
        assert!(
            e.starts_with("c.js:4:") && e.contains("expected key 1"),
            "{e}"
        );
        let e = parse_classes_js(Path::new("c.js"), &js("    0: 'a"))
            .expect_err("unterminated")
            .to_string();
        assert!(e.contains("unterminated"), "{e}");
    }

    #[test]
    fn photo_table_matches_the_spec() {
        let dests: Vec<&str> = crate::spec::PACKAGES
            .iter()
            .flat_map(|p| p.files.iter().map(|f| f.dest))
            .filter(|d| d.starts_with("photos/"))
            .collect();
        assert_eq!(PHOTOS.len(), 18);
        for (dest, accepted) in PHOTOS {
            assert!(dests.contains(dest), "{dest} is not fetched");
            assert!(!accepted.is_empty() && accepted.iter().all(|&c| c < NUM_CLASSES));
        }
    }
}
