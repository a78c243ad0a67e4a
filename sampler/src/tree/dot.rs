//! Graphviz DOT rendering: one cluster per query; nodes labelled with their token count, leaves
//! with their finish reason too.

use std::fmt::Write;

use super::{NodeId, RolloutTree};

pub(super) fn render(tree: &RolloutTree) -> String {
    let mut out = String::from(
        "digraph rollout {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n",
    );
    for (qi, q) in tree.queries.iter().enumerate() {
        let _ = writeln!(
            out,
            "  subgraph cluster_q{qi} {{\n    label=\"query {} ({} leaves)\";",
            q.id,
            q.leaves.len()
        );
        for (ni, n) in q.nodes.iter().enumerate() {
            let leaf = q.leaves.iter().find(|l| l.node == NodeId(ni as u32));
            let label = match (ni, leaf) {
                (0, _) => format!("prompt\\n{} tok", q.prompt.len()),
                (_, Some(l)) => format!("{} tok\\n{}", n.tokens.len(), l.reason.label()),
                (_, None) => format!("{} tok", n.tokens.len()),
            };
            let style = if leaf.is_some() { ", style=rounded" } else { "" };
            let _ = writeln!(out, "    q{qi}_n{ni} [label=\"{label}\"{style}];");
            if let Some(p) = n.parent {
                let _ = writeln!(out, "    q{qi}_n{} -> q{qi}_n{ni};", p.0);
            }
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    out
}
