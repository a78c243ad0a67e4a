//! Backend selection and transfers: unavailable backends are errors that name what is missing,
//! never panics; buffers from another backend are rejected.

use treepo_kernels::testing::device_or_skip;
use treepo_kernels::{BackendKind, Device, KernelError, ops, per_backend};

#[test]
fn cuda_without_driver_is_a_clear_error() {
    match Device::cuda(0) {
        Ok(d) => eprintln!("CUDA present: {}", d.description()),
        Err(KernelError::BackendUnavailable { backend, reason }) => {
            assert_eq!(backend, BackendKind::Cuda);
            assert!(
                reason.contains("libcuda")
                    || reason.contains("libnvrtc")
                    || reason.contains("libcublas")
                    || reason.contains("device"),
                "reason should name what is missing: {reason}"
            );
            eprintln!("CUDA unavailable, as expected here: {reason}");
        }
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

#[test]
fn auto_always_returns_a_device() {
    let (dev, passed_over) = Device::auto();
    eprintln!("auto picked {}; passed over: {passed_over:?}", dev.description());
    assert!(dev.kind() == BackendKind::Cpu || passed_over.len() < 2);
}

#[test]
fn backend_names_parse() {
    assert_eq!("CUDA".parse::<BackendKind>().unwrap(), BackendKind::Cuda);
    assert!(
        "tpu".parse::<BackendKind>().unwrap_err().to_string().contains("unknown backend `tpu`")
    );
}

#[test]
fn foreign_buffers_are_rejected() {
    let Some(wgpu) = device_or_skip(BackendKind::Wgpu) else { return };
    let cpu = Device::cpu();
    let mut y = cpu.zeros::<f32>(4).unwrap();
    let x = wgpu.upload(&[1f32; 4]).unwrap();
    let err = ops::residual_add(&cpu, &mut y, &x, 4).unwrap_err();
    assert!(matches!(err, KernelError::WrongDevice { name: "x", .. }), "{err}");
}

fn round_trips(dev: &Device) {
    use treepo_kernels::{bf16, f16};
    let f: Vec<f32> = (0..1001).map(|i| i as f32 * 0.5 - 3.0).collect();
    assert_eq!(dev.download(&dev.upload(&f).unwrap()).unwrap(), f);
    let i: Vec<i32> = (0..7).map(|v| v * -3).collect();
    assert_eq!(dev.download(&dev.upload(&i).unwrap()).unwrap(), i);
    let u: Vec<u32> = vec![u32::MAX, 0, 17];
    assert_eq!(dev.download(&dev.upload(&u).unwrap()).unwrap(), u);
    // Odd lengths and offsets of 16-bit types exercise the 4-byte alignment paths on wgpu.
    let h: Vec<f16> = (0..5).map(|v| f16::from_f32(v as f32)).collect();
    let mut hb = dev.upload(&h).unwrap();
    assert_eq!(dev.download(hb.slice(1..4).unwrap()).unwrap(), h[1..4].to_vec());
    dev.write(hb.slice_mut(1..2).unwrap(), &[f16::from_f32(9.0)]).unwrap();
    let mut want = h.clone();
    want[1] = f16::from_f32(9.0);
    assert_eq!(dev.download(&hb).unwrap(), want);
    let b: Vec<bf16> = (0..3).map(|v| bf16::from_f32(v as f32 + 0.5)).collect();
    assert_eq!(dev.download(&dev.upload(&b).unwrap()).unwrap(), b);
    let empty: Vec<f32> = Vec::new();
    assert!(dev.download(&dev.upload(&empty).unwrap()).unwrap().is_empty());
    let err = dev.write(hb.slice_mut(0..2).unwrap(), &h[..1]).unwrap_err();
    assert!(err.to_string().contains("view holds 2 elements but 1 were given"), "{err}");
}

per_backend!(round_trips);

fn indices_are_checked_on_upload(dev: &Device) {
    use treepo_kernels::Indices;
    let mut ix = Indices::upload(dev, &[0, 3, 7], 8).unwrap();
    assert_eq!(ix.bound(), 8);
    assert_eq!(dev.download(ix.view()).unwrap(), vec![0, 3, 7]);
    let err = Indices::upload(dev, &[0, 8], 8).unwrap_err();
    assert!(err.to_string().contains("value 8 at position 1 is outside [0, 8)"), "{err}");
    let err = ix.update(dev, &[-1, 0, 0], 8).unwrap_err();
    assert!(err.to_string().contains("value -1 at position 0"), "{err}");
    ix.update(dev, &[1, 2], 3).unwrap();
    assert_eq!(dev.download(ix.view()).unwrap(), vec![1, 2]);
    assert!(
        ix.check_bound("op", "ids", 2)
            .unwrap_err()
            .to_string()
            .contains("may reach 2 but only 2 exist")
    );
}

per_backend!(indices_are_checked_on_upload);
