//! Validated device index tables of the decode attention ops — the one validation boundary of
//! [`paged_decode`](super::paged_decode), [`tree_decode`](super::tree_decode) and
//! [`merge_states`](super::merge_states).
//!
//! Each table is built from plain host `i32` arrays (what a planner or an engine produces),
//! checked once on upload, and stored as ONE device buffer of `i32` with sections (one binding on
//! wgpu, whose default limit is 8 storage buffers per shader). The kernels then trust every value:
//! page ids are below the pool size, CSR offsets are monotone, every output slot is written
//! exactly once.
//!
//! | type | sections (in order) | used by |
//! |---|---|---|
//! | [`PageTable`] | `indptr [S+1]`, `indices [nnz]`, `last_page_len [S]`, `q_indptr [S+1]` | `paged_decode` |
//! | [`DecodePlanBuffers`] | `page_indices [P]`, `work [W×8]` ([`WorkItem`]), `q_pos [R]` + a [`MergeRows`] | `tree_decode`, `merge_states` |
//! | [`MergeRows`] | `indptr [R+1]`, `out_rows [R]` | `merge_states` |

use crate::{Buffer, Device, KernelError, Result};

/// Shape and scaling of one decode-attention call (head counts and head size of the cache come
/// from its [`PagedKvLayout`](super::PagedKvLayout)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecodeParams {
    /// Query/output heads; a multiple of the layout's `num_kv_heads` (GQA).
    pub num_qo_heads: usize,
    /// The cache layer to read.
    pub layer: usize,
    /// Softmax scale applied to `q·k` (usually `1/sqrt(head_dim)`).
    pub sm_scale: f32,
}

/// One unit of `tree_decode` work: the query rows `[row_begin, row_end)` (plan order) attend to
/// the KV tokens at absolute positions `[kv_start, kv_end)`, which live in the pages
/// `page_indices[page_begin..page_end]` (token `kv_start + i` in page `i / page_size`, slot
/// `i % page_size`). Each row's result is the partial state number `slot` of that row. `node`
/// is informational (the planner's node id, or -1) and never read by a kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct WorkItem {
    /// First page (index into the page list).
    pub page_begin: i32,
    /// One past the last page; exactly `ceil((kv_end - kv_start) / page_size)` pages.
    pub page_end: i32,
    /// Absolute position of the first token.
    pub kv_start: i32,
    /// One past the absolute position of the last token.
    pub kv_end: i32,
    /// First query row (plan order).
    pub row_begin: i32,
    /// One past the last query row.
    pub row_end: i32,
    /// Which of each row's partial states this item produces.
    pub slot: i32,
    /// The planner's node id (informational).
    pub node: i32,
}

/// `i32` words per [`WorkItem`] on the device.
pub const WORK_ITEM_WORDS: usize = 8;

fn invalid(op: &'static str, msg: String) -> KernelError {
    KernelError::Invalid { op, msg }
}

fn to_i32(op: &'static str, what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| invalid(op, format!("{what} = {v} exceeds i32")))
}

/// Writes `words` to the front of `buf`, replacing it when too small (the kernels find the
/// sections at offsets derived from the table's counts, so a longer buffer is fine).
fn store(dev: &Device, buf: &mut Buffer<i32>, words: &[i32]) -> Result<()> {
    if words.len() <= buf.len() && buf.backend() == dev.kind() {
        if !words.is_empty() {
            dev.write(buf.slice_mut(0..words.len())?, words)?;
        }
    } else {
        *buf = dev.upload(words)?;
    }
    Ok(())
}

/// Checks a CSR offset array: length `n + 1`, starts at 0, never decreases; returns the total.
fn check_indptr(op: &'static str, name: &str, indptr: &[i32], n: usize) -> Result<usize> {
    crate::ensure!(
        indptr.len() == n + 1,
        op,
        "`{name}` has {} entries but {n} rows need {}",
        indptr.len(),
        n + 1
    );
    crate::ensure!(indptr[0] == 0, op, "`{name}[0]` = {} must be 0", indptr[0]);
    for (i, w) in indptr.windows(2).enumerate() {
        crate::ensure!(
            w[1] >= w[0],
            op,
            "`{name}` is not monotone: [{i}] = {} > [{}] = {}",
            w[0],
            i + 1,
            w[1]
        );
    }
    Ok(indptr[n] as usize)
}

