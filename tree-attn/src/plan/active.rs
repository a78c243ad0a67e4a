//! Planning, step 1: validate every node on an active path, build the active tree (children and
//! own leaves as CSR arrays) and the depth-first leaf order with its rows.
//!
//! All scratch lives in [`Scratch`] inside the [`Plan`] and is only cleared and resized, so a
//! plan whose buffers have grown to the largest tree seen allocates nothing (an error message is
//! the one exception: it is built only on failure).

use super::{LeafQuery, Plan, PlanError, TreeKvView};

/// Reusable per-node and per-leaf arrays of the planner.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// Per node: 0 unseen, 1 on the current walk, 2 on an active path (checked).
    pub mark: Vec<u8>,
    /// Nodes of the current parent walk.
    pub walk: Vec<u32>,
    /// Per node + 1: CSR offsets of the active children.
    pub child_start: Vec<u32>,
    /// Active children, by increasing id within a parent.
    pub children: Vec<u32>,
    /// Per node + 1: CSR offsets of the leaves querying the node.
    pub leaf_start: Vec<u32>,
    /// Caller leaf indices, grouped by node, in caller order within a node.
    pub node_leaves: Vec<u32>,
    /// Fill cursors, then depth-first child cursors.
    pub cursor: Vec<u32>,
    /// Active roots, by increasing id.
    pub roots: Vec<u32>,
    /// Per node: first plan leaf of its subtree.
    pub lb: Vec<u32>,
    /// Per node: one past its subtree's last plan leaf.
    pub le: Vec<u32>,
    /// Depth-first stack.
    pub stack: Vec<u32>,
    /// Per caller leaf + 1: first caller row.
    pub caller_row: Vec<u32>,
    /// Per plan leaf + 1: first plan row.
    pub leaf_row: Vec<u32>,
    /// Per plan leaf: partial states of each of its rows.
    pub leaf_states: Vec<u32>,
    /// Nodes of the chunk being emitted.
    pub chain: Vec<u32>,
    /// Node stack of the cost walk.
    pub seg: Vec<u32>,
    /// Segment stack of the tree emitter: (node, base slot, top of the folded chain above).
    pub seg_fold: Vec<(u32, u32, Option<u32>)>,
}

/// `v` = `len` copies of `x`, reusing its capacity.
pub(crate) fn reset<T: Copy>(v: &mut Vec<T>, len: usize, x: T) {
    v.clear();
    v.resize(len, x);
}

/// Checks node `u`'s own fields against the contract.
pub(crate) fn check_node(view: &TreeKvView<'_>, u: u32) -> Result<(), PlanError> {
    let nd = &view.nodes[u as usize];
    let ps = view.page_size;
    if !nd.kv_start.is_multiple_of(ps) {
        return Err(PlanError::Unaligned { node: u, kv_start: nd.kv_start, page_size: ps });
    }
    if nd.kv_start > nd.kv_end {
        return Err(PlanError::Reversed { node: u, kv_start: nd.kv_start, kv_end: nd.kv_end });
    }
    if nd.kv_end > i32::MAX as u32 {
        return Err(PlanError::TooLarge("a position"));
    }
    let tokens = nd.kv_end - nd.kv_start;
    let need = tokens.div_ceil(ps);
    let p = &nd.pages;
    if p.start > p.end || p.end as usize > view.page_ids.len() || p.end - p.start < need {
        return Err(PlanError::Pages {
            node: u,
            pages: p.clone(),
            listed: view.page_ids.len(),
            tokens,
        });
    }
    let used = &view.page_ids[p.start as usize..(p.start + need) as usize];
    if let Some(&page) = used.iter().find(|&&x| x < 0) {
        return Err(PlanError::NegativePage { node: u, page });
    }
    Ok(())
}

/// Checks the link from `u` to its parent (if any); returns the parent.
pub(crate) fn check_parent(view: &TreeKvView<'_>, u: u32) -> Result<Option<u32>, PlanError> {
    let nd = &view.nodes[u as usize];
    let Some(p) = nd.parent else {
        if nd.kv_start != 0 {
            return Err(PlanError::RootStart { node: u, kv_start: nd.kv_start });
        }
        return Ok(None);
    };
    if p as usize >= view.nodes.len() {
        return Err(PlanError::NodeOutOfRange {
            what: format!("the parent of node {u}"),
            node: p,
            num_nodes: view.nodes.len(),
        });
    }
    let parent_end = view.nodes[p as usize].kv_end;
    if nd.kv_start != parent_end {
        return Err(PlanError::Discontiguous {
            node: u,
            parent: p,
            kv_start: nd.kv_start,
            parent_end,
        });
    }
    Ok(Some(p))
}

/// Marks and checks the path from `start` up to a root or an already checked node.
fn walk(
    view: &TreeKvView<'_>,
    start: u32,
    s: &mut Scratch,
    distinct: &mut u64,
) -> Result<(), PlanError> {
    s.walk.clear();
    let mut cur = start;
    loop {
        match s.mark[cur as usize] {
            2 => break,
            1 => return Err(PlanError::Cycle { node: cur }),
            _ => {}
        }
        s.mark[cur as usize] = 1;
        s.walk.push(cur);
        check_node(view, cur)?;
        match check_parent(view, cur)? {
            Some(p) => cur = p,
            None => break,
        }
    }
    for &u in &s.walk {
        s.mark[u as usize] = 2;
        let nd = &view.nodes[u as usize];
        *distinct += u64::from(nd.kv_end - nd.kv_start);
    }
    Ok(())
}

