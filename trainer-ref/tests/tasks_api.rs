//! The task-independent contracts: names and configs, determinism, split disjointness over
//! 10 000 draws per split, demonstrations scored correct, vocabulary, hooks and SFT encoding.

use std::collections::HashSet;
use std::sync::Arc;

use treepo_sampler::TaskHooks;
use treepo_trainer::tasks::split::content_hash;
use treepo_trainer::tasks::{
    ArithmeticConfig, CharVocab, CountdownConfig, ParityConfig, Problem, ProblemSpec,
    SYNTHETIC_VOCAB, SftExample, Split, Task, TaskConfig, TaskError, TaskKind, TaskRng, problems,
};

const DRAWS: u64 = 10_000;

fn synthetic() -> Vec<Box<dyn Task>> {
    let mixed = ArithmeticConfig { mul_fraction: 0.3, ..ArithmeticConfig::default() };
    let four = CountdownConfig { max_numbers: 4, ..CountdownConfig::default() };
    [
        TaskConfig::ParityCot(ParityConfig::default()),
        TaskConfig::Countdown(four),
        TaskConfig::Arithmetic(mixed),
    ]
    .iter()
    .map(|c| c.build().unwrap())
    .collect()
}

/// The canonical content of a problem, recomputed here independently of the generators.
fn canonical(p: &Problem) -> String {
    match &p.spec {
        ProblemSpec::Parity { bits } => {
            format!("parity-cot|{}", bits.iter().map(|b| b.to_string()).collect::<String>())
        }
        ProblemSpec::Countdown { numbers, target } => {
            let mut n = numbers.clone();
            n.sort_unstable();
            let n: Vec<String> = n.iter().map(u32::to_string).collect();
            format!("countdown|{}>{target}", n.join(","))
        }
        ProblemSpec::Arithmetic { op, a, b } => {
            let (x, y) = if op.symbol() == '+' { (a.min(b), a.max(b)) } else { (a, b) };
            format!("arithmetic|{x}{}{y}", op.symbol())
        }
        other => panic!("not synthetic: {other:?}"),
    }
}

#[test]
fn unknown_task_names_the_known_ones() {
    let err = TaskKind::from_name("sudoku").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown task `sudoku`; known tasks: parity-cot, countdown, arithmetic, math"
    );
    assert!(matches!(TaskConfig::from_name("Countdown"), Err(TaskError::UnknownTask { .. })));
    for kind in TaskKind::ALL {
        assert_eq!(TaskKind::from_name(kind.name()).unwrap(), kind);
        assert_eq!(kind.name().parse::<TaskKind>().unwrap(), kind);
        assert_eq!(TaskConfig::from_name(kind.name()).unwrap().kind(), kind);
    }
}

