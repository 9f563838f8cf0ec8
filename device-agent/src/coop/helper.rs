//! The thread that drives the GPU beside the CPU: one persistent helper that stays awake
//! between the stages of an inference.
//!
//! Why not a scoped thread per stage: a split layer or a branch stage hands the GPU's work to a
//! second thread and joins it, 30–70 times per inference. Spawning that thread each time
//! (`std::thread::scope`) cost 57 µs on the GPU host (the profile's fork/join figure,
//! BENCHMARKS.md), as much as most of the layers it was meant to speed up; a sleeping
//! rayon worker takes 23–52 µs to wake on the lab's VMs (see [`crate::backend::cpu`]'s team).
//! No crate offers a scoped hand-off to a thread that polls before it parks, so this one is
//! written here: after each job the helper polls for [`SPIN`] waiting for the next, then
//! sleeps on a condition variable, so a long CPU-only stretch costs one wake-up, not a core.
//! It polls with `yield_now`, not a busy loop: the cooperative mechanisms give the CPU's
//! team every core, and a polling helper must hand its core to a worker that needs it.
//!
//! The protocol, with the only `unsafe` in it: [`Helper::join`] boxes the helper's closure
//! (which borrows from the caller's stack), erases its lifetime and publishes it; the caller
//! runs its own closure and then waits until the helper reports the job finished. The wait
//! is in a guard's `Drop`, so the caller's frame (and everything the job borrows) outlives
//! the job on the normal path and when the caller's closure panics. A panic inside the job is
//! caught on the helper and returned as an error.
use crate::{Error, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the helper (and a caller waiting for it) polls before sleeping: longer than the
/// CPU-only layers between two cooperative stages, short enough not to hold a core through a
/// long CPU-only stretch.
pub const SPIN: Duration = Duration::from_micros(300);

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Shared {
    /// The published job, taken by the helper.
    job: Mutex<Option<Job>>,
    /// Signalled when a job is published (or the helper is told to stop).
    posted: Condvar,
    /// A job is waiting (read while polling, without the lock).
    pending: AtomicBool,
    /// Jobs finished so far.
    finished: AtomicU64,
    /// Guards the sleep of a caller waiting for `finished`.
    done_lock: Mutex<()>,
    done: Condvar,
    stop: AtomicBool,
}

/// A persistent helper thread (see the module documentation).
pub struct Helper {
    shared: Arc<Shared>,
    /// Jobs published so far (only [`Helper::join`] publishes, through `&mut self`).
    posted: u64,
    name: String,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Helper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Helper")
            .field("name", &self.name)
            .field("jobs", &self.posted)
            .finish()
    }
}

impl Helper {
    /// Starts the helper thread (named `name`).
    pub fn new(name: &str) -> Result<Helper> {
        let shared = Arc::new(Shared {
            job: Mutex::new(None),
            posted: Condvar::new(),
            pending: AtomicBool::new(false),
            finished: AtomicU64::new(0),
            done_lock: Mutex::new(()),
            done: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || serve(&s))
            .map_err(|e| Error::Other(format!("cannot start the {name} thread: {e}")))?;
        Ok(Helper {
            shared,
            posted: 0,
            name: name.into(),
            thread: Some(thread),
        })
    }

    /// Runs `there` on the helper thread and `here` on this one, at the same time; returns
    /// both results once both are done. A panic in `there` becomes an error naming `what`; a
    /// panic in `here` unwinds after `there` has finished.
    pub fn join<A: Send, B>(
        &mut self,
        what: &str,
        there: impl FnOnce() -> A + Send,
        here: impl FnOnce() -> B,
    ) -> (Result<A>, B) {
        let mut slot: Option<std::thread::Result<A>> = None;
        let out = SendPtr(&mut slot as *mut Option<std::thread::Result<A>>);
        let job: Box<dyn FnOnce() + Send + '_> = Box::new(move || {
            let out = out;
            let r = catch_unwind(AssertUnwindSafe(there));
            // SAFETY: `slot` lives in `join`'s frame, which does not return or unwind before
            // the helper reports this job finished (the `Wait` guard below); nothing else
            // touches `slot` until then.
            unsafe { *out.0 = Some(r) };
        });
        // SAFETY: the job borrows from this frame (`there`'s captures, `slot`); the `Wait`
        // guard keeps the frame alive until the helper has run and dropped the job.
        let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Job>(job) };
        self.posted += 1;
        let wait = Wait {
            shared: &self.shared,
            target: self.posted,
        };
        {
            let mut j = self.shared.job.lock().unwrap_or_else(|e| e.into_inner());
            *j = Some(job);
            self.shared.pending.store(true, Ordering::Release);
        }
        self.shared.posted.notify_one();
        let b = here();
        drop(wait);
        let a = match slot {
            Some(Ok(a)) => Ok(a),
            Some(Err(_)) => Err(Error::Other(format!(
                "{what}: the {} thread panicked",
                self.name
            ))),
            None => Err(Error::Other(format!(
                "{what}: the {} thread stopped",
                self.name
            ))),
        };
        (a, b)
    }
}

