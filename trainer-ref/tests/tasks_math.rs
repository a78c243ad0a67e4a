//! `math`: extraction, normalisation and equality tables, scoring, JSONL errors, splits,
//! hooks over a tokenizer.

use std::collections::HashSet;
use std::sync::Arc;

use treepo_sampler::TaskHooks;
use treepo_trainer::tasks::math::{
    Rule, answers_match, extract_answer, gold_answer, normalize_answer, parse_jsonl,
};
use treepo_trainer::tasks::{
    CharVocab, MathConfig, MathItem, MathTask, ProblemSpec, Split, Task, TaskConfig, TaskError,
    TaskRng,
};

fn item(q: &str, a: &str) -> MathItem {
    MathItem { question: q.into(), answer: a.into() }
}

#[test]
fn extraction_table() {
    let cases: &[(&str, Option<(&str, Rule)>)] = &[
        ("so $x = \\boxed{5}$.", Some(("5", Rule::Boxed))),
        ("\\boxed{\\frac{1}{2}}", Some(("\\frac{1}{2}", Rule::Boxed))),
        ("nested \\boxed{a^{b^{c}}} ok", Some(("a^{b^{c}}", Rule::Boxed))),
        ("first \\boxed{1} then \\boxed{2}.", Some(("2", Rule::Boxed))),
        ("\\boxed{\\boxed{7}}", Some(("7", Rule::Boxed))),
        ("done \\boxed{3} and \\boxed{4", Some(("3", Rule::Boxed))),
        ("\\boxed{1}<|im_end|> later \\boxed{2}", Some(("1", Rule::Boxed))),
        ("She pays 3 * 4 = 12.\n#### 1,234", Some(("1234", Rule::Hashes))),
        ("#### -5\nand then #### 42.", Some(("42", Rule::Hashes))),
        ("#### $18", Some(("18", Rule::Hashes))),
        ("\\boxed{9} vs #### 8", Some(("9", Rule::Boxed))),
        (
            "The final answer is $\\frac{3}{4}$. I hope it is correct.",
            Some(("\\frac{3}{4}", Rule::Minerva)),
        ),
        ("So the answer is 42.", Some(("42", Rule::AnswerIs))),
        ("The answer is: 7\nbecause", Some(("7", Rule::AnswerIs))),
        ("we get 3 apples and then 3.5 more", Some(("3.5", Rule::LastNumber))),
        ("a total of 1,000,000 dollars", Some(("1000000", Rule::LastNumber))),
        ("it is -.5 now", Some(("-.5", Rule::LastNumber))),
        ("no digits here", None),
        ("", None),
    ];
    for (text, want) in cases {
        let got = extract_answer(text).map(|e| (e.text, e.rule));
        let want = want.map(|(t, r)| (t.to_string(), r));
        assert_eq!(got, want, "{text:?}");
    }
}

#[test]
fn normalisation_table() {
    let cases = [
        ("$\\frac{1}{2}$", "\\frac{1}{2}"),
        ("\\dfrac12", "\\frac{1}{2}"),
        ("\\tfrac{3}4", "\\frac{3}{4}"),
        ("5\\text{ cm}", "5"),
        ("10 \\text{dollars}", "10"),
        ("\\text{(A)}", "(A)"),
        ("\\textbf{B}", "B"),
        ("x = 5", "5"),
        ("y=-3", "-3"),
        ("1,000", "1000"),
        ("-12,345.50", "-12345.5"),
        ("(1, 2)", "(1,2)"),
        ("1,2", "1,2"),
        ("72.0", "72"),
        ("72.", "72"),
        ("0.50", "0.5"),
        (".5", "0.5"),
        ("-.5", "-0.5"),
        ("\\left( 1, 2 \\right)", "(1,2)"),
        ("50\\%", "50"),
        ("30^\\circ", "30"),
        ("90^{\\circ}", "90"),
        ("\\sqrt2", "\\sqrt{2}"),
        ("3/4", "\\frac{3}{4}"),
        ("-3/4", "-\\frac{3}{4}"),
        ("1\\,000", "1000"),
        ("  7 \n", "7"),
    ];
    for (raw, want) in cases {
        assert_eq!(normalize_answer(raw), want, "{raw:?}");
    }
}

