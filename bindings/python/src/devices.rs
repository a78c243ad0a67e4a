//! Where a call runs: the CPU, or CUDA device `ordinal` on the caller's stream. `Device`s are
//! cached per (ordinal, stream): the first call on a GPU initializes the CUDA backend (driver,
//! NVRTC modules), later ones share it through `Device::with_cuda_stream`.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use treepo_kernels::Device;

use crate::errors::{Error, Result};

/// A tensor's device as the bindings see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Loc {
    /// Host memory.
    Cpu,
    /// CUDA device memory of this ordinal.
    Cuda(usize),
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loc::Cpu => write!(f, "cpu"),
            Loc::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

type Cache = Mutex<HashMap<(usize, usize), Device>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The device that runs work for tensors on `loc`, launching on `stream` (a `CUstream` as an
/// integer, 0 = the legacy default stream; ignored on the CPU).
pub fn device_for(loc: Loc, stream: usize) -> Result<Device> {
    let ordinal = match loc {
        Loc::Cpu => return Ok(Device::cpu()),
        Loc::Cuda(i) => i,
    };
    let mut map = cache().lock().map_err(|_| Error::Runtime("device cache poisoned".into()))?;
    if let Some(d) = map.get(&(ordinal, stream)) {
        return Ok(d.clone());
    }
    // The base device of the ordinal is cached under the sentinel stream usize::MAX.
    let base = match map.get(&(ordinal, usize::MAX)) {
        Some(d) => d.clone(),
        None => {
            let d = Device::cuda(ordinal)?;
            map.insert((ordinal, usize::MAX), d.clone());
            d
        }
    };
    // SAFETY: `stream` comes from `torch.cuda.current_stream(device).cuda_stream` (or the
    // caller's own handle) for this very device, so it belongs to the device's primary context,
    // which PyTorch uses. The cached Device keeps only the handle value: it is used again only
    // when a caller passes the same handle, i.e. while that stream is current (alive) for them.
    let dev = unsafe { base.with_cuda_stream(stream as *mut std::ffi::c_void) }?;
    map.insert((ordinal, stream), dev.clone());
    Ok(dev)
}
