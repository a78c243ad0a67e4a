//! Bad input is a typed `FlowError` naming what was wrong, never a panic: configuration keys,
//! layouts, schedules, prompt classes, non-finite rewards and advantages, wrong lengths.

use crate::common::{TINY, net, rollouts, transition};
use treepo_flow::FlowError;
use treepo_flow::advantage::{combine_rewards, flat_advantages, tree_advantages, tree_options};
use treepo_flow::config::{FlowConfig, Method};
use treepo_flow::data::{DIM, NUM_CLASSES};
use treepo_flow::net::{IN_DIM, VelocityNet};
use treepo_flow::rollout::{Layout, Rollouts, sample};
use treepo_flow::sde::Schedule;
use treepo_flow::train::policy_loss;
use treepo_kernels::Device;
use treepo_rl::ClipConfig;

/// Asserts `$res` is `Err` of the variant `$pat` (printing its message) and returns the message.
macro_rules! expect_err {
    ($what:expr, $res:expr, $pat:pat) => {{
        match $res {
            Err(e) => {
                eprintln!("{}: {e}", $what);
                assert!(matches!(e, $pat), "{}: wrong variant {e:?}", $what);
                e.to_string()
            }
            Ok(_) => panic!("{}: accepted", $what),
        }
    }};
}

/// One prompt, k = 2, window 0..2: transitions 0, 1 then 2, 3 ← 0 and 4, 5 ← 1.
fn small_tree() -> Rollouts {
    let transitions = vec![
        transition(0, 0, None, -1.0),
        transition(0, 0, None, -1.5),
        transition(0, 1, Some(0), -0.5),
        transition(0, 1, Some(0), -0.7),
        transition(0, 1, Some(1), -0.9),
        transition(0, 1, Some(1), -1.1),
    ];
    rollouts(&[3], transitions, &[(0, &[0, 2]), (0, &[0, 3]), (0, &[1, 4]), (0, &[1, 5])])
}

#[test]
fn config_errors_name_the_key() {
    assert!(FlowConfig::default().validate().is_ok());
    assert!(FlowConfig::quick().validate().is_ok());
    let mut c = FlowConfig::default();
    c.rl.w = c.sampling.steps + 1;
    let msg = expect_err!("rl.w > sampling.steps", c.validate(), FlowError::Config(_));
    assert!(msg.contains("rl.w"), "message does not name rl.w: {msg}");
    let msg = expect_err!("rl.w > sampling.steps (layout)", c.layout(0), FlowError::Config(_));
    assert!(msg.contains("rl.w"), "message does not name rl.w: {msg}");

    let mut c = FlowConfig::default();
    c.rl.w = 0;
    let msg = expect_err!("rl.w = 0", c.validate(), FlowError::Config(_));
    assert!(msg.contains("rl.w"), "message does not name rl.w: {msg}");

    let mut c = FlowConfig::default();
    c.rl.k = 0;
    let msg = expect_err!("rl.k = 0", c.validate(), FlowError::Config(_));
    assert!(msg.contains("rl.k"), "message does not name rl.k: {msg}");

    let mut c = FlowConfig::default();
    (c.rl.k, c.rl.w, c.sampling.steps) = (2, 13, 20);
    let msg = expect_err!("2^13 leaves", c.validate(), FlowError::Config(_));
    assert!(msg.contains("4096"), "message does not give the bound: {msg}");

    let mut c = FlowConfig::default();
    c.sampling.steps = 0;
    let msg = expect_err!("sampling.steps = 0", c.validate(), FlowError::Config(_));
    assert!(msg.contains("sampling.steps"), "{msg}");
    let mut c = FlowConfig::default();
    c.sampling.noise_level = f64::NAN;
    let msg = expect_err!("sampling.noise_level = NaN", c.validate(), FlowError::Config(_));
    assert!(msg.contains("noise_level"), "{msg}");
    let mut c = FlowConfig::default();
    c.rl.prompts = 0;
    let msg = expect_err!("rl.prompts = 0", c.validate(), FlowError::Config(_));
    assert!(msg.contains("rl.prompts"), "{msg}");
    for (cls, aes) in [(-1.0, 1.0), (1.0, f64::NAN), (0.0, 0.0)] {
        let mut c = FlowConfig::default();
        c.rl.weights.classifier = cls;
        c.rl.weights.aesthetic = aes;
        let msg =
            expect_err!(format!("rl.weights = ({cls}, {aes})"), c.validate(), FlowError::Config(_));
        assert!(msg.contains("rl.weights"), "{msg}");
    }
    let mut c = FlowConfig::default();
    c.model.hidden = 0;
    expect_err!("model.hidden = 0", c.validate(), FlowError::Config(_));
    let mut c = FlowConfig::default();
    c.rl.optim.lr = f32::INFINITY;
    let msg = expect_err!("rl.optim.lr = inf", c.validate(), FlowError::Config(_));
    assert!(msg.contains("rl.optim.lr"), "{msg}");
}

