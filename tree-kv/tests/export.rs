//! Exports: exact arrays for a small tree, CSR lengths equal node ends, chunks tile leaf paths,
//! buffer reuse, and the errors.

mod common;

use common::model::check::dump;
use common::*;
use tree_kv::{CacheConfig, KvError, LayoutExport, NodeId, TreeKvCache};

/// R[0,37) pages 0 1 2; A[37,40) claims 2; B[37,57) copies 2 -> 3, then 4;
/// A1[40,50) claims 2 again (t = 8), then 6; A2[40,41) copies 2 -> 5.
fn small_tree() -> (TreeKvCache, [NodeId; 5]) {
    let mut c = TreeKvCache::new(CacheConfig::new(16)).unwrap();
    let mut t = Tokens::new();
    let r = c.create_root(&prompt(37)).unwrap().node;
    let f = c.fork(r, 2).unwrap();
    let (a, b) = (f.children[0], f.children[1]);
    seg(&mut c, &mut t, a, 3);
    seg(&mut c, &mut t, b, 20);
    let f = c.fork(a, 2).unwrap();
    assert_eq!(f.copies.len(), 1);
    assert_eq!((f.copies[0].src.0, f.copies[0].dst.0, f.copies[0].rows), (2, 5, 8));
    let (a1, a2) = (f.children[0], f.children[1]);
    seg(&mut c, &mut t, a1, 10);
    seg(&mut c, &mut t, a2, 1);
    assert_eq!(pages(&c, a1), [2, 6]);
    assert_eq!(pages(&c, b), [3, 4]);
    (c, [r, a, b, a1, a2])
}

#[test]
fn exact_arrays_for_a_small_tree() {
    let (c, [r, a, b, a1, a2]) = small_tree();
    let mut x = LayoutExport::new();
    c.export_into(&[b, a2, a1], &mut x).unwrap();
    // DFS: R, A, A1, A2, B (children in creation order).
    assert_eq!(x.node_ids(), [r, a, a1, a2, b]);
    assert_eq!(x.node_parent(), [-1, 0, 1, 1, 0]);
    assert_eq!(x.node_depth(), [0, 1, 2, 2, 1]);
    assert_eq!(x.node_token_start(), [0, 37, 40, 40, 37]);
    assert_eq!(x.node_token_end(), [37, 40, 50, 41, 57]);
    // Internal nodes keep only their page-aligned part: R [0, 32), A nothing.
    assert_eq!(x.node_kv_start(), [0, 32, 32, 32, 32]);
    assert_eq!(x.node_kv_end(), [32, 32, 50, 41, 57]);
    assert_eq!(x.node_leaf_begin(), [0, 0, 0, 1, 2]);
    assert_eq!(x.node_leaf_end(), [3, 2, 1, 2, 3]);
    assert_eq!(x.node_page_indptr(), [0, 2, 2, 4, 5, 7]);
    assert_eq!(x.node_page_indices(), [0, 1, 2, 6, 5, 3, 4]);
    assert_eq!(x.node_last_page_len(), [16, 0, 2, 9, 9]);
    assert_eq!(x.leaf_ids(), [a1, a2, b]);
    assert_eq!(x.leaf_input(), [2, 1, 0]);
    assert_eq!(x.leaf_node(), [2, 3, 4]);
    assert_eq!(x.leaf_page_indptr(), [0, 4, 7, 11]);
    assert_eq!(x.leaf_page_indices(), [0, 1, 2, 6, 0, 1, 5, 0, 1, 3, 4]);
    assert_eq!(x.leaf_last_page_len(), [2, 9, 9]);
}

#[test]
fn leaf_lengths_equal_ends_and_chunks_tile_paths() {
    let (c, nodes) = small_tree();
    let leaves = [nodes[3], nodes[4], nodes[2]];
    let mut x = LayoutExport::new();
    c.export_into(&leaves, &mut x).unwrap();
    for k in 0..x.num_leaves() {
        let (lo, hi) = (x.leaf_page_indptr()[k] as usize, x.leaf_page_indptr()[k + 1] as usize);
        let len = 16 * (hi - lo - 1) as i32 + x.leaf_last_page_len()[k];
        assert_eq!(len as u32, c.node(x.leaf_ids()[k]).unwrap().end);
        // Chunks of the nodes on the path, root first, cover [0, end) and concatenate to the
        // leaf's page list.
        let mut chain = Vec::new();
        let mut v = x.leaf_node()[k];
        while v >= 0 {
            chain.push(v as usize);
            v = x.node_parent()[v as usize];
        }
        let (mut pos, mut cat) = (0, Vec::new());
        for &u in chain.iter().rev() {
            assert_eq!(x.node_kv_start()[u], pos);
            pos = x.node_kv_end()[u];
            let (a, b) = (x.node_page_indptr()[u] as usize, x.node_page_indptr()[u + 1] as usize);
            cat.extend_from_slice(&x.node_page_indices()[a..b]);
        }
        assert_eq!(pos, len);
        assert_eq!(cat, &x.leaf_page_indices()[lo..hi]);
        // The same pages as the single-leaf query, and the prompt reads back.
        let mut path = Vec::new();
        assert_eq!(
            c.leaf_path_into(x.leaf_ids()[k], &mut path).unwrap(),
            x.leaf_last_page_len()[k] as u32
        );
        assert_eq!(ids(&path).iter().map(|&p| p as i32).collect::<Vec<_>>(), cat);
        assert_eq!(path_tokens(&c, x.leaf_ids()[k])[..37], prompt(37)[..]);
    }
}

