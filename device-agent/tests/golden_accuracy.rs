//! The golden accuracy check: EfficientNet-Lite0 with its real pretrained weights, F32 on the
//! CPU, on the 18 bundled labeled photos (DATASETS.md's NumPy reference: top-1 15/18,
//! top-5 17/18, missing horses.jpg).
use ulayer::backend::Precision;

#[test]
fn efficientnet_lite0_f32_top5_on_bundled_photos() {
    let dir = datasets::default_cache_dir();
    datasets::fetch(&dir).expect("fetching the bundled data (run ./lab setup if offline)");
    let ev = ulayer::agent::evaluate("efficientnet-lite0", Precision::F32, 2, false, &dir)
        .expect("evaluation runs");
    assert_eq!(ev.images, 18);
    assert!(ev.top5 >= 17, "top-5 {}/18: {:#?}", ev.top5, ev.results);
    let top1 = |name: &str| {
        ev.results
            .iter()
            .find(|r| r.photo == name)
            .and_then(|r| r.top5.first().copied())
            .unwrap_or(usize::MAX)
    };
    assert!(
        (281..=285).contains(&top1("chelsea.png")),
        "chelsea.png → {}",
        top1("chelsea.png")
    );
    assert_eq!(top1("coffee.png"), 967, "coffee.png");
}
