//! Vulkan instance, physical-device selection, logical device and queue, and what the
//! chosen device offers (features, memory model) as reported to the user.
use crate::{Error, Result};
use ash::vk;
use std::ffi::CStr;

/// How tensors reach the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryModel {
    /// CPU and GPU share memory (integrated or CPU device with DEVICE_LOCAL + HOST_VISIBLE
    /// memory): tensor buffers are mapped and the CPU writes and reads them in place.
    Unified,
    /// Discrete GPU: tensors live in device-local memory and move through host staging
    /// buffers with copy commands.
    Staged,
}

/// What a physical device is and what the backend needs of it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeviceInfo {
    /// Index among the instance's physical devices (for `ULAYER_VK_DEVICE`).
    pub index: usize,
    pub name: String,
    /// "integrated", "discrete", "virtual", "cpu" or "other".
    pub device_type: String,
    /// Vulkan version the device supports, "major.minor.patch".
    pub api_version: String,
    /// Driver version as the vendor encodes it (NVIDIA: 10.8.8.6 bits), and its name.
    pub driver_version: u32,
    pub driver: String,
    pub vendor_id: u32,
    pub device_id: u32,
    /// Arithmetic in f16 (`shaderFloat16`).
    pub shader_float16: bool,
    /// 8-bit integer arithmetic (`shaderInt8`).
    pub shader_int8: bool,
    /// f16 values in storage buffers (`storageBuffer16BitAccess`).
    pub storage_16bit: bool,
    /// 8-bit values in storage buffers (`storageBuffer8BitAccess`).
    pub storage_8bit: bool,
    /// A memory type that is both DEVICE_LOCAL and HOST_VISIBLE exists.
    pub host_visible_device_local: bool,
    /// The memory model the backend uses on it by default.
    pub memory_model: MemoryModel,
    /// Nanoseconds per timestamp tick; 0 when the compute queue has no timestamps.
    pub timestamp_period_ns: f32,
    /// GPU timestamps can be read together with CLOCK_MONOTONIC
    /// (VK_EXT/KHR_calibrated_timestamps); otherwise the calibration is measured.
    pub calibrated_timestamps: bool,
    pub max_workgroup_invocations: u32,
    pub max_push_constants_size: u32,
}

/// The loaded Vulkan library and instance.
pub(crate) struct Instance {
    /// Keeps the loader library open (instance-level entry points also come from it).
    pub entry: ash::Entry,
    pub instance: ash::Instance,
}

impl Instance {
    /// Loads the Vulkan loader and creates an instance (Vulkan 1.2 requested).
    pub fn new() -> Result<Instance> {
        // SAFETY: loading the system Vulkan loader; its global functions are only called
        // through ash's checked wrappers.
        let entry = unsafe { ash::Entry::load() }.map_err(|e| {
            Error::Other(format!(
                "Vulkan: cannot load the Vulkan loader (libvulkan.so.1): {e}. Install a loader \
                 and a driver, e.g. `apt-get install libvulkan1 mesa-vulkan-drivers` (lavapipe)"
            ))
        })?;
        let app = vk::ApplicationInfo::default()
            .application_name(c"ulayer")
            .engine_name(c"ulayer")
            .api_version(vk::API_VERSION_1_2);
        let info = vk::InstanceCreateInfo::default().application_info(&app);
        // SAFETY: valid create info; the instance is destroyed in Drop.
        let instance = unsafe { entry.create_instance(&info, None) }.map_err(|e| {
            Error::Other(format!(
                "Vulkan: cannot create an instance: {e}. No Vulkan driver is installed or \
                     found: install one (e.g. `apt-get install mesa-vulkan-drivers` for lavapipe) \
                     or check VK_DRIVER_FILES / VK_ICD_FILENAMES"
            ))
        })?;
        Ok(Instance { entry, instance })
    }

    /// Physical devices with their information, in the instance's order.
    pub fn devices(&self) -> Result<Vec<(vk::PhysicalDevice, DeviceInfo)>> {
        // SAFETY: the instance is alive.
        let pdevs = unsafe { self.instance.enumerate_physical_devices() }
            .map_err(|e| Error::Other(format!("Vulkan: cannot list devices: {e}")))?;
        Ok(pdevs
            .into_iter()
            .enumerate()
            .map(|(i, pd)| (pd, self.describe(i, pd)))
            .collect())
    }