/// Checks that `rows` is a permutation of `0..rows.len()`.
fn check_permutation(op: &'static str, name: &str, rows: &[i32]) -> Result<()> {
    let mut seen = vec![false; rows.len()];
    for (i, &r) in rows.iter().enumerate() {
        crate::ensure!(
            r >= 0 && (r as usize) < rows.len(),
            op,
            "`{name}[{i}]` = {r} is outside [0, {})",
            rows.len()
        );
        crate::ensure!(!seen[r as usize], op, "`{name}` maps two rows to output row {r}");
        seen[r as usize] = true;
    }
    Ok(())
}

/// The partial states of each output row for [`merge_states`](super::merge_states): row `r`
/// (in state order) owns states `indptr[r]..indptr[r+1]` and is written to output row
/// `out_rows[r]` (a permutation; identity when not given).
#[derive(Debug)]
pub struct MergeRows {
    buf: Buffer<i32>,
    num_rows: usize,
    num_states: usize,
    max_count: usize,
}

impl MergeRows {
    const OP: &'static str = "merge_rows";

    /// Uploads after checking `indptr` (monotone from 0, `num_rows + 1` entries) and `out_rows`
    /// (a permutation of `0..num_rows`).
    pub fn upload(dev: &Device, indptr: &[i32], out_rows: Option<&[i32]>) -> Result<MergeRows> {
        let mut words = Vec::new();
        let (num_rows, num_states, max_count) = Self::build(indptr, out_rows, &mut words)?;
        Ok(MergeRows { buf: dev.upload(&words)?, num_rows, num_states, max_count })
    }

    /// [`upload`](Self::upload) into this table's device buffer (reallocated only when too
    /// small). Invalid input is rejected before anything changes.
    pub fn update(&mut self, dev: &Device, indptr: &[i32], out_rows: Option<&[i32]>) -> Result<()> {
        self.update_with(dev, indptr, out_rows, &mut Vec::new())
    }

    fn update_with(
        &mut self,
        dev: &Device,
        indptr: &[i32],
        out_rows: Option<&[i32]>,
        words: &mut Vec<i32>,
    ) -> Result<()> {
        let (num_rows, num_states, max_count) = Self::build(indptr, out_rows, words)?;
        store(dev, &mut self.buf, words)?;
        (self.num_rows, self.num_states, self.max_count) = (num_rows, num_states, max_count);
        Ok(())
    }

    /// Checks the arrays and lays out the device words; returns (rows, states, max count).
    fn build(
        indptr: &[i32],
        out_rows: Option<&[i32]>,
        words: &mut Vec<i32>,
    ) -> Result<(usize, usize, usize)> {
        crate::ensure!(!indptr.is_empty(), Self::OP, "`indptr` must hold at least one entry");
        let num_rows = indptr.len() - 1;
        let num_states = check_indptr(Self::OP, "indptr", indptr, num_rows)?;
        to_i32(Self::OP, "rows", num_rows)?;
        words.clear();
        words.extend_from_slice(indptr);
        match out_rows {
            Some(rows) => {
                crate::ensure!(
                    rows.len() == num_rows,
                    Self::OP,
                    "`out_rows` has {} entries but `indptr` describes {num_rows} rows",
                    rows.len()
                );
                check_permutation(Self::OP, "out_rows", rows)?;
                words.extend_from_slice(rows);
            }
            None => words.extend(0..num_rows as i32),
        }
        let max_count = indptr.windows(2).map(|w| (w[1] - w[0]) as usize).max().unwrap_or(0);
        Ok((num_rows, num_states, max_count))
    }

    /// Output rows.
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }
    /// Partial states in all (`indptr[num_rows]`).
    pub fn num_states(&self) -> usize {
        self.num_states
    }
    /// The largest number of states of one row.
    pub fn max_count(&self) -> usize {
        self.max_count
    }
    pub(crate) fn buffer(&self) -> &Buffer<i32> {
        &self.buf
    }
    /// Element offset of the `out_rows` section.
    pub(crate) fn rows_offset(&self) -> usize {
        self.num_rows + 1
    }
}

/// Host arrays of a FlashInfer-style CSR page table with query rows, for [`PageTable::upload`].
#[derive(Clone, Copy, Debug)]
pub struct PageTableHost<'a> {
    /// Tokens per page (a power of two).
    pub page_size: usize,
    /// `[S+1]`: sequence `s` owns pages `indices[indptr[s]..indptr[s+1]]` (at least one).
    pub indptr: &'a [i32],
    /// Page ids, each below the pool size.
    pub indices: &'a [i32],
    /// `[S]`: tokens in each sequence's last page, in `[1, page_size]`.
    pub last_page_len: &'a [i32],
    /// `[S+1]`: sequence `s` owns query rows `q_indptr[s]..q_indptr[s+1]`, which are its LAST
    /// positions (their K/V already appended); causal among themselves.
    pub q_indptr: &'a [i32],
}

