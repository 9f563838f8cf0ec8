//! A team of the pool's workers that stays awake for the length of one inference.
//!
//! Why by hand: a layer forks its tasks once, so a network forks 30–70 times per inference.
//! Through `rayon::scope` every fork must find the other workers awake; rayon's idle workers
//! go to sleep after a few dozen yields, and one asleep took 23–52 µs to start a job on the
//! lab's VMs (0.7 µs while still spinning), which is most of a small layer. onnxruntime's
//! and OpenMP's workers spin between operators; rayon has no spin-then-park knob and no crate
//! offers a fork on top of a rayon pool that keeps its workers warm, so this one is written
//! here. It still runs on the rayon pool's threads: [`session`] spawns one helper per extra
//! worker into a `rayon::scope` around the inference, and the helpers exit when it returns.
//!
//! Between task sets a helper spins for at most [`SPIN`], then sleeps on a condition variable
//! until the next set is published, so a long serial stretch (a GPU layer in a cooperative
//! run) costs one wake-up, not a busy core.
//!
//! The protocol, with the only `unsafe` in it: [`Team::run`] publishes a pointer to a job on
//! its own stack (the task closure, the task count and the counters) under a new generation.
//! A helper *pins* the job before touching it: it counts itself in `active`, then checks that
//! the generation is still live; `run` retires the generation and then waits for `active` to
//! reach zero before it returns (sequentially consistent on both sides, so either the helper
//! sees the retirement and backs off, or `run` sees the helper and waits). A pinned job
//! therefore outlives every use of it, on the normal path and when a task panics.
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a helper spins for the next task set before it sleeps: longer than the serial
/// work between two layers (executor bookkeeping, a single-task layer), short enough that a
/// helper does not burn a core through a long serial stretch.
pub const SPIN: Duration = Duration::from_micros(300);

/// One published task set; lives on the stack of [`Team::run`].
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
    n: usize,
    /// The next task index to claim (may run past `n`).
    next: AtomicUsize,
    /// Tasks finished (or panicked).
    done: AtomicUsize,
    panicked: AtomicBool,
}

impl Job<'_> {
    /// Claims and runs tasks until none are left; a panicking task is recorded, not unwound
    /// through the worker.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.n {
                return;
            }
            if catch_unwind(AssertUnwindSafe(|| (self.f)(i))).is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

/// The shared state of one session's team.
pub(crate) struct Team {
    /// `2 × generation + live`: odd while the job of that generation may be joined.
    state: AtomicU64,
    /// The live job (a `*const Job` with its lifetime erased), valid while pinned.
    job: AtomicPtr<()>,
    /// Helpers that have pinned the current job.
    active: AtomicUsize,
    /// Helpers asleep on `wake`.
    sleepers: AtomicUsize,
    closed: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
    /// Identifies the pool the team runs on (its address), so that another context's tasks
    /// are never run on it.
    owner: usize,
    /// Set while [`Team::run`] is in progress, so that a nested fork runs serially.
    busy: AtomicBool,
}

thread_local! {
    /// The team of the session opened on this thread, if any.
    static CURRENT: Cell<*const Team> = const { Cell::new(std::ptr::null()) };
}

/// Runs `f` on this thread with `helpers` more of the current rayon pool's workers in a team
/// (call it on a pool thread, inside `ThreadPool::install`); `owner` names the pool.
pub(crate) fn session<R: Send>(owner: usize, helpers: usize, f: impl FnOnce() -> R + Send) -> R {
    let team = Team {
        state: AtomicU64::new(0),
        job: AtomicPtr::new(std::ptr::null_mut()),
        active: AtomicUsize::new(0),
        sleepers: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
        lock: Mutex::new(()),
        wake: Condvar::new(),
        owner,
        busy: AtomicBool::new(false),
    };
    rayon::scope(|s| {
        for _ in 0..helpers {
            s.spawn(|_| team.helper());
        }
        // Closes the team and restores the thread's previous team however `f` ends.
        struct Close<'a>(&'a Team, *const Team);
        impl Drop for Close<'_> {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.1));
                self.0.closed.store(true, Ordering::SeqCst);
                self.0.notify();
            }
        }
        let _close = Close(&team, CURRENT.with(|c| c.replace(&team)));
        f()
    })
}

