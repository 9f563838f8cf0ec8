//! Shared helpers: a simulator on a real pty and a monitor opened on it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use monsoon::sim::{GroundTruth, SimConfig, Simulator};
use monsoon::stream::StreamEvent;
use monsoon::{Monitor, OpenOptions, Sample};

pub struct Rig {
    pub sim: Option<Simulator>,
    pub dir: tempfile::TempDir,
    pub gt_path: PathBuf,
}

impl Rig {
    /// Start a simulator writing ground truth into a temp dir.
    pub fn new(mut cfg: SimConfig) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let gt_path = dir.path().join("truth.bin");
        cfg.ground_truth = Some(gt_path.clone());
        let sim = Simulator::spawn(cfg).unwrap();
        Rig {
            sim: Some(sim),
            dir,
            gt_path,
        }
    }

    pub fn opts(&self) -> OpenOptions {
        OpenOptions {
            lock_dir: Some(self.dir.path().to_path_buf()),
            ..OpenOptions::default()
        }
    }

    pub fn open(&self) -> Monitor {
        Monitor::open_with(self.sim.as_ref().unwrap().path(), self.opts()).unwrap()
    }

    /// Stop the simulator and read its ground truth.
    pub fn truth(&mut self) -> GroundTruth {
        if let Some(s) = self.sim.take() {
            s.shutdown().unwrap();
        }
        GroundTruth::read(&self.gt_path).unwrap()
    }
}

/// Everything a stream delivered, split by kind.
#[derive(Default, Debug)]
pub struct Collected {
    pub samples: Vec<Sample>,
    pub events: Vec<StreamEvent>,
}

impl Collected {
    pub fn push(&mut self, ev: StreamEvent) {
        match ev {
            StreamEvent::Samples(mut v) => self.samples.append(&mut v),
            other => self.events.push(other),
        }
    }

    pub fn lost(&self) -> u64 {
        self.events
            .iter()
            .map(|e| match e {
                StreamEvent::Gap(g) => g.lost,
                _ => 0,
            })
            .sum()
    }

    pub fn uncalibrated(&self) -> u64 {
        self.events
            .iter()
            .map(|e| match e {
                StreamEvent::Uncalibrated { count, .. } => *count,
                _ => 0,
            })
            .sum()
    }
}

/// Collect until `n` sample indices have passed (received or accounted),
/// the stream ends, or `timeout` passes.
pub fn collect_until(stream: &monsoon::SampleStream, n: u64, timeout: Duration) -> Collected {
    let t0 = std::time::Instant::now();
    let mut c = Collected::default();
    while t0.elapsed() < timeout {
        match stream.recv_timeout(Duration::from_millis(200)) {
            Ok(ev) => {
                let end = matches!(ev, StreamEvent::Error(_));
                c.push(ev);
                if end || c.samples.last().is_some_and(|s| s.index + 1 >= n) {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    c
}
