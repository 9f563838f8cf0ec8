//! The fetched data themselves: weights, photos, class names, and the errors bad files give.
mod common;

use datasets::{Error, Normalization};
use std::fs;

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

#[test]
fn read_pth_gives_the_296_tensors_of_efficientnet_lite0() {
    let path = datasets::efficientnet_lite0_pth(common::cache());
    assert_eq!(
        datasets::efficientnet_lite0_pth_checked(common::cache()).expect("fetched"),
        path
    );
    let tensors = datasets::read_pth(&path).expect("read .pth");
    assert_eq!(tensors.len(), 296);
    let first = &tensors[0];
    let last = &tensors[295];
    assert_eq!(
        (first.name.as_str(), first.shape.as_slice()),
        ("_conv_stem.weight", &[32, 3, 3, 3][..])
    );
    assert_eq!(
        (last.name.as_str(), last.shape.as_slice()),
        ("_fc.bias", &[1000][..])
    );
    let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        &names[..6],
        [
            "_conv_stem.weight",
            "_bn0.weight",
            "_bn0.bias",
            "_bn0.running_mean",
            "_bn0.running_var",
            "_bn0.num_batches_tracked"
        ]
    );
    assert_eq!(
        names.iter().collect::<std::collections::HashSet<_>>().len(),
        296,
        "names are unique"
    );
    for t in &tensors {
        assert_eq!(
            t.data.len(),
            t.shape.iter().product::<usize>(),
            "{}",
            t.name
        );
        assert!(t.data.iter().all(|v| v.is_finite()), "{}", t.name);
    }
    let by_name = |n: &str| {
        tensors
            .iter()
            .find(|t| t.name == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    // The 49 int64 `num_batches_tracked` scalars come through as f32 with their value (0).
    let nbt: Vec<_> = tensors
        .iter()
        .filter(|t| t.name.ends_with("num_batches_tracked"))
        .collect();
    assert_eq!(nbt.len(), 49);
    assert!(nbt.iter().all(|t| t.shape.is_empty() && t.data == [0.0]));
    assert_eq!(by_name("_fc.weight").shape, [1000, 1280]);
    assert_eq!(by_name("_conv_head.weight").shape, [1280, 320, 1, 1]);

    // Values checked against an independent reading with Python's pickle module. 50 of the
    // weights are stored transposed (e.g. _conv_stem.weight has strides (1, 32, 288, 96)),
    // so these also check that strided storages come out in row-major order.
    let expect = [
        (
            "_conv_stem.weight",
            [-1.110_336_1, -1.308_770_4, -0.010_156_9, 0.920_812],
            -26.811_376_610_887_237,
        ),
        (
            "_fc.weight",
            [-0.045_610_4, -0.094_708_7, -0.056_841_5, 0.068_238_8],
            -470.632_567_301_287_05,
        ),
        (
            "_conv_head.weight",
            [0.060_557_2, -0.077_026_6, 0.017_088_7, 0.121_046_5],
            -21.113_805_372_136_994,
        ),
    ];
    for (name, head, sum) in expect {
        let t = by_name(name);
        for (got, want) in t.data.iter().zip(head) {
            assert!((got - want).abs() < 1e-6, "{name}: {got} vs {want}");
        }
        let s: f64 = t.data.iter().map(|&v| f64::from(v)).sum();
        assert!(
            (s - sum).abs() < 1e-6 * sum.abs(),
            "{name}: sum {s} vs {sum}"
        );
    }
    let var = by_name("_bn0.running_var");
    assert!(
        close(var.data[0], 1.631_428_6)
            && close(var.data[1], 70.371_574)
            && close(var.data[2], 14.107_358),
        "{:?}",
        &var.data[..3]
    );
    let fc_bias_sum: f64 = last.data.iter().map(|&v| f64::from(v)).sum();
    assert!((fc_bias_sum - -0.049_816_972_983_537_38).abs() < 1e-6);
}

#[test]
fn truncated_or_corrupt_pth_names_the_file_and_offset() {
    let bytes = fs::read(datasets::efficientnet_lite0_pth(common::cache())).expect("read");
    let tmp = tempfile::tempdir().expect("tempdir");
    // Cut inside: the magic pickle, the sys_info pickle, the state dict, the key list, the
    // first storage's count, the storage data, and one byte short of the end.
    for cut in [
        3usize,
        60,
        20_000,
        45_000,
        47_180,
        1_000_000,
        bytes.len() - 1,
    ] {
        let path = tmp.path().join(format!("cut{cut}.pth"));
        fs::write(&path, &bytes[..cut]).expect("write");
        match datasets::read_pth(&path) {
            Err(Error::Pth {
                path: p,
                offset,
                message,
            }) => {
                assert_eq!(p, path);
                assert!(offset <= cut as u64, "cut {cut}: offset {offset}");
                assert!(message.contains("truncated"), "cut {cut}: {message}");
            }
            other => panic!("cut {cut}: expected a .pth error, got {other:?}"),
        }
    }
    // A corrupt opcode in the state dict is reported where it is.
    let mut bad = bytes.clone();
    bad[170] = 0xff; // the MARK opening the state dict's items
    let path = tmp.path().join("corrupt.pth");
    fs::write(&path, &bad).expect("write");
    let e = datasets::read_pth(&path).expect_err("corrupt");
    assert!(matches!(e, Error::Pth { offset: 170, .. }), "{e}");
    assert!(
        e.to_string().contains("corrupt.pth") && e.to_string().contains("opcode 0xff"),
        "{e}"
    );
    // Trailing garbage is not silently accepted.
    let mut long = bytes.clone();
    long.extend_from_slice(b"junk");
    fs::write(&path, &long).expect("write");
    assert!(matches!(datasets::read_pth(&path), Err(Error::Pth { .. })));
    // Not a .pth at all.
    let e = datasets::read_pth(&tmp.path().join("absent.pth")).expect_err("absent");
    assert!(
        matches!(e, Error::Io { .. }) && e.to_string().contains("absent.pth"),
        "{e}"
    );
}

#[test]
fn all_18_photos_decode_and_preprocess() {
    let photos = datasets::bundled_photos(common::cache()).expect("photos");
    assert_eq!(photos.len(), 18);
    let names: std::collections::HashSet<&str> = photos.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), 18, "names are unique");
    let norm = Normalization::EFFICIENTNET_LITE;
    let (lo, hi) = ((0.0 - 127.0) / 128.0, (255.0 - 127.0) / 128.0);
    for p in &photos {
        assert_eq!(p.primary(), p.accepted[0]);
        assert!(p.accepted.iter().all(|&c| c < datasets::NUM_CLASSES));
        let img = datasets::load_image(&p.path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            img.width() >= 224 && img.height() >= 224,
            "{}: {:?}",
            p.name,
            img.dimensions()
        );
        let (shape, data) = datasets::preprocess(&img, 256, 224, &norm);
        assert_eq!(shape, [1, 3, 224, 224]);
        assert_eq!(data.len(), 3 * 224 * 224);
        assert!(data.iter().all(|&v| (lo..=hi).contains(&v)), "{}", p.name);
        if p.name == "camera.png" {
            // Grayscale, expanded to three equal channels.
            assert!(img.pixels().all(|px| px[0] == px[1] && px[1] == px[2]));
        }
    }
    let first = &photos[0];
    assert_eq!(
        (first.name.as_str(), first.accepted.as_slice()),
        ("chelsea.png", &[281, 282, 285][..])
    );
}

