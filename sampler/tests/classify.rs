//! Classification order (docs/treepo.md §1.3), every rule and both priorities, and the text hooks.

use std::collections::BTreeSet;

use treepo_sampler::classify::{
    ClassifyRules, Verdict, classify_segment, extract_last_boxed, has_ngram_repetition,
    has_repetition,
};
use treepo_sampler::toy::{self, BOXED_OPEN, CLOSE, EOS, EOT};
use treepo_sampler::{BoxedEosPolicy, FinishReason, NgramHooks, RepetitionPolicy, TaskHooks};

/// Hooks driven by marker tokens: 100 = "answer", 200 = "repetition".
struct Markers;
impl TaskHooks for Markers {
    fn has_answer(&self, s: &[u32]) -> bool {
        s.contains(&100)
    }
    fn is_repetition(&self, s: &[u32]) -> bool {
        s.contains(&200)
    }
}

const ANS: u32 = 100;
const REP: u32 = 200;
const X: u32 = 7;

fn rules(
    stop: &BTreeSet<u32>,
    repetition: RepetitionPolicy,
    boxed_eos: BoxedEosPolicy,
) -> ClassifyRules<'_> {
    ClassifyRules { stop, max_response: 20, max_depth: 4, repetition, boxed_eos }
}

fn fin(reason: FinishReason) -> Verdict {
    Verdict::Finish { reason, truncate_to: None }
}

/// (segment, response_len, depth, repetition policy, boxed policy, expected)
type Row<'a> = (&'a [u32], usize, usize, RepetitionPolicy, BoxedEosPolicy, Verdict);

#[test]
fn classification_order_table() {
    use BoxedEosPolicy::{BoxedAndEosFirst as AndEos, BoxedAsEos as AsEos};
    use FinishReason::*;
    use RepetitionPolicy::{LeastPrioritized as Least, MostPrioritized as Most};
    let stop: BTreeSet<u32> = [EOS, EOT].into();
    let table: Vec<Row<'_>> = vec![
        // 7. nothing applies.
        (&[X, X], 5, 1, Least, AndEos, Verdict::Active),
        // 3. stop token at the first position, the middle, the end; either stop id.
        (&[EOS, X, X], 5, 1, Least, AndEos, fin(EarlyStoppedByEos)),
        (&[X, EOT, X], 5, 1, Least, AndEos, fin(EarlyStoppedByEos)),
        (&[X, X, EOT], 5, 1, Least, AndEos, fin(EarlyStoppedByEos)),
        // 2. answer + stop → Finished; answer alone stays active unless boxed_as_eos.
        (&[ANS, EOS], 5, 1, Least, AndEos, fin(Finished)),
        (&[ANS, X], 5, 1, Least, AndEos, Verdict::Active),
        (&[ANS, X], 5, 1, Least, AsEos, fin(Finished)),
        // 2 before 4/5: an answer with stop at the length and depth limits is Finished.
        (&[ANS, EOS], 20, 4, Least, AndEos, fin(Finished)),
        // 3 before 4: a stop at the length limit is EarlyStoppedByEos.
        (&[X, EOS], 20, 1, Least, AndEos, fin(EarlyStoppedByEos)),
        // 4. length: equal → no truncation needed, longer → truncate to max_response.
        (&[X, X], 20, 1, Least, AndEos, fin(MaxOutputTokens)),
        (
            &[X, X],
            23,
            1,
            Least,
            AndEos,
            Verdict::Finish { reason: MaxOutputTokens, truncate_to: Some(20) },
        ),
        // 4 before 5.
        (&[X, X], 20, 4, Least, AndEos, fin(MaxOutputTokens)),
        // 5. depth.
        (&[X, X], 8, 4, Least, AndEos, fin(MaxInferSteps)),
        (&[X, X], 8, 5, Least, AndEos, fin(MaxInferSteps)),
        // 6. repetition least prioritized: after everything else.
        (&[REP, X], 8, 1, Least, AndEos, fin(RepetitionStop)),
        (&[REP, EOS], 8, 1, Least, AndEos, fin(EarlyStoppedByEos)),
        (&[REP, ANS, EOS], 8, 1, Least, AndEos, fin(Finished)),
        (&[REP, X], 20, 1, Least, AndEos, fin(MaxOutputTokens)),
        (&[REP, X], 8, 4, Least, AndEos, fin(MaxInferSteps)),
        // 1. repetition most prioritized: before everything.
        (&[REP, EOS], 8, 1, Most, AndEos, fin(RepetitionStop)),
        (&[REP, ANS, EOS], 8, 1, Most, AndEos, fin(RepetitionStop)),
        (&[REP, X], 20, 4, Most, AndEos, fin(RepetitionStop)),
        (&[X, X], 8, 1, Most, AndEos, Verdict::Active),
        // The empty segment.
        (&[], 8, 1, Least, AndEos, Verdict::Active),
    ];
    for (i, (seg, len, depth, rep, boxed, want)) in table.into_iter().enumerate() {
        let got = classify_segment(seg, len, depth, &rules(&stop, rep, boxed), &Markers);
        assert_eq!(got, want, "row {i}: {seg:?} len {len} depth {depth} {rep:?} {boxed:?}");
    }
}

