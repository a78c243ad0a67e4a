//! `TreeDecode`: plan once per decode step from raw CSR block tables (or from a
//! `TreeKvCache`), run per layer on caller tensors — FlashInfer's
//! `BatchDecodeWithPagedKVCacheWrapper` shape on `tree_attn::TreeDecoder`.

use std::sync::Mutex;

use pyo3::prelude::*;
use tree_attn::{CsrForest, LeafQuery, NodeKv, PlanKind, TreeDecoder, TreeKvView};
use treepo_kernels::{DType, Device, FloatElement};

use crate::cache::TreeKvCache;
use crate::devices::{Loc, device_for};
use crate::dispatch::with_float;
use crate::errors::{Error, Result, guarded, value_err};
use crate::kv_layout::{Order, derive};
use crate::tensor::{Tensor, check_disjoint, import_opt, same_loc};

/// What the current plan was made for.
#[derive(Clone, Copy, Debug)]
struct Info {
    rows: usize,
    num_qo_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    page_size: usize,
    num_pages: usize,
    loc: Loc,
}

struct State {
    dec: TreeDecoder,
    info: Option<Info>,
}

/// `(rows, num_qo_heads, num_kv_heads, head_dim, page_size, num_pages)`.
type PlanTuple = (usize, usize, usize, usize, usize, usize);

/// Tree decode attention over a paged KV cache (see `treepo.TreeDecode`).
#[pyclass(frozen, module = "treepo._treepo", name = "TreeDecode")]
pub struct TreeDecode {
    state: Mutex<State>,
}

fn plan_kind(kind: &str, max_chunk: Option<u32>, units: Option<u32>) -> Result<PlanKind> {
    Ok(match kind {
        "tree" => PlanKind::Tree,
        "naive" => PlanKind::Naive,
        "cascade" => PlanKind::Cascade,
        "tree_split" => PlanKind::TreeSplit { max_chunk: max_chunk.unwrap_or(256) },
        "tree_fill" => PlanKind::TreeFill { units: units.unwrap_or(1) },
        other => {
            return value_err!(
                "kind must be one of \"tree\", \"naive\", \"cascade\", \"tree_split\", \
                 \"tree_fill\"; got {other:?}"
            );
        }
    })
}

fn loc_of(device_ordinal: Option<usize>) -> Loc {
    device_ordinal.map_or(Loc::Cpu, Loc::Cuda)
}

/// An int32 host array argument (tensor/array via DLPack, or a sequence of ints).
fn host_i32(obj: &Bound<'_, PyAny>, name: &'static str) -> Result<Vec<i32>> {
    if obj.hasattr("__dlpack__").unwrap_or(false) {
        return Tensor::import(obj, name, 0)?.host_i32();
    }
    let v: Vec<i64> = obj.extract().map_err(|_| {
        Error::Type(format!("{name}: expected an int32 tensor/array or a sequence of ints"))
    })?;
    v.iter()
        .enumerate()
        .map(|(i, &x)| {
            i32::try_from(x)
                .map_err(|_| Error::Value(format!("{name}[{i}] = {x} does not fit int32")))
        })
        .collect()
}

