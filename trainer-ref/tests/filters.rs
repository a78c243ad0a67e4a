//! Dynamic sampling and the overlong penalty, pinned.

use treepo_trainer::rl::{
    DynamicSampler, OverlongPenalty, RlError, RoundOutcome, SamplingStats, keep_query,
};

#[test]
fn keep_query_drops_identical_values() {
    assert!(!keep_query(&[1.0, 1.0, 1.0]).unwrap());
    assert!(!keep_query(&[0.0, 0.0]).unwrap());
    assert!(keep_query(&[1.0, 0.0, 1.0]).unwrap());
    assert!(keep_query(&[0.0]).unwrap(), "a single-leaf query is kept");
    assert!(keep_query(&[]).is_err());
    assert!(matches!(keep_query(&[1.0, f64::NAN]), Err(RlError::NonFinite { .. })));
}

/// A generated query: its id and its leaves' acc values.
type Query = (u32, Vec<f64>);

fn q(id: u32, acc: &[f64]) -> Query {
    (id, acc.to_vec())
}

fn values(q: &Query) -> &[f64] {
    &q.1
}

#[test]
fn dynamic_sampler_accumulates_then_truncates() {
    let mut s = DynamicSampler::new(3, 2).unwrap();
    let round1 = vec![q(1, &[1.0, 0.0]), q(2, &[1.0, 1.0]), q(3, &[0.0, 0.0])];
    assert_eq!(
        s.push_round(round1, values).unwrap(),
        RoundOutcome::NeedMore { kept: 1, target: 3, rounds_left: 2 }
    );
    let round2 = vec![q(4, &[0.0, 0.0]), q(5, &[0.0, 1.0])];
    assert_eq!(
        s.push_round(round2, values).unwrap(),
        RoundOutcome::NeedMore { kept: 2, target: 3, rounds_left: 1 }
    );
    let round3 = vec![q(6, &[1.0, 0.0]), q(7, &[0.0, 1.0]), q(8, &[1.0, 1.0])];
    let RoundOutcome::Ready { batch, stats } = s.push_round(round3, values).unwrap() else {
        panic!("the third round fills the batch");
    };
    assert_eq!(batch.iter().map(|q| q.0).collect::<Vec<_>>(), vec![1, 5, 6]);
    assert_eq!(stats, SamplingStats { rounds: 3, dropped: 4, surplus: 1 });
    // The sampler starts over for the next step.
    let RoundOutcome::Ready { stats, .. } = s
        .push_round(vec![q(9, &[1.0, 0.0]), q(10, &[0.0, 1.0]), q(11, &[0.0, 1.0])], values)
        .unwrap()
    else {
        panic!("one round suffices");
    };
    assert_eq!(stats, SamplingStats { rounds: 1, dropped: 0, surplus: 0 });
}

#[test]
fn dynamic_sampler_gives_up_after_the_extra_rounds() {
    let mut s = DynamicSampler::new(2, 1).unwrap();
    assert!(matches!(
        s.push_round(vec![q(1, &[1.0, 1.0])], values),
        Ok(RoundOutcome::NeedMore { rounds_left: 1, .. })
    ));
    assert_eq!(
        s.push_round(vec![q(2, &[0.0, 1.0])], values),
        Err(RlError::DynamicSamplingExhausted { rounds: 2, kept: 1, target: 2 })
    );
    // No extra round at all: the first round must suffice.
    let mut s = DynamicSampler::new(1, 0).unwrap();
    assert!(s.push_round(vec![q(1, &[1.0, 1.0])], values).is_err());
    assert!(DynamicSampler::<Query>::new(0, 3).is_err());
}

#[test]
fn dynamic_sampler_rejects_a_bad_round_whole() {
    let mut s = DynamicSampler::new(2, 5).unwrap();
    let bad = vec![q(1, &[1.0, 0.0]), q(2, &[])];
    assert!(matches!(s.push_round(bad, values), Err(RlError::Empty { .. })));
    // Nothing of the bad round was kept (and an inline closure works as the accessor).
    assert_eq!(
        s.push_round(vec![q(3, &[1.0, 0.0])], |q| &q.1).unwrap(),
        RoundOutcome::NeedMore { kept: 1, target: 2, rounds_left: 5 }
    );
}

#[test]
fn overlong_penalty_pinned_values() {
    let p = OverlongPenalty { max_response_len: 20, buffer_len: 4, factor: 1.0 };
    for (len, want) in
        [(0, 0.0), (10, 0.0), (16, 0.0), (17, -0.25), (18, -0.5), (20, -1.0), (22, -1.5)]
    {
        assert_eq!(p.penalty(len).unwrap(), want, "len {len}");
    }
    let half = OverlongPenalty { factor: 0.5, ..p };
    assert_eq!(half.penalty(19).unwrap(), -0.375);
    assert_eq!(half.apply(1.0, 18).unwrap(), 0.75);
    // TreePO's setting: 7168 tokens, 512 buffer.
    let treepo = OverlongPenalty { max_response_len: 7168, buffer_len: 512, factor: 1.0 };
    assert_eq!(treepo.penalty(6656).unwrap(), 0.0);
    assert_eq!(treepo.penalty(6912).unwrap(), -0.5);
    assert_eq!(treepo.apply(-1.0, 7168).unwrap(), -2.0);
}

#[test]
fn overlong_penalty_rejects_bad_config() {
    for bad in [
        OverlongPenalty { max_response_len: 20, buffer_len: 0, factor: 1.0 },
        OverlongPenalty { max_response_len: 20, buffer_len: 21, factor: 1.0 },
        OverlongPenalty { max_response_len: 20, buffer_len: 4, factor: -1.0 },
        OverlongPenalty { max_response_len: 20, buffer_len: 4, factor: f64::NAN },
    ] {
        assert!(matches!(bad.penalty(5), Err(RlError::InvalidConfig(_))), "{bad:?}");
    }
    let ok = OverlongPenalty { max_response_len: 20, buffer_len: 4, factor: 1.0 };
    assert!(ok.apply(f64::INFINITY, 3).is_err());
}