#[test]
fn rl_group_error_names_its_key() {
    // `FlowConfig::validate`: "the error names the key" — as it does for rl.k and rl.w.
    let mut c = FlowConfig::default();
    c.rl.method = Method::Dancegrpo;
    c.rl.group = 0;
    let msg = expect_err!("rl.group = 0 (dancegrpo)", c.validate(), FlowError::Config(_));
    assert!(msg.contains("rl.group"), "message does not name rl.group: {msg}");
}

#[test]
fn combine_rewards_rejects_non_finite_weights() {
    // A NaN or infinite weight is bad input like a NaN score; it must not turn every leaf
    // reward into NaN silently (the error would surface later, blaming a leaf's reward).
    let ro = small_tree();
    let good = vec![0.1, 0.5, -0.3, 0.9];
    for bad in [f64::NAN, f64::INFINITY] {
        expect_err!(
            format!("combine_rewards with weight {bad}"),
            combine_rewards(&ro, &[good.clone(), good.clone()], &[1.0, bad]),
            FlowError::NonFinite(_) | FlowError::Config(_)
        );
    }
}

#[test]
fn layout_and_schedule_errors() {
    expect_err!(
        "Tree k = 0",
        Layout::Tree { k: 0, window: 0..2 }.validate(4),
        FlowError::Config(_)
    );
    expect_err!(
        "window past the end",
        Layout::Tree { k: 2, window: 3..5 }.validate(4),
        FlowError::Config(_)
    );
    expect_err!(
        "empty window",
        Layout::Tree { k: 2, window: 2..2 }.validate(4),
        FlowError::Config(_)
    );
    expect_err!("Flat group = 0", Layout::Flat { group: 0 }.validate(4), FlowError::Config(_));
    expect_err!("Ode group = 0", Layout::Ode { group: 0 }.validate(4), FlowError::Config(_));
    assert!(Layout::Tree { k: 2, window: 2..4 }.validate(4).is_ok());
    assert!(Layout::Tree { k: 1, window: 0..1 }.validate(1).is_ok());
    expect_err!("Schedule T = 0", Schedule::new(0, 0.7), FlowError::Config(_));
    expect_err!("Schedule a = 0", Schedule::new(4, 0.0), FlowError::Config(_));
    expect_err!("Schedule a = −1", Schedule::new(4, -1.0), FlowError::Config(_));
    expect_err!("Schedule a = inf", Schedule::new(4, f64::INFINITY), FlowError::Config(_));
}

#[test]
fn sample_rejects_bad_classes_and_layouts() {
    let net = net(TINY, 5);
    let sched = Schedule::new(4, 0.7).unwrap();
    let tree = Layout::Tree { k: 2, window: 1..3 };
    let msg = expect_err!(
        "class = NUM_CLASSES",
        sample(&net, &sched, &tree, &[0, NUM_CLASSES], 1),
        FlowError::Config(_)
    );
    assert!(msg.contains(&NUM_CLASSES.to_string()), "{msg}");
    expect_err!(
        "class = usize::MAX",
        sample(&net, &sched, &Layout::Flat { group: 2 }, &[usize::MAX], 1),
        FlowError::Config(_)
    );
    expect_err!(
        "window past the schedule",
        sample(&net, &sched, &Layout::Tree { k: 2, window: 3..5 }, &[0], 1),
        FlowError::Config(_)
    );
    expect_err!(
        "k = 0",
        sample(&net, &sched, &Layout::Tree { k: 0, window: 0..1 }, &[0], 1),
        FlowError::Config(_)
    );
    // No prompts is an empty batch, not an error.
    let r = sample(&net, &sched, &tree, &[], 1).unwrap();
    assert!(r.leaves.is_empty() && r.transitions.is_empty() && r.images.is_empty());
}

