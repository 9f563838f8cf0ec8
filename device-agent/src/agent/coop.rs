//! Running a model by mechanism name (`cpu`, `gpu`, `layer-to-processor`, `ulayer`,
//! `ulayer+branch`), and the device profile the cooperative mechanisms plan from.
//!
//! Profile resolution for the mechanisms that need one: the file given (`--profile`), else
//! `$ULAYER_PROFILE`, else this device's cached profile `<data dir>/profiles/<key>.json`,
//! else a quick built-in profile run now (under a minute) and cached there, with a warning
//! that `ulayer-agent profile` (full) predicts better. A profile of another device is refused.
use super::LoadedModel;
use crate::backend::cpu::CpuBackend;
use crate::backend::vulkan::VulkanBackend;
use crate::backend::Precision;
use crate::coop::predict::Which;
use crate::coop::{
    self, CoopExecutor, DeviceIdentity, Mechanism, Plan, PlanOptions, Profile, ProfileOptions,
    Runner,
};
use crate::exec::Executor;
use crate::protocol::PredictorAccuracy;
use crate::tensor::Tensor;
use crate::Result;
use std::path::{Path, PathBuf};

/// This device's identity, with the GPU the Vulkan backend chose.
pub fn device_identity(gpu: &VulkanBackend) -> DeviceIdentity {
    let i = gpu.info();
    DeviceIdentity::current(&i.name, &format!("{} {}", i.driver, i.driver_version))
}

/// Where this device's profile is cached.
pub fn cached_profile_path(data_dir: &Path, id: &DeviceIdentity) -> PathBuf {
    data_dir
        .join("profiles")
        .join(format!("{}.json", id.file_key()))
}

/// Profiles this device (`opts`) with `threads` CPU threads.
pub fn profile_device(
    opts: &ProfileOptions,
    threads: usize,
    progress: impl FnMut(&str),
) -> Result<Profile> {
    let gpu = VulkanBackend::new()?;
    let cpu = CpuBackend::new(threads)?;
    let id = device_identity(&gpu);
    coop::profile::run_profile(&cpu, &gpu, id, threads, opts, progress)
}

/// The profile to plan from (see the module docs), checked against `gpu`'s device.
pub fn resolve_profile(
    explicit: Option<&Path>,
    data_dir: &Path,
    gpu: &VulkanBackend,
    threads: usize,
) -> Result<Profile> {
    let id = device_identity(gpu);
    let env = std::env::var_os("ULAYER_PROFILE").map(PathBuf::from);
    if let Some(p) = explicit.map(Path::to_path_buf).or(env) {
        let prof = Profile::load(&p)?;
        prof.identity
            .check(&id)
            .map_err(|e| crate::Error::Other(format!("{}: {e}", p.display())))?;
        return Ok(prof);
    }
    let cached = cached_profile_path(data_dir, &id);
    if cached.is_file() {
        if let Ok(p) = Profile::load(&cached) {
            if p.identity == id {
                return Ok(p);
            }
        }
    }
    tracing::warn!(
        path = %cached.display(),
        "no device profile: running the quick built-in profile (run `ulayer-agent profile` for a full one)"
    );
    let cpu = CpuBackend::new(threads)?;
    let prof =
        coop::profile::run_profile(&cpu, gpu, id, threads, &ProfileOptions::quick(), |_| {})?;
    if let Err(e) = prof.save(&cached) {
        tracing::warn!(error = %e, "could not cache the quick profile");
    }
    Ok(prof)
}

/// Plans `model` for a cooperative `mechanism` on this device.
#[allow(clippy::too_many_arguments)]
pub fn plan_model(
    model: &LoadedModel,
    mechanism: Mechanism,
    precision: Precision,
    predictor: Which,
    rows: bool,
    profile: Option<&Path>,
    threads: usize,
    data_dir: &Path,
) -> Result<Plan> {
    let gpu = VulkanBackend::new()?;
    let prof = resolve_profile(profile, data_dir, &gpu, threads)?;
    coop::plan(
        &model.graph,
        &prof,
        &device_identity(&gpu),
        &PlanOptions {
            mechanism,
            precision,
            predictor,
            rows,
        },
    )
}

