//! Copy-on-write of partial pages (vLLM `copy_blocks`).
//!
//! When the host bookkeeping (`tree-kv`'s `fork`) gives each child of a node whose last page is
//! partial a fresh page, the parent's tail rows must be copied there before the children append
//! their own tokens. [`page_copy`] executes a batch of such jobs — K and V, every head, every
//! layer — in one launch. [`PageCopyJobs`] validates the batch once on upload so that all jobs
//! can run in parallel.

use std::collections::HashMap;

use crate::device::Inner;
use crate::ops::PagedKvLayout;
use crate::ops::paged_kv_append::check_dtype;
use crate::{Buffer, Device, Element, KernelError, Result, ViewMut, cpu, validate};

const OP: &str = "page_copy";

/// A device-resident batch of copy jobs `(src, dst, rows)`: copy rows `[0, rows)` of page `src`
/// into page `dst`. Built only through [`PageCopyJobs::upload`]/[`update`](Self::update), which
/// check every job against the layout and that the jobs are independent:
///
/// - `src` and `dst` are pages of the pool (`< num_pages`), `src != dst`, `rows <= page_size`;
/// - no two jobs write the same page, and no job writes a page another job reads.
///
/// Several jobs may read the same `src` (a parent's tail copied to each of its children).
#[derive(Debug)]
pub struct PageCopyJobs {
    buf: Buffer<i32>,
    jobs: Vec<(u32, u32, u32)>,
    page_bound: usize,
    max_rows: usize,
}

impl PageCopyJobs {
    /// Validates `jobs` (each `(src, dst, rows)`, e.g. `tree-kv`'s `PageCopy` fields) against
    /// `layout` and uploads them as `i32` triples; the error names the offending job(s).
    pub fn upload(
        dev: &Device,
        jobs: &[(u32, u32, u32)],
        layout: &PagedKvLayout,
    ) -> Result<PageCopyJobs> {
        let (page_bound, max_rows, flat) = check_jobs(jobs, layout)?;
        Ok(PageCopyJobs { buf: dev.upload(&flat)?, jobs: jobs.to_vec(), page_bound, max_rows })
    }

    /// Replaces the jobs after the same checks (reusing the device buffer when the count is
    /// unchanged); on error `self` is left as it was.
    pub fn update(
        &mut self,
        dev: &Device,
        jobs: &[(u32, u32, u32)],
        layout: &PagedKvLayout,
    ) -> Result<()> {
        let (page_bound, max_rows, flat) = check_jobs(jobs, layout)?;
        if flat.len() == self.buf.len() && self.buf.backend() == dev.kind() {
            dev.write(&mut self.buf, &flat)?;
        } else {
            self.buf = dev.upload(&flat)?;
        }
        self.jobs = jobs.to_vec();
        self.page_bound = page_bound;
        self.max_rows = max_rows;
        Ok(())
    }

    /// Number of jobs.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// True when there is no job.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The jobs, as uploaded.
    pub fn jobs(&self) -> &[(u32, u32, u32)] {
        &self.jobs
    }

    /// One more than the largest page id of any job (0 when empty).
    pub fn page_bound(&self) -> usize {
        self.page_bound
    }

    /// The largest `rows` of any job (0 when empty).
    pub fn max_rows(&self) -> usize {
        self.max_rows
    }
}

/// The checks of [`PageCopyJobs`]; returns (page bound, max rows, the flat `i32` triples).
fn check_jobs(
    jobs: &[(u32, u32, u32)],
    layout: &PagedKvLayout,
) -> Result<(usize, usize, Vec<i32>)> {
    let (num_pages, page_size) = (layout.num_pages, layout.page_size);
    let mut writer: HashMap<u32, usize> = HashMap::with_capacity(jobs.len());
    for (i, &(src, dst, rows)) in jobs.iter().enumerate() {
        for (what, p) in [("src", src), ("dst", dst)] {
            crate::ensure!(
                (p as usize) < num_pages && i32::try_from(p).is_ok(),
                OP,
                "job {i} {:?}: {what} page {p} is outside the pool of {num_pages} pages",
                (src, dst, rows)
            );
        }
        crate::ensure!(
            src != dst,
            OP,
            "job {i} {:?}: copies page {src} onto itself",
            (src, dst, rows)
        );
        crate::ensure!(
            rows as usize <= page_size,
            OP,
            "job {i} {:?}: rows = {rows} exceeds page_size = {page_size}",
            (src, dst, rows)
        );
        if let Some(j) = writer.insert(dst, i) {
            return Err(KernelError::Invalid {
                op: OP,
                msg: format!(
                    "jobs {j} and {i} both write page {dst}: jobs must be independent to run in \
                     parallel"
                ),
            });
        }
    }
    for (i, &(src, _, _)) in jobs.iter().enumerate() {
        if let Some(&j) = writer.get(&src) {
            return Err(KernelError::Invalid {
                op: OP,
                msg: format!(
                    "job {j} writes page {src}, which job {i} reads: jobs must be independent \
                     to run in parallel (split them into two batches)"
                ),
            });
        }
    }
    let page_bound = jobs.iter().map(|&(s, d, _)| s.max(d) as usize + 1).max().unwrap_or(0);
    let max_rows = jobs.iter().map(|&(_, _, r)| r as usize).max().unwrap_or(0);
    let flat = jobs.iter().flat_map(|&(s, d, r)| [s as i32, d as i32, r as i32]).collect();
    Ok((page_bound, max_rows, flat))
}