/// A validated CSR page table on the device (see [`PageTableHost`]).
#[derive(Debug)]
pub struct PageTable {
    buf: Buffer<i32>,
    page_size: usize,
    num_pages: usize,
    num_seqs: usize,
    num_rows: usize,
    nnz: usize,
}

impl PageTable {
    const OP: &'static str = "page_table";

    /// Uploads after checking: `page_size` a power of two; both indptrs monotone from 0;
    /// `indptr[S] == indices.len()`; every sequence has at least one page; every page id in
    /// `[0, num_pages)`; `1 <= last_page_len <= page_size`; each sequence's query rows fit
    /// in its length.
    pub fn upload(dev: &Device, t: &PageTableHost<'_>, num_pages: usize) -> Result<PageTable> {
        let op = Self::OP;
        crate::ensure!(
            t.page_size.is_power_of_two(),
            op,
            "page_size = {} must be a power of two",
            t.page_size
        );
        let s = t.last_page_len.len();
        let nnz = check_indptr(op, "indptr", t.indptr, s)?;
        crate::ensure!(
            nnz == t.indices.len(),
            op,
            "`indptr[{s}]` = {nnz} but `indices` holds {}",
            t.indices.len()
        );
        let num_rows = check_indptr(op, "q_indptr", t.q_indptr, s)?;
        if let Some((i, v)) =
            t.indices.iter().enumerate().find(|(_, v)| **v < 0 || **v as usize >= num_pages)
        {
            return Err(invalid(op, format!("`indices[{i}]` = {v} is outside [0, {num_pages})")));
        }
        for b in 0..s {
            let pages = (t.indptr[b + 1] - t.indptr[b]) as usize;
            let last = t.last_page_len[b];
            crate::ensure!(pages >= 1, op, "sequence {b} has no page");
            crate::ensure!(
                last >= 1 && last as usize <= t.page_size,
                op,
                "`last_page_len[{b}]` = {last} is outside [1, page_size = {}]",
                t.page_size
            );
            let len = (pages - 1) * t.page_size + last as usize;
            let rows = (t.q_indptr[b + 1] - t.q_indptr[b]) as usize;
            crate::ensure!(
                rows <= len,
                op,
                "sequence {b} has {rows} query rows but only {len} tokens"
            );
            to_i32(op, "sequence length", len)?;
        }
        let mut words = Vec::with_capacity(3 * s + 2 + nnz);
        words.extend_from_slice(t.indptr);
        words.extend_from_slice(t.indices);
        words.extend_from_slice(t.last_page_len);
        words.extend_from_slice(t.q_indptr);
        Ok(PageTable {
            buf: dev.upload(&words)?,
            page_size: t.page_size,
            num_pages,
            num_seqs: s,
            num_rows,
            nnz,
        })
    }

    /// Tokens per page.
    pub fn page_size(&self) -> usize {
        self.page_size
    }
    /// Every page id is below this.
    pub fn num_pages(&self) -> usize {
        self.num_pages
    }
    /// Sequences.
    pub fn num_seqs(&self) -> usize {
        self.num_seqs
    }
    /// Query rows in all.
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }
    pub(crate) fn buffer(&self) -> &Buffer<i32> {
        &self.buf
    }
    /// Element offsets of the sections (indptr, indices, last_page_len, q_indptr).
    pub(crate) fn sections(&self) -> [usize; 4] {
        let s = self.num_seqs;
        [0, s + 1, s + 1 + self.nnz, 2 * s + 1 + self.nnz]
    }
}

/// Host arrays of a tree-decode plan, for [`DecodePlanBuffers::upload`] (a planner such as
/// `tree_attn::plan` produces them).
#[derive(Clone, Copy, Debug)]
pub struct DecodeWorkHost<'a> {
    /// Tokens per page (a power of two).
    pub page_size: usize,
    /// Page ids the work items index into.
    pub page_indices: &'a [i32],
    /// The work list.
    pub work: &'a [WorkItem],
    /// `[R]`: absolute position of each query row (plan order); a row sees keys at positions
    /// `<= q_pos[r]`.
    pub q_pos: &'a [i32],
    /// `[R]`: the q/out row of each plan row (a permutation).
    pub row_to_q: &'a [i32],
    /// `[R+1]`: plan row `r` owns partial states `partial_indptr[r]..partial_indptr[r+1]`
    /// (at least one). A row with exactly one is written straight to the output.
    pub partial_indptr: &'a [i32],
}

