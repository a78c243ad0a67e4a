//! `countdown`: every instance solvable, the verifier pinned on hand-written responses, the
//! solver's demonstrations correct and diverse.

use std::collections::HashSet;

use treepo_trainer::tasks::countdown::{
    Op, Step, Verdict, format_response, is_solvable, parse_response, solve, verify,
};
use treepo_trainer::tasks::{
    Countdown, CountdownConfig, Problem, ProblemSpec, Split, Task, TaskRng, problems,
};

fn spec(p: &Problem) -> (Vec<u32>, u32) {
    match &p.spec {
        ProblemSpec::Countdown { numbers, target } => (numbers.clone(), *target),
        other => panic!("{other:?}"),
    }
}

#[test]
fn prompt_and_response_format() {
    let task = Countdown::new(CountdownConfig::default()).unwrap();
    let p = task.generate(Split::Train, 0).unwrap();
    let (numbers, target) = spec(&p);
    let listed: Vec<String> = numbers.iter().map(u32::to_string).collect();
    assert_eq!(p.prompt, format!("{}>{target}:", listed.join(",")));
    assert_eq!(p.answer, target.to_string());
    let steps = [
        Step { lhs: 7, op: Op::Mul, rhs: 3, result: 21 },
        Step { lhs: 21, op: Op::Add, rhs: 12, result: 33 },
    ];
    assert_eq!(format_response(&steps, 33), "7*3=21,21+12=33A33#");
    assert_eq!(
        parse_response("7*3=21,21+12=33A33#").unwrap(),
        treepo_trainer::tasks::countdown::Parsed { steps: steps.to_vec(), answer: 33 }
    );
}

#[test]
fn verifier_verdicts() {
    let n = [7, 3, 12];
    let cases: &[(&str, Verdict)] = &[
        ("7*3=21,21+12=33A33#", Verdict::Correct),
        ("3*7=21,12+21=33A33#", Verdict::Correct),
        ("12+3=15,15+7=22A22#", Verdict::MissesTarget { value: 22 }),
        ("7*3=21,21+12=33A33#junk after the stop", Verdict::Correct),
        // Order matters: 21 does not exist before the step that makes it.
        ("12+21=33,7*3=21A33#", Verdict::Unavailable { step: 0, value: 21 }),
        // Number reuse.
        ("7*3=21,21+7=28A28#", Verdict::Unavailable { step: 1, value: 7 }),
        ("7+7=14,14+12=26A26#", Verdict::Unavailable { step: 0, value: 7 }),
        // A number that was never given.
        ("7*4=28,28+12=40A40#", Verdict::Unavailable { step: 0, value: 4 }),
        ("7*3=22,22+12=34A34#", Verdict::WrongArithmetic { step: 0 }),
        ("7*3=21,21+12=34A34#", Verdict::WrongArithmetic { step: 1 }),
        // A negative difference cannot be written correctly.
        ("3-7=4,12*4=48A48#", Verdict::WrongArithmetic { step: 0 }),
        ("7*3=21,21+12=33A34#", Verdict::AnswerMismatch { claimed: 34, value: 33 }),
        ("7*3=21A21#", Verdict::NumbersLeft { left: 2 }),
        ("A33#", Verdict::NumbersLeft { left: 3 }),
        ("7*3=21,21+12=33#", Verdict::Malformed("no answer marker")),
        ("7*3=21,21+12=33A33", Verdict::Malformed("no stop symbol")),
        ("7*3=21,21+12=33A#", Verdict::Malformed("the answer is not a number")),
        ("3-7=-4,12*4=48A48#", Verdict::Malformed("malformed step")),
        ("07*3=21,21+12=33A33#", Verdict::Malformed("malformed step")),
        ("7*3=21,,21+12=33A33#", Verdict::Malformed("malformed step")),
        ("7x3=21,21+12=33A33#", Verdict::Malformed("malformed step")),
        ("7*3=21;21+12=33A33#", Verdict::Malformed("malformed step")),
        ("7*3=21,21+12=33A1234567#", Verdict::Malformed("the answer is not a number")),
        ("7*3=21,21+12=33A33A33#", Verdict::Malformed("the answer is not a number")),
        ("", Verdict::Malformed("no stop symbol")),
        ("7*3=21,21+12=33é33#", Verdict::Malformed("no answer marker")),
    ];
    for (response, want) in cases {
        assert_eq!(&verify(&n, 33, response), want, "{response:?}");
    }
    // Division: exact is fine, a remainder is wrong arithmetic, by zero too.
    assert_eq!(verify(&[12, 4, 5], 8, "12/4=3,5+3=8A8#"), Verdict::Correct);
    assert_eq!(verify(&[7, 2, 5], 8, "7/2=3,5+3=8A8#"), Verdict::WrongArithmetic { step: 0 });
    assert_eq!(verify(&[5, 5, 3], 0, "5-5=0,3/0=0A0#"), Verdict::WrongArithmetic { step: 1 });
    assert_eq!(verify(&[5, 5, 3], 0, "5-5=0,0*3=0A0#"), Verdict::Correct);
    // Duplicated given numbers may each be used once.
    assert_eq!(verify(&[5, 5, 2], 12, "5+5=10,10+2=12A12#"), Verdict::Correct);
    assert_eq!(
        verify(&[5, 3, 2], 12, "5+5=10,10+2=12A12#"),
        Verdict::Unavailable { step: 0, value: 5 }
    );
}

