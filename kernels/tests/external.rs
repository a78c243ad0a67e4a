//! Ops on caller-owned memory (`treepo_kernels::external`): host slices, host pointers, CUDA
//! device pointers on the caller's stream, wgpu buffers. Each backend runs `rmsnorm` on memory
//! it did not allocate, writes in place, and must match the same op on our own buffers bit for
//! bit; every malformed wrap is a typed error.

use treepo_kernels::testing::{Rng, Tol, assert_close, device_or_skip};
use treepo_kernels::{BackendKind, Buffer, Device, KernelError, ops, per_backend};

const ROWS: usize = 5;
const DIM: usize = 48;

fn reference(x: &[f32], w: &[f32]) -> Vec<f64> {
    let mut y = Vec::new();
    for row in x.chunks(DIM) {
        let ms = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / DIM as f64;
        let r = 1.0 / (ms + 1e-6).sqrt();
        y.extend(row.iter().zip(w).map(|(&v, &wv)| f64::from(v) * r * f64::from(wv)));
    }
    y
}

/// `rmsnorm` on our own buffers: the result external memory must reproduce exactly.
fn owned(dev: &Device, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (dx, dw) = (dev.upload(x).unwrap(), dev.upload(w).unwrap());
    let mut y = dev.full(x.len(), f32::NAN).unwrap();
    ops::rmsnorm(dev, &dx, &dw, &mut y, None, ROWS, DIM, 1e-6).unwrap();
    dev.download(&y).unwrap()
}

fn check(dev: &Device, what: &str, got: &[f32], x: &[f32], w: &[f32]) {
    let want = owned(dev, x, w);
    assert!(
        got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
        "{what} on {}: external result differs from the owned-buffer run",
        dev.kind()
    );
    assert_close(what, got, &reference(x, w), Tol { atol: 1e-5, rtol: 2e-5 });
}

fn inputs(what: &str) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::fresh(what);
    (rng.normals(ROWS * DIM, 1.0), rng.normals(DIM, 1.0))
}