/// `*mut` that may cross to the helper (the protocol above makes the access exclusive).
struct SendPtr<T>(*mut T);
// SAFETY: see `Helper::join`: only the helper writes through it, while the caller waits.
unsafe impl<T: Send> Send for SendPtr<T> {}

/// Waits, on drop, until the helper has finished job number `target`.
struct Wait<'a> {
    shared: &'a Shared,
    target: u64,
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        let s = self.shared;
        let done = || s.finished.load(Ordering::Acquire) >= self.target;
        let t0 = Instant::now();
        while !done() {
            if t0.elapsed() > SPIN {
                let mut g = s.done_lock.lock().unwrap_or_else(|e| e.into_inner());
                while !done() {
                    g = s.done.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                return;
            }
            std::thread::yield_now();
        }
    }
}

/// The helper's loop: take a job (polling for [`SPIN`], then sleeping), run it, report it.
fn serve(s: &Shared) {
    loop {
        let t0 = Instant::now();
        while !s.pending.load(Ordering::Acquire)
            && !s.stop.load(Ordering::Acquire)
            && t0.elapsed() < SPIN
        {
            std::thread::yield_now();
        }
        let job = {
            let mut j = s.job.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(job) = j.take() {
                    s.pending.store(false, Ordering::Release);
                    break Some(job);
                }
                if s.stop.load(Ordering::Acquire) {
                    break None;
                }
                j = s.posted.wait(j).unwrap_or_else(|e| e.into_inner());
            }
        };
        let Some(job) = job else { return };
        // The job catches its own panics (see `Helper::join`).
        job();
        {
            // Under the lock, so that a caller between its check and its sleep is not missed.
            let _g = s.done_lock.lock().unwrap_or_else(|e| e.into_inner());
            s.finished.fetch_add(1, Ordering::Release);
        }
        s.done.notify_all();
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        {
            let _j = self.shared.job.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.stop.store(true, Ordering::Release);
        }
        self.shared.posted.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_run_and_borrow_the_callers_data() {
        let mut h = Helper::new("test-helper").expect("helper");
        let data: Vec<u64> = (1..=1000).collect();
        let mut here_sum = 0u64;
        for round in 0..200u64 {
            let (a, ()) = h.join(
                "sum",
                || data.iter().sum::<u64>() + round,
                || here_sum += data[round as usize],
            );
            assert_eq!(a.expect("helper result"), 500_500 + round);
        }
        assert_eq!(here_sum, (1..=200).sum::<u64>());
    }

    #[test]
    fn a_panic_on_the_helper_is_an_error_and_the_helper_keeps_serving() {
        let mut h = Helper::new("test-helper").expect("helper");
        let (a, b): (Result<u32>, u32) = h.join("boom", || panic!("on purpose"), || 7);
        let err = a.expect_err("the panic is reported");
        assert!(err.to_string().contains("boom"), "{err}");
        assert_eq!(b, 7);
        let (a, _) = h.join("after", || 3, || ());
        assert_eq!(a.expect("still serving"), 3);
    }

    #[test]
    fn the_caller_waits_for_a_slow_helper_job() {
        let mut h = Helper::new("test-helper").expect("helper");
        let mut written = vec![0u8; 4];
        {
            let w = &mut written;
            let (a, ()) = h.join(
                "slow",
                move || {
                    // Longer than the polling: the caller sleeps and is woken.
                    std::thread::sleep(Duration::from_millis(5));
                    w.fill(9);
                },
                || (),
            );
            a.expect("done");
        }
        assert_eq!(written, vec![9; 4]);
        // And after a pause longer than the helper polls, it wakes for the next job.
        std::thread::sleep(Duration::from_millis(5));
        let (a, ()) = h.join("again", || 1, || ());
        assert_eq!(a.expect("woken"), 1);
    }
}
