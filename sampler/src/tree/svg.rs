//! A self-contained SVG rendering with a hand-written layered layout: depth goes down, leaves of
//! the subtree order go across (each leaf of the layout gets one column, an inner node sits at
//! the mean of its children), queries are stacked. No Graphviz needed.

use std::fmt::Write;

use super::{NodeId, QueryTree, RolloutTree};

const COL: f64 = 64.0;
const ROW: f64 = 56.0;
const BOX_W: f64 = 56.0;
const BOX_H: f64 = 30.0;
const MARGIN: f64 = 16.0;
const TITLE: f64 = 22.0;

/// Column position of every node of one query (post-order: leaves left to right).
fn layout(q: &QueryTree) -> (Vec<f64>, usize) {
    let mut x = vec![0.0; q.nodes.len()];
    let mut next = 0usize;
    // Iterative post-order to survive deep chains.
    let mut stack = vec![(NodeId::ROOT, false)];
    while let Some((id, expanded)) = stack.pop() {
        let node = &q.nodes[id.index()];
        if node.children.is_empty() {
            x[id.index()] = next as f64;
            next += 1;
        } else if expanded {
            let sum: f64 = node.children.iter().map(|c| x[c.index()]).sum();
            x[id.index()] = sum / node.children.len() as f64;
        } else {
            stack.push((id, true));
            stack.extend(node.children.iter().rev().map(|&c| (c, false)));
        }
    }
    (x, next.max(1))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub(super) fn render(tree: &RolloutTree) -> String {
    let layouts: Vec<(Vec<f64>, usize)> = tree.queries.iter().map(layout).collect();
    let width = layouts.iter().map(|(_, c)| *c).max().unwrap_or(1) as f64 * COL + 2.0 * MARGIN;
    let heights: Vec<f64> = tree
        .queries
        .iter()
        .map(|q| {
            let depth = q.nodes.iter().map(|n| n.depth).max().unwrap_or(0) as f64;
            TITLE + (depth + 1.0) * ROW + MARGIN
        })
        .collect();
    let height = heights.iter().sum::<f64>() + MARGIN;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"monospace\" font-size=\"10\">"
    );
    out.push_str("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    let mut top = MARGIN;
    for ((q, (xs, _)), h) in tree.queries.iter().zip(&layouts).zip(&heights) {
        let _ = writeln!(
            out,
            "<text x=\"{MARGIN}\" y=\"{:.1}\" font-size=\"12\">{}</text>",
            top + 12.0,
            escape(&format!("query {}: {} leaves, {} nodes", q.id, q.leaves.len(), q.nodes.len()))
        );
        let pos = |id: NodeId| {
            let n = &q.nodes[id.index()];
            (
                MARGIN + xs[id.index()] * COL + COL / 2.0,
                top + TITLE + f64::from(n.depth) * ROW + BOX_H / 2.0,
            )
        };
        for (ni, n) in q.nodes.iter().enumerate() {
            if let Some(p) = n.parent {
                let ((x1, y1), (x2, y2)) = (pos(p), pos(NodeId(ni as u32)));
                let _ = writeln!(
                    out,
                    "<line x1=\"{x1:.1}\" y1=\"{:.1}\" x2=\"{x2:.1}\" y2=\"{:.1}\" stroke=\"#888\"/>",
                    y1 + BOX_H / 2.0,
                    y2 - BOX_H / 2.0
                );
            }
        }
        for (ni, n) in q.nodes.iter().enumerate() {
            let id = NodeId(ni as u32);
            let (cx, cy) = pos(id);
            let leaf = q.leaves.iter().find(|l| l.node == id);
            let (fill, line1, line2) = match (ni, leaf) {
                (0, _) => ("#dde8f6", "prompt".to_string(), format!("{} tok", q.prompt.len())),
                (_, Some(l)) => {
                    ("#e3f4dc", format!("{} tok", n.tokens.len()), l.reason.label().to_string())
                }
                (_, None) => ("#f4f4f4", format!("{} tok", n.tokens.len()), String::new()),
            };
            let _ = writeln!(
                out,
                "<g><title>{}</title><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"4\" \
                 fill=\"{fill}\" stroke=\"#444\"/><text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
                 <text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"8\">{}</text></g>",
                escape(&format!("node {ni}, depth {}, step {}", n.depth, n.step)),
                cx - BOX_W / 2.0,
                cy - BOX_H / 2.0,
                cy - 2.0,
                escape(&line1),
                cy + 10.0,
                escape(&line2)
            );
        }
        top += h;
    }
    out.push_str("</svg>\n");
    out
}
