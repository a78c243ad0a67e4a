//! A seeded Markov chain over [`super::VOCAB`]: logits depend on (last token, context position),
//! tokens are drawn through [`crate::logits::sample_rows`] with the requests' uniforms.

use super::{BOXED_OPEN, CLOSE, EOS, EOT, Row, ToyModel, VOCAB};
use crate::engine::{DecodeParams, EngineError};
use crate::logits::{Sampled, sample_rows};
use crate::seed::{combine, unit_f64};

/// Shape of the chain.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MarkovConfig {
    /// Seed of the transition table.
    pub seed: u64,
    /// Width of the random base logits (uniform in `[-spread/2, spread/2]`).
    pub spread: f32,
    /// Base logit of the stop tokens ([`EOS`], [`EOT`]).
    pub stop_logit: f32,
    /// Added to the stop logits per context position (longer contexts stop more often).
    pub stop_ramp: f32,
}

impl Default for MarkovConfig {
    fn default() -> Self {
        Self { seed: 7, spread: 3.0, stop_logit: -4.0, stop_ramp: 0.02 }
    }
}

/// The chain. Structure on top of the random table, so that answers appear: after `\boxed{`
/// digits are likely, after a digit `}` is, after `}` a stop token is.
#[derive(Clone, Debug)]
pub struct MarkovModel {
    config: MarkovConfig,
    table: Vec<f32>,
    logits: Vec<f32>,
}

const V: usize = VOCAB.len();

impl MarkovModel {
    /// Builds the transition table from `config.seed`.
    #[must_use]
    pub fn new(config: MarkovConfig) -> Self {
        let mut table = vec![0.0f32; (V + 1) * V];
        for (i, x) in table.iter_mut().enumerate() {
            let u = unit_f64(combine(config.seed, i as u64)) as f32;
            *x = (u - 0.5) * config.spread;
        }
        for last in 0..=V {
            let row = &mut table[last * V..(last + 1) * V];
            row[EOS as usize] = config.stop_logit;
            row[EOT as usize] = config.stop_logit - 1.0;
            match last as u32 {
                BOXED_OPEN => (5..=8).for_each(|d| row[d] += 3.0),
                5..=8 => row[CLOSE as usize] += 1.5,
                CLOSE => {
                    row[EOS as usize] += 5.0;
                    row[EOT as usize] += 5.0;
                }
                _ => {}
            }
        }
        Self { config, table, logits: Vec::new() }
    }

    /// Raw logits after `last` (`None`: empty context) at context position `position`.
    #[must_use]
    pub fn raw_logits(&self, last: Option<u32>, position: usize) -> Vec<f32> {
        let mut out = vec![0.0; V];
        self.fill(last, position, &mut out);
        out
    }

    fn fill(&self, last: Option<u32>, position: usize, out: &mut [f32]) {
        let row = last.map_or(V, |t| (t as usize).min(V - 1));
        out.copy_from_slice(&self.table[row * V..(row + 1) * V]);
        let ramp = self.config.stop_ramp * position as f32;
        out[EOS as usize] += ramp;
        out[EOT as usize] += ramp;
    }
}

impl ToyModel for MarkovModel {
    fn next_tokens(
        &mut self,
        rows: &[Row<'_>],
        params: &DecodeParams,
    ) -> Result<Vec<Option<Sampled>>, EngineError> {
        let mut logits = std::mem::take(&mut self.logits);
        logits.resize(rows.len() * V, 0.0);
        for (r, chunk) in rows.iter().zip(logits.chunks_exact_mut(V)) {
            self.fill(r.last_token, r.position, chunk);
        }
        let uniforms: Vec<f64> = rows.iter().map(|r| r.uniform).collect();
        let drawn = sample_rows(&mut logits, V, &params.sampling, &uniforms, params.entropy)
            .map_err(|e| EngineError::Backend(format!("toy sampling: {e}")));
        self.logits = logits;
        Ok(drawn?.into_iter().map(Some).collect())
    }
}
