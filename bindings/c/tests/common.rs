//! Shared fixtures: a small forest with a shared prefix, random data, a dense f64 reference,
//! and thin wrappers over the C functions.

use std::ffi::{CStr, c_void};
use std::ptr::{null, null_mut};

use treepo::*;

/// The message of the last failed call on this thread.
pub fn last_error() -> String {
    // SAFETY: treepo_last_error never returns null; the string is valid until the next call.
    unsafe { CStr::from_ptr(treepo_last_error()) }.to_string_lossy().into_owned()
}

/// Asserts `status` is `want` and the last error contains `fragment`; returns the message.
#[track_caller]
pub fn expect_err(status: TreepoStatus, want: TreepoStatus, fragment: &str) -> String {
    let msg = last_error();
    assert_eq!(status, want, "message: {msg}");
    assert!(msg.contains(fragment), "message {msg:?} lacks {fragment:?}");
    msg
}

/// Asserts success (with the message otherwise).
#[track_caller]
pub fn ok(status: TreepoStatus) {
    assert_eq!(status, TreepoStatus::Ok, "{}", last_error());
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Block tables of a forest: sequences 0 and 1 share two full pages (an 8-token prefix),
/// sequence 2 shares the first page only, sequence 3 is its own root. Pages are shuffled and
/// some are spare.
#[derive(Clone, Debug)]
pub struct Forest {
    pub indptr: Vec<i32>,
    pub indices: Vec<i32>,
    pub last_page_len: Vec<i32>,
    pub q_rows: Option<Vec<i32>>,
    pub num_qo_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub page_size: usize,
    pub num_pages: usize,
}

pub fn forest() -> Forest {
    Forest {
        indptr: vec![0, 3, 6, 8, 9],
        indices: vec![5, 1, 2, 5, 1, 3, 5, 6, 0],
        last_page_len: vec![3, 4, 2, 1],
        q_rows: None,
        num_qo_heads: 4,
        num_kv_heads: 2,
        head_dim: 8,
        page_size: 4,
        num_pages: 8,
    }
}

impl Forest {
    pub fn batch(&self) -> usize {
        self.last_page_len.len()
    }
    pub fn seq_len(&self, b: usize) -> usize {
        let pages = (self.indptr[b + 1] - self.indptr[b]) as usize;
        (pages - 1) * self.page_size + self.last_page_len[b] as usize
    }
    pub fn q_rows_of(&self, b: usize) -> usize {
        self.q_rows.as_ref().map_or(1, |r| r[b] as usize)
    }
    pub fn rows(&self) -> usize {
        (0..self.batch()).map(|b| self.q_rows_of(b)).sum()
    }
    /// `treepo_decoder_plan` with these tables.
    pub fn plan(
        &self,
        dec: *mut TreepoDecoder,
        dev: *const TreepoDevice,
        kind: i32,
        arg: u32,
    ) -> TreepoStatus {
        let q_rows = self.q_rows.as_ref().map_or(null(), |r| r.as_ptr());
        // SAFETY: every array is valid for the length passed.
        unsafe {
            treepo_decoder_plan(
                dec,
                dev,
                self.indptr.as_ptr(),
                self.batch(),
                self.indices.as_ptr(),
                self.indices.len(),
                self.last_page_len.as_ptr(),
                q_rows,
                self.num_qo_heads,
                self.num_kv_heads,
                self.head_dim,
                self.page_size,
                self.num_pages,
                kind,
                arg,
            )
        }
    }
    /// A layout of `kind` for `layers` layers of this forest's cache.
    pub fn layout(&self, kind: TreepoKvLayoutKind, layers: usize) -> TreepoKvLayout {
        let mut l = std::mem::MaybeUninit::<TreepoKvLayout>::uninit();
        // SAFETY: `l` is writable.
        ok(unsafe {
            treepo_kv_layout(
                kind as i32,
                layers,
                self.num_pages,
                self.num_kv_heads,
                self.page_size,
                self.head_dim,
                l.as_mut_ptr(),
            )
        });
        // SAFETY: initialized by the successful call.
        unsafe { l.assume_init() }
    }
    /// Dense f64 reference of one layer: (out, lse) in row order (sequences in batch order,
    /// each one's query rows in position order, causal among themselves).
    pub fn reference(
        &self,
        l: &TreepoKvLayout,
        kv: &[f32],
        q: &[f32],
        layer: usize,
        sm_scale: f32,
    ) -> (Vec<f32>, Vec<f32>) {
        let (hq, d) = (self.num_qo_heads, self.head_dim);
        let group = hq / self.num_kv_heads;
        let at = |page: usize, kvi: usize, h: usize, tok: usize, x: usize| {
            kv[layer * l.stride_layer
                + page * l.stride_page
                + kvi * l.stride_kv
                + h * l.stride_head
                + tok * l.stride_token
                + x] as f64
        };
        let (mut out, mut lse) = (Vec::new(), Vec::new());
        let mut row = 0;
        for b in 0..self.batch() {
            let (len, k) = (self.seq_len(b), self.q_rows_of(b));
            let page_of =
                |t: usize| self.indices[self.indptr[b] as usize + t / self.page_size] as usize;
            for j in 0..k {
                let pos = len - k + j;
                for h in 0..hq {
                    let qv = &q[(row * hq + h) * d..][..d];
                    let kh = h / group;
                    let s: Vec<f64> = (0..=pos)
                        .map(|t| {
                            (0..d)
                                .map(|x| {
                                    qv[x] as f64 * at(page_of(t), 0, kh, t % self.page_size, x)
                                })
                                .sum::<f64>()
                                * sm_scale as f64
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                    for x in 0..d {
                        let o: f64 = (0..=pos)
                            .map(|t| {
                                (s[t] - m).exp() * at(page_of(t), 1, kh, t % self.page_size, x)
                            })
                            .sum();
                        out.push((o / z) as f32);
                    }
                    lse.push((m + z.ln()) as f32);
                }
                row += 1;
            }
        }
        (out, lse)
    }
}

/// A CPU device handle.
pub fn cpu() -> *mut TreepoDevice {
    let mut dev = null_mut();
    // SAFETY: `dev` is writable.
    ok(unsafe { treepo_device_cpu(&mut dev) });
    dev
}

/// A new decoder handle.
pub fn decoder() -> *mut TreepoDecoder {
    let mut dec = null_mut();
    // SAFETY: `dec` is writable.
    ok(unsafe { treepo_decoder_new(&mut dec) });
    dec
}

/// Every argument of `treepo_decoder_run` as plain fields, so a test can break one of them.
pub struct Run {
    pub dtype: i32,
    pub q: *const c_void,
    pub q_len: usize,
    pub kv: *const c_void,
    pub kv_len: usize,
    pub layout: *const TreepoKvLayout,
    pub layer: usize,
    pub sm_scale: f32,
    pub out: *mut c_void,
    pub out_len: usize,
    pub lse: *mut f32,
    pub lse_len: usize,
}

impl Run {
    /// f32 arguments over the given host buffers.
    pub fn f32(
        q: &[f32],
        kv: &[f32],
        layout: &TreepoKvLayout,
        out: &mut [f32],
        lse: &mut [f32],
    ) -> Run {
        Run {
            dtype: TreepoDtype::F32 as i32,
            q: q.as_ptr().cast(),
            q_len: q.len(),
            kv: kv.as_ptr().cast(),
            kv_len: kv.len(),
            layout,
            layer: 0,
            sm_scale: 0.35,
            out: out.as_mut_ptr().cast(),
            out_len: out.len(),
            lse: lse.as_mut_ptr(),
            lse_len: lse.len(),
        }
    }
    /// Calls `treepo_decoder_run`.
    pub fn call(&self, dec: *mut TreepoDecoder, dev: *const TreepoDevice) -> TreepoStatus {
        // SAFETY: the tests keep every buffer alive across the call; bad pointers are what
        // the call must reject before touching them.
        unsafe {
            treepo_decoder_run(
                dec,
                dev,
                self.dtype,
                self.q,
                self.q_len,
                self.kv,
                self.kv_len,
                self.layout,
                self.layer,
                self.sm_scale,
                self.out,
                self.out_len,
                self.lse,
                self.lse_len,
            )
        }
    }
}

/// A planned CPU decoder with valid f32 data for the forest: (dev, dec, layout, q, kv, out, lse).
pub struct Setup {
    pub forest: Forest,
    pub dev: *mut TreepoDevice,
    pub dec: *mut TreepoDecoder,
    pub layout: TreepoKvLayout,
    pub q: Vec<f32>,
    pub kv: Vec<f32>,
    pub out: Vec<f32>,
    pub lse: Vec<f32>,
}

impl Setup {
    pub fn new() -> Setup {
        let forest = forest();
        let (dev, dec) = (cpu(), decoder());
        ok(forest.plan(dec, dev, TreepoPlanKind::Tree as i32, 0));
        let layout = forest.layout(TreepoKvLayoutKind::Nhd, 1);
        let n = forest.rows() * forest.num_qo_heads * forest.head_dim;
        let mut kv_len = 0;
        // SAFETY: valid pointers.
        ok(unsafe { treepo_kv_layout_required_len(&layout, &mut kv_len) });
        let (q, kv) = (values(n, 1), values(kv_len, 2));
        let (out, lse) = (vec![0.0; n], vec![0.0; forest.rows() * forest.num_qo_heads]);
        Setup { forest, dev, dec, layout, q, kv, out, lse }
    }
    /// Valid run arguments over this setup's buffers (re-derive after moving the setup).
    pub fn run(&mut self) -> Run {
        Run::f32(&self.q, &self.kv, &self.layout, &mut self.out, &mut self.lse)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // SAFETY: live handles from treepo_*_new, not used after.
        unsafe {
            treepo_decoder_free(self.dec);
            treepo_device_free(self.dev);
        }
    }
}