fn q_rows_of(obj: Option<&Bound<'_, PyAny>>) -> Result<Option<Vec<u32>>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else { return Ok(None) };
    let v = host_i32(obj, "q_rows")?;
    v.iter()
        .enumerate()
        .map(|(i, &x)| {
            u32::try_from(x).map_err(|_| Error::Value(format!("q_rows[{i}] = {x} must be >= 0")))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Plan arguments that do not depend on where the tree comes from.
struct Heads {
    num_qo_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl TreeDecode {
    /// Plans on the device of `loc` (stream `stream`) and records what for. Locks inside the
    /// GIL-free section only (a thread that holds the lock never waits for the GIL).
    #[allow(clippy::too_many_arguments)]
    fn plan_view(
        &self,
        py: Python<'_>,
        view: &TreeKvView<'_>,
        leaves: &[LeafQuery],
        kind: PlanKind,
        min_shared: u32,
        h: &Heads,
        num_pages: usize,
        loc: Loc,
        stream: usize,
    ) -> Result<usize> {
        let dev = device_for(loc, stream)?;
        py.detach(|| {
            guarded(|| {
                let mut st = self.lock()?;
                st.info = None;
                st.dec.set_min_shared(min_shared);
                st.dec.plan(
                    &dev,
                    view,
                    leaves,
                    kind,
                    h.num_qo_heads,
                    h.num_kv_heads,
                    h.head_dim,
                    num_pages,
                )?;
                if loc != Loc::Cpu {
                    // The tables were copied from pageable host memory on this stream; finish
                    // before a run on any stream reads them.
                    dev.synchronize()?;
                }
                let rows = st.dec.num_rows();
                st.info = Some(Info {
                    rows,
                    num_qo_heads: h.num_qo_heads,
                    num_kv_heads: h.num_kv_heads,
                    head_dim: h.head_dim,
                    page_size: view.page_size as usize,
                    num_pages,
                    loc,
                });
                Ok(rows)
            })
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| Error::Runtime("TreeDecode lock poisoned".into()))
    }
}

#[pymethods]
impl TreeDecode {
    /// A decoder with nothing planned.
    #[new]
    fn new() -> TreeDecode {
        TreeDecode { state: Mutex::new(State { dec: TreeDecoder::new(), info: None }) }
    }

    /// Plans from FlashInfer's paged-KV CSR arrays; returns the query rows the plan expects.
    /// `min_shared`: the tree plans' `PlanOptions::min_shared` (0 shares every node).
    #[pyo3(signature = (indptr, indices, last_page_len, num_qo_heads, num_kv_heads, head_dim,
        page_size, q_rows=None, kind="tree", max_chunk=None, units=None, num_pages=None,
        device_ordinal=None, stream=0, min_shared=0))]
    #[allow(clippy::too_many_arguments)]
    fn plan(
        &self,
        py: Python<'_>,
        indptr: &Bound<'_, PyAny>,
        indices: &Bound<'_, PyAny>,
        last_page_len: &Bound<'_, PyAny>,
        num_qo_heads: usize,
        num_kv_heads: usize,
        head_dim: usize,
        page_size: u32,
        q_rows: Option<&Bound<'_, PyAny>>,
        kind: &str,
        max_chunk: Option<u32>,
        units: Option<u32>,
        num_pages: Option<usize>,
        device_ordinal: Option<usize>,
        stream: usize,
        min_shared: u32,
    ) -> Result<usize> {
        let kind = plan_kind(kind, max_chunk, units)?;
        let indptr = host_i32(indptr, "indptr")?;
        let indices = host_i32(indices, "indices")?;
        let last = host_i32(last_page_len, "last_page_len")?;
        let q_rows = q_rows_of(q_rows)?;
        let forest = guarded(|| {
            Ok(CsrForest::from_csr(page_size, &indptr, &indices, &last, q_rows.as_deref())?)
        })?;
        let max_page = indices.iter().copied().max().unwrap_or(0).max(0) as usize;
        let num_pages = num_pages.unwrap_or(max_page + 1);
        let h = Heads { num_qo_heads, num_kv_heads, head_dim };
        let loc = loc_of(device_ordinal);
        let (view, leaves) = (forest.view(), forest.leaves());
        self.plan_view(py, &view, leaves, kind, min_shared, &h, num_pages, loc, stream)
    }

    /// Plans for the paths ending at `leaves` of `cache`; returns the query rows.
    #[pyo3(signature = (cache, leaves, num_qo_heads, num_kv_heads, head_dim, q_rows=None,
        kind="tree", max_chunk=None, units=None, device_ordinal=None, stream=0, min_shared=0))]
    #[allow(clippy::too_many_arguments)]
    fn plan_from_cache(
        &self,
        py: Python<'_>,
        cache: PyRef<'_, TreeKvCache>,
        leaves: Vec<u64>,
        num_qo_heads: usize,
        num_kv_heads: usize,
        head_dim: usize,
        q_rows: Option<&Bound<'_, PyAny>>,
        kind: &str,
        max_chunk: Option<u32>,
        units: Option<u32>,
        device_ordinal: Option<usize>,
        stream: usize,
        min_shared: u32,
    ) -> Result<usize> {
        let kind = plan_kind(kind, max_chunk, units)?;
        let q_rows = q_rows_of(q_rows)?;
        let cv = cache.view(&leaves, q_rows.as_deref())?;
        let nodes: &[NodeKv] = &cv.nodes;
        let view = TreeKvView { page_size: cv.page_size, nodes, page_ids: &cv.page_ids };
        let h = Heads { num_qo_heads, num_kv_heads, head_dim };
        let loc = loc_of(device_ordinal);
        self.plan_view(py, &view, &cv.leaves, kind, min_shared, &h, cv.num_pages, loc, stream)
    }

    /// `(rows, num_qo_heads, num_kv_heads, head_dim, page_size, num_pages)` of the current
    /// plan, or None.
    fn plan_info(&self, py: Python<'_>) -> Result<Option<PlanTuple>> {
        let info = py.detach(|| self.lock().map(|s| s.info))?;
        Ok(info.map(|i| {
            (i.rows, i.num_qo_heads, i.num_kv_heads, i.head_dim, i.page_size, i.num_pages)
        }))
    }

    /// One layer: writes `out [rows, H_q, D]` and, if given, the natural-log `lse [rows, H_q]`
    /// in place. `kv` is the paged cache (or K of a `(k, v)` pair given as `v`).
    #[pyo3(signature = (q, kv, out, v=None, lse=None, kv_layout="NHD", layer=0, sm_scale=None,
        stream=0))]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        py: Python<'_>,
        q: &Bound<'_, PyAny>,
        kv: &Bound<'_, PyAny>,
        out: &Bound<'_, PyAny>,
        v: Option<&Bound<'_, PyAny>>,
        lse: Option<&Bound<'_, PyAny>>,
        kv_layout: &str,
        layer: usize,
        sm_scale: Option<f64>,
        stream: usize,
    ) -> Result<()> {
        let order = Order::parse(kv_layout)?;
        let pair = v.is_some_and(|v| !v.is_none());
        let q = Tensor::import(q, "q", stream)?;
        let kv = Tensor::import(kv, if pair { "k_cache" } else { "paged_kv_cache" }, stream)?;
        let v = import_opt(v, "v_cache", stream)?;
        let out = Tensor::import(out, "out", stream)?;
        let lse = import_opt(lse, "lse", stream)?;
        let mut all = vec![&q, &kv, &out];
        all.extend(v.as_ref());
        all.extend(lse.as_ref());
        let loc = same_loc(&all)?;
        let info = py
            .detach(|| self.lock().map(|s| s.info))?
            .ok_or_else(|| Error::Runtime("TreeDecode.run() called before plan()".into()))?;
        if loc != info.loc {
            return value_err!("the plan was made for {} but the tensors are on {loc}", info.loc);
        }
        let dt = q.float_dtype()?;
        let (rows, hq, d) = (info.rows, info.num_qo_heads, info.head_dim);
        q.require_shape(&[rows, hq, d], "[rows of the plan, num_qo_heads, head_dim]")?;
        out.require_shape(&[rows, hq, d], "the shape of q")?;
        for t in [&kv, &out].into_iter().chain(v.as_ref()) {
            if t.float_dtype()? != dt {
                return crate::errors::type_err!(
                    "{}: dtype {} differs from q's {}",
                    t.name,
                    t.dtype,
                    q.dtype
                );
            }
        }
        if let Some(l) = &lse {
            l.require_dtype(DType::F32)?;
            l.require_shape(&[rows, hq], "[rows, num_qo_heads]")?;
            l.require_contiguous()?;
            l.require_writable()?;
        }
        for t in [&q, &out] {
            t.require_contiguous()?;
        }
        out.require_writable()?;
        let mut layout = derive(&kv, v.as_ref(), order)?;
        let got = (layout.num_kv_heads, layout.page_size, layout.head_dim);
        let want = (info.num_kv_heads, info.page_size, info.head_dim);
        if got != want {
            return value_err!(
                "{}: (num_kv_heads, page_size, head_dim) = {got:?} but the plan was made for \
                 {want:?} ({} layout)",
                kv.name,
                kv_layout
            );
        }
        if layout.num_pages < info.num_pages {
            return value_err!(
                "{}: holds {} pages but the plan addresses {} (num_pages)",
                kv.name,
                layout.num_pages,
                info.num_pages
            );
        }
        if layer >= layout.num_layers {
            return value_err!("layer = {layer} but the cache holds {} layers", layout.num_layers);
        }
        // Only the planned pages are addressed (page ids < num_pages were checked at plan).
        layout.num_pages = info.num_pages;
        let outs: Vec<&Tensor> = std::iter::once(&out).chain(lse.as_ref()).collect();
        check_disjoint(&outs, &all)?;
        let dev = device_for(loc, stream)?;
        let scale = sm_scale.unwrap_or(1.0 / (d as f64).sqrt()) as f32;
        let io = RunIo { q: &q, kv: &kv, out: &out, lse: lse.as_ref(), layer, scale };
        with_float!(dt, run_typed(self, py, &dev, &io, &layout))
    }
}