    fn describe(&self, index: usize, pd: vk::PhysicalDevice) -> DeviceInfo {
        let inst = &self.instance;
        // SAFETY: `pd` comes from this instance; the feature chain lives on the stack.
        unsafe {
            let props = inst.get_physical_device_properties(pd);
            let mut driver = vk::PhysicalDeviceDriverProperties::default();
            let mut props2 = vk::PhysicalDeviceProperties2::default().push_next(&mut driver);
            let v12 = vk::api_version_minor(props.api_version) >= 2
                || vk::api_version_major(props.api_version) > 1;
            if v12 {
                inst.get_physical_device_properties2(pd, &mut props2);
            }
            let mut f11 = vk::PhysicalDeviceVulkan11Features::default();
            let mut f12 = vk::PhysicalDeviceVulkan12Features::default();
            if v12 {
                let mut f2 = vk::PhysicalDeviceFeatures2::default()
                    .push_next(&mut f11)
                    .push_next(&mut f12);
                inst.get_physical_device_features2(pd, &mut f2);
            }
            let mem = inst.get_physical_device_memory_properties(pd);
            let both =
                vk::MemoryPropertyFlags::DEVICE_LOCAL | vk::MemoryPropertyFlags::HOST_VISIBLE;
            let hvdl = mem.memory_types[..mem.memory_type_count as usize]
                .iter()
                .any(|t| t.property_flags.contains(both));
            let device_type = match props.device_type {
                vk::PhysicalDeviceType::INTEGRATED_GPU => "integrated",
                vk::PhysicalDeviceType::DISCRETE_GPU => "discrete",
                vk::PhysicalDeviceType::VIRTUAL_GPU => "virtual",
                vk::PhysicalDeviceType::CPU => "cpu",
                _ => "other",
            };
            let unified = hvdl && matches!(device_type, "integrated" | "cpu");
            let queues = inst.get_physical_device_queue_family_properties(pd);
            let ts = queues.iter().any(|q| {
                q.queue_flags.contains(vk::QueueFlags::COMPUTE) && q.timestamp_valid_bits > 0
            });
            let exts = inst
                .enumerate_device_extension_properties(pd)
                .unwrap_or_default();
            let has_ext = |n: &CStr| {
                exts.iter()
                    .any(|e| e.extension_name_as_c_str().is_ok_and(|x| x == n))
            };
            let calibrated = has_ext(ash::khr::calibrated_timestamps::NAME)
                || has_ext(ash::ext::calibrated_timestamps::NAME);
            let driver_name = driver
                .driver_name_as_c_str()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let driver_info = driver
                .driver_info_as_c_str()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            DeviceInfo {
                index,
                name: props
                    .device_name_as_c_str()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                device_type: device_type.into(),
                api_version: format!(
                    "{}.{}.{}",
                    vk::api_version_major(props.api_version),
                    vk::api_version_minor(props.api_version),
                    vk::api_version_patch(props.api_version)
                ),
                driver_version: props.driver_version,
                driver: format!("{driver_name} {driver_info}").trim().to_string(),
                vendor_id: props.vendor_id,
                device_id: props.device_id,
                shader_float16: f12.shader_float16 == vk::TRUE,
                shader_int8: f12.shader_int8 == vk::TRUE,
                storage_16bit: f11.storage_buffer16_bit_access == vk::TRUE,
                storage_8bit: f12.storage_buffer8_bit_access == vk::TRUE,
                host_visible_device_local: hvdl,
                memory_model: if unified {
                    MemoryModel::Unified
                } else {
                    MemoryModel::Staged
                },
                timestamp_period_ns: if ts {
                    props.limits.timestamp_period
                } else {
                    0.0
                },
                calibrated_timestamps: calibrated,
                max_workgroup_invocations: props.limits.max_compute_work_group_invocations,
                max_push_constants_size: props.limits.max_push_constants_size,
            }
        }
    }
}

impl Instance {
    /// The loader.
    #[allow(dead_code)]
    pub fn entry(&self) -> &ash::Entry {
        &self.entry
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: every object created from the instance is destroyed before (Context::drop).
        unsafe { self.instance.destroy_instance(None) };
    }
}

/// Lists the Vulkan devices this machine offers.
pub fn list_devices() -> Result<Vec<DeviceInfo>> {
    let inst = Instance::new()?;
    Ok(inst.devices()?.into_iter().map(|(_, i)| i).collect())
}

/// Preference among device types: integrated first (shares DRAM with the CPU, as on a
/// phone), then discrete, virtual, CPU (lavapipe), other.
fn rank(t: &str) -> u8 {
    match t {
        "integrated" => 0,
        "discrete" => 1,
        "virtual" => 2,
        "cpu" => 3,
        _ => 4,
    }
}