/// Plans `model` for the device a profile was measured on, without this device's GPU or
/// identity check: to read (`--explain`) the plans another device ran. Nothing runs. The CPU
/// engine's own estimate of a slice is a feature of the predictors and is computed for this
/// machine's instruction set (at the profile's thread count), so the profile must be of a CPU
/// with the same instruction set: an error otherwise.
pub fn plan_for_profiled_device(
    model: &LoadedModel,
    mechanism: Mechanism,
    precision: Precision,
    predictor: Which,
    rows: bool,
    profile: &Path,
) -> Result<Plan> {
    let prof = Profile::load(profile)?;
    same_cpu_kernels(&prof, profile, crate::backend::cpu::isa_name())?;
    coop::plan(
        &model.graph,
        &prof,
        &prof.identity,
        &PlanOptions {
            mechanism,
            precision,
            predictor,
            rows,
        },
    )
}

/// An error naming `path` unless profile `prof` is of a CPU running the kernels of `here`.
fn same_cpu_kernels(prof: &Profile, path: &Path, here: &str) -> Result<()> {
    if prof.identity.cpu_isa == here {
        return Ok(());
    }
    Err(crate::Error::Other(format!(
        "{}: the profile's CPU runs {} kernels and this one {here}: its plans depend on \
         the CPU kernels' own estimates, which only a CPU of the same instruction set makes",
        path.display(),
        prof.identity.cpu_isa
    )))
}

/// A runner of `model` by mechanism name at `precision` (checked: unknown mechanisms and
/// combinations are errors listing the valid ones). Cooperative mechanisms run their plan as
/// planned (no measured fallback).
pub fn runner(
    model: &LoadedModel,
    mechanism: &str,
    precision: Precision,
    threads: usize,
    data_dir: &Path,
    profile: Option<&Path>,
) -> Result<Box<dyn Runner>> {
    prepare(
        model,
        mechanism,
        precision,
        threads,
        data_dir,
        profile,
        Choice::default(),
    )
    .map(|p| p.runner)
}

/// What [`prepare`] made ready to run.
pub struct Prepared {
    pub runner: Box<dyn Runner>,
    /// Cooperative mechanisms: the predictors' accuracy on the held-out part of the profile
    /// the plan came from (empty for `cpu` and `gpu`).
    pub predictor: Vec<PredictorAccuracy>,
    /// Cooperative mechanisms: what runs (the plan, or the single processor the measured
    /// fallback chose) with the measured candidates.
    pub executed: Option<String>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("predictor", &self.predictor)
            .field("executed", &self.executed)
            .finish_non_exhaustive()
    }
}

/// How a cooperative mechanism chooses what runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Choice {
    /// `ulayer` and `ulayer+branch`: run the fastest of the plan, the whole network on the
    /// CPU and the whole network on the GPU, measured now (see [`fastest`]).
    pub measured_fallback: bool,
    /// The latency predictor the plan is made from.
    pub predictor: Which,
}

