//! Packed tree-masked attention (training): the `PackedTree` class (a forest packed in DFS
//! pre-order, or a raw `kv_row_end` mask) and the forward/backward kernels on caller tensors.
//! The autograd wrapper is `treepo.tree_attention` (Python).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tree_attn::packed::{
    PackNode, PackedAttentionGrads, PackedAttentionParams, PackedAttentionSaved,
    PackedTree as RsTree, TreeMask, packed_attention_bwd, packed_attention_fwd,
    validate_kv_row_end,
};
use treepo_kernels::{Buffer, DType, Device, FloatElement};

use crate::devices::{Loc, device_for};
use crate::dispatch::{f32_bytes, i32_bytes, u32_as_i64_bytes, with_float};
use crate::errors::{Error, Result, guarded, type_err, value_err};
use crate::tensor::{Tensor, check_disjoint, same_loc};

/// A packed forest and its tree mask (see `treepo.PackedTree`).
#[pyclass(frozen, module = "treepo._treepo", name = "PackedTree")]
pub struct PackedTree {
    tree: Option<RsTree>,
    kv_row_end: Vec<i32>,
    masks: Mutex<HashMap<(Loc, usize), Arc<TreeMask>>>,
}

impl PackedTree {
    fn new(tree: Option<RsTree>, kv_row_end: Vec<i32>) -> PackedTree {
        PackedTree { tree, kv_row_end, masks: Mutex::new(HashMap::new()) }
    }

    fn packed(&self) -> Result<&RsTree> {
        self.tree.as_ref().ok_or_else(|| {
            Error::Value(
                "this PackedTree was built from kv_row_end alone: only the mask and position ids \
                 are known; build it with PackedTree.pack(parents, num_tokens) for node and leaf \
                 data"
                    .into(),
            )
        })
    }

    /// The mask uploaded to `dev` (cached per device and stream).
    fn mask(&self, loc: Loc, stream: usize, dev: &Device) -> Result<Arc<TreeMask>> {
        let mut map =
            self.masks.lock().map_err(|_| Error::Runtime("mask cache poisoned".into()))?;
        if let Some(m) = map.get(&(loc, stream)) {
            return Ok(m.clone());
        }
        let m = Arc::new(TreeMask::upload(dev, &self.kv_row_end)?);
        map.insert((loc, stream), m.clone());
        Ok(m)
    }
}

#[pymethods]
impl PackedTree {
    /// Packs a forest given in DFS pre-order: `parents[i]` is node i's parent (an earlier
    /// node) or -1 for the root of a new tree; `num_tokens[i]` its token count.
    #[staticmethod]
    fn pack(parents: Vec<i64>, num_tokens: Vec<i64>) -> Result<PackedTree> {
        if parents.len() != num_tokens.len() {
            return value_err!(
                "parents has {} entries but num_tokens has {}",
                parents.len(),
                num_tokens.len()
            );
        }
        let mut nodes = Vec::with_capacity(parents.len());
        for (i, (&p, &n)) in parents.iter().zip(&num_tokens).enumerate() {
            let n = match u32::try_from(n) {
                Ok(n) => n,
                Err(_) => return value_err!("num_tokens[{i}] = {n} must be in [0, 2^32)"),
            };
            let parent = match p {
                -1 => None,
                p => match u32::try_from(p) {
                    Ok(p) => Some(p),
                    Err(_) => {
                        return value_err!(
                            "parents[{i}] = {p} must be -1 (a root) or a node index"
                        );
                    }
                },
            };
            nodes.push(PackNode { parent, num_tokens: n });
        }
        let tree = RsTree::pack(&nodes)?;
        let kv = tree.kv_row_end().to_vec();
        Ok(PackedTree::new(Some(tree), kv))
    }