#[test]
fn text_hooks_on_the_toy_vocabulary() {
    let hooks = toy::text_hooks();
    let stop: BTreeSet<u32> = [EOS].into();
    let r = rules(&stop, RepetitionPolicy::LeastPrioritized, BoxedEosPolicy::BoxedAndEosFirst);
    // "\boxed{0}<eos>" → Finished; "\boxed{0" (unclosed) + eos → EarlyStoppedByEos.
    assert_eq!(
        classify_segment(&[BOXED_OPEN, 5, CLOSE, EOS], 4, 1, &r, &hooks),
        fin(FinishReason::Finished)
    );
    assert_eq!(
        classify_segment(&[BOXED_OPEN, 5, EOS], 3, 1, &r, &hooks),
        fin(FinishReason::EarlyStoppedByEos)
    );
    assert_eq!(toy::detokenize(&[BOXED_OPEN, 5, CLOSE, EOS]), "\\boxed{0}<eos>");
}

#[test]
fn boxed_extraction_matches_the_regex() {
    assert_eq!(extract_last_boxed("x \\boxed{42} y"), Some("42"));
    assert_eq!(extract_last_boxed("\\boxed{1} then \\boxed{2}"), Some("2"));
    assert_eq!(extract_last_boxed("\\boxed{\\frac{1}{2}}"), Some("\\frac{1}{2}"));
    // Two nested levels inside the box are fine, three are not.
    assert_eq!(extract_last_boxed("\\boxed{a{b{c}}}"), Some("a{b{c}}"));
    assert_eq!(extract_last_boxed("\\boxed{a{b{c{d}}}}"), None);
    // A too-deep box does not hide a later one, and an inner box inside it can match.
    assert_eq!(extract_last_boxed("\\boxed{{{{x}}}} \\boxed{y}"), Some("y"));
    assert_eq!(extract_last_boxed("\\boxed{{{{\\boxed{z}}}}}"), Some("z"));
    // Matches do not overlap: the outer box wins over the one in its content.
    assert_eq!(extract_last_boxed("\\boxed{\\boxed{1}}"), Some("\\boxed{1}"));
    // Unclosed, empty, newlines and non-ASCII.
    assert_eq!(extract_last_boxed("\\boxed{12"), None);
    assert_eq!(extract_last_boxed("\\boxed{}"), Some(""));
    assert_eq!(extract_last_boxed("\\boxed{a\nb}"), Some("a\nb"));
    assert_eq!(extract_last_boxed("é \\boxed{π}"), Some("π"));
    assert_eq!(extract_last_boxed("boxed{1}"), None);
}

#[test]
fn repetition_boundary_seven_versus_eight() {
    // 38 identical characters hold 7 windows of 32, 39 hold 8.
    assert!(!has_repetition(&"a".repeat(38), 32, 8));
    assert!(has_repetition(&"a".repeat(39), 32, 8));
    // A 32-character block repeated: "ab"×16 = 32 chars; windows of "abab…" at even offsets match.
    let s = "ab".repeat(16 + 7); // 46 chars → 15 windows, 8 at even offsets equal
    assert!(has_repetition(&s, 32, 8));
    let s = "ab".repeat(16 + 6) + "c"; // 45 chars: windows 0..=13, 7 even offsets
    assert!(!has_repetition(&s, 32, 8));
    // Characters, not bytes.
    assert!(!has_repetition(&"é".repeat(38), 32, 8));
    assert!(has_repetition(&"é".repeat(39), 32, 8));
    assert!(!has_repetition("short", 32, 8));
}

#[test]
fn token_ngram_hooks() {
    assert!(has_ngram_repetition(&[1, 2, 1, 2, 1, 2], 2, 3));
    assert!(!has_ngram_repetition(&[1, 2, 1, 2, 1, 3], 2, 3));
    assert!(has_ngram_repetition(&[5; 4], 2, 3)); // overlapping
    assert!(!has_ngram_repetition(&[5; 3], 4, 1));
    let hooks = NgramHooks::new(2, 3, |s: &[u32]| s.ends_with(&[9, 9]));
    assert!(hooks.is_repetition(&[1, 2, 1, 2, 1, 2]));
    assert!(hooks.has_answer(&[3, 9, 9]));
    let stop: BTreeSet<u32> = [0].into();
    let r = rules(&stop, RepetitionPolicy::MostPrioritized, BoxedEosPolicy::BoxedAsEos);
    assert_eq!(classify_segment(&[3, 9, 9], 3, 1, &r, &hooks), fin(FinishReason::Finished));
    assert_eq!(
        classify_segment(&[4, 4, 4, 4, 0], 5, 1, &r, &hooks),
        fin(FinishReason::RepetitionStop)
    );
}
