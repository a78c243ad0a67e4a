//! Procedural data and the two rewards: the classes are distinct, the splits disjoint, the
//! aesthetic score prefers clean images, checkpoints round-trip, bad input is a typed error.

use std::sync::OnceLock;
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use treepo_flow::FlowError;
use treepo_flow::data::{CLASS_NAMES, DIM, NUM_CLASSES, SIDE, Split, dataset, draw};
use treepo_flow::reward::{Aesthetic, Classifier, ClassifierConfig, Reward, score_all};

/// One classifier for the whole binary (training it is the slow part).
fn classifier() -> &'static Classifier {
    static CLF: OnceLock<Classifier> = OnceLock::new();
    CLF.get_or_init(|| {
        let t = Instant::now();
        let clf = Classifier::train(&ClassifierConfig::default(), 7).expect("train");
        eprintln!("classifier trained in {:.2} s", t.elapsed().as_secs_f64());
        clf
    })
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// 3×3 box blur, averaging over the in-frame neighbours.
fn blur(images: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(images.len());
    for img in images.chunks_exact(DIM) {
        for r in 0..SIDE {
            for c in 0..SIDE {
                let (mut sum, mut n) = (0.0, 0.0);
                for rr in r.saturating_sub(1)..(r + 2).min(SIDE) {
                    for cc in c.saturating_sub(1)..(c + 2).min(SIDE) {
                        sum += img[rr * SIDE + cc];
                        n += 1.0;
                    }
                }
                out.push(sum / n);
            }
        }
    }
    out
}

/// `n` images of N(0, 1) noise clamped to [-1, 1].
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * DIM)
        .map(|_| {
            let z: f32 = StandardNormal.sample(&mut rng);
            z.clamp(-1.0, 1.0)
        })
        .collect()
}

#[test]
fn dataset_is_deterministic_balanced_and_in_range() {
    let a = dataset(Split::Train, 60, 3).unwrap();
    let b = dataset(Split::Train, 60, 3).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.images, dataset(Split::Train, 60, 4).unwrap().images);
    // A longer draw extends a shorter one.
    let long = dataset(Split::Train, 90, 3).unwrap();
    assert_eq!(long.images[..60 * DIM], a.images[..]);
    assert_eq!(a.images.len(), 60 * DIM);
    for (i, &l) in a.labels.iter().enumerate() {
        assert_eq!(l, i % NUM_CLASSES);
    }
    for img in a.images.chunks_exact(DIM) {
        assert!(img.iter().all(|v| (-1.0..=1.0).contains(v)));
        assert!(img.contains(&-1.0), "flat background");
        assert!(img.iter().any(|&v| v >= 0.5), "a solid stroke core");
        assert!(img.iter().any(|&v| v > -0.9 && v < 0.5), "anti-aliased edges");
    }
    assert!(dataset(Split::Heldout, 0, 1).unwrap().is_empty());
}

#[test]
fn splits_are_disjoint() {
    let train = dataset(Split::Train, 600, 11).unwrap();
    let held = dataset(Split::Heldout, 600, 11).unwrap();
    let key = |img: &[f32]| img.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
    let seen: std::collections::HashSet<Vec<u32>> =
        train.images.chunks_exact(DIM).map(key).collect();
    let shared = held.images.chunks_exact(DIM).filter(|img| seen.contains(&key(img))).count();
    assert_eq!(shared, 0, "{shared} Heldout images also drawn in Train");
}

#[test]
fn draw_rejects_unknown_class() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for c in 0..NUM_CLASSES {
        assert_eq!(draw(c, &mut rng).unwrap().len(), DIM);
    }
    match draw(NUM_CLASSES, &mut rng) {
        Err(FlowError::Config(msg)) => assert!(msg.contains("6"), "{msg}"),
        other => panic!("expected Config, got {other:?}"),
    }
    assert_eq!(CLASS_NAMES.len(), NUM_CLASSES);
}

