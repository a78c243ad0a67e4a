//! The wgpu backend: hand-written `kernels/wgsl/*.wgsl` compute shaders on any Vulkan, Metal or
//! DX12 adapter (in CI: Mesa lavapipe, a Vulkan implementation on the CPU).
//!
//! Conventions every shader follows: binding 0 is a uniform block of op parameters (element
//! offsets included, because storage bindings cover whole buffers), bindings 1.. are storage
//! buffers in argument order. Pipelines are built on first use and cached per (file, entry
//! point). wgpu validation errors are captured with error scopes and returned as values; the
//! default handler (which panics) is replaced.

pub mod sources;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use crate::buffer::Store;
use crate::{AdapterPolicy, BackendKind, Element, KernelError, Result, View, ViewMut};

pub use sources::ShaderSource;

/// One wgpu device and queue, with its pipeline cache.
pub struct WgpuBackend {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    f16: bool,
    max_workgroups: u32,
    /// The adapter's `max_storage_buffer_binding_size`: buffers are bound whole.
    max_binding: u64,
    /// A 16-byte storage buffer bound where an optional output is absent.
    scratch: wgpu::Buffer,
    pipelines: Mutex<HashMap<(&'static str, &'static str), Arc<wgpu::ComputePipeline>>>,
}

fn unavailable(reason: impl Into<String>) -> KernelError {
    KernelError::BackendUnavailable { backend: BackendKind::Wgpu, reason: reason.into() }
}

pub(crate) fn wgpu_err(context: &str, msg: impl std::fmt::Display) -> KernelError {
    KernelError::Wgpu { context: context.to_string(), msg: msg.to_string() }
}

