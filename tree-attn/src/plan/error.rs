//! Why a tree or a leaf set cannot be planned.

use std::ops::Range;

/// A [`TreeKvView`](super::TreeKvView), its leaves or the options break the tree-kv contract.
/// Nothing was planned; the [`Plan`](super::Plan) keeps its previous contents undefined.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// `page_size` must be a power of two.
    #[error("page_size = {page_size} is not a power of two")]
    PageSize {
        /// The value given.
        page_size: u32,
    },
    /// A leaf or parent names a node that does not exist.
    #[error("{what} names node {node} but the view holds {num_nodes} nodes")]
    NodeOutOfRange {
        /// `"leaf"` (with its index) or `"parent of node N"`.
        what: String,
        /// The bad node id.
        node: u32,
        /// Nodes in the view.
        num_nodes: usize,
    },
    /// Following parents from `node` loops.
    #[error("the parent links from node {node} form a cycle")]
    Cycle {
        /// A node on the cycle.
        node: u32,
    },
    /// A chunk must start on a page boundary (0 for a root).
    #[error("node {node}: kv_start = {kv_start} is not a multiple of page_size = {page_size}")]
    Unaligned {
        /// The node.
        node: u32,
        /// Its first position.
        kv_start: u32,
        /// Tokens per page.
        page_size: u32,
    },
    /// `kv_start > kv_end`.
    #[error("node {node}: kv range {kv_start}..{kv_end} is reversed")]
    Reversed {
        /// The node.
        node: u32,
        /// Its first position.
        kv_start: u32,
        /// One past its last position.
        kv_end: u32,
    },
    /// The node's page range lies outside `page_ids` or holds too few pages for its tokens.
    #[error("node {node}: pages {pages:?} (of {listed} page ids) cannot hold its {tokens} tokens")]
    Pages {
        /// The node.
        node: u32,
        /// Its page range.
        pages: Range<u32>,
        /// `page_ids.len()`.
        listed: usize,
        /// `kv_end - kv_start`.
        tokens: u32,
    },
    /// A page id is negative.
    #[error("node {node}: page id {page} is negative")]
    NegativePage {
        /// The node.
        node: u32,
        /// The page id.
        page: i32,
    },
    /// A root's chunk must start at position 0.
    #[error("root node {node} starts at position {kv_start}, not 0")]
    RootStart {
        /// The root.
        node: u32,
        /// Its first position.
        kv_start: u32,
    },
    /// A child's chunk must start where its parent's ends (which is page-aligned).
    #[error(
        "node {node} starts at {kv_start} but its parent {parent} ends at {parent_end} \
         (a parent with children must end on a page boundary, where the child starts)"
    )]
    Discontiguous {
        /// The child.
        node: u32,
        /// Its parent.
        parent: u32,
        /// The child's first position.
        kv_start: u32,
        /// The parent's `kv_end`.
        parent_end: u32,
    },
    /// A leaf asks for no query row, or for more rows than its sequence holds.
    #[error("leaf {leaf} (node {node}) asks for {q_rows} query rows of a {len}-token sequence")]
    QueryRows {
        /// Index in the leaf list.
        leaf: usize,
        /// Its node.
        node: u32,
        /// Rows asked for.
        q_rows: u32,
        /// The sequence length (`kv_end` of the node).
        len: u32,
    },
    /// Raw CSR block tables ([`CsrForest::from_csr`](crate::CsrForest::from_csr)) are
    /// inconsistent: what is wrong, naming the array and the sequence.
    #[error("CSR block table: {0}")]
    Csr(String),
    /// An option is out of range.
    #[error("invalid plan option: {0}")]
    Options(String),
    /// A count exceeds the kernels' `i32` indices.
    #[error("{0} exceeds the kernels' i32 range")]
    TooLarge(&'static str),
}
