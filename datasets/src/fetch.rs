//! The fetch step: download each package with its registry's client, check the artifact's
//! and each extracted file's SHA-256 against [`crate::spec::PACKAGES`], place the files in
//! the cache and write `manifest.json`.
//!
//! Idempotent: a package whose files are all present with their pinned checksums is not
//! downloaded again, so once the cache is complete a fetch only verifies (and works
//! offline). Files are written atomically, so concurrent fetches into one cache are safe
//! (merely wasteful). An artifact fetched by hand and put in `<cache>/downloads/` is used
//! instead of running the client.
use crate::archive;
use crate::cache::{sha256_file, sha256_hex, write_atomic};
use crate::clients;
use crate::spec::{FileSpec, PackageSpec, Registry, PACKAGES};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// File name of the manifest in the cache folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Sub-folder of the cache where artifacts fetched by hand are picked up.
pub const DOWNLOADS_DIR: &str = "downloads";

/// Provenance of one cached file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path relative to the cache folder (`/`-separated).
    pub file: String,
    /// Package it was taken from.
    pub package: String,
    /// Package version.
    pub version: String,
    /// Registry the package came from.
    pub registry: Registry,
    /// Licence of the file.
    pub licence: String,
    /// SHA-256 of the file, lower-case hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Path of the file inside the package.
    pub member: String,
    /// File name of the package artifact.
    pub artifact: String,
    /// SHA-256 of the package artifact.
    pub artifact_sha256: String,
    /// Whether the artifact is the pinned one (false only for a Debian package of another
    /// architecture or release, accepted because every file taken from it matched its pin).
    pub artifact_pinned: bool,
}

/// The cache's `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// What wrote it.
    pub generator: String,
    /// One entry per cached file, in spec order.
    pub files: Vec<ManifestEntry>,
}

/// What a fetch did, as it goes.
#[derive(Clone, Debug)]
pub enum Progress {
    /// A package's files are all in the cache with their pinned checksums.
    Cached {
        /// Package name.
        package: &'static str,
        /// Number of its files verified.
        files: usize,
    },
    /// A cached file does not match its pin and will be fetched again.
    Corrupt {
        /// The file.
        file: PathBuf,
    },
    /// A package is being downloaded with its registry's client.
    Downloading {
        /// Package name.
        package: &'static str,
        /// Pinned version.
        version: &'static str,
        /// Registry.
        registry: Registry,
    },
    /// An artifact fetched by hand was found in the downloads folder.
    UsingLocal {
        /// The artifact.
        artifact: PathBuf,
    },
    /// An artifact was downloaded and checked.
    Downloaded {
        /// Package name.
        package: &'static str,
        /// Artifact file name.
        artifact: String,
        /// Its size.
        bytes: u64,
        /// Whether it is the pinned artifact (see [`ManifestEntry::artifact_pinned`]).
        pinned: bool,
    },
    /// A file was extracted, verified and placed in the cache.
    Extracted {
        /// The cached file.
        file: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// The manifest was written (or already up to date).
    Manifest {
        /// Its path.
        path: PathBuf,
        /// Whether it had to be (re)written.
        written: bool,
    },
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Progress::Cached { package, files } => {
                write!(f, "{package}: {files} file(s) cached and verified")
            }
            Progress::Corrupt { file } => {
                write!(f, "{}: checksum mismatch, fetching again", file.display())
            }
            Progress::Downloading {
                package,
                version,
                registry,
            } => write!(f, "{package} {version}: downloading from {registry}"),
            Progress::UsingLocal { artifact } => {
                write!(f, "using {} fetched by hand", artifact.display())
            }
            Progress::Downloaded {
                package,
                artifact,
                bytes,
                pinned,
            } => {
                write!(
                    f,
                    "{package}: {artifact} ({bytes} bytes){}",
                    if *pinned {
                        ", checksum ok"
                    } else {
                        ", NOT the pinned artifact: files checked one by one"
                    }
                )
            }
            Progress::Extracted { file, bytes } => {
                write!(f, "  {} ({bytes} bytes, checksum ok)", file.display())
            }
            Progress::Manifest { path, written } => write!(
                f,
                "manifest {}{}",
                path.display(),
                if *written { "" } else { " (up to date)" }
            ),
        }
    }
}

/// The result of a fetch.
#[derive(Clone, Debug)]
pub struct FetchReport {
    /// Path of `manifest.json`.
    pub manifest_path: PathBuf,
    /// Its contents.
    pub manifest: Manifest,
    /// Packages that had to be downloaded (empty when everything was cached).
    pub downloaded: Vec<&'static str>,
}