/// The caller's memory on `dev`'s backend, wrapped, used as input and (poisoned) output.
fn runs_on_caller_memory(dev: &Device) {
    let (x, w) = inputs("external");
    match dev.kind() {
        BackendKind::Cpu => {
            let mut y = vec![f32::NAN; x.len()];
            {
                let (bx, bw) = (Buffer::from_host(&x), Buffer::from_host(&w));
                let mut by = Buffer::from_host_mut(&mut y);
                assert!(bx.is_external() && by.is_external());
                // A sub-view of caller memory, too: the first row alone, then the rest.
                let (first, rest) = (bx.slice(0..DIM).unwrap(), bx.slice(DIM..x.len()).unwrap());
                ops::rmsnorm(dev, first, &*bw, by.slice_mut(0..DIM).unwrap(), None, 1, DIM, 1e-6)
                    .unwrap();
                let n = x.len();
                ops::rmsnorm(dev, rest, &*bw, by.slice_mut(DIM..n).unwrap(), None, 4, DIM, 1e-6)
                    .unwrap();
            }
            check(dev, "host slices", &y, &x, &w);
            let mut y2 = vec![f32::NAN; x.len()];
            // SAFETY: the vectors outlive the buffers (dropped at the end of this block) and
            // nothing else touches them meanwhile.
            let (bx, bw, mut by) = unsafe {
                (
                    Buffer::from_host_ptr(x.as_ptr().cast_mut(), x.len()).unwrap(),
                    Buffer::from_host_ptr(w.as_ptr().cast_mut(), w.len()).unwrap(),
                    Buffer::from_host_ptr(y2.as_mut_ptr(), y2.len()).unwrap(),
                )
            };
            ops::rmsnorm(dev, &bx, &bw, &mut by, None, ROWS, DIM, 1e-6).unwrap();
            drop((bx, bw, by));
            check(dev, "host pointers", &y2, &x, &w);
        }
        BackendKind::Cuda => cuda::runs_on_caller_memory(dev, &x, &w),
        BackendKind::Wgpu => wgpu_caller::runs_on_caller_memory(dev, &x, &w),
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;
    use cudarc::driver::{CudaContext, DevicePtr};

    /// Memory and a stream made with cudarc directly — as an engine would — not through us.
    pub fn runs_on_caller_memory(dev: &Device, x: &[f32], w: &[f32]) {
        let ctx = CudaContext::new(dev.cuda_ordinal().unwrap()).unwrap();
        let stream = ctx.new_stream().unwrap();
        let mx = stream.clone_htod(x).unwrap();
        let mw = stream.clone_htod(w).unwrap();
        let my = stream.clone_htod(&vec![f32::NAN; x.len()]).unwrap();
        stream.synchronize().unwrap();
        let (px, _gx) = mx.device_ptr(&stream);
        let (pw, _gw) = mw.device_ptr(&stream);
        let (py, _gy) = my.device_ptr(&stream);
        // SAFETY: the cudarc slices outlive every buffer below (dropped first) and the work is
        // ordered on `stream`, which `on` launches on and which is synchronized before reading.
        let on = unsafe { dev.with_cuda_stream(stream.cu_stream().cast()) }.unwrap();
        {
            // SAFETY: as above.
            let (bx, bw, mut by) = unsafe {
                (
                    Buffer::<f32>::from_cuda_ptr(&on, px, x.len()).unwrap(),
                    Buffer::<f32>::from_cuda_ptr(&on, pw, w.len()).unwrap(),
                    Buffer::<f32>::from_cuda_ptr(&on, py, x.len()).unwrap(),
                )
            };
            ops::rmsnorm(&on, &bx, &bw, &mut by, None, ROWS, DIM, 1e-6).unwrap();
            // Our download path on caller memory, and a write into it.
            let got = on.download(&by).unwrap();
            check(dev, "cuda caller memory, caller stream", &got, x, w);
            on.write(&mut by, &vec![0.0; x.len()]).unwrap();
        }
        stream.synchronize().unwrap();
        let back = stream.clone_dtoh(&my).unwrap();
        assert!(back.iter().all(|&v| v == 0.0), "write into caller memory did not land");

        // The driver's view of the allocation bounds every wrap.
        // SAFETY: the calls below must fail before anything touches memory.
        let err = unsafe { Buffer::<f32>::from_cuda_ptr(&on, px, x.len() + 1) }.unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
        let host = [0f32; 4];
        // SAFETY: as above: a host address is rejected by the driver query.
        let err = unsafe { Buffer::<f32>::from_cuda_ptr(&on, host.as_ptr() as u64 + (1 << 40), 4) }
            .unwrap_err();
        assert!(err.to_string().contains("not device memory"), "{err}");
        // SAFETY: as above.
        let err = unsafe { Buffer::<f32>::from_cuda_ptr(&on, px + 2, 4) }.unwrap_err();
        assert!(err.to_string().contains("not aligned"), "{err}");
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    pub fn runs_on_caller_memory(_: &treepo_kernels::Device, _: &[f32], _: &[f32]) {
        unreachable!("no CUDA device exists without the cuda feature")
    }
}

#[cfg(feature = "wgpu")]
mod wgpu_caller {
    use super::*;

    /// Buffers created on the device's own wgpu handles, as an engine sharing it would.
    pub fn runs_on_caller_memory(dev: &Device, x: &[f32], w: &[f32]) {
        let (device, queue) = dev.wgpu_handles().unwrap();
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let make = |data: &[f32]| {
            let b = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("caller"),
                size: (data.len() * 4) as u64,
                usage,
                mapped_at_creation: false,
            });
            queue.write_buffer(&b, 0, bytemuck_bytes(data));
            b
        };
        let bx = Buffer::<f32>::from_wgpu(dev, make(x), x.len()).unwrap();
        let bw = Buffer::<f32>::from_wgpu(dev, make(w), w.len()).unwrap();
        let mut by =
            Buffer::<f32>::from_wgpu(dev, make(&vec![f32::NAN; x.len()]), x.len()).unwrap();
        assert!(by.is_external());
        ops::rmsnorm(dev, &bx, &bw, &mut by, None, ROWS, DIM, 1e-6).unwrap();
        check(dev, "wgpu caller buffers", &dev.download(&by).unwrap(), x, w);

        let small = make(&[0.0; 4]);
        let err = Buffer::<f32>::from_wgpu(dev, small, 5).unwrap_err();
        assert!(err.to_string().contains("fewer than 5 elements"), "{err}");
        let uniform = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 64,
            usage: wgpu::BufferUsages::UNIFORM,
            mapped_at_creation: false,
        });
        let err = Buffer::<f32>::from_wgpu(dev, uniform, 4).unwrap_err();
        assert!(err.to_string().contains("lacks STORAGE"), "{err}");
    }

    fn bytemuck_bytes(data: &[f32]) -> &[u8] {
        // SAFETY: f32 has no padding and any byte is a valid u8; the length is exact.
        unsafe { std::slice::from_raw_parts(data.as_ptr().cast(), std::mem::size_of_val(data)) }
    }
}

