//! The GPU's side of a cooperative run: one thread, started once per inference, that runs the
//! GPU half of every split layer or branch stage while the calling thread runs the CPU half.
//!
//! Why not a thread per stage (as before): starting a scoped thread and joining it cost
//! 15 µs before the thread ran and 28 µs in all (median, this 2-vCPU VM), paid by every split
//! layer, whose GPU halves take 0.1–0.3 ms on the GPU machine. A thread that waits between
//! stages takes a job in about a microsecond while it spins. It spins for at most
//! [`crate::backend::cpu::team::SPIN`] after a job, then sleeps on a condition variable (a
//! long run of CPU-only layers costs one wake-up, not a busy core). rayon cannot serve here:
//! the CPU half forks on the rayon pool's workers, and the GPU half must not take one.
//!
//! The one `unsafe`: [`Side::both`] hands the side thread a pointer to a closure on its own
//! stack, and does not return (nor unwind) before the side thread has finished with it:
//! the reasoning of scoped threads, per job.
use crate::backend::cpu::team::SPIN;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// A job as the side thread sees it: a closure that runs once (later calls do nothing).
type Job<'a> = &'a mut (dyn FnMut() + Send);

struct Shared {
    /// The generation of the latest job published.
    posted: AtomicU64,
    /// The generation of the latest job finished.
    done: AtomicU64,
    /// Points to the `Job` of generation `posted` until `done` reaches it.
    job: AtomicPtr<()>,
    closed: AtomicBool,
    /// The side thread is asleep on `side_cv` / the caller on `done_cv`.
    side_asleep: AtomicBool,
    caller_asleep: AtomicBool,
    lock: Mutex<()>,
    side_cv: Condvar,
    done_cv: Condvar,
}

/// A side thread, valid inside [`with_side`].
pub(crate) struct Side<'a> {
    shared: &'a Shared,
}

/// Runs `f` with a side thread, which ends when `f` returns (or unwinds).
pub(crate) fn with_side<R>(f: impl FnOnce(&Side<'_>) -> R) -> R {
    let shared = Shared {
        posted: AtomicU64::new(0),
        done: AtomicU64::new(0),
        job: AtomicPtr::new(std::ptr::null_mut()),
        closed: AtomicBool::new(false),
        side_asleep: AtomicBool::new(false),
        caller_asleep: AtomicBool::new(false),
        lock: Mutex::new(()),
        side_cv: Condvar::new(),
        done_cv: Condvar::new(),
    };
    std::thread::scope(|s| {
        let side = std::thread::Builder::new()
            .name("ulayer-gpu-side".into())
            .spawn_scoped(s, || shared.serve());
        struct Close<'a>(&'a Shared);
        impl Drop for Close<'_> {
            fn drop(&mut self) {
                self.0.closed.store(true, Ordering::SeqCst);
                self.0.wake(&self.0.side_asleep, &self.0.side_cv);
            }
        }
        let _close = Close(&shared);
        match side {
            Ok(_) => f(&Side { shared: &shared }),
            // No thread to be had: `both` then runs both halves here, one after the other.
            Err(_) => {
                shared.closed.store(true, Ordering::SeqCst);
                f(&Side { shared: &shared })
            }
        }
    })
}

impl Side<'_> {
    /// Runs `gpu` on the side thread while `cpu` runs on this one; returns both results, the
    /// side's as `Err` with the panic's payload if it panicked. Without a side thread (it
    /// could not be started), runs `gpu` then `cpu` here.
    pub(crate) fn both<A: Send, B>(
        &self,
        gpu: impl FnOnce() -> A + Send,
        cpu: impl FnOnce() -> B,
    ) -> (std::thread::Result<A>, B) {
        let sh = self.shared;
        if sh.closed.load(Ordering::SeqCst) {
            let a = catch_unwind(AssertUnwindSafe(gpu));
            return (a, cpu());
        }
        let mut gpu = Some(gpu);
        let mut result: Option<std::thread::Result<A>> = None;
        let mut call = || {
            if let Some(g) = gpu.take() {
                result = Some(catch_unwind(AssertUnwindSafe(g)));
            }
        };
        let mut job: Job<'_> = &mut call;
        let gen = sh.posted.load(Ordering::Relaxed) + 1;
        sh.job
            .store(&mut job as *mut Job<'_> as *mut (), Ordering::SeqCst);
        sh.posted.store(gen, Ordering::SeqCst);
        sh.wake(&sh.side_asleep, &sh.side_cv);
        // Waits for the side thread to finish the job however `cpu` ends.
        struct Await<'a>(&'a Shared, u64);
        impl Drop for Await<'_> {
            fn drop(&mut self) {
                let (sh, gen) = (self.0, self.1);
                sh.wait(
                    || sh.done.load(Ordering::SeqCst) >= gen,
                    &sh.caller_asleep,
                    &sh.done_cv,
                );
            }
        }
        let wait = Await(sh, gen);
        let b = cpu();
        drop(wait);
        let a = result.unwrap_or_else(|| Err(Box::new("the GPU side thread did not run its job")));
        (a, b)
    }
}