/// Runs `f(0..n)` on the team of the session open on this thread for the pool `owner` and
/// returns true; false (nothing run) without such a session or inside one of its tasks (a
/// nested fork).
pub(crate) fn run_on_current(owner: usize, n: usize, f: &(dyn Fn(usize) + Sync)) -> bool {
    let p = CURRENT.with(Cell::get);
    // SAFETY: `CURRENT` points to a team only while `session`, which owns it, is running on
    // this thread (its guard restores the previous value), and this call ends within it.
    let Some(team) = (unsafe { p.as_ref() }) else {
        return false;
    };
    if team.owner != owner || team.busy.load(Ordering::Relaxed) {
        return false;
    }
    team.run(n, f);
    true
}

impl Team {
    /// Runs `f(0..n)` on this thread and the helpers; returns when every task has finished.
    /// Panics (after all tasks have stopped) if a task panicked.
    fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        let job = Job {
            f,
            n,
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
        };
        self.busy.store(true, Ordering::Relaxed);
        self.job
            .store(&job as *const Job as *mut (), Ordering::SeqCst);
        // Even between sets (0 at first, `live + 1` once retired), so this is odd and new.
        let live = self.state.load(Ordering::Relaxed) + 3;
        self.state.store(live, Ordering::SeqCst);
        self.notify();
        // Retires the job and waits out the helpers that pinned it, also when unwinding.
        struct Retire<'a, 'j>(&'a Team, &'a Job<'j>, u64);
        impl Drop for Retire<'_, '_> {
            fn drop(&mut self) {
                // No task is claimed after this (a claim past `n` runs nothing).
                self.1.next.store(usize::MAX / 2, Ordering::Relaxed);
                self.0.state.store(self.2 + 1, Ordering::SeqCst);
                let mut spins = 0u32;
                while self.0.active.load(Ordering::SeqCst) != 0 {
                    backoff(&mut spins);
                }
                self.0.busy.store(false, Ordering::Relaxed);
            }
        }
        let retire = Retire(self, &job, live);
        job.work();
        let mut spins = 0u32;
        while job.done.load(Ordering::Acquire) < n {
            backoff(&mut spins);
        }
        drop(retire);
        if job.panicked.load(Ordering::Relaxed) {
            panic!("a CPU task panicked on a worker thread (its message is above)");
        }
    }

