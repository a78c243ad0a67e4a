//! Whole-tree comparison of cache and model, and the export checks.

use super::{Check, Harness, Outcome, ensure, expect_err};
use tree_kv::{KvError, LayoutExport, NodeId};

/// Every array of an export, for comparing two of them.
pub fn dump(x: &LayoutExport) -> Vec<Vec<i32>> {
    let ids = |v: &[NodeId]| v.iter().flat_map(|n| [n.index as i32, n.generation as i32]).collect();
    vec![
        ids(x.node_ids()),
        x.node_parent().to_vec(),
        x.node_depth().to_vec(),
        x.node_token_start().to_vec(),
        x.node_token_end().to_vec(),
        x.node_kv_start().to_vec(),
        x.node_kv_end().to_vec(),
        x.node_leaf_begin().to_vec(),
        x.node_leaf_end().to_vec(),
        x.node_page_indptr().to_vec(),
        x.node_page_indices().to_vec(),
        x.node_last_page_len().to_vec(),
        ids(x.leaf_ids()),
        x.leaf_input().to_vec(),
        x.leaf_node().to_vec(),
        x.leaf_page_indptr().to_vec(),
        x.leaf_page_indices().to_vec(),
        x.leaf_last_page_len().to_vec(),
    ]
}

fn err(e: KvError) -> String {
    e.to_string()
}

impl Harness {
    /// Every model node agrees with the cache; every live leaf's tokens read back from its pages.
    pub(crate) fn check_tree(&self) -> Check {
        let ps = self.ps;
        let live = self.nodes.iter().filter(|n| !n.collected).count();
        ensure(live == self.cache.num_nodes() as usize, || format!("{live} live nodes in model"))?;
        for (i, n) in self.nodes.iter().enumerate() {
            if n.collected {
                let gone = self.cache.node(n.id) == Err(KvError::UnknownNode { node: n.id });
                ensure(gone, || format!("collected node {} still answers", n.id))?;
                continue;
            }
            let info = self.cache.node(n.id).map_err(err)?;
            let kids: Vec<NodeId> = n.children.iter().map(|&c| self.nodes[c].id).collect();
            let ok = info.start == n.start
                && info.end == n.end()
                && info.released == n.released
                && info.forked == n.forked
                && info.children == kids.as_slice()
                && info.parent == n.parent.map(|p| self.nodes[p].id);
            ensure(ok, || format!("node {} disagrees: {info:?} vs {n:?}", n.id))?;
            let ch = self.cache.kv_chunk(n.id).map_err(err)?;
            let kv_end = if n.children.is_empty() { n.end() } else { n.end() / ps * ps };
            let ok = ch.kv_start == n.start / ps * ps
                && ch.kv_end == kv_end
                && ch.pages.len() as u32 == kv_end.div_ceil(ps) - ch.kv_start / ps;
            ensure(ok, || format!("node {}: chunk {ch:?}", n.id))?;
            if n.children.is_empty() {
                let got = self.read_path(n.id)?;
                ensure(got == self.path_tokens(i), || format!("leaf {}: tokens differ", n.id))?;
            }
        }
        Ok(())
    }

    /// The tokens of `id`'s path, read from the pages of `leaf_path_into`.
    fn read_path(&self, id: NodeId) -> Result<Vec<u32>, String> {
        let ps = self.ps as usize;
        let mut path = Vec::new();
        let last = self.cache.leaf_path_into(id, &mut path).map_err(err)? as usize;
        let mut out = Vec::new();
        for (k, p) in path.iter().enumerate() {
            let rows = self.cache.page_tokens(*p).map_err(err)?;
            let take = if k + 1 == path.len() { last } else { ps };
            ensure(rows.len() >= take, || format!("page {p}: {} rows < {take}", rows.len()))?;
            out.extend_from_slice(&rows[..take]);
        }
        Ok(out)
    }

    /// Exports a subset of the live leaves (plus a wrong id on purpose) and checks the layout.
    pub(crate) fn export(&mut self, mask: u16, extra: u8) -> Result<Outcome, String> {
        let live = |n: &&super::MNode| !n.collected;
        let leaves: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(live)
            .filter(|n| n.children.is_empty())
            .map(|n| n.id)
            .collect();
        let mut sel: Vec<NodeId> = leaves
            .iter()
            .enumerate()
            .filter(|(k, _)| mask >> (k % 16) & 1 == 1)
            .map(|(_, &l)| l)
            .collect();
        let internal =
            self.nodes.iter().filter(live).find(|n| !n.children.is_empty()).map(|n| n.id);
        let want = match (extra % 4, internal, sel.first().copied()) {
            (1, Some(node), _) => Some(KvError::NotALeaf { node }),
            (2, _, Some(node)) => Some(KvError::DuplicateLeaf { node }),
            _ => None,
        };
        if let Some(KvError::NotALeaf { node } | KvError::DuplicateLeaf { node }) = want {
            sel.insert(sel.len().div_ceil(2), node);
        }
        let res = self.cache.export_into(&sel, &mut self.export);
        if let Some(want) = want {
            return expect_err(res, want);
        }
        res.map_err(err)?;
        self.check_export(&sel)?;
        self.exported = sel;
        Ok(Outcome::Ok)
    }