#[test]
fn classifier_separates_classes() {
    let clf = classifier();
    let test = dataset(Split::Train, 1200, 2024).unwrap();
    let acc = clf.accuracy(&test).unwrap();
    eprintln!("classifier accuracy on a fresh Train draw of 1200: {acc:.4}");
    assert!(acc >= 0.97, "accuracy {acc}");
    let scores = clf.score(&test.images, &test.labels).unwrap();
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
    let blurred = mean(&clf.score(&blur(&test.images), &test.labels).unwrap());
    let noisy = mean(&clf.score(&noise(1200, 1), &test.labels).unwrap());
    eprintln!(
        "mean classifier reward: data {:.4}, blurred data {blurred:.4}, noise {noisy:.4}",
        mean(&scores)
    );
    assert!(noisy < mean(&scores));
    let probs = clf.probs(&test.images[..DIM]).unwrap();
    assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
}

#[test]
fn classifier_is_deterministic() {
    let cfg = ClassifierConfig { samples: 120, epochs: 2, ..ClassifierConfig::default() };
    assert_eq!(Classifier::train(&cfg, 5).unwrap(), Classifier::train(&cfg, 5).unwrap());
    assert_ne!(Classifier::train(&cfg, 5).unwrap(), Classifier::train(&cfg, 6).unwrap());
    for bad in [
        ClassifierConfig { samples: 0, ..cfg.clone() },
        ClassifierConfig { batch: 0, ..cfg.clone() },
        ClassifierConfig { lr: f32::NAN, ..cfg.clone() },
        ClassifierConfig { hidden: 0, ..cfg.clone() },
    ] {
        assert!(matches!(Classifier::train(&bad, 1), Err(FlowError::Config(_))), "{bad:?}");
    }
    let diverging = ClassifierConfig { lr: 1e30, ..cfg };
    assert!(matches!(Classifier::train(&diverging, 1), Err(FlowError::NonFinite(_))));
}

