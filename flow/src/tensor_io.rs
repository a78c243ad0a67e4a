//! F32 safetensors files: atomic writes (a crash never leaves a truncated file under the final
//! name) and validated reads (dtype, shape, finiteness), shared by every checkpoint of the crate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::{FlowError, Result};

/// One tensor to write: name, shape, values.
pub(crate) type Named<'a> = (&'a str, Vec<usize>, &'a [f32]);

/// Writes `tensors` (little-endian F32) and `metadata` to `path` via `path.tmp` and a rename.
pub(crate) fn save_f32(
    path: &Path,
    tensors: &[Named<'_>],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, shape, _), data) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, shape.clone(), data)
            .map_err(|e| FlowError::Format(format!("tensor {name}: {e}")))?;
        views.push((*name, view));
    }
    let encoded = safetensors::serialize(views, metadata)
        .map_err(|e| FlowError::Format(format!("encoding {}: {e}", path.display())))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| FlowError::Io { path: p, source }
    };
    std::fs::write(&tmp, encoded).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The bytes of `path` (an unreadable file is a [`FlowError::Io`]).
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| FlowError::Io { path: path.display().to_string(), source })
}

/// Parses safetensors bytes; every tensor name must be in `expected`.
pub(crate) fn parse<'a>(
    path: &Path,
    bytes: &'a [u8],
    expected: &[&str],
) -> Result<SafeTensors<'a>> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| format_err(path, format!("not a safetensors file: {e}")))?;
    if let Some(extra) = st.names().into_iter().find(|n| !expected.contains(n)) {
        return Err(format_err(path, format!("unexpected tensor {extra}")));
    }
    Ok(st)
}

/// The values of the F32 tensor `name` of shape `shape`, all finite.
pub(crate) fn floats(
    path: &Path,
    st: &SafeTensors<'_>,
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>> {
    let view =
        st.tensor(name).map_err(|e| format_err(path, format!("tensor {name} missing ({e})")))?;
    if view.dtype() != Dtype::F32 {
        return Err(format_err(path, format!("{name} has dtype {:?}, expected F32", view.dtype())));
    }
    if view.shape() != shape {
        return Err(format_err(
            path,
            format!("{name} has shape {:?}, expected {shape:?}", view.shape()),
        ));
    }
    let out: Vec<f32> =
        view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    if let Some(i) = out.iter().position(|v| !v.is_finite()) {
        return Err(format_err(path, format!("{name} element {i} is {} (not finite)", out[i])));
    }
    Ok(out)
}

/// A [`FlowError::Format`] naming the file.
pub(crate) fn format_err(path: &Path, msg: String) -> FlowError {
    FlowError::Format(format!("{}: {msg}", path.display()))
}