    /// Wakes sleeping helpers after `state` or `closed` changed.
    fn notify(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()));
            self.wake.notify_all();
        }
    }

    /// A helper: joins every task set published until the team closes.
    fn helper(&self) {
        // 0 is never a live state: a helper that starts late joins the set already live.
        let mut seen = 0;
        loop {
            let Some(state) = self.next_state(seen) else {
                return;
            };
            seen = state;
            if state & 1 == 0 {
                continue;
            }
            self.active.fetch_add(1, Ordering::SeqCst);
            if self.state.load(Ordering::SeqCst) == state {
                let job = self.job.load(Ordering::SeqCst) as *const Job;
                // SAFETY: the job of the live generation `state` was stored before the
                // generation was published and stays alive until `active` is back to zero
                // after its retirement (module documentation).
                unsafe { &*job }.work();
            }
            self.active.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Waits (spinning for [`SPIN`], then asleep) for `state` to differ from `seen`; `None`
    /// once the team is closed.
    fn next_state(&self, seen: u64) -> Option<u64> {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            let s = self.state.load(Ordering::Acquire);
            if s != seen {
                return Some(s);
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && start.elapsed() > SPIN {
                break;
            }
            std::hint::spin_loop();
        }
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let result = loop {
            if self.closed.load(Ordering::SeqCst) {
                break None;
            }
            let s = self.state.load(Ordering::SeqCst);
            if s != seen {
                break Some(s);
            }
            guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        };
        drop(guard);
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

/// Spins a while, then yields the core: waiting for another worker's task, which may have
/// been descheduled.
fn backoff(spins: &mut u32) {
    *spins = spins.saturating_add(1);
    if *spins < 1 << 12 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool")
    }

    #[test]
    fn every_task_runs_once_on_several_workers_across_many_sets() {
        let p = pool(4);
        let hits: Vec<AtomicU32> = (0..97).map(|_| AtomicU32::new(0)).collect();
        let threads = Mutex::new(std::collections::HashSet::new());
        p.install(|| {
            session(1, 3, || {
                for round in 0..500 {
                    let n = 1 + round % 97;
                    let ran = run_on_current(1, n, &|i| {
                        hits[i].fetch_add(1, Ordering::Relaxed);
                        if round == 499 {
                            std::thread::sleep(Duration::from_millis(2));
                            let mut t = threads.lock().expect("lock");
                            t.insert(std::thread::current().id());
                        }
                    });
                    assert!(ran, "a team in the session");
                }
            })
        });
        let expect = |i: usize| (0..500).filter(|r| i < 1 + r % 97).count() as u32;
        for (i, h) in hits.iter().enumerate() {
            assert_eq!(h.load(Ordering::Relaxed), expect(i), "task {i}");
        }
        assert!(
            threads.lock().expect("lock").len() >= 2,
            "the helpers took tasks"
        );
    }

    #[test]
    fn a_sleeping_helper_wakes_for_the_next_set() {
        let p = pool(2);
        p.install(|| {
            session(7, 1, || {
                let me = std::thread::current().id();
                let helper_ran = AtomicBool::new(false);
                let set = || {
                    helper_ran.store(false, Ordering::SeqCst);
                    let ran = run_on_current(7, 8, &|_| {
                        std::thread::sleep(Duration::from_millis(5));
                        if std::thread::current().id() != me {
                            helper_ran.store(true, Ordering::SeqCst);
                        }
                    });
                    assert!(ran);
                    helper_ran.load(Ordering::SeqCst)
                };
                // The helper has started (it may start late on a busy machine) ...
                let started = Instant::now();
                while !set() {
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "helper never ran"
                    );
                }
                // ... then falls asleep after its spin ...
                // SAFETY: the session running this closure owns the team.
                let team = unsafe { &*CURRENT.with(Cell::get) };
                while team.sleepers.load(Ordering::SeqCst) == 0 {
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "helper never slept"
                    );
                    std::thread::sleep(SPIN);
                }
                // ... and is woken by the next set.
                assert!(set(), "the sleeping helper joined the next set");
            })
        });
    }

    #[test]
    fn a_nested_fork_or_another_pool_or_no_session_gets_no_team() {
        let p = pool(2);
        let nested = AtomicUsize::new(0);
        p.install(|| {
            assert!(!run_on_current(3, 2, &|_| ()), "no session yet");
            session(3, 1, || {
                assert!(!run_on_current(4, 2, &|_| ()), "another pool's context");
                let ran = run_on_current(3, 2, &|_| {
                    if run_on_current(3, 2, &|_| ()) {
                        nested.fetch_add(1, Ordering::SeqCst);
                    }
                });
                assert!(ran);
                assert!(run_on_current(3, 1, &|_| ()), "free again after the set");
            });
            assert!(!run_on_current(3, 2, &|_| ()), "closed with the session");
        });
        assert_eq!(
            nested.load(Ordering::SeqCst),
            0,
            "nested forks ran serially"
        );
    }

    #[test]
    fn a_panicking_task_is_reported_after_all_tasks_stopped() {
        let p = pool(3);
        let finished = AtomicUsize::new(0);
        let r = p.install(|| {
            session(5, 2, || {
                catch_unwind(AssertUnwindSafe(|| {
                    run_on_current(5, 6, &|i| {
                        std::thread::sleep(Duration::from_millis(2));
                        if i == 2 {
                            panic!("task 2 fails");
                        }
                        finished.fetch_add(1, Ordering::SeqCst);
                    })
                }))
            })
        });
        assert!(r.is_err(), "the panic reached the caller");
        assert_eq!(
            finished.load(Ordering::SeqCst),
            5,
            "the other tasks all ran"
        );
    }
}
