//! Conformance of `ops::page_copy` and `ops::PageCopyJobs`: a TreePO fork on a shuffled pool —
//! parents with partial tail pages fork into children whose fresh pages receive the tail rows
//! (every layer, K and V, every head) in one launch, then each child appends its own next token.
//! Exact checks: copied rows equal the parent's, rows >= `rows` of each destination, every
//! source page, every spare page (sentinel) and every other element keep their bits.

// Loops over (layer, kv, head, row) coordinates index several arrays at once, like the layout.
#![allow(clippy::needless_range_loop)]

use crate::cache_common::{Sample, assert_bits, coord, runs};
use treepo_kernels::ops::{self, PageCopyJobs, PagedKvLayout};
use treepo_kernels::testing::Rng;
use treepo_kernels::{BackendKind, Buffer, Device, Indices, KernelError, bf16, f16, per_backend};

/// One test configuration.
#[derive(Clone, Copy, Debug)]
struct Case {
    nhd: bool,
    layers: usize,
    heads: usize,
    head_dim: usize,
    page_size: usize,
    /// Elements before the cache view inside its buffer.
    front: usize,
}

const CASES: &[Case] = &[
    Case { nhd: false, layers: 3, heads: 1, head_dim: 64, page_size: 16, front: 0 },
    Case { nhd: true, layers: 2, heads: 2, head_dim: 40, page_size: 8, front: 4 },
    Case { nhd: false, layers: 4, heads: 8, head_dim: 128, page_size: 16, front: 0 },
    Case { nhd: true, layers: 2, heads: 8, head_dim: 128, page_size: 16, front: 0 },
    Case { nhd: false, layers: 2, heads: 2, head_dim: 33, page_size: 4, front: 1 },
    Case { nhd: true, layers: 1, heads: 1, head_dim: 40, page_size: 2, front: 0 },
];

/// Spare pages nobody owns.
const SPARE: usize = 3;

fn forks(dev: &Device) {
    forks_t::<f32>(dev);
    forks_t::<f16>(dev);
    forks_t::<bf16>(dev);
    forks_t::<i32>(dev);
}

fn forks_t<T: Sample>(dev: &Device) {
    let page_copy_on = |cache: &mut Buffer<T>, l: &PagedKvLayout| {
        let jobs = PageCopyJobs::upload(dev, &[(0, 1, 2)], l).unwrap();
        ops::page_copy(dev, cache, l, &jobs)
    };
    if !runs::<T>(dev, "page_copy", page_copy_on) {
        return;
    }
    let mut rng = Rng::fresh(&format!("page_copy {}", T::DTYPE));
    for &case in CASES {
        fork_case::<T>(dev, case, &mut rng);
    }
}