impl WgpuBackend {
    /// Opens the first adapter `policy` accepts (hardware adapters first).
    pub fn new(policy: AdapterPolicy) -> Result<Self> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::PRIMARY;
        let instance = wgpu::Instance::new(desc);
        let mut adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
        if adapters.is_empty() {
            return Err(unavailable(
                "no Vulkan/Metal/DX12 adapter found (on Linux without a GPU install \
                 `mesa-vulkan-drivers libvulkan1` for the lavapipe software adapter)",
            ));
        }
        // Hardware first, software (lavapipe) last.
        adapters.sort_by_key(|a| matches!(a.get_info().device_type, wgpu::DeviceType::Cpu));
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        let adapter = adapters
            .into_iter()
            .find(|a| {
                policy == AdapterPolicy::AllowSoftware
                    || !matches!(a.get_info().device_type, wgpu::DeviceType::Cpu)
            })
            .ok_or_else(|| {
                unavailable(format!(
                    "only software adapters are present ({}); ask for `--device wgpu` explicitly to use them",
                    names.join(", ")
                ))
            })?;
        let info = adapter.get_info();
        let f16 = adapter.features().contains(wgpu::Features::SHADER_F16);
        let limits = adapter.limits();
        let required_features =
            if f16 { wgpu::Features::SHADER_F16 } else { wgpu::Features::empty() };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("treepo-kernels"),
            required_features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| unavailable(format!("request_device on {}: {e}", info.name)))?;
        Ok(Self::from_parts(device, queue, info))
    }

    /// The backend over a device and queue someone else created (an embedding engine's):
    /// features and limits are the device's own.
    pub(crate) fn from_parts(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
    ) -> Self {
        let f16 = device.features().contains(wgpu::Features::SHADER_F16);
        let limits = device.limits();
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            // Errors of scoped work are returned as values; anything else is reported here
            // instead of wgpu's default handler, which panics.
            eprintln!("treepo-kernels: uncaptured wgpu error: {e}");
        }));
        let scratch = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("scratch"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        WgpuBackend {
            scratch,
            device,
            queue,
            info,
            f16,
            max_workgroups: limits.max_compute_workgroups_per_dimension,
            max_binding: limits.max_storage_buffer_binding_size,
            pipelines: Mutex::new(HashMap::new()),
        }
    }

    /// The wgpu device and queue (shared handles), for callers that allocate buffers to pass
    /// to [`Buffer::from_wgpu`](crate::Buffer::from_wgpu).
    pub fn handles(&self) -> (wgpu::Device, wgpu::Queue) {
        (self.device.clone(), self.queue.clone())
    }

    pub(crate) fn description(&self) -> String {
        format!("wgpu {} ({:?}, {:?})", self.info.name, self.info.backend, self.info.device_type)
    }

    pub(crate) fn scratch(&self) -> &wgpu::Buffer {
        &self.scratch
    }

    /// Whether the adapter is a software rasterizer (Mesa lavapipe/llvmpipe, WARP).
    pub(crate) fn is_software(&self) -> bool {
        matches!(self.info.device_type, wgpu::DeviceType::Cpu)
    }

    pub(crate) fn has_f16(&self) -> bool {
        self.f16
    }

    pub(crate) fn upload(&self, bytes: &[u8]) -> Result<wgpu::Buffer> {
        let size = padded(bytes.len());
        let buf = self.scoped("upload", || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: true,
            })
        })?;
        {
            let mut view =
                buf.slice(..).get_mapped_range_mut().map_err(|e| wgpu_err("upload", e))?;
            let mut padded_bytes = bytes.to_vec();
            padded_bytes.resize(size as usize, 0);
            view.copy_from_slice(&padded_bytes);
        }
        buf.unmap();
        Ok(buf)
    }

    /// Reads `len` bytes at `offset`; copies go through a 4-byte-aligned staging range.
    pub(crate) fn download(
        &self,
        buf: &wgpu::Buffer,
        offset: usize,
        len: usize,
    ) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let start = offset & !3;
        let end = padded(offset + len) as usize;
        let size = (end - start) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.scoped("download", || {
            let mut enc = self.device.create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(buf, start as u64, &staging, 0, size);
            self.queue.submit([enc.finish()]);
        })?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| wgpu_err("poll (download)", e))?;
        rx.recv()
            .map_err(|e| wgpu_err("map_async (download)", e))?
            .map_err(|e| wgpu_err("map_async (download)", e))?;
        let bytes = {
            let view = staging.slice(..).get_mapped_range().map_err(|e| wgpu_err("download", e))?;
            view[offset - start..offset - start + len].to_vec()
        };
        staging.unmap();
        Ok(bytes)
    }

    /// Writes `bytes` at byte `offset`; unaligned edges are merged with the current contents.
    pub(crate) fn write(&self, buf: &wgpu::Buffer, offset: usize, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let start = offset & !3;
        let end = padded(offset + bytes.len()) as usize;
        let mut chunk = if start == offset && end == offset + bytes.len() {
            bytes.to_vec()
        } else {
            let mut c = self.download(buf, start, end - start)?;
            c[offset - start..offset - start + bytes.len()].copy_from_slice(bytes);
            c
        };
        chunk.resize(end - start, 0);
        self.scoped("write", || self.queue.write_buffer(buf, start as u64, &chunk))
    }

    pub(crate) fn synchronize(&self) -> Result<()> {
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| wgpu_err("poll", e))?;
        Ok(())
    }

    /// The cached pipeline for `entry` of `shader`.
    fn pipeline(
        &self,
        shader: &'static ShaderSource,
        entry: &'static str,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = (shader.stem, entry);
        let mut cache =
            self.pipelines.lock().map_err(|_| wgpu_err("pipeline cache", "lock poisoned"))?;
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        if shader.needs_f16 && !self.f16 {
            return Err(unavailable(format!(
                "{}.wgsl needs SHADER_F16, which {} lacks",
                shader.stem, self.info.name
            )));
        }
        let p = self.scoped(&format!("building {}.wgsl::{entry}", shader.stem), || {
            let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(shader.stem),
                source: wgpu::ShaderSource::Wgsl(shader.code.into()),
            });
            self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        })?;
        let p = Arc::new(p);
        cache.insert(key, p.clone());
        Ok(p)
    }

    /// Runs `entry` of `shader` over `groups` workgroups with `params` at binding 0 and
    /// `buffers` at bindings 1.. (in order).
    pub(crate) fn dispatch(
        &self,
        shader: &'static ShaderSource,
        entry: &'static str,
        params: &[u8],
        buffers: &[&wgpu::Buffer],
        groups: (u32, u32, u32),
    ) -> Result<()> {
        if groups.0 == 0 || groups.1 == 0 || groups.2 == 0 {
            return Ok(());
        }
        let m = self.max_workgroups;
        if groups.0 > m || groups.1 > m || groups.2 > m {
            return Err(KernelError::Invalid {
                op: shader.stem,
                msg: format!(
                    "dispatch {groups:?} exceeds the adapter's {m} workgroups per dimension"
                ),
            });
        }
        if let Some(b) = buffers.iter().find(|b| b.size() > self.max_binding) {
            return Err(KernelError::Invalid {
                op: shader.stem,
                msg: format!(
                    "a buffer of {} bytes exceeds the {} bytes {} binds per storage buffer",
                    b.size(),
                    self.max_binding,
                    self.info.name
                ),
            });
        }
        let pipeline = self.pipeline(shader, entry)?;
        self.scoped(&format!("dispatch {}.wgsl::{entry}", shader.stem), || {
            let mut padded_params = params.to_vec();
            padded_params.resize(params.len().div_ceil(16).max(1) * 16, 0);
            let uniform = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: &padded_params,
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let mut entries =
                vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
            for (i, b) in buffers.iter().enumerate() {
                entries.push(wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource: b.as_entire_binding(),
                });
            }
            let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
            let mut enc = self.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &bind, &[]);
                pass.dispatch_workgroups(groups.0, groups.1, groups.2);
            }
            self.queue.submit([enc.finish()]);
        })
    }

    /// Runs `f` inside validation and out-of-memory error scopes; returns the first error.
    fn scoped<R>(&self, context: &str, f: impl FnOnce() -> R) -> Result<R> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let r = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        if let Some(e) = v.or(o) {
            return Err(wgpu_err(context, e));
        }
        Ok(r)
    }
}

fn padded(len: usize) -> u64 {
    (len.div_ceil(4) * 4).max(4) as u64
}

/// The wgpu buffer behind a view.
pub(crate) fn buf<'a, T: Element>(v: &View<'a, T>) -> &'a wgpu::Buffer {
    match &v.buf.store {
        Store::Wgpu(b) => b,
        _ => unreachable!("backend mismatch is rejected at the validation boundary"),
    }
}

/// The wgpu buffer behind a mutable view.
pub(crate) fn buf_mut<'a, T: Element>(v: &'a ViewMut<'_, T>) -> &'a wgpu::Buffer {
    match &v.buf.store {
        Store::Wgpu(b) => b,
        _ => unreachable!("backend mismatch is rejected at the validation boundary"),
    }
}

/// Workgroups for `n` items at `per_group` items per workgroup, folded into (x, y) so no
/// dimension exceeds 65535; shaders recover the linear id as `x + y * num_workgroups.x`.
pub(crate) fn groups_1d(n: usize, per_group: u32) -> (u32, u32, u32) {
    let total = n.div_ceil(per_group as usize).max(1);
    let x = total.min(65535);
    let y = total.div_ceil(x);
    (x as u32, y as u32, 1)
}

/// Converts an element offset or count to the `u32` a shader takes.
pub(crate) fn u32_of(op: &'static str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v)
        .map_err(|_| KernelError::Invalid { op, msg: format!("{what} = {v} exceeds u32 on wgpu") })
}
