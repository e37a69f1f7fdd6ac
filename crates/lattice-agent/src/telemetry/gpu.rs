//! Per-GPU utilization and memory through NVML, opened once and kept. Without NVML (no GPU,
//! no driver) there are no GPU series and one log line; a device that fails to answer is
//! logged once at `warn`, then only at `debug`.

use nvml_wrapper::Nvml;

/// One GPU's reading.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuReading {
    pub index: u32,
    pub model: String,
    /// 0-1.
    pub utilization: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
}

pub struct GpuCollector {
    nvml: Option<Nvml>,
    models: Vec<String>,
    warned: bool,
}

impl GpuCollector {
    /// Opens NVML; logs once when it is not available.
    pub fn open() -> Self {
        match crate::gpu::init() {
            Ok(nvml) => {
                let count = nvml.device_count().unwrap_or(0);
                let models = (0..count)
                    .map(|i| {
                        nvml.device_by_index(i)
                            .and_then(|d| d.name())
                            .unwrap_or_else(|_| "unknown".into())
                    })
                    .collect::<Vec<_>>();
                tracing::info!(gpus = models.len(), "GPU telemetry through NVML");
                GpuCollector {
                    nvml: Some(nvml),
                    models,
                    warned: false,
                }
            }
            Err(e) => {
                tracing::info!(reason = %e, "NVML not available; no GPU telemetry on this host");
                GpuCollector::none()
            }
        }
    }

    /// A collector that reports no GPUs.
    pub fn none() -> Self {
        GpuCollector {
            nvml: None,
            models: Vec::new(),
            warned: false,
        }
    }

    pub fn read(&mut self) -> Vec<GpuReading> {
        let Some(nvml) = &self.nvml else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(self.models.len());
        for (i, model) in self.models.iter().enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            let reading = nvml.device_by_index(index).and_then(|d| {
                let util = d.utilization_rates()?;
                let mem = d.memory_info()?;
                Ok(GpuReading {
                    index,
                    model: model.clone(),
                    utilization: (f64::from(util.gpu) / 100.0).clamp(0.0, 1.0),
                    memory_used_bytes: mem.used,
                    memory_total_bytes: mem.total,
                })
            });
            match reading {
                Ok(r) => out.push(r),
                Err(e) if !self.warned => {
                    self.warned = true;
                    tracing::warn!(gpu = index, error = %e, "cannot read GPU; its series are skipped (further failures logged at debug)");
                }
                Err(e) => tracing::debug!(gpu = index, error = %e, "cannot read GPU"),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_nvml_there_are_no_readings() {
        assert!(GpuCollector::none().read().is_empty());
        // On a host without the driver, opening is quiet and reads nothing; with one, every
        // reading is in range.
        for r in GpuCollector::open().read() {
            assert!((0.0..=1.0).contains(&r.utilization));
            assert!(r.memory_used_bytes <= r.memory_total_bytes);
        }
    }
}