#[cfg(not(feature = "wgpu"))]
mod wgpu_caller {
    pub fn runs_on_caller_memory(_: &treepo_kernels::Device, _: &[f32], _: &[f32]) {
        unreachable!("no wgpu device exists without the wgpu feature")
    }
}

per_backend!(runs_on_caller_memory);

#[test]
fn malformed_host_wraps_are_errors() {
    let invalid = |r: treepo_kernels::Result<Buffer<f32>>, frag: &str| match r {
        Err(KernelError::Invalid { msg, .. }) => assert!(msg.contains(frag), "{msg}"),
        other => panic!("expected Invalid containing {frag:?}, got {other:?}"),
    };
    // SAFETY: every call below is rejected before the pointer is used.
    unsafe {
        invalid(Buffer::from_host_ptr(std::ptr::null_mut(), 4), "null");
        invalid(
            Buffer::from_host_ptr(std::ptr::without_provenance_mut::<f32>(3), 4),
            "not aligned",
        );
        invalid(
            Buffer::from_host_ptr(std::ptr::without_provenance_mut::<f32>(16), usize::MAX / 2),
            "overflow",
        );
    }
    // A zero-length wrap of an empty slice is fine (and reads nothing).
    let empty: [f32; 0] = [];
    assert_eq!(Buffer::from_host(&empty).len(), 0);
}

#[test]
fn wrong_backend_wraps_are_errors() {
    let cpu = Device::cpu();
    // SAFETY: rejected before the pointer is used.
    let err = unsafe { Buffer::<f32>::from_cuda_ptr(&cpu, 256, 4) }.unwrap_err();
    assert!(matches!(err, KernelError::WrongDevice { expected: BackendKind::Cuda, .. }), "{err}");
    // SAFETY: rejected before the stream is used.
    let err = unsafe { cpu.with_cuda_stream(std::ptr::null_mut()) }.err().unwrap();
    assert!(matches!(err, KernelError::WrongDevice { .. }), "{err}");
    assert_eq!(cpu.cuda_ordinal(), None);
    // Caller memory of one backend handed to another backend's op is the usual WrongDevice.
    if let Some(cuda) = device_or_skip(BackendKind::Cuda) {
        let x = vec![1.0f32; DIM];
        let bx = Buffer::from_host(&x);
        let mut y = cuda.zeros::<f32>(DIM).unwrap();
        let err = ops::rmsnorm(&cuda, &*bx, &*bx, &mut y, None, 1, DIM, 1e-6).unwrap_err();
        assert!(matches!(err, KernelError::WrongDevice { found: BackendKind::Cpu, .. }), "{err}");
    }
}