/// [`runner`], with the predictors' accuracy, and what `choice` asks for.
pub fn prepare(
    model: &LoadedModel,
    mechanism: &str,
    precision: Precision,
    threads: usize,
    data_dir: &Path,
    profile: Option<&Path>,
    choice: Choice,
) -> Result<Prepared> {
    let Choice {
        measured_fallback,
        predictor,
    } = choice;
    let mech = Mechanism::parse_with(mechanism, precision)?;
    let quantized = || {
        super::quant::quantize_model(
            model,
            crate::quant::CalibrationMethod::default(),
            threads,
            data_dir,
            |_| true,
        )
    };
    match mech {
        Mechanism::Cpu => Ok(Prepared {
            runner: Box::new(super::quant::cpu_executor(
                model, precision, threads, data_dir,
            )?),
            predictor: Vec::new(),
            executed: None,
        }),
        Mechanism::Gpu => {
            let gpu = VulkanBackend::new()?;
            let q = match precision {
                Precision::Quint8 => Some(quantized()?),
                _ => None,
            };
            Ok(Prepared {
                runner: gpu_network(model, q.as_ref(), gpu, precision)?,
                predictor: Vec::new(),
                executed: None,
            })
        }
        _ => {
            let gpu = VulkanBackend::new()?;
            let id = device_identity(&gpu);
            let prof = resolve_profile(profile, data_dir, &gpu, threads)?;
            let q = match precision {
                Precision::Quint8 => Some(quantized()?),
                _ => None,
            };
            let plan = coop::plan(
                &model.graph,
                &prof,
                &id,
                &PlanOptions {
                    mechanism: mech,
                    precision,
                    predictor,
                    rows: true,
                },
            )?;
            let (c, g, s, b) = plan.counts();
            tracing::info!(
                mechanism = %mech, cpu = c, gpu = g, split = s, branches = b,
                predicted_ms = plan.predicted_ms, "plan"
            );
            let cpu = CpuBackend::new(threads)?;
            let planned: Box<dyn Runner> = Box::new(CoopExecutor::new(
                &model.graph,
                q.as_ref(),
                cpu,
                gpu,
                plan,
                &id,
            )?);
            let accuracy = coop::predict::evaluate(&prof);
            let label = format!("the {mech} plan ({} predictor)", predictor.name());
            if !measured_fallback || !matches!(mech, Mechanism::Ulayer | Mechanism::UlayerBranch) {
                return Ok(Prepared {
                    runner: planned,
                    predictor: accuracy,
                    executed: Some(label),
                });
            }
            // The single-processor candidates are exactly what the `cpu` and `gpu`
            // mechanisms run, at this mechanism's processor precisions.
            let (cpu_prec, gpu_prec) = Mechanism::processor_precisions(precision);
            let cpu_only = whole_network(model, q.as_ref(), CpuBackend::new(threads)?, cpu_prec)?;
            let gpu_only = gpu_network(model, q.as_ref(), VulkanBackend::new()?, gpu_prec)?;
            let input = super::bench::bench_input(&model.input.shape);
            let candidates = vec![
                (label, planned),
                ("the CPU alone".to_string(), cpu_only),
                ("the GPU alone".to_string(), gpu_only),
            ];
            let (runner, executed) = fastest(candidates, &input)?;
            tracing::info!(%executed, "measured fallback");
            Ok(Prepared {
                runner,
                predictor: accuracy,
                executed: Some(executed),
            })
        }
    }
}

/// The whole network on one processor's `backend`: the quantized model `q` when given (QUInt8),
/// else the graph at `precision`.
fn whole_network<B: crate::backend::Backend + 'static>(
    model: &LoadedModel,
    q: Option<&crate::quant::QuantizedModel>,
    backend: B,
    precision: Precision,
) -> Result<Box<dyn Runner>> {
    Ok(match q {
        Some(q) => Box::new(Executor::new_quantized(q, backend)?),
        None => Box::new(Executor::new(&model.graph, backend, precision)?),
    })
}

/// The whole network on the GPU as the `gpu` mechanism runs it: at F32 and F16 recorded into
/// one command buffer with activations resident on the GPU ([`GpuNetwork`]; one submission
/// per inference), at QUInt8 (or with `ULAYER_GPU_PER_LAYER=1`) layer by layer.
pub(super) fn gpu_network(
    model: &LoadedModel,
    q: Option<&crate::quant::QuantizedModel>,
    gpu: VulkanBackend,
    precision: Precision,
) -> Result<Box<dyn Runner>> {
    if q.is_none() && crate::backend::vulkan::records_whole(precision) {
        let exec = Executor::new(&model.graph, gpu, precision)?;
        return Ok(Box::new(crate::backend::vulkan::GpuNetwork::new(exec)?));
    }
    whole_network(model, q, gpu, precision)
}