    /// A mask from a raw `kv_row_end`: key j is visible to rows `[j, kv_row_end[j])`. Takes an
    /// int32 CPU tensor/array (DLPack) or a sequence of ints.
    #[staticmethod]
    fn from_kv_row_end(kv_row_end: &Bound<'_, PyAny>) -> Result<PackedTree> {
        let kv = if kv_row_end.hasattr("__dlpack__").unwrap_or(false) {
            Tensor::import(kv_row_end, "kv_row_end", 0)?.host_i32()?
        } else {
            let vals: Vec<i64> = kv_row_end.extract().map_err(|_| {
                Error::Type(
                    "kv_row_end: expected an int32 tensor/array or a sequence of ints".into(),
                )
            })?;
            let mut kv = Vec::with_capacity(vals.len());
            for (j, &e) in vals.iter().enumerate() {
                match i32::try_from(e) {
                    Ok(e) => kv.push(e),
                    Err(_) => return value_err!("kv_row_end[{j}] = {e} does not fit int32"),
                }
            }
            kv
        };
        if kv.is_empty() {
            return value_err!("kv_row_end is empty: a packed batch holds at least one token");
        }
        validate_kv_row_end(&kv)?;
        Ok(PackedTree::new(None, kv))
    }

    /// Packed tokens N.
    #[getter]
    fn num_tokens(&self) -> usize {
        self.kv_row_end.len()
    }

    /// Whether node and leaf data exist (built by `pack`).
    #[getter]
    fn has_nodes(&self) -> bool {
        self.tree.is_some()
    }

    fn _kv_row_end<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        i32_bytes(py, &self.kv_row_end)
    }

    /// Position ids as int64 bytes: a token's depth in tokens. Without node data it is the
    /// number of keys before it that it sees (the same thing).
    fn _position_ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        match &self.tree {
            Some(t) => u32_as_i64_bytes(py, t.position_ids()),
            None => {
                let mut stack: Vec<i32> = Vec::new();
                let mut pos = Vec::with_capacity(self.kv_row_end.len());
                for (j, &end) in self.kv_row_end.iter().enumerate() {
                    while stack.last().is_some_and(|&e| e <= j as i32) {
                        stack.pop();
                    }
                    pos.push(stack.len() as u32);
                    stack.push(end);
                }
                u32_as_i64_bytes(py, &pos)
            }
        }
    }

    fn _token_node<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyBytes>> {
        Ok(u32_as_i64_bytes(py, self.packed()?.token_node()))
    }

    fn _leaves_under_token<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyBytes>> {
        Ok(u32_as_i64_bytes(py, self.packed()?.leaves_under_token()))
    }

    fn _node_indptr<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyBytes>> {
        Ok(u32_as_i64_bytes(py, self.packed()?.node_indptr()))
    }

    fn _token_weights<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyBytes>> {
        Ok(f32_bytes(py, &self.packed()?.token_weights()))
    }

    fn _leaf_tokens<'py>(&self, py: Python<'py>, leaf: usize) -> Result<Bound<'py, PyBytes>> {
        let t = self.packed()?;
        if leaf >= t.num_leaves() {
            return value_err!("leaf {leaf} out of range: the tree has {} leaves", t.num_leaves());
        }
        Ok(u32_as_i64_bytes(py, t.leaf_tokens(leaf)))
    }

    /// Nodes packed.
    #[getter]
    fn num_nodes(&self) -> Result<usize> {
        Ok(self.packed()?.num_nodes())
    }

    /// Leaves (root-to-leaf sequences).
    #[getter]
    fn num_leaves(&self) -> Result<usize> {
        Ok(self.packed()?.num_leaves())
    }

    /// Trees in the forest.
    #[getter]
    fn num_trees(&self) -> Result<usize> {
        Ok(self.packed()?.num_trees())
    }

    /// Tokens the same leaves take unpacked (Σ leaf lengths).
    #[getter]
    fn flat_tokens(&self) -> Result<usize> {
        Ok(self.packed()?.flat_tokens())
    }

    /// `flat_tokens / num_tokens`.
    #[getter]
    fn token_reduction(&self) -> Result<f64> {
        Ok(self.packed()?.token_reduction())
    }

    /// The node at the end of leaf `leaf`'s sequence.
    fn leaf_node(&self, leaf: usize) -> Result<usize> {
        let t = self.packed()?;
        if leaf >= t.num_leaves() {
            return value_err!("leaf {leaf} out of range: the tree has {} leaves", t.num_leaves());
        }
        Ok(t.leaf_node(leaf))
    }

    /// Packed token range `(start, end)` of node `node`.
    fn node_range(&self, node: usize) -> Result<(usize, usize)> {
        let t = self.packed()?;
        if node >= t.num_nodes() {
            return value_err!("node {node} out of range: the tree has {} nodes", t.num_nodes());
        }
        let r = t.node_range(node);
        Ok((r.start, r.end))
    }

    /// Packed token range `(start, end)` of tree `tree`.
    fn tree_range(&self, tree: usize) -> Result<(usize, usize)> {
        let t = self.packed()?;
        if tree >= t.num_trees() {
            return value_err!("tree {tree} out of range: the forest has {} trees", t.num_trees());
        }
        let r = t.tree_range(tree);
        Ok((r.start, r.end))
    }

    /// Query×key pairs the mask leaves visible.
    #[getter]
    fn visible_pairs(&self) -> u64 {
        self.kv_row_end.iter().enumerate().map(|(j, &e)| (e as i64 - j as i64).max(0) as u64).sum()
    }

    fn __repr__(&self) -> String {
        match &self.tree {
            Some(t) => format!(
                "PackedTree(num_tokens={}, num_nodes={}, num_leaves={}, num_trees={})",
                t.num_tokens(),
                t.num_nodes(),
                t.num_leaves(),
                t.num_trees()
            ),
            None => format!("PackedTree(num_tokens={}, from kv_row_end)", self.kv_row_end.len()),
        }
    }
}