/// Path of the manifest in `cache`.
pub fn manifest_path(cache: &Path) -> PathBuf {
    cache.join(MANIFEST_FILE)
}

/// Path of a cached file, or [`Error::NotFetched`] when it is not there.
pub(crate) fn cached_file(cache: &Path, dest: &str) -> Result<PathBuf> {
    let path = cache.join(dest);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::NotFetched {
            path,
            cache: cache.to_path_buf(),
        })
    }
}

/// Fetches everything into `cache` (see the module docs), logging progress through `tracing`.
pub fn fetch(cache: &Path) -> Result<FetchReport> {
    fetch_with_progress(cache, &mut |p| tracing::info!("{p}"))
}

/// [`fetch`], reporting each step to `progress`.
pub fn fetch_with_progress(
    cache: &Path,
    progress: &mut dyn FnMut(&Progress),
) -> Result<FetchReport> {
    fs::create_dir_all(cache).map_err(|e| Error::io(cache, e))?;
    remove_stale_staging(cache);
    let previous = read_manifest(cache).ok();
    let mut entries = Vec::new();
    let mut downloaded = Vec::new();
    for pkg in PACKAGES {
        if let Some(kept) = cached_entries(cache, pkg, previous.as_ref(), progress)? {
            progress(&Progress::Cached {
                package: pkg.name,
                files: kept.len(),
            });
            entries.extend(kept);
            continue;
        }
        entries.extend(fetch_package(cache, pkg, progress)?);
        downloaded.push(pkg.name);
    }
    let manifest = Manifest {
        generator: format!("ulab-data {}", env!("CARGO_PKG_VERSION")),
        files: entries,
    };
    let path = manifest_path(cache);
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::io(&path, e.into()))?;
    let written = fs::read(&path).map_or(true, |old| old != json);
    if written {
        write_atomic(&path, &json)?;
    }
    progress(&Progress::Manifest {
        path: path.clone(),
        written,
    });
    Ok(FetchReport {
        manifest_path: path,
        manifest,
        downloaded,
    })
}

