//! How the matrix-product engines (F32 [`super::gemm`], 8-bit [`super::gemm_q8`]) cut one
//! product into tasks: blocks of `mb` micro-tile units along `m` × `nb` along `n`, handed to
//! the workers in order (task `t` is block `(t / n_blocks, t % n_blocks)`) by
//! [`super::CpuCtx::for_each_task`]'s shared counter.
//!
//! The choice minimises the *simulated* makespan: every candidate's real task sizes (the last
//! block of each dimension is short) are dealt to the workers as the counter deals them, each
//! task costing its multiply-adds plus a fixed per-task cost and, where the engine repacks its
//! activations per task, the packing; waking the pool for more than one task costs one fixed
//! cost more. Where the engine packs the columns once for all blocks of `m` instead
//! ([`TaskCosts::share_min`]), that packing is spread over the workers in a fork of its own
//! before the tasks, which then pack nothing. An earlier estimate, `ceil(tasks / threads)` × the
//! largest task, could not tell an even split from an uneven one: on a 512 → 512 1×1
//! convolution at 14×14 it chose two tasks of 7 and 6 pixel panels, which left one of two
//! threads idle for 14% of the layer (measured with `perf` on the 8-bit engine).
//!
//! Plans are cached per shape and thread count: a network asks the same questions on every
//! inference.
use std::cell::RefCell;
use std::collections::HashMap;

/// The per-task costs of an engine, in multiply-adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TaskCosts {
    /// Scheduling and set-up of one task.
    pub overhead: usize,
    /// When the engine packs its activations in every task: the packing of one `n` unit costs
    /// `tile_work / pack_div` (0: no per-task packing to charge).
    pub pack_div: usize,
    /// When the engine packs the columns once, on all workers, for all blocks of `m`
    /// (`super::gemm_q8` over an im2col gather): it does so once the repeated packing
    /// `(m_blocks − 1) · n_units` reaches this many units of `n` ([`shares`]). `None`: every
    /// task packs its own.
    pub share_min: Option<usize>,
}

/// Whether an engine of `costs` packs the columns once for a grid of `m_blocks` blocks of `m`
/// over `n_units` units of `n` (the engine asks this too, so plan and run agree).
pub fn shares(costs: &TaskCosts, m_blocks: usize, n_units: usize) -> bool {
    costs
        .share_min
        .is_some_and(|min| m_blocks > 1 && (m_blocks - 1) * n_units >= min)
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    m_units: usize,
    n_units: usize,
    n_max: usize,
    threads: usize,
    tile_work: usize,
    costs: TaskCosts,
}

thread_local! {
    static CACHE: RefCell<HashMap<Key, (usize, usize, u128)>> = RefCell::new(HashMap::new());
}

/// Task sizes `(mb, nb)` in units for an `m_units × n_units` product whose tasks hold at most
/// `n_max` units of `n` (the packed activations must stay in cache), on `threads` workers;
/// `tile_work` is one unit × unit tile's multiply-adds.
pub fn plan(
    m_units: usize,
    n_units: usize,
    n_max: usize,
    threads: usize,
    tile_work: usize,
    costs: TaskCosts,
) -> (usize, usize) {
    let (mb, nb, _) = plan_with_span(m_units, n_units, n_max, threads, tile_work, costs);
    (mb, nb)
}

/// As [`plan`], with the chosen plan's simulated makespan in multiply-adds (the busiest
/// worker's tasks, their fixed costs and packing, and the pool's wake-up): the engine's own
/// estimate of its time, steps and all, which the latency predictors use as a feature.
pub fn plan_with_span(
    m_units: usize,
    n_units: usize,
    n_max: usize,
    threads: usize,
    tile_work: usize,
    costs: TaskCosts,
) -> (usize, usize, u128) {
    let n_max = n_max.max(1);
    let key = Key {
        m_units,
        n_units,
        n_max,
        threads,
        tile_work,
        costs,
    };
    if threads <= 1 || m_units == 0 || n_units == 0 {
        let (mb, nb) = (
            m_units.max(1),
            n_units.div_ceil(n_units.div_ceil(n_max).max(1)).max(1),
        );
        let span = if m_units == 0 || n_units == 0 {
            0
        } else {
            simulate(&Key { threads: 1, ..key }, mb, nb, &mut [0; 1])
        };
        return (mb, nb, span);
    }
    if let Some(p) = CACHE.with(|c| c.borrow().get(&key).copied()) {
        return p;
    }
    let p = search(&key);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() > 4096 {
            c.clear();
        }
        c.insert(key, p);
    });
    p
}