fn fork_case<T: Sample>(dev: &Device, c: Case, rng: &mut Rng) {
    let (h, d, p) = (c.heads, c.head_dim, c.page_size);
    // Parents: lengths with a partial tail (one page-aligned parent forks without a copy),
    // each forking into 1..=3 children.
    let parents = 4;
    let lens: Vec<usize> = (0..parents)
        .map(|i| if i == 2 { 2 * p } else { (1 + rng.below(2)) * p + 1 + rng.below(p - 1) })
        .collect();
    let children: Vec<usize> = (0..parents).map(|_| 1 + rng.below(3)).collect();
    let tail = |n: usize| n % p;
    let parent_pages: usize = lens.iter().map(|n| n.div_ceil(p)).sum();
    let child_pages: usize = (0..parents).filter(|&i| tail(lens[i]) > 0).map(|i| children[i]).sum();
    let num_pages = parent_pages + child_pages + SPARE;
    let l = if c.nhd {
        PagedKvLayout::nhd(c.layers, num_pages, h, p, d)
    } else {
        PagedKvLayout::hnd(c.layers, num_pages, h, p, d)
    };
    let perm = rng.permutation(num_pages);
    let mut next = 0;
    let mut take = |k: usize| {
        let t = perm[next..next + k].to_vec();
        next += k;
        t
    };
    let tables: Vec<Vec<usize>> = lens.iter().map(|&n| take(n.div_ceil(p))).collect();
    // Each child of a parent with a partial tail gets one fresh page.
    let child_tail: Vec<Vec<usize>> = (0..parents)
        .map(|i| if tail(lens[i]) > 0 { take(children[i]) } else { Vec::new() })
        .collect();
    let spare = take(SPARE);
    // Initial buffer: old random contents everywhere (so destination rows >= `rows` hold old
    // data that must survive), the sentinel in spare pages and the margins.
    let need = l.required_len().unwrap();
    let total = c.front + need + 3;
    let mut host: Vec<T> = (0..total).map(|_| T::sample(rng)).collect();
    host[..c.front].fill(T::POISON);
    host[c.front + need..].fill(T::POISON);
    let page_elems = |host: &mut Vec<T>,
                      page: usize,
                      rows: std::ops::Range<usize>,
                      f: &mut dyn FnMut(&mut [T])| {
        for layer in 0..c.layers {
            for kv in 0..2 {
                for hh in 0..h {
                    for t in rows.clone() {
                        let o = c.front + l.offset(layer, page, kv, hh, t, 0);
                        f(&mut host[o..o + d]);
                    }
                }
            }
        }
    };
    for &page in &spare {
        page_elems(&mut host, page, 0..p, &mut |s| s.fill(T::POISON));
    }
    let mut buf = dev.upload(&host).unwrap();
    // Jobs in shuffled order: every child's fresh page receives its parent's tail rows.
    let mut jobs: Vec<(u32, u32, u32)> = Vec::new();
    for i in 0..parents {
        for &dst in &child_tail[i] {
            jobs.push((*tables[i].last().unwrap() as u32, dst as u32, tail(lens[i]) as u32));
        }
    }
    let order = rng.permutation(jobs.len());
    let jobs: Vec<(u32, u32, u32)> = order.into_iter().map(|i| jobs[i]).collect();
    let dj = PageCopyJobs::upload(dev, &jobs, &l).unwrap();
    assert_eq!(dj.len(), jobs.len());
    {
        let view = buf.slice_mut(c.front..c.front + need).unwrap();
        ops::page_copy(dev, view, &l, &dj).unwrap();
    }
    let got = dev.download(&buf).unwrap();
    let what = format!("{} {:?} {}", dev.description(), c, T::DTYPE);
    let mut model = host.clone();
    for &(src, dst, rows) in &jobs {
        for layer in 0..c.layers {
            for kv in 0..2 {
                for hh in 0..h {
                    for t in 0..rows as usize {
                        let s = c.front + l.offset(layer, src as usize, kv, hh, t, 0);
                        let o = c.front + l.offset(layer, dst as usize, kv, hh, t, 0);
                        model.copy_within(s..s + d, o);
                    }
                }
            }
        }
    }
    // A child's sequence — the parent's full pages, then its own tail page — reads back as the
    // parent's; the rows past the tail in the child's page kept their old contents.
    for i in 0..parents {
        for &dst in &child_tail[i] {
            let mut child_table = tables[i].clone();
            *child_table.last_mut().unwrap() = dst;
            for t in 0..lens[i] {
                for layer in 0..c.layers {
                    for kv in 0..2 {
                        for hh in 0..h {
                            let o = c.front + l.offset(layer, child_table[t / p], kv, hh, t % p, 0);
                            let w = c.front + l.offset(layer, tables[i][t / p], kv, hh, t % p, 0);
                            assert_bits(
                                &format!("{what}: child of parent {i} token {t} layer {layer}"),
                                &got[o..o + d],
                                &host[w..w + d],
                                |e| format!("kv {kv} head {hh} d {e}"),
                            );
                        }
                    }
                }
            }
            let mut old = Vec::new();
            let mut new = Vec::new();
            for layer in 0..c.layers {
                for kv in 0..2 {
                    for hh in 0..h {
                        for t in tail(lens[i])..p {
                            let o = c.front + l.offset(layer, dst, kv, hh, t, 0);
                            old.extend_from_slice(&host[o..o + d]);
                            new.extend_from_slice(&got[o..o + d]);
                        }
                    }
                }
            }
            assert_bits(
                &format!("{what}: rows >= {} of page {dst}", tail(lens[i])),
                &new,
                &old,
                |e| format!("element {e} of the untouched rows"),
            );
        }
    }
    // Nothing else changed: sources, spare pages (sentinel), every other page, the margins.
    assert_bits(&what, &got, &model, |e| coord(&l, c.front, e));

    // The children diverge: each appends its own next token into row `tail` of its page; the
    // parent's tail page (shared history) is never written.
    let kids: Vec<(usize, usize)> =
        (0..parents).flat_map(|i| child_tail[i].iter().map(move |&dst| (i, dst))).collect();
    if kids.is_empty() {
        return;
    }
    let slots: Vec<i32> = kids.iter().map(|&(i, dst)| (dst * p + tail(lens[i])) as i32).collect();
    let ix = Indices::upload(dev, &slots, l.num_slots()).unwrap();
    for layer in 0..c.layers {
        let kn: Vec<T> = (0..kids.len() * h * d).map(|_| T::sample(rng)).collect();
        let vn: Vec<T> = (0..kids.len() * h * d).map(|_| T::sample(rng)).collect();
        let (kb, vb) = (dev.upload(&kn).unwrap(), dev.upload(&vn).unwrap());
        let view = buf.slice_mut(c.front..c.front + need).unwrap();
        ops::paged_kv_append(dev, view, &l, layer, &kb, &vb, &ix).unwrap();
        for (j, &(i, dst)) in kids.iter().enumerate() {
            for (kv, src) in [&kn, &vn].into_iter().enumerate() {
                for hh in 0..h {
                    let o = c.front + l.offset(layer, dst, kv, hh, tail(lens[i]), 0);
                    let s = (j * h + hh) * d;
                    model[o..o + d].copy_from_slice(&src[s..s + d]);
                }
            }
        }
    }
    assert_bits(
        &format!("{what} after the children's appends"),
        &dev.download(&buf).unwrap(),
        &model,
        |e| coord(&l, c.front, e),
    );
    eprintln!("{what}: {} jobs over {} layers exact", jobs.len(), c.layers);
}