    /// Re-exports the last exported leaves into the same buffer (while they are all still live
    /// leaves) and compares with an export into a fresh buffer.
    pub(crate) fn recheck_export(&mut self) -> Check {
        let live_leaf = |id: &NodeId| self.cache.node(*id).is_ok_and(|n| n.children.is_empty());
        if self.exported.is_empty() || !self.exported.iter().all(live_leaf) {
            self.exported.clear();
            return Ok(());
        }
        self.cache.export_into(&self.exported, &mut self.export).map_err(err)?;
        let mut fresh = LayoutExport::new();
        self.cache.export_into(&self.exported, &mut fresh).map_err(err)?;
        ensure(dump(&self.export) == dump(&fresh), || {
            "reused export differs from a fresh one".into()
        })
    }

    fn check_export(&self, sel: &[NodeId]) -> Check {
        let (x, ps) = (&self.export, self.ps as i32);
        let (nn, nl) = (x.num_nodes(), x.num_leaves());
        ensure(nl == sel.len() && x.leaf_page_indptr().len() == nl + 1, || "leaf count".into())?;
        ensure(x.node_page_indptr().len() == nn + 1 && x.node_last_page_len().len() == nn, || {
            "node count".into()
        })?;
        let mut seen = vec![false; nl];
        let mut under = vec![0i32; nn];
        for k in 0..nl {
            let input = x.leaf_input()[k] as usize;
            ensure(input < nl && !seen[input] && sel[input] == x.leaf_ids()[k], || {
                "leaf_input".into()
            })?;
            seen[input] = true;
            // The leaf CSR row equals the leaf path, and its length equals the leaf's end.
            let pages = &x.leaf_page_indices()
                [x.leaf_page_indptr()[k] as usize..x.leaf_page_indptr()[k + 1] as usize];
            let mut path = Vec::new();
            let last = self.cache.leaf_path_into(x.leaf_ids()[k], &mut path).map_err(err)?;
            let end = self.cache.node(x.leaf_ids()[k]).map_err(err)?.end as i32;
            let len = if pages.is_empty() {
                0
            } else {
                ps * (pages.len() as i32 - 1) + x.leaf_last_page_len()[k]
            };
            let same =
                pages.iter().zip(&path).all(|(a, b)| *a as u32 == b.0) && pages.len() == path.len();
            ensure(same && len == end && last as i32 == x.leaf_last_page_len()[k], || {
                format!("leaf {k}: CSR length {len} vs end {end}")
            })?;
            // Walking up: node chunks concatenate (in token space and pages) to the leaf's path,
            // and every ancestor's leaf range holds this leaf.
            let mut chain = Vec::new();
            let mut v = x.leaf_node()[k];
            while v >= 0 {
                let u = v as usize;
                ensure(
                    x.node_leaf_begin()[u] <= k as i32 && (k as i32) < x.node_leaf_end()[u],
                    || format!("leaf {k} outside the range of node {u}"),
                )?;
                chain.push(u);
                under[u] += 1;
                v = x.node_parent()[u];
                ensure(v < u as i32, || "parent after child in DFS order".into())?;
            }
            let mut pos = 0;
            let mut cat = Vec::new();
            for &u in chain.iter().rev() {
                ensure(x.node_kv_start()[u] == pos, || {
                    format!("node {u}: chunk starts at {}, want {pos}", x.node_kv_start()[u])
                })?;
                pos = x.node_kv_end()[u];
                let chunk = &x.node_page_indices()
                    [x.node_page_indptr()[u] as usize..x.node_page_indptr()[u + 1] as usize];
                let clen = x.node_kv_end()[u] - x.node_kv_start()[u];
                let want_last = if clen == 0 { 0 } else { (clen - 1) % ps + 1 };
                ensure(
                    chunk.len() as i32 == (clen + ps - 1) / ps
                        && x.node_last_page_len()[u] == want_last,
                    || format!("node {u}: chunk of {clen} tokens has {} pages", chunk.len()),
                )?;
                cat.extend_from_slice(chunk);
            }
            ensure(pos == end && cat == pages, || {
                format!("leaf {k}: chunks do not tile the path")
            })?;
        }
        for (u, &count) in under.iter().enumerate() {
            let range = x.node_leaf_end()[u] - x.node_leaf_begin()[u];
            ensure(range == count, || format!("node {u}: leaf range {range}, {count} leaves"))?;
        }
        Ok(())
    }
}