/// Step 1 (see the module docs). Fills `plan.leaf_order`, `plan.row_to_q`, `plan.q_pos`,
/// `plan.distinct_tokens` and the scratch arrays the emitter reads.
pub(crate) fn build(
    view: &TreeKvView<'_>,
    leaves: &[LeafQuery],
    plan: &mut Plan,
) -> Result<(), PlanError> {
    let ps = view.page_size;
    if ps == 0 || !ps.is_power_of_two() {
        return Err(PlanError::PageSize { page_size: ps });
    }
    let n = view.nodes.len();
    if n >= i32::MAX as usize || leaves.len() >= i32::MAX as usize {
        return Err(PlanError::TooLarge("the node or leaf count"));
    }
    let s = &mut plan.scratch;
    reset(&mut s.mark, n, 0u8);
    plan.distinct_tokens = 0;
    for (i, l) in leaves.iter().enumerate() {
        if l.node as usize >= n {
            return Err(PlanError::NodeOutOfRange {
                what: format!("leaf {i}"),
                node: l.node,
                num_nodes: n,
            });
        }
        walk(view, l.node, s, &mut plan.distinct_tokens)?;
        let len = view.nodes[l.node as usize].kv_end;
        if l.q_rows == 0 || l.q_rows > len {
            return Err(PlanError::QueryRows { leaf: i, node: l.node, q_rows: l.q_rows, len });
        }
    }
    // Active children (CSR, by increasing id) and roots.
    reset(&mut s.child_start, n + 1, 0u32);
    s.roots.clear();
    for (u, nd) in view.nodes.iter().enumerate() {
        if s.mark[u] == 2 {
            match nd.parent {
                Some(p) => s.child_start[p as usize + 1] += 1,
                None => s.roots.push(u as u32),
            }
        }
    }
    for u in 0..n {
        s.child_start[u + 1] += s.child_start[u];
    }
    reset(&mut s.children, s.child_start[n] as usize, 0u32);
    s.cursor.clear();
    s.cursor.extend_from_slice(&s.child_start[..n]);
    for (u, nd) in view.nodes.iter().enumerate() {
        if let (2, Some(p)) = (s.mark[u], nd.parent) {
            s.children[s.cursor[p as usize] as usize] = u as u32;
            s.cursor[p as usize] += 1;
        }
    }
    // Leaves by node (CSR, caller order within a node).
    reset(&mut s.leaf_start, n + 1, 0u32);
    for l in leaves {
        s.leaf_start[l.node as usize + 1] += 1;
    }
    for u in 0..n {
        s.leaf_start[u + 1] += s.leaf_start[u];
    }
    reset(&mut s.node_leaves, leaves.len(), 0u32);
    s.cursor.clear();
    s.cursor.extend_from_slice(&s.leaf_start[..n]);
    for (i, l) in leaves.iter().enumerate() {
        s.node_leaves[s.cursor[l.node as usize] as usize] = i as u32;
        s.cursor[l.node as usize] += 1;
    }
    dfs(s, &mut plan.leaf_order);
    rows(view, leaves, plan)
}

/// Depth-first leaf order; `lb`/`le` = each active node's plan-leaf range.
fn dfs(s: &mut Scratch, order: &mut Vec<u32>) {
    let n = s.mark.len();
    reset(&mut s.lb, n, 0u32);
    reset(&mut s.le, n, 0u32);
    order.clear();
    s.stack.clear();
    for r in 0..s.roots.len() {
        let root = s.roots[r];
        visit(s, order, root);
        while let Some(&u) = s.stack.last() {
            let u = u as usize;
            if s.cursor[u] < s.child_start[u + 1] {
                let c = s.children[s.cursor[u] as usize];
                s.cursor[u] += 1;
                visit(s, order, c);
            } else {
                s.le[u] = order.len() as u32;
                s.stack.pop();
            }
        }
    }
}

/// First visit of `u`: its own leaves come first, then its children's.
fn visit(s: &mut Scratch, order: &mut Vec<u32>, u: u32) {
    let u = u as usize;
    s.lb[u] = order.len() as u32;
    order.extend_from_slice(&s.node_leaves[s.leaf_start[u] as usize..s.leaf_start[u + 1] as usize]);
    s.cursor[u] = s.child_start[u];
    s.stack.push(u as u32);
}

/// Rows: caller rows are the leaves' rows in caller order; plan rows in plan-leaf order.
fn rows(view: &TreeKvView<'_>, leaves: &[LeafQuery], plan: &mut Plan) -> Result<(), PlanError> {
    let s = &mut plan.scratch;
    s.caller_row.clear();
    s.caller_row.push(0);
    let mut total = 0u64;
    for l in leaves {
        total += u64::from(l.q_rows);
        if total >= i32::MAX as u64 {
            return Err(PlanError::TooLarge("the query row count"));
        }
        s.caller_row.push(total as u32);
    }
    s.leaf_row.clear();
    s.leaf_row.push(0);
    plan.row_to_q.clear();
    plan.q_pos.clear();
    for &c in &plan.leaf_order {
        let l = leaves[c as usize];
        let len = view.nodes[l.node as usize].kv_end;
        for k in 0..l.q_rows {
            plan.row_to_q.push((s.caller_row[c as usize] + k) as i32);
            plan.q_pos.push((len - l.q_rows + k) as i32);
        }
        s.leaf_row.push(plan.row_to_q.len() as u32);
    }
    Ok(())
}