/// Shapes shared by forward and backward: `(N, H_q, H_kv, D)` from q, k, v and the tree.
fn check_qkv(q: &Tensor, k: &Tensor, v: &Tensor, n: usize) -> Result<(usize, usize, usize, DType)> {
    q.require_ndim(3, "[num_tokens, num_qo_heads, head_dim]")?;
    k.require_ndim(3, "[num_tokens, num_kv_heads, head_dim]")?;
    let (hq, d) = (q.shape[1], q.shape[2]);
    let hkv = k.shape[1];
    q.require_shape(&[n, hq, d], "[num_tokens of the tree, num_qo_heads, head_dim]")?;
    k.require_shape(&[n, hkv, d], "[num_tokens, num_kv_heads, head_dim] (head_dim of q)")?;
    v.require_shape(&[n, hkv, d], "the shape of k")?;
    if hkv == 0 || hq % hkv != 0 {
        return value_err!(
            "num_qo_heads = {hq} (q) must be a positive multiple of num_kv_heads = {hkv} (k)"
        );
    }
    let dt = q.float_dtype()?;
    for t in [k, v] {
        if t.float_dtype()? != dt {
            return type_err!("{}: dtype {} differs from q's {}", t.name, t.dtype, q.dtype);
        }
    }
    Ok((hq, hkv, d, dt))
}

fn params(hq: usize, hkv: usize, d: usize, sm_scale: Option<f64>) -> PackedAttentionParams {
    let mut p = PackedAttentionParams::new(hq, hkv, d);
    if let Some(s) = sm_scale {
        p.sm_scale = s as f32;
    }
    p
}

/// Buffers of `tensors` (whole, contiguous) on `dev`.
///
/// # Safety
/// Each tensor must be contiguous and outlive the buffers; outputs must be disjoint from the
/// other arguments.
unsafe fn buffers<T: FloatElement>(dev: &Device, ts: &[&Tensor]) -> Result<Vec<Buffer<T>>> {
    // SAFETY: forwarded contract; a contiguous tensor reaches exactly `numel` elements.
    ts.iter().map(|t| unsafe { t.buffer::<T>(dev, t.numel()) }).collect()
}

