//! The device context: instance, device, queue, memory types, the one pipeline layout every
//! shader uses, compute pipelines built on demand, and the pipeline cache kept on disk.
use super::device::{self, DeviceInfo, Instance, MemoryModel};
use super::memory::BufKind;
use super::shaders;
use crate::{Error, Result};
use ash::vk;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// Storage-buffer bindings of every shader (unused ones get a dummy buffer).
pub(crate) const BINDINGS: u32 = 4;
/// Push-constant bytes of every shader (the minimum every device guarantees).
pub(crate) const PUSH_BYTES: u32 = 128;

/// Everything device-wide. Buffers and the backend hold it in an `Arc`; it is destroyed last.
pub(crate) struct Context {
    pub info: DeviceInfo,
    pub model: MemoryModel,
    pub dev: device::Device,
    mem: vk::PhysicalDeviceMemoryProperties,
    pub set_layout: vk::DescriptorSetLayout,
    pub layout: vk::PipelineLayout,
    cache: vk::PipelineCache,
    cache_path: Option<PathBuf>,
    pipelines: Mutex<HashMap<(&'static str, &'static str), vk::Pipeline>>,
    // Dropped after `Drop::drop` has destroyed the device.
    inst: Instance,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("device", &self.info.name)
            .field("model", &self.model)
            .finish()
    }
}