struct RunIo<'a> {
    q: &'a Tensor,
    kv: &'a Tensor,
    out: &'a Tensor,
    lse: Option<&'a Tensor>,
    layer: usize,
    scale: f32,
}

fn run_typed<T: FloatElement>(
    this: &TreeDecode,
    py: Python<'_>,
    dev: &Device,
    io: &RunIo<'_>,
    layout: &treepo_kernels::ops::PagedKvLayout,
) -> Result<()> {
    let kv_len = layout.required_len()?;
    // SAFETY: q and out are contiguous (exactly `numel` elements); the cache's layout was read
    // from the tensor's own shape and strides (a pair: from two views the Python layer checked
    // to share one allocation), so `kv_len` elements from its start stay inside it; out and lse
    // are disjoint from every input. The tensors outlive the buffers.
    let (qb, kvb) =
        unsafe { (io.q.buffer::<T>(dev, io.q.numel())?, io.kv.buffer::<T>(dev, kv_len)?) };
    // SAFETY: as above.
    let mut ob = unsafe { io.out.buffer::<T>(dev, io.out.numel()) }?;
    let mut lb = match io.lse {
        // SAFETY: as above.
        Some(l) => Some(unsafe { l.buffer::<f32>(dev, l.numel()) }?),
        None => None,
    };
    let (layer, scale) = (io.layer, io.scale);
    py.detach(|| {
        guarded(|| {
            let mut st = this.lock()?;
            let lse = lb.as_mut().map(|b| b.view_mut());
            st.dec.run(dev, qb.view(), kvb.view(), layout, layer, scale, ob.view_mut(), lse)?;
            Ok(())
        })
    })
}

/// Registers `TreeDecode`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TreeDecode>()?;
    Ok(())
}
