//! `--device auto|cpu|cuda|wgpu`.

use anyhow::Context;
use clap::ValueEnum;
use treepo_kernels::{BackendKind, Device};

/// Which backend to run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// CUDA if present, else a hardware wgpu adapter, else the CPU.
    Auto,
    /// The CPU reference backend.
    Cpu,
    /// CUDA device 0.
    Cuda,
    /// The first wgpu adapter (software adapters included).
    Wgpu,
}

impl DeviceArg {
    /// Opens the device; `auto` says on stderr why faster backends were passed over.
    pub fn open(self) -> anyhow::Result<Device> {
        let kind = match self {
            DeviceArg::Auto => {
                let (dev, passed) = Device::auto();
                for why in passed {
                    eprintln!("note: {why}");
                }
                return Ok(dev);
            }
            DeviceArg::Cpu => BackendKind::Cpu,
            DeviceArg::Cuda => BackendKind::Cuda,
            DeviceArg::Wgpu => BackendKind::Wgpu,
        };
        Device::new(kind).with_context(|| format!("cannot open the {kind} device"))
    }
}