/// An empty batch is a no-op; `update` reuses the buffer and keeps the old jobs on error.
fn empty_and_update(dev: &Device) {
    let l = PagedKvLayout::hnd(2, 6, 2, 8, 16);
    let mut rng = Rng::fresh("page_copy empty");
    let host: Vec<f32> = (0..l.required_len().unwrap()).map(|_| f32::sample(&mut rng)).collect();
    let mut cache = dev.upload(&host).unwrap();
    let mut jobs = PageCopyJobs::upload(dev, &[], &l).unwrap();
    assert!(jobs.is_empty());
    ops::page_copy(dev, &mut cache, &l, &jobs).unwrap();
    assert_bits("empty page_copy", &dev.download(&cache).unwrap(), &host, |i| coord(&l, 0, i));
    jobs.update(dev, &[(1, 4, 3), (1, 5, 8)], &l).unwrap();
    assert_eq!((jobs.len(), jobs.page_bound(), jobs.max_rows()), (2, 6, 8));
    let err = jobs.update(dev, &[(1, 4, 3), (2, 4, 1)], &l).unwrap_err();
    assert!(err.to_string().contains("both write page 4"), "{err}");
    assert_eq!(jobs.jobs(), &[(1, 4, 3), (1, 5, 8)]);
    jobs.update(dev, &[(0, 2, 7), (3, 1, 1)], &l).unwrap();
    ops::page_copy(dev, &mut cache, &l, &jobs).unwrap();
    let mut want = host.clone();
    for (src, dst, rows) in [(0usize, 2usize, 7usize), (3, 1, 1)] {
        for layer in 0..2 {
            for kv in 0..2 {
                for hh in 0..2 {
                    for t in 0..rows {
                        let s = l.offset(layer, src, kv, hh, t, 0);
                        want.copy_within(s..s + 16, l.offset(layer, dst, kv, hh, t, 0));
                    }
                }
            }
        }
    }
    assert_bits("page_copy after update", &dev.download(&cache).unwrap(), &want, |i| {
        coord(&l, 0, i)
    });
}

