//! The ssh transport for real: an sshd started by this test on 127.0.0.1 with host and user
//! keys made in a temporary folder; `ulab` pushes the agent and the data over scp, checks the
//! agent with hello, runs a campaign through it. Skips (saying so) only when sshd is not
//! installed or this is not root (sshd must run as root to switch to the user).
use crate::common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs");
    assert!(st.success(), "ssh-keygen failed");
}

struct Sshd(std::process::Child);

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_campaign_runs_through_ssh_to_a_loopback_sshd() {
    let _cpu = sharing_the_cpu();
    if !Path::new(SSHD).exists() {
        eprintln!("SKIPPED: {SSHD} is not installed (apt-get install openssh-server)");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: sshd needs root to run a test server");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    keygen(&t.join("host_key"));
    keygen(&t.join("user_key"));
    std::fs::copy(t.join("user_key.pub"), t.join("authorized_keys")).expect("authorized keys");
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let cfg = t.join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "ListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\nPidFile {pid}\n\
             StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nPubkeyAuthentication yes\nLogLevel ERROR\n\
             Subsystem sftp /usr/lib/openssh/sftp-server\n",
            hk = t.join("host_key").display(),
            ak = t.join("authorized_keys").display(),
            pid = t.join("sshd.pid").display(),
        ),
    )
    .expect("sshd config");
    let _sshd = Sshd(
        Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&cfg)
            .arg("-p")
            .arg(port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("sshd starts"),
    );
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "sshd did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let remote = t.join("remote-agent");
    let campaign_text = format!(
        "name = \"over-ssh\"\n[device]\ntransport = \"ssh\"\nhost = \"{user}@127.0.0.1\"\nport = {port}\n\
         identity = \"{key}\"\nssh_options = [\"StrictHostKeyChecking=no\", \"UserKnownHostsFile=/dev/null\", \"IdentitiesOnly=yes\", \"LogLevel=ERROR\"]\n\
         remote_dir = \"{remote}\"\nsoc = \"loopback\"\nagent = \"{agent}\"\n\
         [matrix]\nmodels = [\"efficientnet-lite0\"]\n\
         [run]\nwarmup = 1\niterations = 3\ncooldown_ms = 0\nidle_ms = 100\nthreads = 1\n\
         [accuracy]\ndataset = \"bundled\"\nlimit = 3\n",
        key = t.join("user_key").display(),
        remote = remote.display(),
        agent = agent_binary().display(),
    );
    let path = t.join("ssh.toml");
    std::fs::write(&path, campaign_text).expect("campaign");
    let out = t.join("results");
    let o = run(&path, &out, &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    // The agent and the data were pushed into the remote folder.
    assert!(remote.join("ulayer-agent").is_file());
    assert!(remote.join("data/photos/chelsea.png").is_file());
    let r = result(&out, "efficientnet-lite0__cpu__f32");
    assert_eq!(r.runs.len(), 3);
    let acc = r.accuracy.expect("accuracy over ssh");
    assert_eq!(acc.images, 3);
    let meta: harness::results::Metadata =
        harness::results::read_json(&out.join("metadata.json")).expect("metadata");
    assert!(meta.transport.starts_with("ssh "), "{meta:?}");
    assert!(meta.agent_version.is_some());
}