#[test]
fn classifier_save_load_round_trip() {
    let clf = classifier();
    let dir = std::env::temp_dir().join(format!("treepo-flow-clf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("classifier.safetensors");
    clf.save(&path).unwrap();
    let back = Classifier::load(&path).unwrap();
    let ds = dataset(Split::Train, 60, 9).unwrap();
    let (p, q) = (clf.probs(&ds.images).unwrap(), back.probs(&ds.images).unwrap());
    assert!(p.iter().zip(&q).all(|(a, b)| a.to_bits() == b.to_bits()));

    // A checkpoint of another model (wrong shapes) is a Format error.
    let other = ClassifierConfig { samples: 12, epochs: 1, hidden: 8, ..Default::default() };
    let small = Classifier::train(&other, 1).unwrap();
    let small_path = dir.join("small.safetensors");
    small.save(&small_path).unwrap();
    let mut bytes = std::fs::read(&small_path).unwrap();
    // Corrupt the header's fc2.bias shape: [6] -> [7] (same byte length, so still parseable
    // up to the size check).
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..header_end].to_vec()).unwrap();
    let patched = header.replace("\"shape\":[6]", "\"shape\":[7]");
    assert_ne!(patched, header);
    bytes[8..header_end].copy_from_slice(patched.as_bytes());
    std::fs::write(&small_path, &bytes).unwrap();
    assert!(matches!(Classifier::load(&small_path), Err(FlowError::Format(_))));
    std::fs::write(&small_path, b"not a checkpoint").unwrap();
    assert!(matches!(Classifier::load(&small_path), Err(FlowError::Format(_))));
    assert!(matches!(Classifier::load(&dir.join("missing")), Err(FlowError::Io { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn aesthetic_prefers_clean_images() {
    let ds = dataset(Split::Train, 600, 1).unwrap();
    let a = Aesthetic;
    let data = a.score(&ds.images, &ds.labels).unwrap();
    let blurred = a.score(&blur(&ds.images), &ds.labels).unwrap();
    let noisy = a.score(&noise(600, 2), &ds.labels).unwrap();
    let speckled: Vec<f32> =
        ds.images.iter().zip(noise(600, 3)).map(|(x, z)| (x + 0.2 * z).clamp(-1.0, 1.0)).collect();
    let speckled = mean(&a.score(&speckled, &ds.labels).unwrap());
    let (d, b, n) = (mean(&data), mean(&blurred), mean(&noisy));
    eprintln!(
        "aesthetic mean: data {d:.4}, blurred data {b:.4}, data + 0.2·noise {speckled:.4}, \
         clamped N(0,1) noise {n:.4}"
    );
    assert!(d > speckled, "data {d} vs data + noise {speckled}");
    for (c, name) in CLASS_NAMES.iter().enumerate() {
        let per: Vec<f64> = data.iter().skip(c).step_by(NUM_CLASSES).copied().collect();
        let min = per.iter().copied().fold(f64::MAX, f64::min);
        eprintln!("  {name}: mean {:.4}, min {min:.4}", mean(&per));
    }
    assert!(d > b + 0.05, "data {d} vs blurred {b}");
    assert!(d > n + 0.3, "data {d} vs noise {n}");
    let background = a.score(&vec![-1.0; DIM], &[0]).unwrap()[0];
    let full = a.score(&vec![1.0; DIM], &[0]).unwrap()[0];
    eprintln!("aesthetic of all-background {background}, all-ink {full}");
    let best = data.iter().copied().fold(f64::MIN, f64::max);
    assert!(background < best && background < d, "all-background {background} vs data {d}");
    assert!(full < d);
    assert!(data.iter().all(|s| (0.0..=1.0).contains(s)));
}

#[test]
fn bad_input_is_a_typed_error() {
    let clf = classifier();
    let rewards: [&dyn Reward; 2] = [clf, &Aesthetic];
    let ds = dataset(Split::Train, 6, 0).unwrap();
    for r in rewards {
        assert!(matches!(r.score(&ds.images[1..], &ds.labels), Err(FlowError::Shape(_))));
        assert!(matches!(r.score(&ds.images, &ds.labels[1..]), Err(FlowError::Shape(_))));
        let mut nan = ds.images.clone();
        nan[3 * DIM + 5] = f32::NAN;
        match r.score(&nan, &ds.labels) {
            Err(FlowError::NonFinite(msg)) => assert!(msg.contains("image 3"), "{msg}"),
            other => panic!("{}: expected NonFinite, got {other:?}", r.name()),
        }
        let mut classes = ds.labels.clone();
        classes[2] = NUM_CLASSES;
        assert!(matches!(r.score(&ds.images, &classes), Err(FlowError::Config(_))));
        assert_eq!(r.score(&[], &[]).unwrap(), Vec::<f64>::new());
    }
    assert!(matches!(clf.probs(&ds.images[1..]), Err(FlowError::Shape(_))));
    let all = score_all(&rewards, &ds.images, &ds.labels).unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|s| s.len() == 6));
    assert_eq!(rewards.map(|r| r.name()), ["classifier", "aesthetic"]);
}

/// A reward that breaks its contract, to check `score_all` catches it.
struct Broken(f64, usize);

impl Reward for Broken {
    fn name(&self) -> &'static str {
        "broken"
    }
    fn score(&self, _: &[f32], _: &[usize]) -> treepo_flow::Result<Vec<f64>> {
        Ok(vec![self.0; self.1])
    }
}

#[test]
fn score_all_rejects_broken_rewards() {
    let ds = dataset(Split::Train, 4, 0).unwrap();
    let nan = Broken(f64::NAN, 4);
    let short = Broken(0.5, 3);
    match score_all(&[&Aesthetic, &nan], &ds.images, &ds.labels) {
        Err(FlowError::NonFinite(msg)) => assert!(msg.contains("broken"), "{msg}"),
        other => panic!("expected NonFinite, got {other:?}"),
    }
    assert!(matches!(score_all(&[&short], &ds.images, &ds.labels), Err(FlowError::Shape(_))));
}