impl Context {
    /// Opens the device `choice` (index or name part; `None`: the preferred one) with the
    /// memory model `model` (`None`: the device's natural one).
    pub fn new(choice: Option<&str>, model: Option<MemoryModel>) -> Result<Context> {
        let inst = Instance::new()?;
        let devices = inst.devices()?;
        let (pd, info) = device::select(&devices, choice)?;
        let dev = device::Device::new(&inst, pd, &info)?;
        let d = &dev.device;
        // SAFETY: `pd` belongs to the instance; every object created here is destroyed in Drop.
        unsafe {
            let mem = inst.instance.get_physical_device_memory_properties(pd);
            let bindings: Vec<_> = (0..BINDINGS)
                .map(|b| {
                    vk::DescriptorSetLayoutBinding::default()
                        .binding(b)
                        .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                        .descriptor_count(1)
                        .stage_flags(vk::ShaderStageFlags::COMPUTE)
                })
                .collect();
            let set_layout = d
                .create_descriptor_set_layout(
                    &vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings),
                    None,
                )
                .map_err(|e| Error::Other(format!("Vulkan: descriptor set layout: {e}")))?;
            let ranges = [vk::PushConstantRange::default()
                .stage_flags(vk::ShaderStageFlags::COMPUTE)
                .size(PUSH_BYTES)];
            let sets = [set_layout];
            let layout = d
                .create_pipeline_layout(
                    &vk::PipelineLayoutCreateInfo::default()
                        .set_layouts(&sets)
                        .push_constant_ranges(&ranges),
                    None,
                )
                .map_err(|e| Error::Other(format!("Vulkan: pipeline layout: {e}")))?;
            let props = inst.instance.get_physical_device_properties(pd);
            let cache_path = cache_file(&info, &props.pipeline_cache_uuid);
            let initial = cache_path
                .as_ref()
                .and_then(|p| std::fs::read(p).ok())
                .filter(|data| cache_header_matches(data, &info, &props.pipeline_cache_uuid))
                .unwrap_or_default();
            let cache = d
                .create_pipeline_cache(
                    &vk::PipelineCacheCreateInfo::default().initial_data(&initial),
                    None,
                )
                .or_else(|_| d.create_pipeline_cache(&vk::PipelineCacheCreateInfo::default(), None))
                .map_err(|e| Error::Other(format!("Vulkan: pipeline cache: {e}")))?;
            tracing::info!(
                device = %info.name,
                r#type = %info.device_type,
                driver = %info.driver,
                memory = ?model.unwrap_or(info.memory_model),
                f16_arith = info.shader_float16,
                f16_storage = info.storage_16bit,
                cache = ?cache_path,
                cache_bytes = initial.len(),
                "Vulkan device chosen"
            );
            Ok(Context {
                model: model.unwrap_or(info.memory_model),
                info,
                dev,
                mem,
                set_layout,
                layout,
                cache,
                cache_path,
                pipelines: Mutex::new(HashMap::new()),
                inst,
            })
        }
    }

    /// A memory type index for a buffer of `kind` among `bits`, and whether it is mapped.
    pub fn memory_type(&self, bits: u32, kind: BufKind) -> Option<(u32, bool)> {
        use vk::MemoryPropertyFlags as F;
        let host = F::HOST_VISIBLE | F::HOST_COHERENT;
        let types = &self.mem.memory_types[..self.mem.memory_type_count as usize];
        let find = |need: F, avoid: F| {
            types.iter().enumerate().find_map(|(i, t)| {
                (bits & (1 << i) != 0
                    && t.property_flags.contains(need)
                    && !t.property_flags.intersects(avoid))
                .then_some(i as u32)
            })
        };
        let none = F::empty();
        match (self.model, kind) {
            (MemoryModel::Unified, _) => find(host | F::DEVICE_LOCAL, none)
                .or_else(|| find(host, none))
                .map(|i| (i, true)),
            // The VRAM proper first: a resizable-BAR window is slow for the CPU to read.
            (MemoryModel::Staged, BufKind::Device) => find(F::DEVICE_LOCAL, F::HOST_VISIBLE)
                .or_else(|| find(F::DEVICE_LOCAL, none))
                .map(|i| (i, false)),
            (MemoryModel::Staged, BufKind::Upload) => find(host, F::DEVICE_LOCAL)
                .or_else(|| find(host, none))
                .map(|i| (i, true)),
            (MemoryModel::Staged, BufKind::Readback) => {
                find(host | F::HOST_CACHED, F::DEVICE_LOCAL)
                    .or_else(|| find(host | F::HOST_CACHED, none))
                    .or_else(|| find(host, none))
                    .map(|i| (i, true))
            }
        }
    }

    /// The compute pipeline of shader `name` in `precision` ("f32", "f16", "f16s"), built
    /// (through the pipeline cache) on first use.
    pub fn pipeline(&self, name: &'static str, precision: &'static str) -> Result<vk::Pipeline> {
        let mut map = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(&(name, precision)) {
            return Ok(*p);
        }
        let bytes = shaders::spirv(name, precision).ok_or_else(|| {
            Error::Other(format!(
                "Vulkan: no shader '{name}' in precision {precision}"
            ))
        })?;
        let words = ash::util::read_spv(&mut std::io::Cursor::new(bytes))
            .map_err(|e| Error::Other(format!("Vulkan: shader '{name}': {e}")))?;
        let d = &self.dev.device;
        // SAFETY: valid SPIR-V from build.rs (validated by naga); the module is destroyed
        // once the pipeline exists; the pipeline lives until Drop.
        unsafe {
            let module = d
                .create_shader_module(&vk::ShaderModuleCreateInfo::default().code(&words), None)
                .map_err(|e| Error::Other(format!("Vulkan: shader '{name}': {e}")))?;
            let stage = vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(module)
                .name(c"main");
            let info = [vk::ComputePipelineCreateInfo::default()
                .stage(stage)
                .layout(self.layout)];
            let made = d.create_compute_pipelines(self.cache, &info, None);
            d.destroy_shader_module(module, None);
            let pipeline = made.map_err(|(_, e)| {
                Error::Other(format!("Vulkan: pipeline '{name}' ({precision}): {e}"))
            })?[0];
            map.insert((name, precision), pipeline);
            Ok(pipeline)
        }
    }

    /// Writes the pipeline cache to its file (atomically), if it has a path.
    pub fn save_pipeline_cache(&self) {
        let Some(path) = &self.cache_path else { return };
        // SAFETY: the cache is alive.
        let data = match unsafe { self.dev.device.get_pipeline_cache_data(self.cache) } {
            Ok(d) => d,
            Err(_) => return,
        };
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let ok = path
            .parent()
            .map(std::fs::create_dir_all)
            .transpose()
            .is_ok()
            && std::fs::write(&tmp, &data).is_ok()
            && std::fs::rename(&tmp, path).is_ok();
        if !ok {
            let _ = std::fs::remove_file(&tmp);
            tracing::debug!(?path, "Vulkan: pipeline cache not saved");
        }
    }

    /// The memory model's human description (for reports).
    pub fn memory_description(&self) -> &'static str {
        match self.model {
            MemoryModel::Unified => {
                "unified: tensor buffers are DEVICE_LOCAL+HOST_VISIBLE and mapped; the CPU reads \
                 and writes them in place (zero-copy, no transfer commands)"
            }
            MemoryModel::Staged => {
                "staged: tensors are copied between host staging buffers and device-local \
                 buffers by transfer commands in each layer's submission"
            }
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        self.save_pipeline_cache();
        let d = &self.dev.device;
        // SAFETY: everything created from the device is destroyed here, after the device
        // is idle; buffers and run states hold Arcs, so they are gone already.
        unsafe {
            let _ = d.device_wait_idle();
            for (_, p) in self
                .pipelines
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .drain()
            {
                d.destroy_pipeline(p, None);
            }
            d.destroy_pipeline_cache(self.cache, None);
            d.destroy_pipeline_layout(self.layout, None);
            d.destroy_descriptor_set_layout(self.set_layout, None);
            d.destroy_device(None);
        }
        let _ = &self.inst;
    }
}

