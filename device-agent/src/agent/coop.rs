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

/// A runner of `model` by mechanism name at `precision` (checked: unknown mechanisms and
/// combinations are errors listing the valid ones).
pub fn runner(
    model: &LoadedModel,
    mechanism: &str,
    precision: Precision,
    threads: usize,
    data_dir: &Path,
    profile: Option<&Path>,
) -> Result<Box<dyn Runner>> {
    runner_and_predictor(model, mechanism, precision, threads, data_dir, profile).map(|(r, _)| r)
}

/// [`runner`], and for the cooperative mechanisms the accuracy of the latency predictors on
/// the held-out part of the profile the plan came from (empty for `cpu` and `gpu`).
pub fn runner_and_predictor(
    model: &LoadedModel,
    mechanism: &str,
    precision: Precision,
    threads: usize,
    data_dir: &Path,
    profile: Option<&Path>,
) -> Result<(Box<dyn Runner>, Vec<PredictorAccuracy>)> {
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
        Mechanism::Cpu => Ok((
            Box::new(super::quant::cpu_executor(
                model, precision, threads, data_dir,
            )?),
            Vec::new(),
        )),
        Mechanism::Gpu => {
            let gpu = VulkanBackend::new()?;
            let r: Box<dyn Runner> = match precision {
                Precision::Quint8 => Box::new(Executor::new_quantized(&quantized()?, gpu)?),
                p => Box::new(Executor::new(&model.graph, gpu, p)?),
            };
            Ok((r, Vec::new()))
        }
        _ => {
            let gpu = VulkanBackend::new()?;
            let id = device_identity(&gpu);
            let prof = resolve_profile(profile, data_dir, &gpu, threads)?;
            let plan = coop::plan(
                &model.graph,
                &prof,
                &id,
                &PlanOptions {
                    mechanism: mech,
                    precision,
                    predictor: Which::Kernel,
                    rows: true,
                },
            )?;
            let (c, g, s, b) = plan.counts();
            tracing::info!(
                mechanism = %mech, cpu = c, gpu = g, split = s, branches = b,
                predicted_ms = plan.predicted_ms, "plan"
            );
            let cpu = CpuBackend::new(threads)?;
            let q = match precision {
                Precision::Quint8 => Some(quantized()?),
                _ => None,
            };
            let exec = CoopExecutor::new(&model.graph, q.as_ref(), cpu, gpu, plan, &id)?;
            Ok((Box::new(exec), coop::predict::evaluate(&prof)))
        }
    }
}