/// Every distinct block size along `len` units when cut into 1 ..= `max_blocks` blocks.
fn block_sizes(len: usize, min_blocks: usize, max_blocks: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (min_blocks..=max_blocks.clamp(min_blocks, len))
        .map(|k| len.div_ceil(k))
        .collect();
    v.dedup();
    v
}

/// The packing charged to a task of `ns` units of `n` (0 when the engine packs no
/// activations per task).
fn pack_cost(k: &Key, ns: usize) -> usize {
    (ns * k.tile_work)
        .checked_div(k.costs.pack_div)
        .unwrap_or(0)
}

fn search(k: &Key) -> (usize, usize, u128) {
    search_with(k, true)
}

/// The shared packing's span on the workers, wake-up included, when a grid of `m_blocks`
/// packs once (0 otherwise).
fn shared_pack_span(k: &Key, m_blocks: usize) -> u128 {
    if !shares(&k.costs, m_blocks, k.n_units) {
        return 0;
    }
    let wake = if k.threads > 1 { k.costs.overhead } else { 0 };
    (pack_cost(k, k.n_units).div_ceil(k.threads.max(1)) + wake) as u128
}

/// The makespan of blocks `mb × nb` dealt to `free.len()` workers as the counter deals them.
fn simulate(k: &Key, mb: usize, nb: usize, free: &mut [u128]) -> u128 {
    let (m_blocks, n_blocks) = (k.m_units.div_ceil(mb), k.n_units.div_ceil(nb));
    let tasks = m_blocks * n_blocks;
    // Packed once before the tasks, or by every task.
    let shared = shares(&k.costs, m_blocks, k.n_units);
    let start = shared_pack_span(k, m_blocks);
    free.iter_mut().for_each(|f| *f = start);
    for t in 0..tasks {
        let (bm, bn) = (t / n_blocks, t % n_blocks);
        let ms = mb.min(k.m_units - bm * mb);
        let ns = nb.min(k.n_units - bn * nb);
        let pack = if shared { 0 } else { pack_cost(k, ns) };
        let cost = (ms * ns * k.tile_work + k.costs.overhead + pack) as u128;
        // The counter hands the next task to whichever worker is free first.
        if let Some(w) = free.iter_mut().min() {
            *w += cost;
        }
    }
    // More than one task on more than one worker also wakes the pool: one more fixed cost.
    let wake = if tasks > 1 && free.len() > 1 {
        k.costs.overhead as u128
    } else {
        0
    };
    free.iter().copied().max().unwrap_or(0) + wake
}

