//! The decode-step workload of the tree-kv benchmark: many TreePO trees of equal shape.

use tree_kv::{CacheConfig, KvError, NodeId, TreeKvCache};

/// Shape of one rollout forest.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Trees (queries).
    pub prompts: u32,
    /// Prompt length in tokens.
    pub prompt_len: u32,
    /// Leaves per tree once fully branched (TreePO's w).
    pub width: u32,
    /// Segments per root-to-leaf path (TreePO's d).
    pub depth: u32,
    /// Tokens per segment (TreePO's l).
    pub segment: u32,
    /// Tokens per page.
    pub page_size: u32,
    /// Whether a path that does not branch still gets a new node per segment (`fork(n, 1)`), the
    /// worst case for node counts; otherwise its segments are appended to the same leaf.
    pub node_per_segment: bool,
}

impl Shape {
    /// The issue's export benchmark: 64 prompts x 16 leaves of depth 14, segment 32, page 16,
    /// with a 37-token prompt so every fork has a partial tail.
    pub fn issue3() -> Self {
        Self {
            prompts: 64,
            prompt_len: 37,
            width: 16,
            depth: 14,
            segment: 32,
            page_size: 16,
            node_per_segment: true,
        }
    }
}

/// A built forest and its active leaves.
pub struct Forest {
    /// The cache holding every tree.
    pub cache: TreeKvCache,
    /// Active leaves, tree by tree.
    pub leaves: Vec<NodeId>,
}

/// Builds `shape.prompts` trees: every path forks into 2 (b = 2) until `width` paths are active,
/// then continues with one node per segment or on the same leaf (see [`Shape`]).
pub fn build(shape: Shape) -> Result<Forest, KvError> {
    let paths_pages = (shape.prompt_len + shape.depth * shape.segment).div_ceil(shape.page_size);
    let num_pages = shape.prompts * shape.width * (paths_pages + 2);
    let config = CacheConfig::new(num_pages).with_page_size(shape.page_size);
    let mut cache = TreeKvCache::new(config)?;
    let mut leaves = Vec::new();
    let mut token = 0u32;
    let mut next = |n: u32| -> Vec<u32> {
        token += n;
        (token - n..token).collect()
    };
    for q in 0..shape.prompts {
        let prompt: Vec<u32> = (0..shape.prompt_len).map(|i| 1_000_000 * (q + 1) + i).collect();
        let mut level = vec![cache.create_root(&prompt)?.node];
        for _ in 0..shape.depth {
            let b = if level.len() < shape.width as usize { 2 } else { 1 };
            let mut grown = Vec::with_capacity(level.len() * b as usize);
            for n in level {
                if b == 1 && !shape.node_per_segment {
                    cache.append(n, &next(shape.segment))?;
                    grown.push(n);
                    continue;
                }
                for child in cache.fork(n, b)?.children {
                    cache.append(child, &next(shape.segment))?;
                    grown.push(child);
                }
            }
            level = grown;
        }
        leaves.extend(level);
    }
    Ok(Forest { cache, leaves })
}