/// A validated tree-decode plan on the device: work list, page list and query positions, plus
/// the [`MergeRows`] that combine the partial states.
#[derive(Debug)]
pub struct DecodePlanBuffers {
    buf: Buffer<i32>,
    merge: MergeRows,
    page_size: usize,
    num_pages: usize,
    num_pages_listed: usize,
    num_work: usize,
    max_item_rows: usize,
    /// Host scratch of [`update`](Self::update): the coverage bitmap and the device words.
    scratch: (Vec<bool>, Vec<i32>),
}

impl DecodePlanBuffers {
    const OP: &'static str = "decode_plan";

    /// Uploads after checking every invariant the kernels rely on: page ids in
    /// `[0, num_pages)`; each work item's page range inside the list and exactly covering its
    /// tokens; `0 <= kv_start <= kv_end`; a non-empty row range inside `[0, R)`; `q_pos >= 0`;
    /// `row_to_q` a permutation; `partial_indptr` monotone from 0 with at least one state per
    /// row; and every (row, slot) pair below the row's state count written by exactly one item.
    pub fn upload(
        dev: &Device,
        h: &DecodeWorkHost<'_>,
        num_pages: usize,
    ) -> Result<DecodePlanBuffers> {
        let mut written = Vec::new();
        let max_item_rows = check_plan(h, num_pages, &mut written)?;
        let merge = MergeRows::upload(dev, h.partial_indptr, Some(h.row_to_q))?;
        let mut words = Vec::new();
        plan_words(h, &mut words)?;
        Ok(DecodePlanBuffers {
            buf: dev.upload(&words)?,
            merge,
            page_size: h.page_size,
            num_pages,
            num_pages_listed: h.page_indices.len(),
            num_work: h.work.len(),
            max_item_rows,
            scratch: (written, words),
        })
    }

    /// [`upload`](Self::upload) into this plan's device buffers — reallocated only when too
    /// small — reusing its host scratch: a decode loop calls this once per step. Invalid input
    /// is rejected before anything changes.
    pub fn update(&mut self, dev: &Device, h: &DecodeWorkHost<'_>, num_pages: usize) -> Result<()> {
        let (mut written, mut words) = std::mem::take(&mut self.scratch);
        let r = self.update_with(dev, h, num_pages, &mut written, &mut words);
        self.scratch = (written, words);
        r
    }

    fn update_with(
        &mut self,
        dev: &Device,
        h: &DecodeWorkHost<'_>,
        num_pages: usize,
        written: &mut Vec<bool>,
        words: &mut Vec<i32>,
    ) -> Result<()> {
        let max_item_rows = check_plan(h, num_pages, written)?;
        self.merge.update_with(dev, h.partial_indptr, Some(h.row_to_q), words)?;
        plan_words(h, words)?;
        store(dev, &mut self.buf, words)?;
        self.page_size = h.page_size;
        self.num_pages = num_pages;
        self.num_pages_listed = h.page_indices.len();
        self.num_work = h.work.len();
        self.max_item_rows = max_item_rows;
        Ok(())
    }

    /// Tokens per page.
    pub fn page_size(&self) -> usize {
        self.page_size
    }
    /// Every page id is below this.
    pub fn num_pages(&self) -> usize {
        self.num_pages
    }
    /// Work items.
    pub fn num_work(&self) -> usize {
        self.num_work
    }
    /// Query rows.
    pub fn num_rows(&self) -> usize {
        self.merge.num_rows()
    }
    /// Partial states in all (rows × their state counts).
    pub fn num_partials(&self) -> usize {
        self.merge.num_states()
    }
    /// The largest row range of one work item.
    pub fn max_item_rows(&self) -> usize {
        self.max_item_rows
    }
    /// The per-row state index, for [`merge_states`](super::merge_states).
    pub fn merge_rows(&self) -> &MergeRows {
        &self.merge
    }
    /// Whether every row has exactly one state (all outputs are written by `tree_decode`; no
    /// merge is needed).
    pub fn all_single(&self) -> bool {
        self.merge.max_count() <= 1
    }
    pub(crate) fn buffer(&self) -> &Buffer<i32> {
        &self.buf
    }
    /// Element offsets of the sections (page_indices, work, q_pos).
    pub(crate) fn sections(&self) -> [usize; 3] {
        let w = self.num_pages_listed;
        [0, w, w + self.num_work * WORK_ITEM_WORDS]
    }
}

