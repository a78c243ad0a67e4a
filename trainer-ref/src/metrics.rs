//! Evaluation metrics (docs/treepo.md §4.2): avg@k, unbiased pass@k, maj@k and mean
//! response length.
//!
//! - **avg@k**: mean over problems of the fraction of correct samples (a pass@1 estimate).
//! - **pass@k** (Codex estimator): with `n` samples of which `c` are correct,
//!   `1 − C(n−c, k)/C(n, k)`, computed as `1 − Π_{i=n−c+1..=n} (1 − k/i)`, which never forms a
//!   binomial coefficient and so neither overflows nor loses precision.
//! - **maj@k**: the answer extracted most often among the samples wins; the problem counts as
//!   solved when that answer is correct. Samples with no extracted answer do not vote. Ties go to
//!   the tied answer whose first occurrence comes first in sample order, which makes the metric a
//!   deterministic function of the sample order. The correctness of an answer is the flag of its
//!   first occurrence (a verifier gives equal answers equal flags). This is the plain majority over
//!   the given samples, not verl's bootstrap estimate.

/// Bad input to a metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// A list that must be non-empty was empty.
    #[error("{what} is empty; pass at least one element")]
    Empty {
        /// What was empty.
        what: &'static str,
    },
    /// pass@k arguments out of range.
    #[error("pass@k needs 1 ≤ k ≤ n and c ≤ n; got n = {n}, c = {c}, k = {k}")]
    InvalidPassAtK {
        /// Samples drawn.
        n: usize,
        /// Correct samples.
        c: usize,
        /// k.
        k: usize,
    },
}

/// avg@k: mean over problems of each problem's fraction of correct samples.
pub fn avg_at_k<S: AsRef<[bool]>>(problems: &[S]) -> Result<f64, MetricsError> {
    if problems.is_empty() {
        return Err(MetricsError::Empty { what: "problems" });
    }
    let mut total = 0.0;
    for p in problems {
        let samples = p.as_ref();
        if samples.is_empty() {
            return Err(MetricsError::Empty { what: "samples of a problem" });
        }
        total += samples.iter().filter(|&&ok| ok).count() as f64 / samples.len() as f64;
    }
    Ok(total / problems.len() as f64)
}

/// Unbiased pass@k of one problem with `n` samples, `c` of them correct.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> Result<f64, MetricsError> {
    if k == 0 || k > n || c > n {
        return Err(MetricsError::InvalidPassAtK { n, c, k });
    }
    if n - c < k {
        return Ok(1.0);
    }
    let miss: f64 = (n - c + 1..=n).map(|i| 1.0 - k as f64 / i as f64).product();
    Ok(1.0 - miss)
}

/// Mean of [`pass_at_k`] over problems given as `(n, c)`.
pub fn mean_pass_at_k(problems: &[(usize, usize)], k: usize) -> Result<f64, MetricsError> {
    if problems.is_empty() {
        return Err(MetricsError::Empty { what: "problems" });
    }
    let mut total = 0.0;
    for &(n, c) in problems {
        total += pass_at_k(n, c, k)?;
    }
    Ok(total / problems.len() as f64)
}

/// Index of the first sample carrying the majority answer (`None` when no sample has an answer).
pub fn majority_answer<A: PartialEq>(answers: &[Option<A>]) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None; // (first index, count)
    for (i, answer) in answers.iter().enumerate() {
        let Some(a) = answer else { continue };
        if answers[..i].iter().any(|b| b.as_ref() == Some(a)) {
            continue; // counted at its first occurrence
        }
        let count = answers[i..].iter().filter(|b| b.as_ref() == Some(a)).count();
        if best.is_none_or(|(_, c)| count > c) {
            best = Some((i, count));
        }
    }
    best.map(|(i, _)| i)
}

/// maj@k of one problem: samples as `(extracted answer, correct)`; `false` when no sample has an
/// answer.
pub fn maj_at_k<A: PartialEq>(samples: &[(Option<A>, bool)]) -> Result<bool, MetricsError> {
    if samples.is_empty() {
        return Err(MetricsError::Empty { what: "samples of a problem" });
    }
    let answers: Vec<Option<&A>> = samples.iter().map(|(a, _)| a.as_ref()).collect();
    Ok(majority_answer(&answers).is_some_and(|i| samples[i].1))
}

/// Mean of [`maj_at_k`] over problems.
pub fn mean_maj_at_k<A: PartialEq, S: AsRef<[(Option<A>, bool)]>>(
    problems: &[S],
) -> Result<f64, MetricsError> {
    if problems.is_empty() {
        return Err(MetricsError::Empty { what: "problems" });
    }
    let mut solved = 0usize;
    for p in problems {
        solved += usize::from(maj_at_k(p.as_ref())?);
    }
    Ok(solved as f64 / problems.len() as f64)
}

/// Mean response length in tokens.
pub fn mean_response_length(lengths: &[usize]) -> Result<f64, MetricsError> {
    if lengths.is_empty() {
        return Err(MetricsError::Empty { what: "response lengths" });
    }
    Ok(lengths.iter().map(|&l| l as f64).sum::<f64>() / lengths.len() as f64)
}