#[test]
fn score_rewards_and_partial_credit() {
    let p = Problem {
        split: Split::Train,
        index: 0,
        key: 0,
        prompt: "7,3,12>33:".into(),
        answer: "33".into(),
        spec: ProblemSpec::Countdown { numbers: vec![7, 3, 12], target: 33 },
    };
    let plain = Countdown::new(CountdownConfig::default()).unwrap();
    let s = plain.score(&p, "7*3=21,21+12=33A33#").unwrap();
    assert_eq!(
        (s.reward, s.correct, s.well_formed, s.answer.as_deref()),
        (1.0, true, true, Some("33"))
    );
    let s = plain.score(&p, "7+3=10,10+12=22A22#").unwrap();
    assert_eq!(
        (s.reward, s.correct, s.well_formed, s.answer.as_deref()),
        (-1.0, false, true, Some("22"))
    );
    let s = plain.score(&p, "7+3=10,10+12=22").unwrap();
    assert_eq!((s.reward, s.correct, s.well_formed, s.answer), (-1.0, false, false, None));

    let partial =
        Countdown::new(CountdownConfig { format_reward: -0.8, ..Default::default() }).unwrap();
    assert_eq!(partial.score(&p, "7+3=10,10+12=22A22#").unwrap().reward, -0.8);
    assert_eq!(partial.score(&p, "7*3=21,21+7=28A28#").unwrap().reward, -0.8);
    assert_eq!(partial.score(&p, "7*3=21,21+12=33A").unwrap().reward, -1.0);
    assert_eq!(partial.score(&p, "7*3=21,21+12=33A33#").unwrap().reward, 1.0);
    assert!(Countdown::new(CountdownConfig { format_reward: 1.0, ..Default::default() }).is_err());
}

#[test]
fn solver_enumerates_canonical_solutions() {
    let show = |sols: Vec<Vec<Step>>| -> Vec<String> {
        sols.iter().map(|s| s.iter().map(Step::to_string).collect::<Vec<_>>().join(",")).collect()
    };
    assert_eq!(show(solve(&[2, 3], 5)), ["3+2=5"]);
    assert_eq!(show(solve(&[2, 2], 4)), ["2+2=4", "2*2=4"]);
    assert_eq!(show(solve(&[2, 2], 1)), ["2/2=1"]);
    assert_eq!(show(solve(&[2, 2], 0)), ["2-2=0"]);
    assert!(solve(&[2, 3], 7).is_empty());
    assert!(!is_solvable(&[1, 1, 1], 50));
    // Every solution of a 4-number instance verifies.
    let sols = solve(&[4, 6, 9, 13], 24);
    assert!(sols.len() > 5, "{}", sols.len());
    for s in &sols {
        assert_eq!(verify(&[4, 6, 9, 13], 24, &format_response(s, 24)), Verdict::Correct);
        assert_eq!(s.len(), 3);
    }
}

#[test]
fn every_instance_is_solvable_and_demonstrations_verify() {
    for (min, max) in [(3, 3), (4, 4), (3, 4)] {
        let cfg = CountdownConfig { min_numbers: min, max_numbers: max, ..Default::default() };
        let task = Countdown::new(cfg.clone()).unwrap();
        let mut rng = TaskRng::from_state(11);
        let mut several_first_steps = 0;
        let mut total = 0;
        for split in [Split::Train, Split::Eval] {
            for p in problems(&task, split, 0..400).unwrap() {
                let (numbers, target) = spec(&p);
                assert!((min as usize..=max as usize).contains(&numbers.len()));
                assert!(numbers.iter().all(|n| (cfg.min_value..=cfg.max_value).contains(n)));
                assert!((1..=cfg.max_target).contains(&target));
                let sols = solve(&numbers, target);
                assert!(!sols.is_empty(), "unsolvable: {}", p.prompt);
                let firsts: HashSet<Step> = sols.iter().map(|s| s[0]).collect();
                several_first_steps += usize::from(firsts.len() > 1);
                total += 1;
                for _ in 0..3 {
                    let demo = task.sft_response(&p, &mut rng).unwrap();
                    assert_eq!(
                        verify(&numbers, target, &demo),
                        Verdict::Correct,
                        "{}{demo}",
                        p.prompt
                    );
                    assert!(task.score(&p, &demo).unwrap().correct);
                }
            }
        }
        // The first step is usually a real decision.
        assert!(several_first_steps * 10 > total * 7, "{several_first_steps} of {total}");
    }
}

#[test]
fn demonstrations_draw_among_solutions() {
    let task = Countdown::new(CountdownConfig::default()).unwrap();
    let p = Problem {
        split: Split::Train,
        index: 0,
        key: 0,
        prompt: "4,6,9,13>24:".into(),
        answer: "24".into(),
        spec: ProblemSpec::Countdown { numbers: vec![4, 6, 9, 13], target: 24 },
    };
    let mut rng = TaskRng::from_state(5);
    let demos: HashSet<String> =
        (0..200).map(|_| task.sft_response(&p, &mut rng).unwrap()).collect();
    assert!(demos.len() > 3, "{demos:?}");
    // Reproducible from the stream.
    let again = |seed| task.sft_response(&p, &mut TaskRng::from_state(seed)).unwrap();
    assert_eq!(again(8), again(8));
    // An unsolvable hand-made problem is an error, not a panic.
    let bad =
        Problem { spec: ProblemSpec::Countdown { numbers: vec![1, 1], target: 50 }, ..p.clone() };
    assert!(task.sft_response(&bad, &mut rng).is_err());
}