#[test]
fn network_shape_errors() {
    let dev = Device::cpu();
    let net = net(TINY, 6);
    let n = net.layout.len;
    expect_err!(
        "from_host with one parameter too few",
        VelocityNet::from_host(&dev, TINY, &vec![0.0; n - 1]),
        FlowError::Shape(_)
    );
    expect_err!(
        "forward with a short input",
        net.forward(&vec![0.0; 2 * IN_DIM - 1], 2),
        FlowError::Shape(_)
    );
    let acts = net.forward(&vec![0.0; 2 * IN_DIM], 2).unwrap();
    let mut grads = dev.zeros::<f32>(n).unwrap();
    expect_err!(
        "backward with dv of one row",
        net.backward(&acts, &vec![0.0; DIM], &mut grads),
        FlowError::Shape(_)
    );
    let mut short = dev.zeros::<f32>(n - 1).unwrap();
    expect_err!(
        "backward into a short buffer",
        net.backward(&acts, &vec![0.0; 2 * DIM], &mut short),
        FlowError::Shape(_)
    );
}

#[test]
fn advantages_reject_non_finite_rewards_and_wrong_lengths() {
    let ro = small_tree();
    let good = vec![0.1, 0.5, -0.3, 0.9];
    assert!(tree_advantages(&ro, &good, &tree_options()).is_ok());
    assert!(flat_advantages(&ro, &good).is_ok());
    assert!(combine_rewards(&ro, std::slice::from_ref(&good), &[1.0]).is_ok());
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut r = good.clone();
        r[2] = bad;
        expect_err!(
            format!("tree_advantages with {bad}"),
            tree_advantages(&ro, &r, &tree_options()),
            FlowError::NonFinite(_)
        );
        expect_err!(
            format!("flat_advantages with {bad}"),
            flat_advantages(&ro, &r),
            FlowError::NonFinite(_)
        );
        expect_err!(
            format!("combine_rewards with {bad}"),
            combine_rewards(&ro, &[good.clone(), r], &[1.0, 1.0]),
            FlowError::NonFinite(_)
        );
    }
    for n in [3, 5, 0] {
        let r = vec![0.0; n];
        expect_err!(
            format!("tree_advantages with {n} rewards"),
            tree_advantages(&ro, &r, &tree_options()),
            FlowError::Shape(_)
        );
        expect_err!(
            format!("flat_advantages with {n} rewards"),
            flat_advantages(&ro, &r),
            FlowError::Shape(_)
        );
        expect_err!(
            format!("combine_rewards with {n} scores"),
            combine_rewards(&ro, &[good.clone(), r], &[1.0, 1.0]),
            FlowError::Shape(_)
        );
    }
    for w in [&[1.0][..], &[1.0, 1.0, 1.0], &[]] {
        expect_err!(
            format!("combine_rewards with {} weights for 2 rewards", w.len()),
            combine_rewards(&ro, &[good.clone(), good.clone()], w),
            FlowError::Shape(_)
        );
    }
    // An ODE batch has no transitions to back up to.
    let ode = rollouts(&[0], Vec::new(), &[(0, &[]), (0, &[])]);
    expect_err!(
        "tree_advantages of pathless leaves",
        tree_advantages(&ode, &[0.0, 1.0], &tree_options()),
        FlowError::Shape(_)
    );
    // A transition on no leaf's path gets no flat advantage.
    let mut orphan = small_tree();
    orphan.transitions.push(transition(0, 1, Some(1), -2.0));
    expect_err!(
        "flat_advantages with an orphan transition",
        flat_advantages(&orphan, &good),
        FlowError::Shape(_)
    );
}

#[test]
fn policy_loss_rejects_bad_advantages() {
    let dev = Device::cpu();
    let net = net(TINY, 7);
    let sched = Schedule::new(4, 0.7).unwrap();
    let ro = sample(&net, &sched, &Layout::Tree { k: 2, window: 1..3 }, &[2], 3).unwrap();
    let n = ro.transitions.len();
    let clip = ClipConfig::default();
    let mut grads = dev.zeros::<f32>(net.layout.len).unwrap();
    let good = vec![0.5; n];
    assert!(policy_loss(&net, &sched, &ro, &good, &clip, &mut grads).is_ok());
    for bad in [f64::NAN, f64::INFINITY] {
        let mut a = good.clone();
        a[n - 1] = bad;
        let msg = expect_err!(
            format!("advantage {bad}"),
            policy_loss(&net, &sched, &ro, &a, &clip, &mut grads),
            FlowError::NonFinite(_)
        );
        assert!(msg.contains(&format!("transition {}", n - 1)), "{msg}");
    }
    expect_err!(
        "one advantage too few",
        policy_loss(&net, &sched, &ro, &good[1..], &clip, &mut grads),
        FlowError::Shape(_)
    );
    let bad_clip = ClipConfig { clip_ratio_low: 1.5, ..clip };
    expect_err!(
        "clip_ratio_low = 1.5",
        policy_loss(&net, &sched, &ro, &good, &bad_clip, &mut grads),
        FlowError::Rl(_)
    );
}