#[test]
fn configs_read_from_named_tables() {
    let c: TaskConfig = serde_json::from_str(r#"{"name": "countdown", "max_numbers": 4}"#).unwrap();
    let TaskConfig::Countdown(cd) = &c else { panic!("{c:?}") };
    assert_eq!((cd.min_numbers, cd.max_numbers, cd.max_value), (3, 4, 20));
    assert_eq!(c.build().unwrap().name(), "countdown");

    let p: TaskConfig =
        serde_json::from_str(r#"{"name": "parity-cot", "p_long": 0.3, "seed": 5}"#).unwrap();
    assert_eq!(
        p,
        TaskConfig::ParityCot(ParityConfig { p_long: 0.3, seed: 5, ..Default::default() })
    );

    assert!(serde_json::from_str::<TaskConfig>(r#"{"name": "countdown", "numbers": 4}"#).is_err());
    assert!(serde_json::from_str::<TaskConfig>(r#"{"name": "sudoku"}"#).is_err());

    // The repetition rule is a table; n = 0 turns it off.
    let off: TaskConfig =
        serde_json::from_str(r#"{"name": "countdown", "repetition": {"n": 0, "count": 0}}"#)
            .unwrap();
    let hooks = off.build().unwrap().hooks(Arc::new(CharVocab::synthetic())).unwrap();
    assert!(!hooks.is_repetition(&CharVocab::synthetic().encode("11111111").unwrap()));
    let bad: TaskConfig =
        serde_json::from_str(r#"{"name": "countdown", "repetition": {"n": 3, "count": 1}}"#)
            .unwrap();
    assert!(matches!(bad.build(), Err(TaskError::InvalidConfig { task: "countdown", .. })));

    // Validation happens at build time, with the task named.
    let bad = TaskConfig::Countdown(CountdownConfig { min_numbers: 1, ..Default::default() });
    let err = bad.build().unwrap_err();
    assert!(err.to_string().starts_with("task `countdown`: invalid configuration"), "{err}");
    let bad = TaskConfig::ParityCot(ParityConfig { p_long: 1.5, ..Default::default() });
    assert!(matches!(bad.build(), Err(TaskError::InvalidConfig { task: "parity-cot", .. })));
    let bad = TaskConfig::Arithmetic(ArithmeticConfig { max_digits: 19, ..Default::default() });
    assert!(matches!(bad.build(), Err(TaskError::InvalidConfig { task: "arithmetic", .. })));
    let math = TaskConfig::from_name("math").unwrap();
    assert!(matches!(math.build(), Err(TaskError::InvalidConfig { task: "math", .. })));
}

#[test]
fn configs_read_from_toml() {
    #[derive(serde::Deserialize)]
    struct Run {
        task: TaskConfig,
    }
    let run: Run = toml::from_str(
        "[task]\nname = \"arithmetic\"\nmin_digits = 2\nmax_digits = 7\nrepetition = { n = 9, count = 6 }\n",
    )
    .unwrap();
    let want = ArithmeticConfig {
        min_digits: 2,
        max_digits: 7,
        repetition: treepo_trainer::tasks::NgramRule { n: 9, count: 6 },
        ..Default::default()
    };
    assert_eq!(run.task, TaskConfig::Arithmetic(want));
    let text = toml::to_string(&run.task).unwrap();
    assert_eq!(toml::from_str::<TaskConfig>(&text).unwrap(), run.task, "{text}");
}

#[test]
fn same_seed_same_problems_other_seed_other_problems() {
    for task in synthetic() {
        for split in [Split::Train, Split::Eval] {
            let a = problems(task.as_ref(), split, 0..200).unwrap();
            let b = problems(task.as_ref(), split, 0..200).unwrap();
            assert_eq!(a, b, "{}", task.name());
            // Index 57 alone equals index 57 of the batch: a problem is a pure function of its
            // coordinates.
            assert_eq!(task.generate(split, 57).unwrap(), a[57]);
        }
    }
    let seeded = |seed| {
        let c = TaskConfig::Countdown(CountdownConfig { seed, ..Default::default() });
        problems(c.build().unwrap().as_ref(), Split::Train, 0..100).unwrap()
    };
    let (x, y) = (seeded(1), seeded(2));
    assert_eq!(x, seeded(1));
    let same = x.iter().zip(&y).filter(|(a, b)| a.prompt == b.prompt).count();
    assert!(same < 10, "seeds 1 and 2 share {same} of 100 prompts");
}

#[test]
fn splits_never_share_a_problem() {
    for task in synthetic() {
        let mut keys = [HashSet::new(), HashSet::new()];
        let mut contents = [HashSet::new(), HashSet::new()];
        for (s, split) in [Split::Train, Split::Eval].into_iter().enumerate() {
            for i in 0..DRAWS {
                let p = task.generate(split, i).unwrap();
                assert_eq!(p.split, split);
                let content = canonical(&p);
                assert_eq!(p.key, content_hash(&content), "{}: {content}", task.name());
                assert_eq!(Split::of_hash(p.key), split, "{}: {content}", task.name());
                keys[s].insert(p.key);
                contents[s].insert(content);
            }
        }
        let name = task.name();
        assert!(keys[0].is_disjoint(&keys[1]), "{name}: a key is in both splits");
        assert!(contents[0].is_disjoint(&contents[1]), "{name}: a problem is in both splits");
        // Both splits are real samples, not a handful of repeats.
        assert!(contents[1].len() > 300, "{name}: {} distinct eval problems", contents[1].len());
        assert!(contents[0].len() > 2000, "{name}: {} distinct train problems", contents[0].len());
    }
}

#[test]
fn knobs_do_not_move_problems_across_splits() {
    // Warm up on short operands, train RL on long ones: every eval problem of either config
    // is absent from the training draws of both.
    let short = ArithmeticConfig { min_digits: 1, max_digits: 3, ..Default::default() };
    let long = ArithmeticConfig { min_digits: 1, max_digits: 4, seed: 9, ..Default::default() };
    let mut train = HashSet::new();
    let mut eval = HashSet::new();
    for c in [short, long] {
        let task = TaskConfig::Arithmetic(c).build().unwrap();
        for i in 0..3000 {
            train.insert(task.generate(Split::Train, i).unwrap().key);
            eval.insert(task.generate(Split::Eval, i).unwrap().key);
        }
    }
    assert!(train.is_disjoint(&eval));
}

#[test]
fn demonstrations_are_correct_and_in_the_vocabulary() {
    let vocab: HashSet<char> = SYNTHETIC_VOCAB.chars().collect();
    assert_eq!(vocab.len(), SYNTHETIC_VOCAB.chars().count(), "repeated symbol");
    assert!((16..=40).contains(&vocab.len()));
    for task in synthetic() {
        assert_eq!(task.vocabulary(), Some(SYNTHETIC_VOCAB));
        assert_eq!(task.stop_symbol(), Some('#'));
        let mut rng = TaskRng::from_state(3);
        for split in [Split::Train, Split::Eval] {
            for p in problems(task.as_ref(), split, 0..500).unwrap() {
                let demo = SftExample::draw(task.as_ref(), &p, &mut rng).unwrap();
                let score = task.score(&p, &demo.response).unwrap();
                assert!(score.correct && score.well_formed, "{}: {}", demo.prompt, demo.response);
                assert_eq!(score.reward, 1.0);
                assert_eq!(score.answer.as_deref(), Some(p.answer.as_str()));
                assert!(demo.response.ends_with('#'));
                assert!(demo.text().chars().all(|c| vocab.contains(&c) && c != '_'));
            }
        }
    }
}

#[test]
fn a_problem_of_another_task_is_an_error() {
    let tasks = synthetic();
    let parity = tasks[0].generate(Split::Train, 0).unwrap();
    let err = tasks[1].score(&parity, "A1#").unwrap_err();
    assert_eq!(err.to_string(), "task `countdown` was given a problem of task `parity-cot`");
    let mut rng = TaskRng::from_state(0);
    assert!(matches!(
        tasks[2].sft_response(&parity, &mut rng),
        Err(TaskError::WrongProblem { task: "arithmetic", got: "parity-cot" })
    ));
}

#[test]
fn sft_examples_encode_with_a_loss_boundary() {
    let task = TaskConfig::from_name("countdown").unwrap().build().unwrap();
    let vocab = CharVocab::new(task.vocabulary().unwrap()).unwrap();
    let p = task.generate(Split::Train, 4).unwrap();
    let demo = SftExample::draw(task.as_ref(), &p, &mut TaskRng::from_state(0)).unwrap();
    let ex = demo.encode(|t| vocab.encode(t), &[]).unwrap();
    assert_eq!(ex.prompt_len, p.prompt.chars().count());
    assert_eq!(vocab.decode_strict(ex.prompt()).unwrap(), p.prompt);
    assert_eq!(vocab.decode_strict(ex.response()).unwrap(), demo.response);
    assert_eq!(ex.response().last(), Some(&1), "the stop symbol is id 1");
    // Text tasks append the tokenizer's end-of-sequence id.
    let with_eos = demo.encode(|t| vocab.encode(t), &[99]).unwrap();
    assert_eq!(with_eos.ids.last(), Some(&99));
    // A character outside the vocabulary is a typed error.
    assert!(matches!(vocab.encode("7 + 3"), Err(TaskError::Vocabulary(_))));
    assert!(CharVocab::new("abca").is_err());
}

#[test]
fn hooks_find_the_answer_marker_in_token_segments() {
    let vocab = CharVocab::synthetic();
    let ids = |t: &str| vocab.encode(t).unwrap();
    for task in synthetic() {
        let hooks = task.hooks(Arc::new(vocab.clone())).unwrap();
        assert!(hooks.has_answer(&ids("33A33#")), "{}", task.name());
        assert!(hooks.has_answer(&ids("A")));
        assert!(!hooks.has_answer(&ids("7*3=21,21+12=33")));
        assert!(!hooks.has_answer(&ids("#")));
        assert!(!hooks.has_answer(&[]));
    }
    let tasks = synthetic();
    // Countdown: a 6-gram three times is repetition; a normal response is not.
    let cd = tasks[1].hooks(Arc::new(vocab.clone())).unwrap();
    assert!(cd.is_repetition(&ids("11111111")));
    assert!(!cd.is_repetition(&ids("7*3=21,21+12=33A33#")));
    // Parity and arithmetic legitimately repeat: no rule by default.
    let parity = tasks[0].hooks(Arc::new(vocab.clone())).unwrap();
    assert!(!parity.is_repetition(&ids("000000000000A0#")));
    let arith = tasks[2].hooks(Arc::new(vocab.clone())).unwrap();
    assert!(!arith.is_repetition(&ids("9+9+1=19,9+9+1=19,9+9+1=19")));
    // A tokenizer without the marker cannot serve the hooks.
    let other = CharVocab::new("0123456789#").unwrap();
    assert!(matches!(tasks[1].hooks(Arc::new(other)), Err(TaskError::Vocabulary(_))));
}