/// Rounds of [`fastest`]: each round times one run of every candidate still in the race.
const FALLBACK_ROUNDS: usize = 5;
/// A later candidate replaces the best so far only when faster by more than this share:
/// measurement noise does not flip the choice away from the plan.
const FALLBACK_MARGIN: f64 = 0.01;

/// Whether a candidate's median replaces the best so far (see [`FALLBACK_MARGIN`]).
fn beats(median: f64, best: Option<f64>) -> bool {
    best.is_none_or(|b| median < (1.0 - FALLBACK_MARGIN) * b)
}

fn time_run(r: &mut Box<dyn Runner>, inputs: &[Tensor]) -> Result<f64> {
    let t0 = std::time::Instant::now();
    r.run(inputs)?;
    Ok(t0.elapsed().as_secs_f64() * 1e3)
}

/// A pause before each timed run of [`fastest`]: the previous candidate's CPU workers spin
/// for the next task set for up to [`crate::backend::cpu::team::SPIN`] before they sleep, and
/// would take cores from the next candidate's run (each candidate has its own workers).
const FALLBACK_QUIET: std::time::Duration = std::time::Duration::from_micros(500);

/// The measured fallback. Every candidate runs once to warm up; then [`FALLBACK_ROUNDS`]
/// rounds time one run of each candidate in turn (interleaved, so that a machine that
/// speeds up or slows down meanwhile affects all alike), each after [`FALLBACK_QUIET`]. A
/// candidate leaves the race when it cannot win: a warm-up over 10× the fastest warm-up, or
/// timed runs over 1.5× the round's fastest in two rounds running (one slow run, a slow
/// spell of a shared host, does not decide). The lowest median wins; a later candidate must
/// beat an earlier one by more than [`FALLBACK_MARGIN`], so near-ties keep the earlier one
/// (the plan first). Returns the winner and a line naming every candidate's median (or
/// warm-up, for one that left early).
pub fn fastest(
    mut candidates: Vec<(String, Box<dyn Runner>)>,
    input: &Tensor,
) -> Result<(Box<dyn Runner>, String)> {
    let inputs = std::slice::from_ref(input);
    let n = candidates.len();
    let mut warm = Vec::with_capacity(n);
    for (_, r) in candidates.iter_mut() {
        warm.push(time_run(r, inputs)?);
    }
    let fastest_warm = warm.iter().copied().fold(f64::INFINITY, f64::min);
    let mut alive: Vec<bool> = warm.iter().map(|&w| w <= 10.0 * fastest_warm).collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); n];
    // Rounds running in which each candidate was over 1.5× the round's fastest.
    let mut slow = vec![0usize; n];
    for _ in 0..FALLBACK_ROUNDS {
        let mut round = vec![f64::INFINITY; n];
        for (i, (_, r)) in candidates.iter_mut().enumerate() {
            if alive[i] {
                std::thread::sleep(FALLBACK_QUIET);
                round[i] = time_run(r, inputs)?;
                times[i].push(round[i]);
            }
        }
        let low = round.iter().copied().fold(f64::INFINITY, f64::min);
        for i in 0..n {
            slow[i] = if round[i] > 1.5 * low { slow[i] + 1 } else { 0 };
            alive[i] = alive[i] && slow[i] < 2;
        }
    }
    let figure: Vec<f64> = (0..n)
        .map(|i| {
            let mut t = times[i].clone();
            t.sort_by(f64::total_cmp);
            t.get(t.len() / 2).copied().unwrap_or(warm[i])
        })
        .collect();
    let mut best: Option<(f64, usize)> = None;
    for (i, &f) in figure.iter().enumerate() {
        if !times[i].is_empty() && beats(f, best.map(|(b, _)| b)) {
            best = Some((f, i));
        }
    }
    let winner = best.map_or(0, |(_, i)| i);
    let line = candidates
        .iter()
        .zip(&figure)
        .map(|((name, _), ms)| format!("{name} {ms:.3} ms"))
        .collect::<Vec<_>>()
        .join(", ");
    let (name, runner) = candidates.swap_remove(winner);
    Ok((runner, format!("{name} (measured: {line})")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::trace::Trace;

    /// A runner whose `i`-th inference takes `ms[i]` ms (the last of them from then on), and
    /// counts its runs.
    struct Sleeper {
        ms: Vec<u64>,
        runs: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Runner for Sleeper {
        fn run(&mut self, _: &[Tensor]) -> Result<(Vec<Tensor>, Trace)> {
            let n = self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let ms = self.ms.get(n).or(self.ms.last()).copied().unwrap_or(0);
            std::thread::sleep(std::time::Duration::from_millis(ms));
            Ok((Vec::new(), Trace::default()))
        }
    }

    /// A [`Sleeper`] of `warm_ms` for its first run, `ms` after.
    fn sleeper(
        warm_ms: u64,
        ms: u64,
    ) -> (
        Box<dyn Runner>,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) {
        scheduled(vec![warm_ms, ms])
    }

    fn scheduled(
        ms: Vec<u64>,
    ) -> (
        Box<dyn Runner>,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        (
            Box::new(Sleeper {
                ms,
                runs: runs.clone(),
            }),
            runs,
        )
    }

    #[test]
    fn the_fallback_runs_the_fastest_and_stops_hopeless_candidates_early() {
        let x = Tensor::zeros(&[1]);
        let (plan, _) = sleeper(30, 30);
        let (cpu, _) = sleeper(5, 5);
        let (gpu, gpu_runs) = sleeper(400, 2);
        let (mut won, line) = fastest(
            vec![
                ("plan".into(), plan),
                ("cpu".into(), cpu),
                ("gpu".into(), gpu),
            ],
            &x,
        )
        .expect("measured");
        assert!(line.starts_with("cpu (measured: plan "), "{line}");
        // The GPU's warm-up (400 ms) is over 10× the best median (5 ms): never timed.
        assert_eq!(gpu_runs.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(won.run(std::slice::from_ref(&x)).is_ok());
    }

    #[test]
    fn one_slow_run_does_not_put_a_candidate_out_of_the_race() {
        let x = Tensor::zeros(&[1]);
        // The plan's first timed run is slow (a slow spell of the host), then it is the
        // fastest: it stays in the race and wins on its median.
        let (plan, plan_runs) = scheduled(vec![10, 40, 10]);
        let (cpu, _) = sleeper(20, 20);
        let (_, line) =
            fastest(vec![("plan".into(), plan), ("cpu".into(), cpu)], &x).expect("measured");
        assert!(line.starts_with("plan (measured: plan "), "{line}");
        assert_eq!(
            plan_runs.load(std::sync::atomic::Ordering::Relaxed),
            1 + FALLBACK_ROUNDS
        );
        // Slow in two rounds running: out after them.
        let (plan, plan_runs) = scheduled(vec![10, 40, 40, 10]);
        let (cpu, _) = sleeper(20, 20);
        let (_, line) =
            fastest(vec![("plan".into(), plan), ("cpu".into(), cpu)], &x).expect("measured");
        assert!(line.starts_with("cpu (measured: plan "), "{line}");
        assert_eq!(plan_runs.load(std::sync::atomic::Ordering::Relaxed), 3);
    }

    #[test]
    fn another_devices_profile_is_planned_only_with_the_same_cpu_kernels() {
        let mut prof = crate::coop::tests::profile(0.0, 0.0);
        prof.identity.cpu_isa = "avx512".into();
        let path = Path::new("host.json");
        assert!(same_cpu_kernels(&prof, path, "avx512").is_ok());
        prof.identity.cpu_isa = "neon".into();
        let e = same_cpu_kernels(&prof, path, "avx512")
            .expect_err("other kernels")
            .to_string();
        assert!(
            e.contains("host.json") && e.contains("neon") && e.contains("avx512"),
            "{e}"
        );
    }

    #[test]
    fn near_ties_keep_the_earlier_candidate() {
        assert!(beats(9.8, Some(10.0)));
        assert!(!beats(9.95, Some(10.0)));
        assert!(!beats(10.5, Some(10.0)));
        assert!(beats(1e9, None));
    }
}