/// The checks of [`DecodePlanBuffers::upload`]; returns the largest item row range.
fn check_plan(h: &DecodeWorkHost<'_>, num_pages: usize, written: &mut Vec<bool>) -> Result<usize> {
    let op = DecodePlanBuffers::OP;
    crate::ensure!(
        h.page_size.is_power_of_two(),
        op,
        "page_size = {} must be a power of two",
        h.page_size
    );
    let rows = h.q_pos.len();
    crate::ensure!(
        h.row_to_q.len() == rows,
        op,
        "`row_to_q` has {} entries but `q_pos` {rows}",
        h.row_to_q.len()
    );
    let states = check_indptr(op, "partial_indptr", h.partial_indptr, rows)?;
    if let Some((r, _)) = h.partial_indptr.windows(2).enumerate().find(|(_, w)| w[1] == w[0]) {
        return Err(invalid(op, format!("row {r} has no partial state")));
    }
    check_permutation(op, "row_to_q", h.row_to_q)?;
    if let Some((r, p)) = h.q_pos.iter().enumerate().find(|(_, p)| **p < 0) {
        return Err(invalid(op, format!("`q_pos[{r}]` = {p} is negative")));
    }
    if let Some((i, v)) =
        h.page_indices.iter().enumerate().find(|(_, v)| **v < 0 || **v as usize >= num_pages)
    {
        return Err(invalid(op, format!("`page_indices[{i}]` = {v} is outside [0, {num_pages})")));
    }
    written.clear();
    written.resize(states, false);
    let mut max_item_rows = 0usize;
    for (i, w) in h.work.iter().enumerate() {
        check_item(op, i, w, h, rows, written)?;
        max_item_rows = max_item_rows.max((w.row_end - w.row_begin) as usize);
    }
    if let Some(p) = written.iter().position(|w| !w) {
        let r = h.partial_indptr.partition_point(|&x| x as usize <= p) - 1;
        let slot = p - h.partial_indptr[r] as usize;
        return Err(invalid(op, format!("partial slot {slot} of row {r} is never written")));
    }
    Ok(max_item_rows)
}

/// The device words of a plan: `page_indices | work | q_pos`.
fn plan_words(h: &DecodeWorkHost<'_>, words: &mut Vec<i32>) -> Result<()> {
    words.clear();
    words.extend_from_slice(h.page_indices);
    words.extend_from_slice(bytemuck::cast_slice(h.work));
    words.extend_from_slice(h.q_pos);
    to_i32(DecodePlanBuffers::OP, "plan words", words.len())?;
    Ok(())
}

fn check_item(
    op: &'static str,
    i: usize,
    w: &WorkItem,
    h: &DecodeWorkHost<'_>,
    rows: usize,
    written: &mut [bool],
) -> Result<()> {
    let listed = h.page_indices.len();
    crate::ensure!(
        0 <= w.page_begin && w.page_begin <= w.page_end && w.page_end as usize <= listed,
        op,
        "work item {i}: pages [{}, {}) are outside the page list [0, {listed})",
        w.page_begin,
        w.page_end
    );
    crate::ensure!(
        0 <= w.kv_start && w.kv_start <= w.kv_end,
        op,
        "work item {i}: tokens [{}, {}) are not a valid range",
        w.kv_start,
        w.kv_end
    );
    let need = ((w.kv_end - w.kv_start) as usize).div_ceil(h.page_size);
    crate::ensure!(
        (w.page_end - w.page_begin) as usize == need,
        op,
        "work item {i}: {} tokens need {need} pages but {} are listed",
        w.kv_end - w.kv_start,
        w.page_end - w.page_begin
    );
    crate::ensure!(
        0 <= w.row_begin && w.row_begin < w.row_end && w.row_end as usize <= rows,
        op,
        "work item {i}: rows [{}, {}) are empty or outside [0, {rows})",
        w.row_begin,
        w.row_end
    );
    crate::ensure!(w.slot >= 0, op, "work item {i}: slot {} is negative", w.slot);
    for r in w.row_begin as usize..w.row_end as usize {
        let (b, e) = (h.partial_indptr[r], h.partial_indptr[r + 1]);
        crate::ensure!(
            w.slot < e - b,
            op,
            "work item {i}: slot {} but row {r} has {} partial states",
            w.slot,
            e - b
        );
        let p = (b + w.slot) as usize;
        crate::ensure!(
            !written[p],
            op,
            "work item {i}: slot {} of row {r} is written twice",
            w.slot
        );
        written[p] = true;
    }
    Ok(())
}
