//! GPU discovery through NVML, loaded at run time: a host without the NVIDIA driver simply
//! has no GPUs (one info log line, never an error).

use lattice_core::GpuInfo;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;

/// Library names tried in order: the development symlink, then the soname that driver-only
/// installs ship.
const LIBRARIES: [&str; 2] = ["libnvidia-ml.so", "libnvidia-ml.so.1"];

/// Count and model (of device 0) of the host's NVIDIA GPUs; zero when NVML is unavailable.
pub fn probe() -> GpuInfo {
    let nvml = match init() {
        Ok(n) => n,
        Err(e) => {
            tracing::info!(reason = %e, "NVML not available; this host reports no GPUs");
            return GpuInfo::default();
        }
    };
    match read(&nvml) {
        Ok(info) => {
            tracing::info!(count = info.count, model = ?info.model, "GPUs found through NVML");
            info
        }
        Err(e) => {
            tracing::warn!(error = %e, "NVML loaded but cannot list GPUs; reporting none");
            GpuInfo::default()
        }
    }
}

/// Loads NVML from the first library name that works.
pub(crate) fn init() -> Result<Nvml, NvmlError> {
    let mut last = None;
    for lib in LIBRARIES {
        match Nvml::builder().lib_path(std::ffi::OsStr::new(lib)).init() {
            Ok(n) => return Ok(n),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(NvmlError::Uninitialized))
}

fn read(nvml: &Nvml) -> Result<GpuInfo, NvmlError> {
    let count = nvml.device_count()?;
    let model = if count > 0 {
        Some(nvml.device_by_index(0)?.name()?)
    } else {
        None
    };
    Ok(GpuInfo { count, model })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a host without the driver this must quietly report nothing; with one, a model name.
    #[test]
    fn probe_never_fails() {
        let info = probe();
        assert_eq!(info.count == 0, info.model.is_none());
    }
}