impl Shared {
    /// The side thread: runs each job posted until the side closes.
    fn serve(&self) {
        let mut seen = 0;
        loop {
            self.wait(
                || self.closed.load(Ordering::SeqCst) || self.posted.load(Ordering::SeqCst) > seen,
                &self.side_asleep,
                &self.side_cv,
            );
            let posted = self.posted.load(Ordering::SeqCst);
            if posted == seen {
                return; // closed, nothing left
            }
            seen = posted;
            let job = self.job.load(Ordering::SeqCst) as *mut Job<'_>;
            // SAFETY: the job of generation `posted` lives on the stack of the `both` call that
            // posted it, which waits for `done` to reach `posted` before it returns or unwinds.
            unsafe { (*job)() };
            self.done.store(posted, Ordering::SeqCst);
            self.wake(&self.caller_asleep, &self.done_cv);
        }
    }

    /// Spins for [`SPIN`] until `ready`, then sleeps on `cv` with `asleep` set.
    fn wait(&self, ready: impl Fn() -> bool, asleep: &AtomicBool, cv: &Condvar) {
        let start = Instant::now();
        let mut spins = 0u32;
        while !ready() {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && start.elapsed() > SPIN {
                let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
                asleep.store(true, Ordering::SeqCst);
                while !ready() {
                    g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                asleep.store(false, Ordering::SeqCst);
                return;
            }
            std::hint::spin_loop();
        }
    }

    /// Wakes the party asleep on `cv` after what it waits for has been stored.
    fn wake(&self, asleep: &AtomicBool, cv: &Condvar) {
        if asleep.load(Ordering::SeqCst) {
            drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()));
            cv.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn both_halves_run_at_once_on_two_threads_for_many_stages() {
        let here = std::thread::current().id();
        with_side(|side| {
            for i in 0..2000u64 {
                let (a, b) = side.both(move || (i * 2, std::thread::current().id()), || i + 1);
                let (a, tid) = a.expect("no panic");
                assert_eq!((a, b), (i * 2, i + 1));
                assert_ne!(tid, here, "the GPU half ran on the side thread");
            }
        });
    }

    #[test]
    fn a_sleeping_side_thread_wakes_and_a_long_cpu_half_is_waited_for() {
        with_side(|side| {
            std::thread::sleep(SPIN * 4); // the side thread is asleep by now
            let started = Instant::now();
            let (a, ()) = side.both(
                || {
                    std::thread::sleep(Duration::from_millis(50));
                    7
                },
                || std::thread::sleep(Duration::from_millis(50)),
            );
            assert_eq!(a.expect("no panic"), 7);
            // Concurrent: well under the 100 ms of the two halves in a row.
            assert!(
                started.elapsed() < Duration::from_millis(90),
                "{:?}",
                started.elapsed()
            );
            // The caller sleeps through a long GPU half, and is woken by its end.
            std::thread::sleep(SPIN * 4);
            let (a, ()) = side.both(
                || {
                    std::thread::sleep(SPIN * 8);
                    8
                },
                || (),
            );
            assert_eq!(a.expect("no panic"), 8);
        });
    }

    #[test]
    fn a_panic_on_the_side_is_returned_and_the_side_goes_on() {
        with_side(|side| {
            let (a, b) = side.both(|| -> u8 { panic!("GPU half fails") }, || 3);
            assert!(a.is_err());
            assert_eq!(b, 3);
            let (a, _) = side.both(|| 5, || ());
            assert_eq!(a.expect("the side thread survived"), 5);
        });
    }

    #[test]
    fn a_panicking_cpu_half_still_waits_for_the_gpu_half() {
        let finished = AtomicBool::new(false);
        let r = catch_unwind(AssertUnwindSafe(|| {
            with_side(|side| {
                side.both(
                    || {
                        std::thread::sleep(Duration::from_millis(10));
                        finished.store(true, Ordering::SeqCst);
                    },
                    || panic!("CPU half fails"),
                )
            })
        }));
        assert!(r.is_err());
        assert!(
            finished.load(Ordering::SeqCst),
            "unwound only after the GPU half ended"
        );
    }
}