/// Forward on caller tensors: `out [N, H_q, D]` (dtype of q) and the natural-log
/// `lse [H_q, N]` (float32) are written in place.
#[pyfunction]
#[pyo3(signature = (q, k, v, tree, out, lse, sm_scale=None, stream=0))]
#[allow(clippy::too_many_arguments)]
fn packed_attention_forward(
    py: Python<'_>,
    q: &Bound<'_, PyAny>,
    k: &Bound<'_, PyAny>,
    v: &Bound<'_, PyAny>,
    tree: PyRef<'_, PackedTree>,
    out: &Bound<'_, PyAny>,
    lse: &Bound<'_, PyAny>,
    sm_scale: Option<f64>,
    stream: usize,
) -> Result<()> {
    let n = tree.kv_row_end.len();
    let q = Tensor::import(q, "q", stream)?;
    let k = Tensor::import(k, "k", stream)?;
    let v = Tensor::import(v, "v", stream)?;
    let out = Tensor::import(out, "out", stream)?;
    let lse = Tensor::import(lse, "lse", stream)?;
    let all = [&q, &k, &v, &out, &lse];
    let loc = same_loc(&all)?;
    let (hq, hkv, d, dt) = check_qkv(&q, &k, &v, n)?;
    out.require_shape(&[n, hq, d], "the shape of q")?;
    if out.float_dtype()? != dt {
        return type_err!("out: dtype {} differs from q's {}", out.dtype, q.dtype);
    }
    lse.require_dtype(DType::F32)?;
    lse.require_shape(&[hq, n], "[num_qo_heads, num_tokens]")?;
    for t in all {
        t.require_contiguous()?;
    }
    out.require_writable()?;
    lse.require_writable()?;
    check_disjoint(&[&out, &lse], &all)?;
    let dev = device_for(loc, stream)?;
    let mask = tree.mask(loc, stream, &dev)?;
    let p = params(hq, hkv, d, sm_scale);
    with_float!(dt, fwd(py, &dev, &q, &k, &v, &out, &lse, &mask, &p))
}

#[allow(clippy::too_many_arguments)]
fn fwd<T: FloatElement>(
    py: Python<'_>,
    dev: &Device,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    out: &Tensor,
    lse: &Tensor,
    mask: &TreeMask,
    p: &PackedAttentionParams,
) -> Result<()> {
    // SAFETY: all checked contiguous above, outputs disjoint; the tensors outlive the call.
    let mut bufs = unsafe { buffers::<T>(dev, &[q, k, v, out]) }?;
    // SAFETY: as above.
    let mut lb = unsafe { lse.buffer::<f32>(dev, lse.numel()) }?;
    py.detach(|| {
        guarded(|| {
            let (ins, outs) = bufs.split_at_mut(3);
            packed_attention_fwd(dev, &ins[0], &ins[1], &ins[2], mask, &mut outs[0], &mut lb, p)?;
            Ok(())
        })
    })
}

