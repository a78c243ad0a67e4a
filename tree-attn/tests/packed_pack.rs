//! Packing helpers: exact arrays of scripted forests, the mask of random forests against the
//! ancestor relation, and typed errors.

use crate::packed_support::{dense_mask, random_forest};
use tree_attn::packed::{PackError, PackNode, PackedTree, TreeMask};
use treepo_kernels::Device;
use treepo_kernels::testing::Rng;

/// Two trees: `0:[3] → {1:[2] → {2:[1], 3:[0]}, 4:[2]}` and `5:[2] → 6:[1]`.
fn scripted() -> Vec<PackNode> {
    vec![
        PackNode::root(3),
        PackNode::child(0, 2),
        PackNode::child(1, 1),
        PackNode::child(1, 0),
        PackNode::child(0, 2),
        PackNode::root(2),
        PackNode::child(5, 1),
    ]
}

#[test]
fn scripted_forest_packs_exactly() {
    let t = PackedTree::pack(&scripted()).unwrap();
    assert_eq!(t.num_tokens(), 11);
    assert_eq!((t.num_nodes(), t.num_trees(), t.num_leaves()), (7, 2, 4));
    assert_eq!(t.kv_row_end(), &[8, 8, 8, 6, 6, 6, 8, 8, 11, 11, 11]);
    assert_eq!(t.position_ids(), &[0, 1, 2, 3, 4, 5, 3, 4, 0, 1, 2]);
    assert_eq!(t.token_node(), &[0, 0, 0, 1, 1, 2, 4, 4, 5, 5, 6]);
    assert_eq!(t.leaves_under_token(), &[3, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1]);
    assert_eq!(t.node_indptr(), &[0, 3, 5, 6, 6, 8, 10, 11]);
    assert_eq!(t.node_range(3), 6..6);
    assert_eq!(t.leaf_tokens(0), &[0, 1, 2, 3, 4, 5]);
    assert_eq!(t.leaf_tokens(1), &[0, 1, 2, 3, 4], "the empty leaf ends at its parent");
    assert_eq!(t.leaf_tokens(2), &[0, 1, 2, 6, 7]);
    assert_eq!(t.leaf_tokens(3), &[8, 9, 10]);
    assert_eq!((t.leaf_node(1), t.leaf_node(3)), (3, 6));
    assert_eq!((t.tree_range(0), t.tree_range(1)), (0..8, 8..11));
    assert_eq!((t.tree_leaves(0), t.tree_leaves(1)), (3, 1));
    assert_eq!(t.flat_tokens(), 6 + 5 + 5 + 3);
    assert!((t.token_reduction() - 19.0 / 11.0).abs() < 1e-12);
    let w = t.token_weights();
    assert_eq!(w[..3], [1.0; 3]);
    assert!((w[3] - 2.0 / 3.0).abs() < 1e-7 && (w[6] - 1.0 / 3.0).abs() < 1e-7 && w[8] == 1.0);
    let ids: Vec<Vec<u32>> =
        (0..7).map(|n| vec![100 + n; t.node_range(n as usize).len()]).collect();
    let refs: Vec<&[u32]> = ids.iter().map(|v| &v[..]).collect();
    assert_eq!(
        t.gather_ids(&refs).unwrap(),
        [100, 100, 100, 101, 101, 102, 104, 104, 105, 105, 106]
    );
    assert_eq!(
        t.gather_ids(&refs[..6]).unwrap_err(),
        PackError::NodeCountMismatch { expected: 7, got: 6 }
    );
    let mut bad = refs.clone();
    bad[4] = &[1];
    assert_eq!(
        t.gather_ids(&bad).unwrap_err(),
        PackError::TokenCountMismatch { node: 4, expected: 2, got: 1 }
    );
}

#[test]
fn mask_of_random_forests_is_the_ancestor_relation() {
    let mut rng = Rng::fresh("packed_pack ancestor");
    for _ in 0..30 {
        let trees = 1 + rng.below(4);
        let depth = 1 + rng.below(5);
        let nodes = random_forest(&mut rng, trees, depth, 3, 6);
        let t = PackedTree::pack(&nodes).unwrap();
        let n = t.num_tokens();
        let dense = dense_mask(&nodes, &t);
        let from_ends: Vec<bool> = (0..n * n)
            .map(|x| (x % n) <= x / n && x / n < t.kv_row_end()[x % n] as usize)
            .collect();
        assert_eq!(from_ends, dense, "kv_row_end mask differs from the ancestor mask: {nodes:?}");
        // Leaf sequences: positions count up from 0 and every multiplicity is the number of leaf
        // sequences holding the token.
        let mut count = vec![0u32; n];
        for l in 0..t.num_leaves() {
            for (pos, &tok) in t.leaf_tokens(l).iter().enumerate() {
                assert_eq!(t.position_ids()[tok as usize], pos as u32);
                count[tok as usize] += 1;
            }
        }
        assert_eq!(count, t.leaves_under_token());
        TreeMask::upload(&Device::cpu(), t.kv_row_end()).unwrap();
    }
}

#[test]
fn invalid_forests_are_typed_errors() {
    assert_eq!(PackedTree::pack(&[]).unwrap_err(), PackError::Empty);
    let e = PackedTree::pack(&[PackNode::child(0, 2)]).unwrap_err();
    assert_eq!(e, PackError::ParentAfterChild { node: 0, parent: 0 });
    let e = PackedTree::pack(&[PackNode::root(1), PackNode::child(2, 1), PackNode::child(0, 1)])
        .unwrap_err();
    assert_eq!(e, PackError::ParentAfterChild { node: 1, parent: 2 });
    // 0 → {1 → 2, 3}; node 4 names 2, whose subtree closed when 3 started.
    let nodes = [
        PackNode::root(1),
        PackNode::child(0, 1),
        PackNode::child(1, 1),
        PackNode::child(0, 1),
        PackNode::child(2, 1),
    ];
    assert_eq!(
        PackedTree::pack(&nodes).unwrap_err(),
        PackError::NotPreOrder { node: 4, parent: 2 }
    );
    // A parent in the previous tree.
    let nodes = [PackNode::root(1), PackNode::root(1), PackNode::child(0, 1)];
    assert_eq!(
        PackedTree::pack(&nodes).unwrap_err(),
        PackError::NotPreOrder { node: 2, parent: 0 }
    );
    let nodes = [PackNode::root(2), PackNode::root(0), PackNode::child(1, 0)];
    assert_eq!(PackedTree::pack(&nodes).unwrap_err(), PackError::EmptyTree { root: 1 });
    let nodes = [PackNode::root(0), PackNode::child(0, 3), PackNode::child(0, 0)];
    assert_eq!(PackedTree::pack(&nodes).unwrap_err(), PackError::EmptyLeaf { leaf: 2 });
    let e = PackedTree::pack(&[PackNode::root(u32::MAX)]).unwrap_err();
    assert!(matches!(e, PackError::TooManyTokens { .. }), "{e}");
    assert!(e.to_string().contains("int32"));
}
