//! `merge_states`: combine attention states over disjoint key sets (FlashInfer's
//! `merge_states`, natural-log LSE) on `treepo_kernels::ops::merge_states`.

use pyo3::prelude::*;
use treepo_kernels::ops::{MergeRows, SingleRows, merge_states as merge_op};
use treepo_kernels::{DType, Device, FloatElement};

use crate::devices::device_for;
use crate::dispatch::with_float;
use crate::errors::{Error, Result, guarded, value_err};
use crate::tensor::{Tensor, check_disjoint, import_opt, same_loc};

/// Merges `vs [n, num_states, H, D]` (float32) with natural-log LSEs `ss [n, num_states, H]`
/// (float32) into `out [n, H, D]` (any float dtype the backend writes) and, if given,
/// `lse [n, H]` (float32), in place.
#[pyfunction]
#[pyo3(signature = (vs, ss, out, lse=None, stream=0))]
fn merge_states(
    py: Python<'_>,
    vs: &Bound<'_, PyAny>,
    ss: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    lse: Option<&Bound<'_, PyAny>>,
    stream: usize,
) -> Result<()> {
    let vs = Tensor::import(vs, "v", stream)?;
    let ss = Tensor::import(ss, "s", stream)?;
    let out = Tensor::import(out, "out", stream)?;
    let lse = import_opt(lse, "lse", stream)?;
    let mut all = vec![&vs, &ss, &out];
    all.extend(lse.as_ref());
    let loc = same_loc(&all)?;
    vs.require_ndim(4, "[seq_len, num_states, num_heads, head_dim]")?;
    let [n, ns, h, d] = [vs.shape[0], vs.shape[1], vs.shape[2], vs.shape[3]];
    vs.require_dtype(DType::F32)?;
    ss.require_dtype(DType::F32)?;
    ss.require_shape(&[n, ns, h], "[seq_len, num_states, num_heads] of v")?;
    out.require_shape(&[n, h, d], "[seq_len, num_heads, head_dim]")?;
    let dt = out.float_dtype()?;
    if let Some(l) = &lse {
        l.require_dtype(DType::F32)?;
        l.require_shape(&[n, h], "[seq_len, num_heads]")?;
        l.require_writable()?;
    }
    if h == 0 || d == 0 {
        return value_err!("v: num_heads and head_dim must be > 0, got shape {:?}", vs.shape);
    }
    for t in &all {
        t.require_contiguous()?;
    }
    out.require_writable()?;
    let outs: Vec<&Tensor> = std::iter::once(&out).chain(lse.as_ref()).collect();
    check_disjoint(&outs, &all)?;
    let dev = device_for(loc, stream)?;
    let indptr = (0..=n)
        .map(|r| i32::try_from(r * ns))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| Error::Value(format!("v: {n} × {ns} states exceed int32")))?;
    let rows = MergeRows::upload(&dev, &indptr, None)?;
    let shape = (h, d);
    with_float!(dt, run(py, &dev, &vs, &ss, &out, lse.as_ref(), &rows, shape))
}

#[allow(clippy::too_many_arguments)]
fn run<T: FloatElement>(
    py: Python<'_>,
    dev: &Device,
    vs: &Tensor,
    ss: &Tensor,
    out: &Tensor,
    lse: Option<&Tensor>,
    rows: &MergeRows,
    (h, d): (usize, usize),
) -> Result<()> {
    // SAFETY: every tensor was checked contiguous (so it reaches exactly `numel` elements) and
    // the outputs disjoint from the inputs; the tensors outlive the buffers.
    let (vb, sb) =
        unsafe { (vs.buffer::<f32>(dev, vs.numel())?, ss.buffer::<f32>(dev, ss.numel())?) };
    // SAFETY: as above.
    let mut ob = unsafe { out.buffer::<T>(dev, out.numel()) }?;
    let mut lb = match lse {
        // SAFETY: as above.
        Some(l) => Some(unsafe { l.buffer::<f32>(dev, l.numel()) }?),
        None => None,
    };
    py.detach(|| {
        guarded(|| {
            let lse = lb.as_mut().map(|b| b.view_mut());
            merge_op(dev, &vb, &sb, rows, &mut ob, lse, h, d, SingleRows::Copy)?;
            Ok(())
        })
    })
}

/// Registers `merge_states`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(merge_states, m)?)?;
    Ok(())
}