/// The search; with `prune`, a candidate is simulated only when its lower bound (all its
/// costs spread evenly over the workers) could still beat the best so far, which gives the
/// same choice (a test holds it to the exhaustive search) and bounds the time of a first
/// inference: a 64 × 3136-unit product at 16 threads took 46 ms to plan exhaustively.
fn search_with(k: &Key, prune: bool) -> (usize, usize, u128) {
    let n_min_blocks = k.n_units.div_ceil(k.n_max);
    let n_sizes = block_sizes(k.n_units, n_min_blocks, n_min_blocks * 4 * k.threads);
    let m_sizes = block_sizes(k.m_units, 1, 8 * k.threads);
    let mut best = (u128::MAX, usize::MAX, k.m_units, n_sizes[0]);
    let mut free = vec![0u128; k.threads];
    let macs = (k.m_units * k.n_units * k.tile_work) as u128;
    for &nb in &n_sizes {
        for &mb in &m_sizes {
            let (m_blocks, n_blocks) = (k.m_units.div_ceil(mb), k.n_units.div_ceil(nb));
            let tasks = m_blocks * n_blocks;
            if prune {
                // As the simulation charges it: per task, or once before the tasks.
                let last = k.n_units - (n_blocks - 1) * nb;
                let pack = if shares(&k.costs, m_blocks, k.n_units) {
                    0
                } else {
                    m_blocks * ((n_blocks - 1) * pack_cost(k, nb) + pack_cost(k, last))
                };
                let total = macs + (tasks * k.costs.overhead + pack) as u128;
                let wake = if tasks > 1 { k.costs.overhead } else { 0 } as u128;
                let bound =
                    shared_pack_span(k, m_blocks) + total.div_ceil(k.threads as u128) + wake;
                if (bound, tasks) >= (best.0, best.1) {
                    continue;
                }
            }
            let span = simulate(k, mb, nb, &mut free);
            // Fewer tasks win ties.
            if (span, tasks) < (best.0, best.1) {
                best = (span, tasks, mb, nb);
            }
        }
    }
    (best.2, best.3, best.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q8: TaskCosts = TaskCosts {
        overhead: 200_000,
        pack_div: 8,
        share_min: None,
    };
    /// As [`Q8`], packing once for all blocks of `m` whenever `m` is cut.
    const Q8_SHARED: TaskCosts = TaskCosts {
        share_min: Some(1),
        ..Q8
    };

    /// Simulated per-worker loads of a plan, as in `search`.
    fn loads(
        m_units: usize,
        n_units: usize,
        (mb, nb): (usize, usize),
        threads: usize,
    ) -> Vec<usize> {
        let (m_blocks, n_blocks) = (m_units.div_ceil(mb), n_units.div_ceil(nb));
        let mut free = vec![0usize; threads];
        for t in 0..m_blocks * n_blocks {
            let (bm, bn) = (t / n_blocks, t % n_blocks);
            let w = mb.min(m_units - bm * mb) * nb.min(n_units - bn * nb);
            if let Some(f) = free.iter_mut().min() {
                *f += w;
            }
        }
        free
    }

    #[test]
    fn an_odd_number_of_panels_is_balanced_over_two_workers() {
        // 512 → 512 1×1 at 14×14 on AVX2: 86 units of 6 channels × 13 panels of 16 pixels,
        // at most 8 panels per task.
        let p = plan(86, 13, 8, 2, 512 * 6 * 16, Q8);
        let l = loads(86, 13, p, 2);
        let (hi, lo) = (l.iter().max().copied(), l.iter().min().copied());
        assert!(p.1 <= 8, "{p:?} breaks the cache bound");
        let (hi, lo) = (hi.unwrap_or(0) as f64, lo.unwrap_or(0) as f64);
        assert!(hi / lo < 1.03, "{p:?} loads {l:?}");
    }

    #[test]
    fn one_worker_takes_the_whole_m_and_the_fewest_n_blocks() {
        assert_eq!(plan(86, 13, 8, 1, 1000, Q8), (86, 7));
        assert_eq!(plan(5, 3, 8, 1, 1000, Q8), (5, 3));
    }

    #[test]
    fn pruning_keeps_the_exhaustive_choice() {
        let mut keys = 0;
        for m_units in [1, 4, 11, 22, 43, 86, 171] {
            for n_units in [1, 3, 13, 49, 196, 784] {
                for n_max in [4, 8, 64] {
                    for threads in [2, 3, 4, 16] {
                        for tile_work in [50, 4096, 512 * 6 * 16] {
                            for costs in [Q8, Q8_SHARED] {
                                let k = Key {
                                    m_units,
                                    n_units,
                                    n_max,
                                    threads,
                                    tile_work,
                                    costs,
                                };
                                assert_eq!(
                                    search_with(&k, true),
                                    search_with(&k, false),
                                    "{m_units}×{n_units} max {n_max}, {threads} threads, \
                                     {tile_work}, {costs:?}"
                                );
                                keys += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(keys, 7 * 6 * 3 * 4 * 3 * 2);
    }

    #[test]
    fn the_span_is_the_busiest_workers_load() {
        // One worker: every task's work, fixed cost and packing, in one sum.
        let (mb, nb, span) = plan_with_span(5, 7, 3, 1, 1000, Q8);
        assert_eq!((mb, nb), (5, 3));
        let tasks = 3; // 7 units of n in blocks of 3, 3 and 1
                       // Each task packs its n units (tile work / 8 each): one block of m, so once.
        let packing = 3 * 1000 / 8 + 3 * 1000 / 8 + 1000 / 8;
        assert_eq!(span, (5 * 7 * 1000 + tasks * Q8.overhead + packing) as u128);
        // Two workers: at least half of all the tasks' costs (plus the wake-up), less than
        // one worker's.
        let (mb, nb, span) = plan_with_span(12, 9, 9, 2, 50_000, Q8);
        let (m_blocks, n_blocks) = (12usize.div_ceil(mb), 9usize.div_ceil(nb));
        let total: usize = (0..m_blocks * n_blocks)
            .map(|t| {
                let ns = nb.min(9 - (t % n_blocks) * nb);
                let ms = mb.min(12 - (t / n_blocks) * mb);
                ms * ns * 50_000 + Q8.overhead + ns * 50_000 / 8
            })
            .sum();
        assert!(m_blocks * n_blocks > 1);
        assert!(
            span >= (total / 2 + Q8.overhead) as u128,
            "{span} < half of {total}"
        );
        assert!(
            span < plan_with_span(12, 9, 9, 1, 50_000, Q8).2,
            "two workers are faster"
        );
    }

    #[test]
    fn a_shared_packing_is_charged_once_before_the_tasks() {
        // 4 blocks of m × 1 block of n on 2 workers, 3 units of n: each task 2·3 tiles.
        let k = Key {
            m_units: 8,
            n_units: 3,
            n_max: 3,
            threads: 2,
            tile_work: 8000,
            costs: Q8_SHARED,
        };
        let mut free = [0u128; 2];
        let task = (2 * 3 * 8000 + Q8.overhead) as u128;
        // The packing of 3 units (8000 / 8 each) on 2 workers after a wake-up, then two
        // tasks a worker, then the tasks' wake-up.
        let pack = (3 * 8000 / 8_usize).div_ceil(2) as u128 + Q8.overhead as u128;
        assert_eq!(
            simulate(&k, 2, 3, &mut free),
            pack + 2 * task + Q8.overhead as u128
        );
        // Without sharing, each of the four tasks packs its 3 units.
        let k = Key { costs: Q8, ..k };
        let task = task + (3 * 8000 / 8) as u128;
        assert_eq!(
            simulate(&k, 2, 3, &mut free),
            2 * task + Q8.overhead as u128
        );
        // Below the threshold, no sharing: one block of m repeats nothing.
        assert!(!shares(&Q8_SHARED, 1, 3));
        let min = TaskCosts {
            share_min: Some(7),
            ..Q8
        };
        assert!(!shares(&min, 3, 3) && shares(&min, 4, 3));
    }

    #[test]
    fn tiny_products_are_not_cut() {
        // A few hundred multiply-adds: a second task costs more than it saves.
        assert_eq!(plan(2, 2, 8, 4, 50, Q8), (2, 2));
    }

    #[test]
    fn plans_respect_the_cache_bound_and_cover_the_product() {
        for &(m, n, nmax, t) in &[
            (1, 1, 1, 2),
            (171, 4, 4, 2),
            (22, 196, 32, 3),
            (11, 784, 128, 16),
        ] {
            let (mb, nb) = plan(m, n, nmax, t, 4096, Q8);
            assert!(
                nb >= 1 && nb <= nmax.max(1) && mb >= 1 && mb <= m,
                "{m}×{n}: {mb}, {nb}"
            );
        }
    }
}
