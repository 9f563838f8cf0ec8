//! Running the registries' ordinary clients: `pip download`, `apt-get download`, `npm pack`.
use crate::error::RegistryFailure;
use crate::spec::{PackageSpec, Registry};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Arguments of the pip command for `pkg` (after `pip`).
fn pip_args(pkg: &PackageSpec, dest: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    if let Some(t) = pkg.pip_target {
        for (flag, value) in [
            ("--platform", t.platform),
            ("--python-version", t.python_version),
            ("--implementation", "cp"),
            ("--abi", t.abi),
        ] {
            args.push(flag.into());
            args.push(value.into());
        }
    }
    args.push("-d".into());
    args.push(dest.display().to_string());
    args.push(format!("{}=={}", pkg.name, pkg.version));
    args
}

/// The command a person runs to fetch `pkg`'s artifact into `downloads` by hand.
pub(crate) fn hand_command(pkg: &PackageSpec, downloads: &Path) -> String {
    match pkg.registry {
        Registry::PyPI => format!("python3 -m pip {}", pip_args(pkg, downloads).join(" ")),
        Registry::Debian => format!(
            "cd {} && apt-get update && apt-get download {}={}",
            downloads.display(),
            pkg.name,
            pkg.version
        ),
        Registry::Npm => format!(
            "cd {} && npm pack {}@{}",
            downloads.display(),
            pkg.name,
            pkg.version
        ),
    }
}

/// What running one client gave.
enum Outcome {
    Ok,
    /// The program is not installed (or, for `python3 -m pip`, has no pip).
    Missing(String),
    Failed(String),
}

fn run(program: &str, args: &[String], cwd: &Path) -> Outcome {
    tracing::info!("running {program} {}", args.join(" "));
    let out = match Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Outcome::Missing(format!("`{program}` is not installed"))
        }
        Err(e) => return Outcome::Failed(format!("`{program}` could not start: {e}")),
    };
    if out.status.success() {
        return Outcome::Ok;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if stderr.contains("No module named pip") {
        return Outcome::Missing(format!("`{program}` has no pip module"));
    }
    Outcome::Failed(format!(
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        tail(&stderr, &stdout)
    ))
}

/// The last few meaningful lines a client printed.
fn tail(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(4);
    let joined = lines[start..].join(" | ");
    if joined.chars().count() > 600 {
        let cut: String = joined.chars().take(600).collect();
        format!("{cut}...")
    } else if joined.is_empty() {
        "(no output)".into()
    } else {
        joined
    }
}

/// Downloads `pkg`'s artifact into `dest` with the registry's client and returns its path.
/// For Debian the file may differ from the pinned one (another architecture or a newer
/// point release); the caller decides what that means.
pub(crate) fn download(pkg: &PackageSpec, dest: &Path, downloads: &Path) -> Result<PathBuf> {
    let fail = |reason: String| {
        Error::Registry(Box::new(RegistryFailure {
            registry: pkg.registry.name(),
            package: pkg.name,
            version: pkg.version,
            reason,
            command: hand_command(pkg, downloads),
            artifact: pkg.artifact.file_name,
            downloads: downloads.to_path_buf(),
        }))
    };
    match pkg.registry {
        Registry::PyPI => {
            let args = pip_args(pkg, dest);
            let mut missing = Vec::new();
            for (program, prefix) in [
                ("python3", &["-m", "pip"][..]),
                ("pip3", &[][..]),
                ("pip", &[][..]),
            ] {
                let full: Vec<String> = prefix
                    .iter()
                    .map(|s| s.to_string())
                    .chain(args.iter().cloned())
                    .collect();
                match run(program, &full, dest) {
                    Outcome::Ok => return expect_file(pkg, dest).map_err(fail),
                    Outcome::Missing(why) => missing.push(why),
                    Outcome::Failed(why) => return Err(fail(why)),
                }
            }
            Err(fail(format!(
                "no pip found ({}); install it, e.g. `apt-get install python3-pip`",
                missing.join(", ")
            )))
        }
        Registry::Npm => match run(
            "npm",
            &["pack".into(), format!("{}@{}", pkg.name, pkg.version)],
            dest,
        ) {
            Outcome::Ok => expect_file(pkg, dest).map_err(fail),
            Outcome::Missing(why) => Err(fail(format!(
                "{why}; install it, e.g. `apt-get install npm`"
            ))),
            Outcome::Failed(why) => Err(fail(why)),
        },
        Registry::Debian => {
            let pinned = format!("{}={}", pkg.name, pkg.version);
            match run("apt-get", &["download".into(), pinned], dest) {
                Outcome::Ok => {}
                Outcome::Missing(why) => {
                    return Err(fail(format!(
                        "{why}: fetching Debian packages needs Debian's apt"
                    )))
                }
                Outcome::Failed(why)
                    if why.contains("was not found") || why.contains("Can't select") =>
                {
                    // The pinned version left the archive (or this release never had it): take
                    // the current one; its files must still match their pinned checksums.
                    tracing::warn!(
                        "{} {} is not in the apt archive ({why}); trying the current version",
                        pkg.name,
                        pkg.version
                    );
                    match run("apt-get", &["download".into(), pkg.name.into()], dest) {
                        Outcome::Ok => {}
                        Outcome::Missing(why) | Outcome::Failed(why) => return Err(fail(why)),
                    }
                }
                Outcome::Failed(why) if why.contains("Unable to locate package") => {
                    return Err(fail(format!(
                        "{why}; the package lists may be empty: run `apt-get update` first"
                    )))
                }
                Outcome::Failed(why) => return Err(fail(why)),
            }
            find_deb(dest).map_err(fail)
        }
    }
}

fn expect_file(pkg: &PackageSpec, dest: &Path) -> std::result::Result<PathBuf, String> {
    let path = dest.join(pkg.artifact.file_name);
    if path.is_file() {
        return Ok(path);
    }
    let found: Vec<String> = std::fs::read_dir(dest)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    Err(format!(
        "the client did not write {} (found: {})",
        pkg.artifact.file_name,
        if found.is_empty() {
            "nothing".into()
        } else {
            found.join(", ")
        }
    ))
}

fn find_deb(dest: &Path) -> std::result::Result<PathBuf, String> {
    let debs: Vec<PathBuf> = std::fs::read_dir(dest)
        .map_err(|e| format!("{}: {e}", dest.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    match debs.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err("apt-get download wrote no .deb".into()),
        many => Err(format!("apt-get download wrote {} .deb files", many.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::PACKAGES;

    #[test]
    fn hand_commands_name_the_pinned_version() {
        for p in PACKAGES {
            let cmd = hand_command(p, Path::new("/d"));
            assert!(cmd.contains(p.version), "{cmd}");
            assert!(cmd.contains(p.name), "{cmd}");
        }
    }

    #[test]
    fn platform_wheels_are_pinned() {
        let skimage = PACKAGES
            .iter()
            .find(|p| p.name == "scikit-image")
            .expect("scikit-image");
        let args = pip_args(skimage, Path::new("/d")).join(" ");
        assert!(args.contains("--platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311"), "{args}");
    }
}