#[test]
fn augmented_views_differ() {
    let photo = datasets::bundled_photos(common::cache())
        .expect("photos")
        .into_iter()
        .find(|p| p.name == "dog.jpg")
        .expect("dog");
    let img = datasets::load_image(&photo.path).expect("decode");
    let norm = Normalization::EFFICIENTNET_LITE;
    let mut views = vec![datasets::preprocess(&img, 256, 224, &norm).1];
    for a in datasets::augmentations() {
        let (shape, data) = datasets::preprocess_augmented(&img, &a, 224, &norm);
        assert_eq!(shape, [1, 3, 224, 224], "{a}");
        views.push(data);
    }
    assert_eq!(views.len(), 12);
    for i in 0..views.len() {
        for j in i + 1..views.len() {
            assert_ne!(views[i], views[j], "views {i} and {j} are identical");
        }
    }
}

#[test]
fn class_names_are_the_1000_imagenet_classes() {
    let names = datasets::imagenet_class_names(common::cache()).expect("names");
    assert_eq!(names.len(), 1000);
    assert_eq!(names[0], "tench, Tinca tinca");
    assert_eq!(names[281], "tabby, tabby cat");
    assert_eq!(names[477], "carpenter's kit, tool kit");
    assert_eq!(names[999], "toilet tissue, toilet paper, bathroom tissue");
}

#[test]
fn unreadable_images_name_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dog = fs::read(common::cached("photos/dog.jpg")).expect("read");
    let chelsea = fs::read(common::cached("photos/chelsea.png")).expect("read");
    let cases = [
        ("half.jpg", &dog[..dog.len() / 2]),
        ("no-end.jpg", &dog[..dog.len() - 2]),
        ("half.png", &chelsea[..chelsea.len() / 2]),
        ("text.png", &b"hello, not a png"[..]),
        ("empty.jpg", &[][..]),
    ];
    for (name, bytes) in cases {
        let path = tmp.path().join(name);
        fs::write(&path, bytes).expect("write");
        match datasets::load_image(&path) {
            Err(Error::Image { path: p, message }) => {
                assert!(p == path && !message.is_empty(), "{name}: {message}")
            }
            Err(other) => panic!("{name}: expected an image error, got {other}"),
            Ok(img) => panic!(
                "{name}: decoded a {:?} image from a bad file",
                img.dimensions()
            ),
        }
    }
    let e = datasets::load_image(tmp.path().join("absent.jpg")).expect_err("absent");
    assert!(
        matches!(e, Error::Io { .. }) && e.to_string().contains("absent.jpg"),
        "{e}"
    );
}

#[test]
fn an_empty_cache_says_to_fetch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for e in [
        datasets::bundled_photos(tmp.path()).expect_err("photos"),
        datasets::imagenet_class_names(tmp.path()).expect_err("names"),
    ] {
        assert!(
            matches!(e, Error::NotFetched { .. }) && e.to_string().contains("ulab-data -- fetch"),
            "{e}"
        );
    }
}