/// The pipeline cache file of a device: `$ULAYER_VK_CACHE_DIR`, else `$XDG_CACHE_HOME/ulayer`,
/// else `~/.cache/ulayer`; the name carries vendor, device, driver version and cache UUID,
/// so a driver update starts a new file.
fn cache_file(info: &DeviceInfo, uuid: &[u8; 16]) -> Option<PathBuf> {
    let dir = std::env::var_os("ULAYER_VK_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("ulayer")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/ulayer")))?;
    if dir.as_os_str().is_empty() {
        return None;
    }
    let uuid: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    Some(dir.join(format!(
        "vk-pipelines-{:04x}-{:04x}-{:08x}-{uuid}.bin",
        info.vendor_id, info.device_id, info.driver_version
    )))
}

/// True when a saved cache's header (VkPipelineCacheHeaderVersionOne) names this device.
fn cache_header_matches(data: &[u8], info: &DeviceInfo, uuid: &[u8; 16]) -> bool {
    let word = |i: usize| {
        data.get(i * 4..i * 4 + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let ok = data.len() >= 32
        && word(1) == Some(1)
        && word(2) == Some(info.vendor_id)
        && word(3) == Some(info.device_id)
        && &data[16..32] == uuid;
    if !ok {
        tracing::info!("Vulkan: pipeline cache file is for another device or driver; ignored");
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_header_is_checked() {
        let info = DeviceInfo {
            index: 0,
            name: "x".into(),
            device_type: "cpu".into(),
            api_version: "1.3.0".into(),
            driver_version: 7,
            driver: String::new(),
            vendor_id: 0x10de,
            device_id: 0x2330,
            shader_float16: true,
            shader_int8: true,
            storage_16bit: true,
            storage_8bit: true,
            host_visible_device_local: true,
            memory_model: MemoryModel::Unified,
            timestamp_period_ns: 1.0,
            calibrated_timestamps: false,
            max_workgroup_invocations: 1024,
            max_push_constants_size: 128,
        };
        let uuid = [3u8; 16];
        let mut data = Vec::new();
        for w in [32u32, 1, 0x10de, 0x2330] {
            data.extend_from_slice(&w.to_le_bytes());
        }
        data.extend_from_slice(&uuid);
        assert!(cache_header_matches(&data, &info, &uuid));
        assert!(!cache_header_matches(&data, &info, &[4u8; 16]));
        data[8] = 0x02;
        assert!(!cache_header_matches(&data, &info, &uuid));
        assert!(!cache_header_matches(&data[..20], &info, &uuid));
        let f = cache_file(&info, &uuid).expect("a cache dir");
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("vk-pipelines-10de-2330-00000007-0303"),
            "{name}"
        );
    }
}
