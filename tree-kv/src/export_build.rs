//! `export_into`: building a [`LayoutExport`] from the tree (full DFS, or the steady-state fast
//! path that only rewrites leaf lengths).

use crate::cache::TreeKvCache;
use crate::error::{KvError, Result};
use crate::export::{Cursor, Frame, LayoutExport, Rows, Scratch, Sizes};
use crate::ids::NodeId;
use crate::list::NIL;
use crate::paths::{chunk_of, last_page_len, pages_for};

impl TreeKvCache {
    /// Fills `out` with the layout of the paths ending at `leaves` (see [`LayoutExport`]).
    ///
    /// Cost: a full rebuild is linear in the exported nodes and pages. When `out` was last filled
    /// for the same leaves and since then only appends that stayed inside the leaves' current
    /// pages happened (the common decode step), only the per-leaf lengths are rewritten:
    /// O(leaves).
    ///
    /// Errors: `UnknownNode`, `NotALeaf` (a node with children), `DuplicateLeaf`, and
    /// `ExportTooLarge` if the concatenated page lists overflow int32. On error `out` holds
    /// unspecified data (and the next call rebuilds it); the cache is never changed.
    pub fn export_into(&self, leaves: &[NodeId], out: &mut LayoutExport) -> Result<()> {
        if out.layout == self.layout && out.leaves == leaves {
            self.refresh_leaf_lengths(out);
            return Ok(());
        }
        out.layout = 0;
        let mut sc = std::mem::take(&mut out.scratch);
        let result = self.mark_paths(leaves, &mut sc).and_then(|sizes| {
            for n in [sizes.nodes, sizes.chunk_pages, sizes.leaf_pages] {
                if i32::try_from(n).is_err() {
                    return Err(KvError::ExportTooLarge { entries: n as u64 });
                }
            }
            out.resize(&sizes, leaves.len());
            let mut rows = out.rows();
            let mut at = Cursor::default();
            for i in 0..sc.roots.len() {
                self.export_tree(sc.roots[i], &mut rows, &mut sc, &mut at);
            }
            debug_assert!(at.node == sizes.nodes && at.leaf_page == sizes.leaf_pages);
            Ok(())
        });
        out.scratch = sc;
        if result.is_ok() {
            out.layout = self.layout;
            out.leaves.clear();
            out.leaves.extend_from_slice(leaves);
        }
        result
    }

    /// The fast path: nothing but the leaves' ends changed since `out` was built for the same
    /// leaves (no fork, release, new root, or page added anywhere: each bumps the layout
    /// version). Every page list is then unchanged and only the leaf lengths are rewritten.
    fn refresh_leaf_lengths(&self, out: &mut LayoutExport) {
        let ps = self.pool.page_size;
        let rows = out.rows();
        for (l, id) in rows.leaf_ids.iter().enumerate() {
            let k = rows.leaf_node[l] as usize;
            let end = self.nodes.slots[id.index as usize].end;
            let kv_start = rows.node_kv_start[k] as u32;
            rows.node_token_end[k] = end as i32;
            rows.node_kv_end[k] = end as i32;
            rows.node_last_page_len[k] = last_page_len(end - kv_start, ps) as i32;
            rows.leaf_last_page_len[l] = last_page_len(end, ps) as i32;
        }
    }