#[test]
fn reused_export_does_not_reallocate() {
    let (c, nodes) = small_tree();
    let leaves = [nodes[3], nodes[4], nodes[2]];
    let mut x = LayoutExport::new();
    c.export_into(&leaves, &mut x).unwrap();
    let before =
        (x.leaf_page_indices().as_ptr(), x.node_page_indices().as_ptr(), x.node_ids().as_ptr());
    let first = (x.leaf_page_indices().to_vec(), x.node_ids().to_vec());
    c.export_into(&leaves[..2], &mut x).unwrap();
    c.export_into(&leaves, &mut x).unwrap();
    let after =
        (x.leaf_page_indices().as_ptr(), x.node_page_indices().as_ptr(), x.node_ids().as_ptr());
    assert_eq!(before, after);
    assert_eq!(first, (x.leaf_page_indices().to_vec(), x.node_ids().to_vec()));
}

#[test]
fn export_of_two_trees_and_an_empty_set() {
    let (mut c, nodes) = small_tree();
    let other = c.create_root(&prompt(16)).unwrap().node;
    let mut x = LayoutExport::new();
    c.export_into(&[other, nodes[4]], &mut x).unwrap();
    assert_eq!(x.node_ids(), [other, nodes[0], nodes[1], nodes[4]]);
    assert_eq!(x.node_parent(), [-1, -1, 1, 2]);
    assert_eq!(x.leaf_page_indices(), [7, 0, 1, 5]);
    assert_eq!(x.leaf_last_page_len(), [16, 9]);
    c.export_into(&[], &mut x).unwrap();
    assert_eq!((x.num_nodes(), x.num_leaves()), (0, 0));
    assert_eq!((x.node_page_indptr(), x.leaf_page_indptr()), (&[0][..], &[0][..]));
}

#[test]
fn export_errors() {
    let (mut c, [r, _, b, a1, a2]) = small_tree();
    let mut x = LayoutExport::new();
    assert_eq!(c.export_into(&[a1, r], &mut x), Err(KvError::NotALeaf { node: r }));
    assert_eq!(c.export_into(&[a1, a2, a1], &mut x), Err(KvError::DuplicateLeaf { node: a1 }));
    c.release(b).unwrap();
    assert_eq!(c.export_into(&[b], &mut x), Err(KvError::UnknownNode { node: b }));
    // The buffer is still usable after an error.
    c.export_into(&[a2], &mut x).unwrap();
    assert_eq!(x.leaf_page_indices(), [0, 1, 5]);
}

fn fresh(c: &TreeKvCache, leaves: &[NodeId]) -> Vec<Vec<i32>> {
    let mut x = LayoutExport::new();
    c.export_into(leaves, &mut x).unwrap();
    dump(&x)
}

#[test]
fn steady_state_export_matches_a_full_rebuild() {
    // Decode steps: one token per leaf, exported into the same buffer each time. Most steps take
    // the fast path (only lengths change); steps that open a page rebuild. Each must equal a
    // fresh export.
    let (mut c, [_, _, b, a1, a2]) = small_tree();
    let leaves = [a1, a2, b];
    let mut x = LayoutExport::new();
    for step in 0..40u32 {
        for &l in &leaves {
            c.append(l, &[step]).unwrap();
        }
        c.export_into(&leaves, &mut x).unwrap();
        assert_eq!(dump(&x), fresh(&c, &leaves), "step {step}");
    }
    // A structural change between steps (a fork) is seen too.
    let f = c.fork(a2, 2).unwrap();
    let leaves = [a1, f.children[0], f.children[1], b];
    c.export_into(&leaves, &mut x).unwrap();
    assert_eq!(dump(&x), fresh(&c, &leaves));
}

#[test]
fn export_buffer_shared_by_a_cache_and_its_clone() {
    // A clone starts with the same layout version; once either adds a page or forks, versions
    // differ, and in between only lengths can differ, which the fast path rereads.
    let (c, [_, _, b, a1, a2]) = small_tree();
    let leaves = [a1, a2, b];
    let mut d = c.clone();
    let mut x = LayoutExport::new();
    c.export_into(&leaves, &mut x).unwrap();
    d.append(a2, &[1, 2]).unwrap(); // inside a2's page
    d.export_into(&leaves, &mut x).unwrap();
    assert_eq!(dump(&x), fresh(&d, &leaves));
    d.append(b, &[5; 20]).unwrap(); // opens pages
    c.export_into(&leaves, &mut x).unwrap();
    assert_eq!(dump(&x), fresh(&c, &leaves));
    d.export_into(&leaves, &mut x).unwrap();
    assert_eq!(dump(&x), fresh(&d, &leaves));
}