#[test]
fn equality_table() {
    let same = [
        ("0.5", "\\frac{1}{2}"),
        ("1/2", "0.5"),
        ("\\frac{3}{4}", "0.75"),
        ("\\dfrac{3}{4}", "\\frac34"),
        ("0.3333333", "1/3"),
        ("1,000", "1000"),
        ("5\\text{ cm}", "5"),
        ("x=3", "3"),
        ("-\\frac{1}{2}", "-0.5"),
        ("72.0", "72"),
        ("$18", "18"),
        ("\\text{(B)}", "(B)"),
        ("\\frac{-1}{2}", "-0.5"),
    ];
    for (a, b) in same {
        assert!(answers_match(a, b), "{a:?} should equal {b:?}");
        assert!(answers_match(b, a), "{b:?} should equal {a:?}");
    }
    let differ = [
        ("2", "3"),
        ("0.33", "1/3"),
        ("\\frac{1}{0}", "1"),
        ("(1,2)", "(2,1)"),
        ("", ""),
        ("1000", "1,0000"),
        ("A", "B"),
    ];
    for (a, b) in differ {
        assert!(!answers_match(a, b), "{a:?} should differ from {b:?}");
    }
}

#[test]
fn gold_answers_from_reference_solutions() {
    assert_eq!(gold_answer("48/2 = <<48/2=24>>24\n#### 72"), "72");
    assert_eq!(gold_answer("so it is $\\boxed{\\frac{1}{4}}$."), "\\frac{1}{4}");
    assert_eq!(gold_answer(" 1,200 "), "1,200");
}

#[test]
fn scores_responses() {
    let task = MathTask::from_items(
        MathConfig::default(),
        vec![item("What is 3 + 4?", "3 + 4 = 7\n#### 7")],
        Some(vec![item("Half of one?", "\\boxed{\\frac12}")]),
    );
    let p = task.generate(Split::Train, 0).unwrap();
    assert_eq!(
        p.prompt,
        format!("What is 3 + 4?\n{}", treepo_trainer::tasks::math::DEFAULT_INSTRUCTION)
    );
    assert_eq!(p.answer, "7");
    let score = |r: &str| {
        let s = task.score(&p, r).unwrap();
        (s.reward, s.correct, s.well_formed, s.answer)
    };
    assert_eq!(score("3+4 = 7, so \\boxed{7}."), (1.0, true, true, Some("7".into())));
    assert_eq!(score("#### 7"), (1.0, true, true, Some("7".into())));
    assert_eq!(score("\\boxed{7.0}"), (1.0, true, true, Some("7".into())));
    assert_eq!(score("The answer is 7."), (1.0, true, false, Some("7".into())));
    assert_eq!(score("\\boxed{8}"), (-1.0, false, true, Some("8".into())));
    assert_eq!(score("\\boxed{8}</s>\\boxed{7}"), (-1.0, false, true, Some("8".into())));
    assert_eq!(score("I do not know."), (-1.0, false, false, None));

    let e = task.generate(Split::Eval, 0).unwrap();
    assert!(task.score(&e, "\\boxed{0.5}").unwrap().correct);
    assert!(task.score(&e, "\\boxed{\\dfrac{1}{2}}").unwrap().correct);
    assert!(!task.score(&e, "\\boxed{2}").unwrap().correct);
    let mut rng = TaskRng::from_state(0);
    for p in [&p, &e] {
        let demo = task.sft_response(p, &mut rng).unwrap();
        assert!(task.score(p, &demo).unwrap().correct, "{demo}");
    }
    let bare = MathTask::from_items(MathConfig::default(), vec![item("q", "12")], Some(vec![]));
    let bp = bare.generate(Split::Train, 0).unwrap();
    assert_eq!(bare.sft_response(&bp, &mut rng).unwrap(), "\\boxed{12}");
    assert!(matches!(
        bare.generate(Split::Eval, 0),
        Err(TaskError::EmptySplit { split: "eval", .. })
    ));
    assert_eq!(task.vocabulary(), None);
    assert_eq!(task.stop_symbol(), None);
}

#[test]
fn jsonl_parsing_and_errors() {
    let text = "\u{FEFF}{\"question\": \"a?\", \"answer\": \"1\"}\n\n  \n{\"problem\": \"b?\", \"solution\": \"\\\\boxed{2}\"}\n{\"question\": \"c?\", \"answer\": 3.5}\n";
    let items = parse_jsonl(text, "data.jsonl").unwrap();
    assert_eq!(items, vec![item("a?", "1"), item("b?", "\\boxed{2}"), item("c?", "3.5")]);
    let err = |text: &str| parse_jsonl(text, "d.jsonl").unwrap_err().to_string();
    let ok = "{\"question\": \"a\", \"answer\": \"1\"}\n";
    assert!(err(&format!("{ok}{ok}{{oops\n")).starts_with("d.jsonl:3: not JSON: "));
    assert_eq!(err(&format!("{ok}[1, 2]")), "d.jsonl:2: expected a JSON object");
    assert_eq!(err("{\"answer\": \"1\"}"), "d.jsonl:1: missing field `question`");
    assert_eq!(err("{\"question\": \"q\"}"), "d.jsonl:1: missing field `answer`");
    assert_eq!(
        err("{\"question\": 5, \"answer\": \"1\"}"),
        "d.jsonl:1: `question` must be a string"
    );
    assert_eq!(err("{\"question\": \" \", \"answer\": \"1\"}"), "d.jsonl:1: `question` is empty");
    assert_eq!(
        err("{\"question\": \"q\", \"answer\": [1]}"),
        "d.jsonl:1: `answer` must be a string or a number"
    );
    assert_eq!(err("{\"question\": \"q\", \"answer\": \"\"}"), "d.jsonl:1: `answer` is empty");
}

