//! `parity-cot` and `arithmetic`: formats pinned, demonstrations correct, the SFT mixture
//! rate, difficulty knobs respected, malformed responses rejected.

use treepo_trainer::tasks::{
    ArithOp, Arithmetic, ArithmeticConfig, ParityConfig, ParityCot, Problem, ProblemSpec, Split,
    Task, TaskRng, problems,
};

fn parity_problem(bits: &[u8]) -> Problem {
    let prompt: String = bits.iter().map(|b| b.to_string()).collect::<String>() + ":";
    let answer = (bits.iter().fold(0, |a, b| a ^ b)).to_string();
    Problem {
        split: Split::Train,
        index: 0,
        key: 0,
        prompt,
        answer,
        spec: ProblemSpec::Parity { bits: bits.to_vec() },
    }
}

fn arith_problem(op: ArithOp, a: u64, b: u64) -> Problem {
    Problem {
        split: Split::Train,
        index: 0,
        key: 0,
        prompt: format!("{a}{}{b}:", op.symbol()),
        answer: op.apply(a, b).unwrap().to_string(),
        spec: ProblemSpec::Arithmetic { op, a, b },
    }
}

#[test]
fn parity_formats() {
    let bits = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0];
    assert_eq!(ParityCot::short_response(&bits), "A1#");
    assert_eq!(ParityCot::long_response(&bits), "110110001011A1#");
    assert!(ParityCot::uses_chain_of_thought("110110001011A1#"));
    assert!(!ParityCot::uses_chain_of_thought("A1#"));
    let task = ParityCot::new(ParityConfig::default()).unwrap();
    let p = task.generate(Split::Train, 0).unwrap();
    assert_eq!(p.prompt.len(), 13);
    assert!(p.prompt.ends_with(':'));
}

#[test]
fn parity_scores_only_the_final_bit() {
    let task = ParityCot::new(ParityConfig::default()).unwrap();
    let p = parity_problem(&[1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0]);
    let score = |r: &str| {
        let s = task.score(&p, r).unwrap();
        (s.reward, s.correct, s.well_formed, s.answer)
    };
    let right = (1.0, true, true, Some("1".to_string()));
    let wrong = (-1.0, false, true, Some("0".to_string()));
    let malformed = (-1.0, false, false, None);
    assert_eq!(score("A1#"), right);
    assert_eq!(score("110110001011A1#"), right);
    assert_eq!(score("000000000000A1#"), right, "the chain is not checked");
    assert_eq!(score("A1#0"), right, "text after the stop is ignored");
    assert_eq!(score("A0#"), wrong);
    assert_eq!(score("110110001010A0#"), wrong);
    for bad in ["A1", "1#", "#", "", "A#", "A10#", "A2#", "1x0A1#", "AA1#", "11A1A1#"] {
        assert_eq!(score(bad), malformed, "{bad:?}");
    }
}

#[test]
fn parity_demonstrations_follow_the_mixture() {
    let task = ParityCot::new(ParityConfig::default()).unwrap();
    let mut rng = TaskRng::from_state(21);
    let ps = problems(&task, Split::Train, 0..2000).unwrap();
    let mut long = 0;
    for _ in 0..5 {
        for p in &ps {
            let demo = task.sft_response(p, &mut rng).unwrap();
            assert!(task.score(p, &demo).unwrap().correct, "{}{demo}", p.prompt);
            long += usize::from(ParityCot::uses_chain_of_thought(&demo));
        }
    }
    let rate = long as f64 / 10_000.0;
    assert!((rate - 0.2).abs() < 0.015, "long rate {rate}");
    // p_long = 0 and 1 are the pure styles.
    for (p_long, want) in [(0.0, false), (1.0, true)] {
        let t = ParityCot::new(ParityConfig { p_long, ..Default::default() }).unwrap();
        let demo = t.sft_response(&ps[0], &mut rng).unwrap();
        assert_eq!(ParityCot::uses_chain_of_thought(&demo), want);
    }
}

