//! Config parsing (TreePO's keys, `-1` = unset) and validation with typed errors.

use treepo_sampler::{
    ConfigError, ConfigWarning, DivPolicy, FallbackPolicy, NoHooks, RepetitionPolicy,
    TotalBudgetPolicy, TreeConfig, TreeSampler,
};

#[test]
fn parses_treepo_keys() {
    let text = r#"
        tree_max_depth = 14
        tree_max_token_per_step = 512
        tree_fixed_step_div = 2
        tree_random_first_div_max = 8
        tree_random_first_div_min = -1
        tree_max_width = 16
        tree_div_policy = "inverse_node_logprob_weighted_div"
        tree_logprob_div_temperature = 1.0
        tree_fallback_policy = "random"
        tree_fallback_traj_policy = "soft_boxed_and_eos"
        tree_fallback_window_size = -1
        tree_max_fallback_window = -1
        tree_repetition_es_policy = "most_prioritized"
        tree_boxed_eos_policy = "boxed_as_eos"
        tree_total_budget_policy = "by_response_traj"
        tree_max_response_token = -1
        tree_min_width = -1
        max_response_length = 7168
        stop_token_ids = [151643, 151645]
        temperature = 1.0
        top_k = -1
        top_p = 1.0
        tree_entropy = "compute"
        seed = 42
    "#;
    let c = TreeConfig::from_toml_str(text).unwrap();
    assert_eq!((c.depth(), c.segment_len(), c.branch(), c.width()), (14, 512, 2, 16));
    assert_eq!(c.tree_random_first_div_max, Some(8));
    assert_eq!(c.tree_random_first_div_min, None);
    assert_eq!(c.tree_div_policy, DivPolicy::InverseNodeLogprobWeightedDiv);
    assert_eq!(c.tree_repetition_es_policy, RepetitionPolicy::MostPrioritized);
    assert_eq!(c.window(), 512);
    assert_eq!(c.top_k, 0);
    assert_eq!(c.stop_token_ids.len(), 2);
    assert_eq!(c.validate(), Ok(vec![]));
    // Round trip.
    assert_eq!(TreeConfig::from_toml_str(&c.to_toml_string().unwrap()).unwrap(), c);
    // Defaults and unknown keys.
    assert_eq!(TreeConfig::from_toml_str("").unwrap(), TreeConfig::default());
    assert!(matches!(TreeConfig::from_toml_str("tree_max_dept = 3"), Err(ConfigError::Parse(_))));
    assert!(matches!(
        TreeConfig::from_toml_str("tree_div_policy = \"even\""),
        Err(ConfigError::Parse(_))
    ));
}

type Edit = Box<dyn Fn(&mut TreeConfig)>;

#[test]
fn validation_errors() {
    let base = TreeConfig::with_shape(4, 8, 2, 8);
    let cases: Vec<(Edit, ConfigError)> = vec![
        (Box::new(|c| c.tree_max_token_per_step = 0), ConfigError::ZeroSegmentLength),
        (Box::new(|c| c.tree_max_width = 0), ConfigError::ZeroWidth),
        (Box::new(|c| c.tree_fixed_step_div = 0), ConfigError::ZeroBranchFactor),
        (Box::new(|c| c.tree_max_depth = 0), ConfigError::ZeroDepth),
        (
            Box::new(|c| c.tree_fixed_step_div = 9),
            ConfigError::BranchFactorAboveWidth { b: 9, w: 8 },
        ),
        (Box::new(|c| c.tree_random_first_div_min = Some(0)), ConfigError::RandomInitMinZero),
        (
            Box::new(|c| {
                c.tree_random_first_div_min = Some(6);
                c.tree_random_first_div_max = Some(4);
            }),
            ConfigError::RandomInitMinAboveMax { min: 6, max: 4 },
        ),
        (
            Box::new(|c| {
                c.tree_random_first_div_min = Some(7);
                c.tree_random_first_div_max = Some(30); // capped at w = 8: fine
            }),
            ConfigError::Parse(String::new()), // placeholder: valid, checked below
        ),
        (Box::new(|c| c.tree_fallback_window_size = Some(0)), ConfigError::ZeroWindow),
        (Box::new(|c| c.tree_max_fallback_window = Some(0)), ConfigError::ZeroMaxFallbackWindow),
        (
            Box::new(|c| c.tree_logprob_div_temperature = 0.0),
            ConfigError::InvalidDivTemperature(0.0),
        ),
        (Box::new(|c| c.max_response_length = Some(0)), ConfigError::ZeroMaxResponseLength),
        (
            Box::new(|c| c.tree_total_budget_policy = TotalBudgetPolicy::ByResponseToken),
            ConfigError::TokenBudgetMissing,
        ),
        (
            Box::new(|c| {
                c.tree_total_budget_policy = TotalBudgetPolicy::ByResponseToken;
                c.tree_max_response_token = Some(100);
                c.tree_min_width = Some(9);
            }),
            ConfigError::MinWidthOutOfRange { min_width: 9, w: 8 },
        ),
        (Box::new(|c| c.temperature = -1.0), ConfigError::InvalidTemperature(-1.0)),
        (Box::new(|c| c.top_p = 0.0), ConfigError::InvalidTopP(0.0)),
    ];
    for (i, (edit, want)) in cases.into_iter().enumerate() {
        let mut c = base.clone();
        edit(&mut c);
        let got = c.validate();
        if want == ConfigError::Parse(String::new()) {
            assert!(got.is_ok(), "case {i}: {got:?}");
        } else {
            assert_eq!(got, Err(want.clone()), "case {i}");
            assert!(TreeSampler::new(c, NoHooks).is_err());
            assert!(!want.to_string().is_empty());
        }
    }
}

#[test]
fn window_other_than_l_warns() {
    let mut c = TreeConfig::with_shape(4, 8, 2, 8);
    c.tree_fallback_window_size = Some(4);
    let w = c.validate().unwrap();
    assert_eq!(w, vec![ConfigWarning::WindowNotSegmentLength { window: 4, segment: 8 }]);
    let sampler = TreeSampler::new(c, NoHooks).unwrap();
    assert_eq!(sampler.warnings().len(), 1);
    assert!(w[0].to_string().contains("rounded down"));
    let mut c = TreeConfig::with_shape(4, 8, 2, 8);
    c.tree_fallback_window_size = Some(8);
    assert_eq!(c.validate(), Ok(vec![]));
    c.tree_fallback_policy = FallbackPolicy::FromStart;
    assert_eq!(c.validate(), Ok(vec![]));
}