/// Backward on caller tensors: writes `dq`, `dk`, `dv` (dtype of q) and `delta [H_q, N]`
/// (float32) from the forward's `q, k, v, o, lse` and `d_o`.
#[pyfunction]
#[pyo3(signature = (q, k, v, o, lse, d_o, tree, dq, dk, dv, delta, sm_scale=None, stream=0))]
#[allow(clippy::too_many_arguments)]
fn packed_attention_backward(
    py: Python<'_>,
    q: &Bound<'_, PyAny>,
    k: &Bound<'_, PyAny>,
    v: &Bound<'_, PyAny>,
    o: &Bound<'_, PyAny>,
    lse: &Bound<'_, PyAny>,
    d_o: &Bound<'_, PyAny>,
    tree: PyRef<'_, PackedTree>,
    dq: &Bound<'_, PyAny>,
    dk: &Bound<'_, PyAny>,
    dv: &Bound<'_, PyAny>,
    delta: &Bound<'_, PyAny>,
    sm_scale: Option<f64>,
    stream: usize,
) -> Result<()> {
    let n = tree.kv_row_end.len();
    let names = ["q", "k", "v", "o", "lse", "d_o", "dq", "dk", "dv", "delta"];
    let objs = [q, k, v, o, lse, d_o, dq, dk, dv, delta];
    let ts = names
        .iter()
        .zip(objs)
        .map(|(name, obj)| Tensor::import(obj, name, stream))
        .collect::<Result<Vec<_>>>()?;
    let [q, k, v, o, lse, d_o, dq, dk, dv, delta] = &ts[..] else {
        return Err(Error::Runtime("argument count".into()));
    };
    let all: Vec<&Tensor> = ts.iter().collect();
    let loc = same_loc(&all)?;
    let (hq, hkv, d, dt) = check_qkv(q, k, v, n)?;
    for (t, like) in [(o, q), (d_o, q), (dq, q), (dk, k), (dv, k)] {
        t.require_shape(&like.shape, &format!("the shape of {}", like.name))?;
        if t.float_dtype()? != dt {
            return type_err!("{}: dtype {} differs from q's {}", t.name, t.dtype, q.dtype);
        }
    }
    for t in [lse, delta] {
        t.require_dtype(DType::F32)?;
        t.require_shape(&[hq, n], "[num_qo_heads, num_tokens]")?;
    }
    for t in &all {
        t.require_contiguous()?;
    }
    for t in [dq, dk, dv, delta] {
        t.require_writable()?;
    }
    check_disjoint(&[dq, dk, dv, delta], &all)?;
    let dev = device_for(loc, stream)?;
    let mask = tree.mask(loc, stream, &dev)?;
    let p = params(hq, hkv, d, sm_scale);
    let io = BwdTensors { q, k, v, o, lse, d_o, dq, dk, dv, delta };
    with_float!(dt, bwd(py, &dev, &io, &mask, &p))
}

struct BwdTensors<'a> {
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    o: &'a Tensor,
    lse: &'a Tensor,
    d_o: &'a Tensor,
    dq: &'a Tensor,
    dk: &'a Tensor,
    dv: &'a Tensor,
    delta: &'a Tensor,
}

fn bwd<T: FloatElement>(
    py: Python<'_>,
    dev: &Device,
    t: &BwdTensors<'_>,
    mask: &TreeMask,
    p: &PackedAttentionParams,
) -> Result<()> {
    // SAFETY: all checked contiguous, outputs disjoint from everything; tensors outlive the call.
    let mut b = unsafe { buffers::<T>(dev, &[t.q, t.k, t.v, t.o, t.d_o, t.dq, t.dk, t.dv]) }?;
    // SAFETY: as above.
    let lse = unsafe { t.lse.buffer::<f32>(dev, t.lse.numel()) }?;
    // SAFETY: as above.
    let mut delta = unsafe { t.delta.buffer::<f32>(dev, t.delta.numel()) }?;
    py.detach(|| {
        guarded(|| {
            let (ins, outs) = b.split_at_mut(5);
            let [dq, dk, dv] = outs else {
                return Err(Error::Runtime("gradient count".into()));
            };
            let saved = PackedAttentionSaved {
                q: ins[0].view(),
                k: ins[1].view(),
                v: ins[2].view(),
                o: ins[3].view(),
                lse: lse.view(),
            };
            let grads = PackedAttentionGrads {
                dq: dq.view_mut(),
                dk: dk.view_mut(),
                dv: dv.view_mut(),
                delta: delta.view_mut(),
            };
            packed_attention_bwd(dev, saved, &ins[4], mask, grads, p)?;
            Ok(())
        })
    })
}

/// Registers `PackedTree` and the packed attention kernels.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PackedTree>()?;
    m.add_function(wrap_pyfunction!(packed_attention_forward, m)?)?;
    m.add_function(wrap_pyfunction!(packed_attention_backward, m)?)?;
    Ok(())
}