#[test]
fn parity_bit_range() {
    let task =
        ParityCot::new(ParityConfig { min_bits: 8, max_bits: 12, ..Default::default() }).unwrap();
    let mut seen = [false; 13];
    for p in problems(&task, Split::Eval, 0..500).unwrap() {
        let ProblemSpec::Parity { bits } = &p.spec else { panic!() };
        assert!((8..=12).contains(&bits.len()));
        seen[bits.len()] = true;
    }
    assert!(seen[8..].iter().all(|&s| s));
    assert!(ParityCot::new(ParityConfig { min_bits: 0, ..Default::default() }).is_err());
    assert!(
        ParityCot::new(ParityConfig { min_bits: 9, max_bits: 8, ..Default::default() }).is_err()
    );
    // A space of 2 problems cannot feed both splits; the error says so instead of looping.
    let tiny =
        ParityCot::new(ParityConfig { min_bits: 1, max_bits: 1, ..Default::default() }).unwrap();
    let err = (0..4).find_map(|i| {
        [Split::Train, Split::Eval].into_iter().find_map(|s| tiny.generate(s, i).err())
    });
    assert!(err.is_some_and(|e| e.to_string().contains("split is empty")));
}

#[test]
fn arithmetic_scratchpads() {
    assert_eq!(
        Arithmetic::demonstration(ArithOp::Add, 4721, 389),
        "1+9+0=10,2+8+1=11,7+3+1=11,4+0+1=05A5110#"
    );
    assert_eq!(Arithmetic::demonstration(ArithOp::Add, 99, 1), "9+1+0=10,9+0+1=10A100#");
    assert_eq!(Arithmetic::demonstration(ArithOp::Add, 0, 0), "0+0+0=00A0#");
    assert_eq!(Arithmetic::demonstration(ArithOp::Mul, 347, 8), "7*8+0=56,4*8+5=37,3*8+3=27A2776#");
    assert_eq!(Arithmetic::demonstration(ArithOp::Mul, 0, 7), "0*7+0=00A0#");
}

#[test]
fn arithmetic_demonstrations_are_correct_for_random_operands() {
    let cfg =
        ArithmeticConfig { min_digits: 1, max_digits: 18, mul_fraction: 0.5, ..Default::default() };
    let task = Arithmetic::new(cfg).unwrap();
    let mut rng = TaskRng::from_state(0);
    let mut muls = 0;
    for split in [Split::Train, Split::Eval] {
        for p in problems(&task, split, 0..1000).unwrap() {
            let ProblemSpec::Arithmetic { op, a, b } = p.spec else { panic!() };
            let demo = task.sft_response(&p, &mut rng).unwrap();
            assert!(task.score(&p, &demo).unwrap().correct, "{}{demo}", p.prompt);
            assert_eq!(p.prompt, format!("{a}{}{b}:", op.symbol()));
            if op == ArithOp::Mul {
                muls += 1;
                assert!((2..=9).contains(&b));
            }
        }
    }
    assert!((800..1200).contains(&muls), "{muls} multiplications of 2000");
}

#[test]
fn arithmetic_digit_knobs() {
    let task =
        Arithmetic::new(ArithmeticConfig { min_digits: 3, max_digits: 3, ..Default::default() })
            .unwrap();
    for p in problems(&task, Split::Train, 0..300).unwrap() {
        let ProblemSpec::Arithmetic { op, a, b } = p.spec else { panic!() };
        assert_eq!(op, ArithOp::Add);
        assert!((100..1000).contains(&a) && (100..1000).contains(&b), "{}", p.prompt);
    }
    for bad in [(0, 3), (4, 3), (1, 19)] {
        let cfg = ArithmeticConfig { min_digits: bad.0, max_digits: bad.1, ..Default::default() };
        assert!(Arithmetic::new(cfg).is_err(), "{bad:?}");
    }
}

#[test]
fn arithmetic_scores_the_exact_answer() {
    let task = Arithmetic::new(ArithmeticConfig::default()).unwrap();
    let p = arith_problem(ArithOp::Add, 4721, 389);
    let score = |r: &str| {
        let s = task.score(&p, r).unwrap();
        (s.reward, s.correct, s.well_formed)
    };
    assert_eq!(score("1+9+0=10,2+8+1=11,7+3+1=11,4+0+1=05A5110#"), (1.0, true, true));
    assert_eq!(score("A5110#"), (1.0, true, true), "the scratchpad is optional");
    assert_eq!(score("1+9+0=10A5111#"), (-1.0, false, true));
    assert_eq!(score("A05110#"), (-1.0, false, true), "leading zero");
    for bad in ["A5110", "5110#", "A#", "A51a0#", "1-9=8A5110#", "A-5110#"] {
        assert_eq!(score(bad), (-1.0, false, false), "{bad:?}");
    }
}