fn rejects_bad_input(dev: &Device) {
    let l = PagedKvLayout::hnd(2, 6, 2, 16, 8);
    let need = l.required_len().unwrap();
    let msg = |r: treepo_kernels::Result<PageCopyJobs>| r.unwrap_err().to_string();
    let e = msg(PageCopyJobs::upload(dev, &[(1, 2, 3), (4, 2, 3)], &l));
    assert!(e.contains("jobs 0 and 1 both write page 2"), "{e}");
    let e = msg(PageCopyJobs::upload(dev, &[(1, 2, 3), (2, 5, 3)], &l));
    assert!(e.contains("job 0 writes page 2, which job 1 reads"), "{e}");
    let e = msg(PageCopyJobs::upload(dev, &[(3, 3, 1)], &l));
    assert!(e.contains("job 0 (3, 3, 1): copies page 3 onto itself"), "{e}");
    let e = msg(PageCopyJobs::upload(dev, &[(0, 1, 1), (3, 4, 17)], &l));
    assert!(e.contains("job 1 (3, 4, 17): rows = 17 exceeds page_size = 16"), "{e}");
    let e = msg(PageCopyJobs::upload(dev, &[(0, 6, 1)], &l));
    assert!(e.contains("job 0 (0, 6, 1): dst page 6 is outside the pool of 6 pages"), "{e}");
    // Shared sources are fine (one parent, several children).
    let jobs = PageCopyJobs::upload(dev, &[(0, 1, 5), (0, 2, 5), (3, 5, 16)], &l).unwrap();
    let mut rng = Rng::fresh("page_copy bad input");
    let vals: Vec<f32> = (0..need).map(|_| f32::sample(&mut rng)).collect();
    let mut cache = dev.upload(&vals).unwrap();
    let op = |r: treepo_kernels::Result<()>| r.unwrap_err().to_string();
    // Jobs checked against a bigger pool, run on a smaller one; rows beyond a smaller page.
    let small = PagedKvLayout::hnd(2, 5, 2, 16, 8);
    let e = op(ops::page_copy(dev, &mut cache, &small, &jobs));
    assert!(e.contains("the jobs reach page 5 but the layout has 5 pages"), "{e}");
    let short_pages = PagedKvLayout::hnd(2, 6, 2, 8, 8);
    let e = op(ops::page_copy(dev, &mut cache, &short_pages, &jobs));
    assert!(e.contains("the jobs copy up to 16 rows but page_size = 8"), "{e}");
    // A layout that overflows the buffer.
    let mut short = dev.upload(&vals[..need - 1]).unwrap();
    let e = op(ops::page_copy(dev, &mut short, &l, &jobs));
    assert!(e.contains("the layout reaches element"), "{e}");
    // Aliasing strides.
    let alias = PagedKvLayout { stride_kv: 8, ..l };
    let e = op(ops::page_copy(dev, &mut cache, &alias, &jobs));
    assert!(e.contains("two coordinates would share an element"), "{e}");
    // A dtype the backend lacks.
    let unsupported = match dev.kind() {
        BackendKind::Cpu => None,
        BackendKind::Wgpu => {
            let mut c = dev.zeros::<bf16>(need).unwrap();
            Some(ops::page_copy(dev, &mut c, &l, &jobs).unwrap_err())
        }
        BackendKind::Cuda => {
            let mut c = dev.zeros::<i32>(need).unwrap();
            Some(ops::page_copy(dev, &mut c, &l, &jobs).unwrap_err())
        }
    };
    if let Some(err) = unsupported {
        assert!(matches!(err, KernelError::UnsupportedDtype { op: "page_copy", .. }), "{err}");
    }
    // Jobs on another backend.
    if dev.kind() != BackendKind::Cpu {
        let host_jobs = PageCopyJobs::upload(&Device::cpu(), &[(0, 1, 5)], &l).unwrap();
        let err = ops::page_copy(dev, &mut cache, &l, &host_jobs).unwrap_err();
        assert!(matches!(err, KernelError::WrongDevice { name: "jobs", .. }), "{err}");
    }
    assert_bits("rejected calls", &dev.download(&cache).unwrap(), &vals, |i| coord(&l, 0, i));
}

per_backend!(forks, empty_and_update, rejects_bad_input);
