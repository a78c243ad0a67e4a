//! No caller text makes a verifier panic: arbitrary responses (biased towards each grammar's
//! own symbols, plus multi-byte characters) through every `score`, the math extraction and
//! normalisation, and the countdown verifier.

use proptest::prelude::*;
use treepo_trainer::tasks::countdown::verify;
use treepo_trainer::tasks::math::{answers_match, extract_answer, normalize_answer};
use treepo_trainer::tasks::{MathConfig, MathItem, MathTask, Split, Task, TaskConfig, TaskKind};

/// Strings over a grammar-heavy alphabet: the synthetic symbols, LaTeX pieces and a few
/// multi-byte characters (to catch slicing off a char boundary).
fn text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "0",
        "1",
        "7",
        "12",
        "+",
        "-",
        "*",
        "/",
        "=",
        ",",
        "A",
        "#",
        ":",
        ">",
        "_",
        ".",
        " ",
        "\\boxed{",
        "{",
        "}",
        "\\frac",
        "\\dfrac",
        "\\sqrt",
        "\\text{",
        "\\left",
        "$",
        "%",
        "####",
        "x=",
        "The answer is ",
        "final answer is $",
        "$. I hope",
        "</s>",
        "\n",
        "é",
        "∞",
        "𝑥",
        "\\",
        "^\\circ",
    ]);
    prop::collection::vec(pieces, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn synthetic_scores_never_panic(response in text(), index in 0u64..50) {
        for kind in [TaskKind::ParityCot, TaskKind::Countdown, TaskKind::Arithmetic] {
            let task = kind.default_config().build().unwrap();
            let p = task.generate(Split::Train, index).unwrap();
            let s = task.score(&p, &response).unwrap();
            prop_assert!(s.reward == 1.0 || s.reward == -1.0);
            prop_assert_eq!(s.correct, s.reward == 1.0);
            prop_assert!(!s.correct || s.well_formed);
        }
        let _ = verify(&[7, 3, 12], 33, &response);
    }

    #[test]
    fn math_text_functions_never_panic(a in text(), b in text()) {
        let _ = extract_answer(&a);
        let _ = normalize_answer(&a);
        prop_assert_eq!(answers_match(&a, &b), answers_match(&b, &a));
        let task = MathTask::from_items(
            MathConfig::default(),
            vec![MathItem { question: "q".into(), answer: b.clone() + "1" }],
            Some(vec![]),
        );
        let p = task.generate(Split::Train, 0).unwrap();
        let s = task.score(&p, &a).unwrap();
        prop_assert_eq!(s.correct, s.reward == 1.0);
    }
}

#[test]
fn default_math_config_names_the_missing_file() {
    let err = TaskConfig::Math(MathConfig::default()).build().unwrap_err();
    assert!(err.to_string().contains("train_file"), "{err}");
}