/// Picks a device: `choice` is an index or a case-insensitive part of the name (from
/// `ULAYER_VK_DEVICE` or the caller); none picks the preferred type. Devices without
/// Vulkan 1.2 or a compute queue are skipped.
pub(crate) fn select(
    devices: &[(vk::PhysicalDevice, DeviceInfo)],
    choice: Option<&str>,
) -> Result<(vk::PhysicalDevice, DeviceInfo)> {
    if devices.is_empty() {
        return Err(Error::Other(
            "Vulkan: the loader found no device. Install a driver, e.g. \
             `apt-get install mesa-vulkan-drivers` (lavapipe, a CPU Vulkan device), or check \
             VK_DRIVER_FILES / VK_ICD_FILENAMES"
                .into(),
        ));
    }
    let names = || {
        devices
            .iter()
            .map(|(_, d)| format!("{}: {} ({})", d.index, d.name, d.device_type))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let usable =
        |d: &DeviceInfo| !d.api_version.starts_with("1.0") && !d.api_version.starts_with("1.1");
    if let Some(c) = choice.filter(|c| !c.is_empty()) {
        let hit = match c.parse::<usize>() {
            Ok(i) => devices.iter().find(|(_, d)| d.index == i),
            Err(_) => {
                let c = c.to_lowercase();
                devices
                    .iter()
                    .find(|(_, d)| d.name.to_lowercase().contains(&c))
            }
        };
        let (pd, d) = hit.ok_or_else(|| {
            Error::Other(format!(
                "Vulkan: no device matches '{c}' (devices: {})",
                names()
            ))
        })?;
        if !usable(d) {
            return Err(Error::Other(format!(
                "Vulkan: device '{}' supports Vulkan {} only; 1.2 is needed",
                d.name, d.api_version
            )));
        }
        return Ok((*pd, d.clone()));
    }
    devices
        .iter()
        .filter(|(_, d)| usable(d))
        .min_by_key(|(_, d)| rank(&d.device_type))
        .map(|(pd, d)| (*pd, d.clone()))
        .ok_or_else(|| {
            Error::Other(format!(
                "Vulkan: no device supports Vulkan 1.2 (devices: {})",
                names()
            ))
        })
}

/// The logical device and its compute queue.
pub(crate) struct Device {
    pub device: ash::Device,
    pub queue: vk::Queue,
    pub queue_family: u32,
    pub timestamp_bits: u32,
    /// `vkGetCalibratedTimestamps{EXT,KHR}` when the extension is enabled.
    pub calibrate: Option<vk::PFN_vkGetCalibratedTimestampsKHR>,
}

impl Device {
    /// Creates the logical device on `pd` with one compute queue, enabling 16-bit storage and
    /// f16 arithmetic where `info` says they exist, and calibrated timestamps where offered.
    pub fn new(inst: &Instance, pd: vk::PhysicalDevice, info: &DeviceInfo) -> Result<Device> {
        let i = &inst.instance;
        // SAFETY: `pd` belongs to `inst`; the create-info chain outlives the call.
        unsafe {
            let families = i.get_physical_device_queue_family_properties(pd);
            let pick = |need_ts: bool| {
                families.iter().enumerate().find(|(_, q)| {
                    q.queue_flags.contains(vk::QueueFlags::COMPUTE)
                        && (!need_ts || q.timestamp_valid_bits > 0)
                })
            };
            let (qf, q) = pick(true).or_else(|| pick(false)).ok_or_else(|| {
                Error::Other(format!("Vulkan: '{}' has no compute queue", info.name))
            })?;
            let prio = [1.0f32];
            let qinfo = [vk::DeviceQueueCreateInfo::default()
                .queue_family_index(qf as u32)
                .queue_priorities(&prio)];
            let mut f11 = vk::PhysicalDeviceVulkan11Features::default()
                .storage_buffer16_bit_access(info.storage_16bit);
            let mut f12 = vk::PhysicalDeviceVulkan12Features::default()
                .shader_float16(info.shader_float16)
                .shader_int8(info.shader_int8)
                .storage_buffer8_bit_access(info.storage_8bit);
            let exts = i
                .enumerate_device_extension_properties(pd)
                .unwrap_or_default();
            let has = |n: &CStr| {
                exts.iter()
                    .any(|e| e.extension_name_as_c_str().is_ok_and(|x| x == n))
            };
            // The EXT and KHR versions share their entry points and structures.
            let calib_ext = if has(ash::ext::calibrated_timestamps::NAME) {
                Some(ash::ext::calibrated_timestamps::NAME)
            } else if has(ash::khr::calibrated_timestamps::NAME) {
                Some(ash::khr::calibrated_timestamps::NAME)
            } else {
                None
            };
            let ext_ptrs: Vec<*const std::ffi::c_char> =
                calib_ext.iter().map(|n| n.as_ptr()).collect();
            let dinfo = vk::DeviceCreateInfo::default()
                .queue_create_infos(&qinfo)
                .enabled_extension_names(&ext_ptrs)
                .push_next(&mut f11)
                .push_next(&mut f12);
            let device = i.create_device(pd, &dinfo, None).map_err(|e| {
                Error::Other(format!(
                    "Vulkan: cannot create a device on '{}': {e}",
                    info.name
                ))
            })?;
            let queue = device.get_device_queue(qf as u32, 0);
            // The EXT and KHR versions share one signature: keep the raw entry point.
            let calibrate = calib_ext.and_then(|n| {
                let name = if n == ash::ext::calibrated_timestamps::NAME {
                    c"vkGetCalibratedTimestampsEXT"
                } else {
                    c"vkGetCalibratedTimestampsKHR"
                };
                i.get_device_proc_addr(device.handle(), name.as_ptr())
                    .map(|f| std::mem::transmute::<_, vk::PFN_vkGetCalibratedTimestampsKHR>(f))
            });
            Ok(Device {
                device,
                queue,
                queue_family: qf as u32,
                timestamp_bits: q.timestamp_valid_bits,
                calibrate,
            })
        }
    }
}