    /// Stamps every node on a path to one of `leaves`, records the roots in first-seen order and
    /// counts what the export will hold. Checks every leaf before the caller writes anything.
    fn mark_paths(&self, leaves: &[NodeId], sc: &mut Scratch) -> Result<Sizes> {
        let ps = self.pool.page_size;
        let n = self.nodes.slots.len();
        if sc.epoch == u32::MAX {
            sc.stamp.iter_mut().for_each(|s| *s = 0);
            sc.epoch = 0;
        }
        sc.epoch += 1;
        sc.stamp.resize(n, 0);
        sc.pos.resize(n, 0);
        sc.roots.clear();
        let mut sizes = Sizes::default();
        for (i, &leaf) in leaves.iter().enumerate() {
            let s = self.nodes.slot(leaf)?;
            let node = &self.nodes.slots[s];
            if !node.children.is_empty() {
                return Err(KvError::NotALeaf { node: leaf });
            }
            if sc.stamp[s] == sc.epoch {
                return Err(KvError::DuplicateLeaf { node: leaf });
            }
            sc.pos[s] = i as i32;
            sizes.leaf_pages += pages_for(node.end, ps) as usize;
            let mut cur = s;
            loop {
                let n = &self.nodes.slots[cur];
                sc.stamp[cur] = sc.epoch;
                sizes.nodes += 1;
                sizes.chunk_pages += chunk_of(n, ps).2;
                if n.parent == NIL {
                    sc.roots.push(cur as u32);
                    break;
                }
                cur = n.parent as usize;
                if sc.stamp[cur] == sc.epoch {
                    break;
                }
            }
        }
        Ok(sizes)
    }

    /// Depth-first export of the marked part of one tree, writing at the cursor.
    fn export_tree(&self, root: u32, out: &mut Rows<'_>, sc: &mut Scratch, at: &mut Cursor) {
        let mut stack = std::mem::take(&mut sc.stack);
        stack.clear();
        self.enter(root, -1, out, sc, at, &mut stack);
        while let Some(frame) = stack.last_mut() {
            let children = &self.nodes.slots[frame.slot as usize].children;
            let mut next = frame.next as usize;
            while next < children.len() && sc.stamp[children[next].index as usize] != sc.epoch {
                next += 1;
            }
            if let Some(child) = children.get(next) {
                frame.next = next as u32 + 1;
                let parent = frame.k;
                self.enter(child.index, parent, out, sc, at, &mut stack);
            } else {
                out.node_leaf_end[frame.k as usize] = at.leaf as i32;
                sc.path.truncate(frame.path_len as usize);
                stack.pop();
            }
        }
        sc.stack = stack;
    }

    /// Writes node `s` (and its leaf row when it is a leaf) at the cursor; pushes its DFS frame.
    fn enter(
        &self,
        s: u32,
        parent: i32,
        out: &mut Rows<'_>,
        sc: &mut Scratch,
        at: &mut Cursor,
        stack: &mut Vec<Frame>,
    ) {
        let ps = self.pool.page_size;
        let n = &self.nodes.slots[s as usize];
        let k = at.node;
        at.node += 1;
        let (kv_start, kv_end, pages) = chunk_of(n, ps);
        let chunk = &n.pages[..pages];

        out.node_ids[k] = NodeId { index: s, generation: n.generation };
        out.node_parent[k] = parent;
        out.node_depth[k] = n.depth as i32;
        out.node_token_start[k] = n.start as i32;
        out.node_token_end[k] = n.end as i32;
        out.node_kv_start[k] = kv_start as i32;
        out.node_kv_end[k] = kv_end as i32;
        out.node_leaf_begin[k] = at.leaf as i32;
        out.node_last_page_len[k] = last_page_len(kv_end - kv_start, ps) as i32;
        let dst = &mut out.node_page_indices[at.chunk_page..at.chunk_page + pages];
        dst.iter_mut().zip(chunk).for_each(|(d, p)| *d = p.0 as i32);
        at.chunk_page += pages;
        out.node_page_indptr[k + 1] = at.chunk_page as i32;

        let path_len = sc.path.len() as u32;
        sc.path.extend(chunk.iter().map(|p| p.0 as i32));
        if n.children.is_empty() {
            let l = at.leaf;
            at.leaf += 1;
            out.leaf_ids[l] = NodeId { index: s, generation: n.generation };
            out.leaf_input[l] = sc.pos[s as usize];
            out.leaf_node[l] = k as i32;
            let path = &sc.path;
            out.leaf_page_indices[at.leaf_page..at.leaf_page + path.len()].copy_from_slice(path);
            at.leaf_page += path.len();
            out.leaf_page_indptr[l + 1] = at.leaf_page as i32;
            out.leaf_last_page_len[l] = last_page_len(n.end, ps) as i32;
        }
        stack.push(Frame { slot: s, next: 0, path_len, k: k as i32 });
    }
}