#[test]
fn files_load_with_typed_errors() {
    let dir = std::env::temp_dir().join(format!("treepo-tasks-math-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let train = dir.join("train.jsonl");
    let eval = dir.join("eval.jsonl");
    std::fs::write(&train, "{\"question\": \"a\", \"answer\": \"1\"}\n{\"question\": \"b  c\", \"answer\": \"2\"}\n{\"question\": \"d\", \"answer\": \"3\"}\n").unwrap();
    std::fs::write(&eval, "{\"question\": \"b c\", \"answer\": \"2\"}\n").unwrap();
    let cfg =
        MathConfig { train_file: Some(train.clone()), eval_file: Some(eval), ..Default::default() };
    let task = TaskConfig::Math(cfg.clone()).build().unwrap();
    assert_eq!(task.name(), "math");
    let direct = MathTask::new(cfg).unwrap();
    // "b  c" is "b c" up to whitespace: it is an eval question, so it leaves the training set.
    assert_eq!(
        (direct.len(Split::Train), direct.len(Split::Eval), direct.dropped_overlap()),
        (2, 1, 1)
    );
    let missing = MathConfig { train_file: Some(dir.join("nope.jsonl")), ..Default::default() };
    let err = MathTask::new(missing).unwrap_err();
    assert!(matches!(err, TaskError::Io { .. }) && err.to_string().contains("nope.jsonl"), "{err}");
    std::fs::write(&train, "{\"question\": \"a\", \"answer\": \"1\"}\nnot json\n").unwrap();
    let bad = MathConfig { train_file: Some(train), ..Default::default() };
    let err = MathTask::new(bad).unwrap_err().to_string();
    assert!(err.contains("train.jsonl:2: not JSON"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hash_split_of_one_file_is_disjoint_and_seeded() {
    let items: Vec<MathItem> =
        (0..400).map(|i| item(&format!("What is {i} + 1?"), &(i + 1).to_string())).collect();
    let task = MathTask::from_items(MathConfig::default(), items.clone(), None);
    let (nt, ne) = (task.len(Split::Train), task.len(Split::Eval));
    assert_eq!(nt + ne, 400);
    assert!((20..90).contains(&ne), "{ne} eval questions");
    let questions = |t: &MathTask, split| -> HashSet<String> {
        (0..t.len(split) as u64)
            .map(|i| match t.generate(split, i).unwrap().spec {
                ProblemSpec::Math { question, .. } => question,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let (train, eval) = (questions(&task, Split::Train), questions(&task, Split::Eval));
    assert_eq!((train.len(), eval.len()), (nt, ne), "each index range covers its split once");
    assert!(train.is_disjoint(&eval));
    // The training order is a seeded permutation; eval keeps file order.
    let other = MathTask::from_items(MathConfig { seed: 1, ..Default::default() }, items, None);
    let order = |t: &MathTask| {
        (0..20).map(|i| t.generate(Split::Train, i).unwrap().prompt).collect::<Vec<_>>()
    };
    assert_ne!(order(&task), order(&other));
    assert_eq!(task.generate(Split::Eval, 3).unwrap(), other.generate(Split::Eval, 3).unwrap());
    assert_eq!(
        task.generate(Split::Train, 5).unwrap().prompt,
        task.generate(Split::Train, 5 + nt as u64).unwrap().prompt
    );
}

#[test]
fn text_hooks_decode_segments() {
    let task = MathTask::from_items(MathConfig::default(), vec![item("q", "1")], None);
    let vocab = CharVocab::new("\\boxed{}#0123456789 ").unwrap();
    let ids = |t: &str| vocab.encode(t).unwrap();
    let hooks = task.hooks(Arc::new(vocab.clone())).unwrap();
    assert!(hooks.has_answer(&ids(" \\boxed{7} ")));
    assert!(hooks.has_answer(&ids("#### 12")));
    assert!(!hooks.has_answer(&ids("\\boxed{7")));
    assert!(!hooks.has_answer(&ids("boxed 7")));
    assert!(!hooks.has_answer(&ids("####")));
    let looped = "0123456789".repeat(20);
    assert!(hooks.is_repetition(&ids(&looped)));
    assert!(!hooks.is_repetition(&ids(" \\boxed{7} ")));
}
