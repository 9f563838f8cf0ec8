//! Ctrl-C: the first one asks the campaign to stop (USB passthrough is restored, the
//! agent stopped, the interrupted configuration left to redo); a second one exits at once.
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicU32 = AtomicU32::new(0);

/// The error a wait returns when Ctrl-C was pressed.
#[derive(Debug, thiserror::Error)]
#[error("interrupted (Ctrl-C)")]
pub struct Interrupted;

/// Installs the handler (once per process; later calls do nothing).
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        REQUESTED.store(true, Ordering::SeqCst);
        if COUNT.fetch_add(1, Ordering::SeqCst) >= 1 {
            eprintln!("ulab: second Ctrl-C, exiting now");
            std::process::exit(130);
        }
        eprintln!("ulab: Ctrl-C, stopping after restoring USB passthrough (again to exit now)");
    });
}

/// Whether Ctrl-C was pressed.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