/// Executes `jobs` on `cache` (laid out as `layout`): for each job, rows `[0, rows)` of page
/// `src` are copied into page `dst` for K and V, every head and every layer — one launch for
/// the whole batch. Rows `>= rows` of `dst` and every other page are left untouched.
///
/// Exact (a copy). Any [`Element`] on the CPU; f32/f16/bf16 on CUDA; f32 and (with the
/// adapter's `SHADER_F16`) f16 on wgpu; anything else is [`KernelError::UnsupportedDtype`].
/// An empty batch is a valid no-op.
pub fn page_copy<'a, T: Element>(
    dev: &Device,
    cache: impl Into<ViewMut<'a, T>>,
    layout: &PagedKvLayout,
    jobs: &PageCopyJobs,
) -> Result<()> {
    let mut cache = cache.into();
    let l = *layout;
    l.validate(cache.len())?;
    l.check_disjoint()?;
    validate::output(dev, OP, "cache", &cache, l.required_len()?)?;
    validate::input(dev, OP, "jobs", &jobs.buf.view(), 3 * jobs.len())?;
    crate::ensure!(
        jobs.page_bound <= l.num_pages,
        OP,
        "the jobs reach page {} but the layout has {} pages",
        jobs.page_bound.saturating_sub(1),
        l.num_pages
    );
    crate::ensure!(
        jobs.max_rows <= l.page_size,
        OP,
        "the jobs copy up to {} rows but page_size = {}",
        jobs.max_rows,
        l.page_size
    );
    let units = validate::product(OP, &[jobs.len(), l.num_layers])?;
    crate::ensure!(
        i32::try_from(units).is_ok(),
        OP,
        "{units} (job, layer) pairs exceed the kernels' grid (2^31 - 1)"
    );
    let tile = validate::product(OP, &[2, l.num_kv_heads, l.page_size, l.head_dim])?;
    validate::fits_u32(OP, "2*num_kv_heads*page_size*head_dim", tile)?;
    check_dtype::<T>(dev, OP)?;
    if units == 0 {
        return Ok(());
    }
    match &dev.inner {
        Inner::Cpu => {
            let need = l.required_len()?;
            cpu::page_copy::page_copy(&mut cache.cpu()[..need], &l, &jobs.jobs);
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr, addr_mut, driver_err};
            use crate::ops::paged_kv_append::{block_threads, cuda_symbol, word_bytes};
            use cudarc::driver::{LaunchConfig, PushKernelArg};
            let sym = cuda_symbol::<T>(OP)?;
            let f = b.function(OP, sym)?;
            let e = T::DTYPE.size();
            let (cp, jp) = (addr_mut(b, &mut cache), addr(b, &jobs.buf.view()));
            let strides = [
                l.head_dim,
                l.stride_layer,
                l.stride_page,
                l.stride_kv,
                l.stride_head,
                l.stride_token,
            ];
            let wb = word_bytes(e, &[cp], &strides);
            let w = |x: usize| (x * e / wb) as i64;
            let (units32, layers, heads) =
                (units as u32, l.num_layers as u32, l.num_kv_heads as u32);
            let dw = (l.head_dim * e / wb) as u32;
            let (s_layer, s_page, s_kv, s_head, s_token) = (
                w(l.stride_layer),
                w(l.stride_page),
                w(l.stride_kv),
                w(l.stride_head),
                w(l.stride_token),
            );
            let wb32 = wb as u32;
            // Walk rows inside heads when rows are the closer dimension (HND), else heads
            // inside rows (NHD): consecutive threads touch consecutive words either way.
            let token_inner = u32::from(l.stride_token <= l.stride_head);
            let cfg = LaunchConfig {
                grid_dim: (units32, 1, 1),
                block_dim: (block_threads(2 * l.num_kv_heads * jobs.max_rows * dw as usize), 1, 1),
                shared_mem_bytes: 0,
            };
            let mut launch = b.stream().launch_builder(&f);
            launch.arg(&cp).arg(&jp).arg(&units32).arg(&layers).arg(&heads).arg(&dw);
            launch.arg(&token_inner).arg(&s_layer).arg(&s_page).arg(&s_kv).arg(&s_head);
            launch.arg(&s_token).arg(&wb32);
            // SAFETY: `cache` holds the layout's required_len elements (validated); every job's
            // pages are < num_pages and rows <= page_size (checked on upload and against this
            // layout), so every address is inside; the layout is disjoint and the jobs
            // independent, so no two threads write one element nor read an element another
            // writes; the word size divides the base address and every stride; the argument
            // list matches `PAGE_COPY` in page_copy.cu.
            unsafe { launch.launch(cfg) }.map_err(|e| driver_err(sym, e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::ops::paged_kv_append::wgsl_shader;
            use crate::webgpu::{buf, buf_mut, groups_1d, sources, u32_of};
            let shader = wgsl_shader::<T>(b, &sources::PAGE_COPY, OP)?;
            let u = |what: &str, x: usize| u32_of(OP, what, x);
            u("cache offset + layout extent", cache.offset() + l.required_len()?)?;
            let params: [u32; 12] = [
                units as u32,
                l.num_layers as u32,
                l.num_kv_heads as u32,
                l.head_dim as u32,
                0,
                u("cache offset", cache.offset())?,
                0,
                u("stride_layer", l.stride_layer)?,
                u("stride_page", l.stride_page)?,
                u("stride_kv", l.stride_kv)?,
                u("stride_head", l.stride_head)?,
                u("stride_token", l.stride_token)?,
            ];
            let jobs_view = jobs.buf.view();
            b.dispatch(
                shader,
                "page_copy",
                bytemuck::cast_slice(&params),
                &[buf_mut(&cache), buf(&jobs_view)],
                groups_1d(units, 1),
            )
        }
    }
}
