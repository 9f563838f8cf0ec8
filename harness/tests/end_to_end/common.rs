//! Shared helpers of the campaign tests: the binaries, campaign files, result folders.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The tests of this binary run on parallel threads of one process, and each spawns agents
/// that keep a core busy. A test that compares timings of two runs must not share the
/// machine with them: on a 2-core host another test's agent slowed one of two clean 12-run
/// samples by 52% and failed a +50% rule (clean-clone CI, 2026-12-07). Every test holds this
/// lock: shared by the others ([`sharing_the_cpu`]), alone by a timing test
/// ([`measuring_alone`]).
static CPU: RwLock<()> = RwLock::new(());

/// Held by a test that may run beside the others.
pub fn sharing_the_cpu() -> RwLockReadGuard<'static, ()> {
    // A test that panicked while holding the lock says nothing about the machine.
    CPU.read().unwrap_or_else(PoisonError::into_inner)
}

/// Held by a test whose assertions compare timings: no other test of this binary runs.
pub fn measuring_alone() -> RwLockWriteGuard<'static, ()> {
    CPU.write().unwrap_or_else(PoisonError::into_inner)
}

/// `target/release/ulayer-agent` beside this test's binary folder (the agent is another
/// package's binary, so Cargo does not hand its path to these tests).
pub fn agent_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let agent = dir.join("ulayer-agent");
    assert!(
        agent.is_file(),
        "{} is missing: build it first with `cargo build --release -p ulayer --bin ulayer-agent` (./lab test does)",
        agent.display()
    );
    agent
}

pub fn ulab() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ulab"));
    c.env_remove("ULAB_FAULT");
    c
}

/// A campaign file with the given name, matrix and monitor, local agent.
pub fn campaign(dir: &Path, name: &str, matrix: &str, monitor: &str, extra: &str) -> PathBuf {
    let text = format!(
        "name = \"{name}\"\n\
         [device]\ntransport = \"local\"\nsoc = \"test host\"\nagent = \"{agent}\"\n\
         [monitor]\n{monitor}\n\
         [matrix]\n{matrix}\n\
         [run]\nwarmup = 1\niterations = 4\ncooldown_ms = 0\nidle_ms = 300\nthreads = 1\njob_timeout_s = 300\n\
         {extra}",
        agent = agent_binary().display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write the campaign");
    path
}

pub fn run(campaign: &Path, out: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = ulab();
    c.arg("run").arg(campaign).arg("--out").arg(out).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("ulab runs")
}

pub fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn checkpoint(out: &Path) -> harness::checkpoint::Checkpoint {
    harness::checkpoint::Checkpoint::read(out)
        .expect("checkpoint readable")
        .expect("checkpoint present")
}

pub fn result(out: &Path, slug: &str) -> harness::record::ConfigResult {
    harness::results::read_json(&out.join("configs").join(slug).join("result.json"))
        .expect("result.json")
}

/// The `config` column of a table.
pub fn configs_in(df: &polars::prelude::DataFrame) -> Vec<String> {
    let col = df.column("config").expect("config column");
    let s = col.str().expect("strings");
    let mut v: Vec<String> = (0..s.len())
        .filter_map(|i| s.get(i))
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}
