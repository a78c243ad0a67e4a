//! Multi-row work: prompt prefill (with prefix reuse) and [`ModelEngine::extend`] (teacher
//! forcing known tokens onto a leaf). Both become "jobs" — positions `[start, end)` of a leaf
//! whose K/V slots tree-kv has reserved — packed into forwards of at most `max_batch_rows` rows;
//! a longer job is chunked, each chunk attending causally to the chunks before it.

use tree_kv::{NodeId, Slot};
use treepo_sampler::{EngineError, EngineNode};

use super::ModelEngine;
use super::error::{internal, kv};
use super::forward::Rows;
use super::nodes::NodeEntry;

/// Rows to compute for one leaf: positions `start .. start + tokens.len()`.
pub(super) struct Job<'a> {
    pub node: NodeId,
    pub start: u32,
    pub tokens: &'a [u32],
    pub slots: Vec<Slot>,
}

impl ModelEngine<'_> {
    /// Checks token ids and that a context of `len` tokens fits.
    fn check_tokens(&self, what: &str, tokens: &[u32], len: usize) -> Result<(), EngineError> {
        let v = self.core.d.vocab;
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= v) {
            return Err(EngineError::InvalidRequest(format!(
                "{what}: token {t} is outside the model's vocabulary of {v}"
            )));
        }
        if len >= self.core.max_context {
            return Err(EngineError::InvalidRequest(format!(
                "{what}: a context of {len} tokens leaves no room below max_context = {}",
                self.core.max_context
            )));
        }
        Ok(())
    }

    pub(super) fn prefill_impl(
        &mut self,
        prompts: &[&[u32]],
    ) -> Result<Vec<EngineNode>, EngineError> {
        for (i, p) in prompts.iter().enumerate() {
            if p.is_empty() {
                return Err(EngineError::InvalidRequest(format!(
                    "prompt {i} is empty: there is no token to compute logits from"
                )));
            }
            self.check_tokens(&format!("prompt {i}"), p, p.len())?;
        }
        let mut roots = Vec::with_capacity(prompts.len());
        for p in prompts {
            match self.cache.create_root(p) {
                Ok(r) => roots.push(r),
                Err(e) => {
                    // Atomic: drop the roots made so far. Their new full pages are already in
                    // the radix index but hold no K/V yet, so the cached pages are evicted too
                    // (the pool is exhausted, so nothing else is left to evict).
                    for r in &roots {
                        self.cache.release(r.node).map_err(|e| kv("prefill rollback", e))?;
                    }
                    self.cache.evict_all();
                    return Err(kv("create_root", e));
                }
            }
        }
        let jobs: Vec<Job<'_>> = roots
            .iter_mut()
            .zip(prompts)
            .map(|(r, p)| Job {
                node: r.node,
                start: r.cached_tokens,
                tokens: &p[r.cached_tokens as usize..],
                slots: std::mem::take(&mut r.slots),
            })
            .collect();
        let hidden = match self.run_jobs(&jobs) {
            Ok(h) => h,
            Err(e) => {
                // The engine is failed from here on; still leave the pool empty-able.
                for r in &roots {
                    let _ = self.cache.release(r.node);
                }
                self.cache.evict_all();
                return Err(e);
            }
        };
        for r in &roots {
            self.stats.cached_prompt_tokens += u64::from(r.cached_tokens);
        }
        Ok(roots
            .iter()
            .zip(hidden)
            .map(|(r, hidden)| self.nodes.insert(NodeEntry { kv: r.node, hidden }))
            .collect())
    }

    /// Appends known `tokens` to the leaf `node` (teacher forcing: no sampling), computing their
    /// K/V through the multi-row path; full pages already in the prefix cache are reused when
    /// the node ends on a page boundary. Afterwards [`Self::node_logits`] gives the logits after
    /// the last of them. Use it to re-create a path from its tokens or to score a continuation.
    ///
    /// Errors: an invalid handle, a forked node (`Frozen`), tokens outside the vocabulary or
    /// past `max_context` (`InvalidRequest`), or [`EngineError::KvExhausted`] (nothing appended).
    pub fn extend(&mut self, node: EngineNode, tokens: &[u32]) -> Result<(), EngineError> {
        self.healthy()?;
        let id = self.appendable(node)?;
        if tokens.is_empty() {
            return Ok(());
        }
        let end = self.cache.node(id).map_err(|e| kv("node", e))?.end;
        self.check_tokens("extend", tokens, end as usize + tokens.len())?;
        let pf = self.cache.prefill(id, tokens).map_err(|e| kv("extend", e))?;
        let job = Job {
            node: id,
            start: end + pf.cached_tokens,
            tokens: &tokens[pf.cached_tokens as usize..],
            slots: pf.slots,
        };
        let r = self.on_pool(|e| e.run_jobs(std::slice::from_ref(&job)));
        let mut hidden = self.note(r)?;
        self.nodes.get_mut(node)?.hidden = hidden.pop().unwrap_or_default();
        Ok(())
    }

    /// Computes every job's rows; returns each job's last hidden state `[C]`.
    pub(super) fn run_jobs(&mut self, jobs: &[Job<'_>]) -> Result<Vec<Vec<f32>>, EngineError> {
        let max = self.core.max_rows;
        // Chunks (job, offset, len) in job order; a batch never holds two chunks of one job.
        let mut chunks = Vec::new();
        for (j, job) in jobs.iter().enumerate() {
            if job.tokens.is_empty() || job.slots.len() != job.tokens.len() {
                return Err(internal("prefill", format!("job {j} has no rows to compute")));
            }
            chunks.extend(
                (0..job.tokens.len()).step_by(max).map(|o| (j, o, max.min(job.tokens.len() - o))),
            );
        }
        let mut hidden = vec![Vec::new(); jobs.len()];
        let mut batch: Vec<(usize, usize, usize)> = Vec::new();
        for (k, &chunk) in chunks.iter().enumerate() {
            batch.push(chunk);
            let rows: usize = batch.iter().map(|b| b.2).sum();
            let next = chunks.get(k + 1);
            let full =
                next.is_none_or(|&(nj, _, nl)| rows + nl > max || batch.iter().any(|b| b.0 == nj));
            if full {
                self.run_batch(jobs, &batch, &mut hidden)?;
                batch.clear();
            }
        }
        Ok(hidden)
    }

    /// One forward over `batch`; stores the last hidden state of each job it completes.
    fn run_batch(
        &mut self,
        jobs: &[Job<'_>],
        batch: &[(usize, usize, usize)],
        hidden: &mut [Vec<f32>],
    ) -> Result<(), EngineError> {
        let ps = self.cache.page_size();
        let s = &mut self.scratch;
        s.clear_rows();
        for &(j, off, len) in batch {
            let job = &jobs[j];
            let start = job.start + off as u32;
            s.leaves.push(job.node);
            s.spans.push((start, start + len as u32));
            for i in off..off + len {
                s.ids.push(job.tokens[i] as i32);
                s.pos.push((job.start as usize + i) as i32);
                // Fits: the engine checked num_pages * page_size <= i32::MAX.
                s.slots.push(job.slots[i].flat(ps) as i32);
            }
        }
        let rows = Rows {
            leaves: &s.leaves,
            spans: &s.spans,
            ids: &s.ids,
            positions: &s.pos,
            slots: &s.slots,
        };
        self.core.forward(&self.cache, &rows)?;
        let n = s.ids.len();
        self.stats.forwards += 1;
        self.stats.rows += n as u64;
        let done = |b: &(usize, usize, usize)| b.1 + b.2 == jobs[b.0].tokens.len();
        if batch.iter().any(done) {
            let c = self.core.d.c;
            let h = self.core.get_hidden(n)?;
            let mut row = 0;
            for b in batch {
                row += b.2;
                if done(b) {
                    hidden[b.0] = h[(row - 1) * c..row * c].to_vec();
                }
            }
        }
        Ok(())
    }
}