/// Entries of `pkg` when all its files are cached with their pinned checksums, else None.
fn cached_entries(
    cache: &Path,
    pkg: &PackageSpec,
    previous: Option<&Manifest>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Option<Vec<ManifestEntry>>> {
    let mut out = Vec::new();
    for f in pkg.files {
        let path = cache.join(f.dest);
        if !path.is_file() {
            return Ok(None);
        }
        let (sha, size) = sha256_file(&path)?;
        if sha != f.sha256 || size != f.size {
            progress(&Progress::Corrupt { file: path });
            return Ok(None);
        }
        // Keep what the previous fetch recorded about the artifact (it may have been an
        // unpinned Debian package); otherwise describe the pinned one.
        let old = previous.and_then(|m| {
            m.files.iter().find(|e| {
                e.file == f.dest
                    && e.sha256 == f.sha256
                    && e.package == pkg.name
                    && e.version == pkg.version
            })
        });
        let mut entry = entry(pkg, f, pkg.artifact.file_name, pkg.artifact.sha256, true);
        if let Some(old) = old {
            entry.artifact.clone_from(&old.artifact);
            entry.artifact_sha256.clone_from(&old.artifact_sha256);
            entry.artifact_pinned = old.artifact_pinned;
        }
        out.push(entry);
    }
    Ok(Some(out))
}

fn entry(
    pkg: &PackageSpec,
    f: &FileSpec,
    artifact: &str,
    artifact_sha256: &str,
    pinned: bool,
) -> ManifestEntry {
    ManifestEntry {
        file: f.dest.to_string(),
        package: pkg.name.to_string(),
        version: pkg.version.to_string(),
        registry: pkg.registry,
        licence: f.licence.to_string(),
        sha256: f.sha256.to_string(),
        size: f.size,
        member: f.member.to_string(),
        artifact: artifact.to_string(),
        artifact_sha256: artifact_sha256.to_string(),
        artifact_pinned: pinned,
    }
}

fn fetch_package(
    cache: &Path,
    pkg: &PackageSpec,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Vec<ManifestEntry>> {
    let downloads = cache.join(DOWNLOADS_DIR);
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(cache)
        .map_err(|e| Error::io(cache, e))?;
    let local = downloads.join(pkg.artifact.file_name);
    let artifact = if local.is_file() {
        progress(&Progress::UsingLocal {
            artifact: local.clone(),
        });
        local
    } else {
        progress(&Progress::Downloading {
            package: pkg.name,
            version: pkg.version,
            registry: pkg.registry,
        });
        clients::download(pkg, staging.path(), &downloads)?
    };
    let artifact_name = artifact
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (artifact_sha, artifact_size) = sha256_file(&artifact)?;
    let pinned = artifact_name == pkg.artifact.file_name;
    if pinned && artifact_sha != pkg.artifact.sha256 {
        return Err(Error::Checksum {
            file: artifact.display().to_string(),
            expected: pkg.artifact.sha256.into(),
            got: artifact_sha,
        });
    }
    if !pinned && pkg.registry != Registry::Debian {
        return Err(Error::archive(
            &artifact,
            format!("expected the pinned artifact {}", pkg.artifact.file_name),
        ));
    }
    if !pinned {
        tracing::warn!("{}: {artifact_name} is not the pinned {}; accepting it only if every file matches its pin", pkg.name, pkg.artifact.file_name);
    }
    progress(&Progress::Downloaded {
        package: pkg.name,
        artifact: artifact_name.clone(),
        bytes: artifact_size,
        pinned,
    });

    let members = archive::extract(pkg.registry, &artifact, pkg.files)?;
    // Check every file before placing any, so a bad artifact leaves the cache as it was.
    for f in pkg.files {
        let bytes = members.get(f.member).map(Vec::as_slice).unwrap_or_default();
        let got = sha256_hex(bytes);
        if got != f.sha256 {
            return Err(Error::Checksum {
                file: format!("{} (in {artifact_name})", f.member),
                expected: f.sha256.into(),
                got,
            });
        }
    }
    let mut out = Vec::new();
    for f in pkg.files {
        let bytes = members.get(f.member).map(Vec::as_slice).unwrap_or_default();
        let dest = cache.join(f.dest);
        write_atomic(&dest, bytes)?;
        progress(&Progress::Extracted {
            file: dest,
            bytes: bytes.len() as u64,
        });
        out.push(entry(pkg, f, &artifact_name, &artifact_sha, pinned));
    }
    drop(staging);
    Ok(out)
}

/// Removes `.staging-*` folders left by fetches that were killed more than a day ago.
fn remove_stale_staging(cache: &Path) {
    let Ok(dir) = fs::read_dir(cache) else { return };
    let day_ago = SystemTime::now().checked_sub(Duration::from_secs(86_400));
    for e in dir.filter_map(|e| e.ok()) {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .zip(day_ago)
            .is_some_and(|(m, limit)| m < limit);
        if old && e.file_name().to_string_lossy().starts_with(".staging-") {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

fn read_manifest(cache: &Path) -> Result<Manifest> {
    let path = manifest_path(cache);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFetched {
                path,
                cache: cache.to_path_buf(),
            })
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    serde_json::from_slice(&text).map_err(|e| Error::parse(&path, e.line(), e.to_string()))
}

/// Checks that every pinned file is in `cache` with its checksum and that `manifest.json`
/// describes them; downloads nothing. Returns the manifest.
pub fn verify(cache: &Path) -> Result<Manifest> {
    for pkg in PACKAGES {
        for f in pkg.files {
            let path = cached_file(cache, f.dest)?;
            let (sha, _) = sha256_file(&path)?;
            if sha != f.sha256 {
                return Err(Error::Checksum {
                    file: path.display().to_string(),
                    expected: f.sha256.into(),
                    got: sha,
                });
            }
        }
    }
    let manifest = read_manifest(cache)?;
    let path = manifest_path(cache);
    let listed: Vec<&str> = manifest.files.iter().map(|e| e.file.as_str()).collect();
    let pinned: Vec<&str> = PACKAGES
        .iter()
        .flat_map(|p| p.files.iter().map(|f| f.dest))
        .collect();
    if listed != pinned {
        return Err(Error::parse(
            &path,
            0,
            format!("lists {listed:?}, expected {pinned:?}: run `ulab-data fetch`"),
        ));
    }
    for (e, f) in manifest
        .files
        .iter()
        .zip(PACKAGES.iter().flat_map(|p| p.files.iter()))
    {
        if e.sha256 != f.sha256 {
            return Err(Error::parse(
                &path,
                0,
                format!(
                    "{}: sha256 {} is not the pinned {}: run `ulab-data fetch`",
                    e.file, e.sha256, f.sha256
                ),
            ));
        }
    }
    Ok(manifest)
}
