//! ImageNet-style folders built from the real bundled photos.
mod common;

use datasets::{Error, ImageFolder, Layout, Synsets};
use std::fs;
use std::path::Path;

fn synsets() -> Synsets {
    Synsets::bundled(common::cache()).expect("bundled synsets")
}

#[test]
fn bundled_synsets_are_the_standard_sorted_1000() {
    let s = synsets();
    assert_eq!(s.len(), 1000);
    assert_eq!(
        (s.id(0), s.id(1), s.id(999)),
        (Some("n01440764"), Some("n01443537"), Some("n15075141"))
    );
    assert!(s.ids().windows(2).all(|w| w[0] < w[1]));
    assert_eq!(s.index_of("n01751748"), Some(65));
}

#[test]
fn one_folder_per_synset() {
    let s = synsets();
    let photos = datasets::bundled_photos(common::cache()).expect("photos");
    let tmp = tempfile::tempdir().expect("tempdir");
    for p in &photos {
        let wnid = s.id(p.primary()).expect("synset");
        common::copy_to(&p.path, &tmp.path().join(wnid), &p.name);
    }
    // Files that are not images are ignored, wherever they are.
    fs::write(
        tmp.path()
            .join(s.id(photos[0].primary()).expect("id"))
            .join("notes.txt"),
        "not an image",
    )
    .expect("write");
    fs::write(tmp.path().join("README"), "about this folder").expect("write");
    let folder = ImageFolder::open(tmp.path()).expect("open");
    assert_eq!(folder.layout(), &Layout::SynsetFolders);
    assert_eq!(folder.len(), 18);
    assert_eq!(folder.num_classes(), 1000);
    for p in &photos {
        let sample = folder
            .samples()
            .iter()
            .find(|x| x.path.file_name() == Some(p.name.as_ref()))
            .expect("sample");
        assert_eq!(sample.label, p.primary(), "{}", p.name);
    }
    // A folder that is not a synset id is named.
    fs::create_dir(tmp.path().join("cats")).expect("mkdir");
    let e = ImageFolder::open(tmp.path()).expect_err("cats");
    assert!(
        matches!(&e, Error::Parse { path, .. } if path.ends_with("cats")),
        "{e}"
    );
}

fn flat_folder(dir: &Path) -> Vec<datasets::LabeledPhoto> {
    let photos = datasets::bundled_photos(common::cache()).expect("photos");
    for p in &photos {
        common::copy_to(&p.path, dir, &p.name);
    }
    photos
}

#[test]
fn flat_folder_with_a_label_file() {
    let s = synsets();
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = flat_folder(tmp.path());
    // Index labels, synset labels, names without extension, comments, a header.
    let mut text = String::from("ImageId,Label\n# comment\n\n");
    for (i, p) in photos.iter().enumerate() {
        let name = if i % 3 == 0 {
            p.name
                .rsplit_once('.')
                .map_or(p.name.clone(), |(stem, _)| stem.to_string())
        } else {
            p.name.clone()
        };
        let label = if i % 2 == 0 {
            p.primary().to_string()
        } else {
            s.id(p.primary()).expect("id").to_string()
        };
        text.push_str(&format!("{name} {label}\n"));
    }
    fs::write(tmp.path().join("labels.txt"), &text).expect("write");
    let folder = ImageFolder::open(tmp.path()).expect("open");
    assert_eq!(
        folder.layout(),
        &Layout::LabelFile(tmp.path().join("labels.txt"))
    );
    assert_eq!(folder.len(), 18);
    for p in &photos {
        let sample = folder
            .samples()
            .iter()
            .find(|x| x.path == tmp.path().join(&p.name))
            .expect("sample");
        assert_eq!(sample.label, p.primary(), "{}", p.name);
    }
    // The same with the label file given explicitly, from elsewhere.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let labels = elsewhere.path().join("my labels.csv");
    fs::write(&labels, text.replace(' ', ",")).expect("write");
    let folder = ImageFolder::open_with(tmp.path(), &s, Some(&labels)).expect("open_with");
    assert_eq!(folder.len(), 18);
}

#[test]
fn label_out_of_range_names_the_line() {
    let s = synsets();
    let tmp = tempfile::tempdir().expect("tempdir");
    let photo = &datasets::bundled_photos(common::cache()).expect("photos")[0];
    common::copy_to(&photo.path, tmp.path(), &photo.name);
    for bad in ["1000", "-1"] {
        let labels = tmp.path().join("labels.txt");
        fs::write(&labels, format!("# header comment\n{} {bad}\n", photo.name)).expect("write");
        match ImageFolder::open_with(tmp.path(), &s, None) {
            Err(Error::LabelOutOfRange { at, label, classes }) => {
                assert!(at.ends_with("labels.txt:2"), "{at}");
                assert_eq!((label.to_string(), classes), (bad.to_string(), 1000));
            }
            other => panic!("label {bad}: expected LabelOutOfRange, got {other:?}"),
        }
    }
    fs::write(
        tmp.path().join("labels.txt"),
        format!("{} n99999999\n", photo.name),
    )
    .expect("write");
    let e = ImageFolder::open_with(tmp.path(), &s, None).expect_err("unknown synset");
    assert!(
        e.to_string().contains("labels.txt:1") && e.to_string().contains("n99999999"),
        "{e}"
    );
    fs::write(tmp.path().join("labels.txt"), "other.jpg 3\n").expect("write");
    let e = ImageFolder::open_with(tmp.path(), &s, None).expect_err("unlabeled");
    assert!(
        matches!(&e, Error::Unlabeled { image, .. } if image.ends_with(&photo.name)),
        "{e}"
    );
}

#[test]
fn folders_without_images_are_named() {
    let s = synsets();
    let tmp = tempfile::tempdir().expect("tempdir");
    let e = ImageFolder::open_with(tmp.path(), &s, None).expect_err("empty");
    assert!(
        matches!(&e, Error::NoImages { dir } if dir == tmp.path()),
        "{e}"
    );
    fs::write(tmp.path().join("readme.txt"), "no images here").expect("write");
    assert!(matches!(
        ImageFolder::open_with(tmp.path(), &s, None),
        Err(Error::NoImages { .. })
    ));
    // Synset folders that are all empty.
    fs::create_dir(tmp.path().join("n01440764")).expect("mkdir");
    assert!(matches!(
        ImageFolder::open_with(tmp.path(), &s, None),
        Err(Error::NoImages { .. })
    ));
    // Images but no way to label them.
    let other = tempfile::tempdir().expect("tempdir");
    common::copy_to(&common::cached("photos/dog.jpg"), other.path(), "dog.jpg");
    assert!(matches!(
        ImageFolder::open_with(other.path(), &s, None),
        Err(Error::Unlabeled { .. })
    ));
    let e = ImageFolder::open_with(&tmp.path().join("absent"), &s, None).expect_err("absent");
    assert!(
        matches!(e, Error::Io { .. }) && e.to_string().contains("absent"),
        "{e}"
    );
}

#[test]
fn validation_names_use_the_bundled_labels_or_the_devkit_ground_truth() {
    let s = synsets();
    let tmp = tempfile::tempdir().expect("tempdir");
    for (i, photo) in ["dog.jpg", "kite.jpg", "puppy.jpg"].iter().enumerate() {
        common::copy_to(
            &common::cached(&format!("photos/{photo}")),
            tmp.path(),
            &format!("ILSVRC2012_val_{:08}.JPEG", i + 1),
        );
    }
    let folder = ImageFolder::open(tmp.path()).expect("bundled validation labels");
    assert_eq!(folder.layout(), &Layout::BundledValidationLabels);
    let labels: Vec<usize> = folder.samples().iter().map(|x| x.label).collect();
    assert_eq!(
        labels,
        [65, 970, 230],
        "the first three ILSVRC2012 validation labels"
    );

    // Devkit ground truth: ids in the devkit's order, translated through map_clsloc.txt.
    fs::write(
        tmp.path().join("ILSVRC2012_validation_ground_truth.txt"),
        "490\n361\n171\n",
    )
    .expect("write");
    let e = ImageFolder::open_with(tmp.path(), &s, None).expect_err("no devkit map");
    assert!(
        e.to_string().contains("map_clsloc.txt") && e.to_string().contains("ground_truth.txt:1"),
        "{e}"
    );
    fs::write(
        tmp.path().join("map_clsloc.txt"),
        "n01751748 490 sea_snake\nn09193705 361 alp\nn02105855 171 Shetland_sheepdog\n",
    )
    .expect("write");
    let folder = ImageFolder::open_with(tmp.path(), &s, None).expect("devkit ground truth");
    let labels: Vec<usize> = folder.samples().iter().map(|x| x.label).collect();
    assert_eq!(labels, [65, 970, 230]);
    fs::write(
        tmp.path().join("ILSVRC2012_validation_ground_truth.txt"),
        "490\n361\n1001\n",
    )
    .expect("write");
    assert!(matches!(
        ImageFolder::open_with(tmp.path(), &s, None),
        Err(Error::LabelOutOfRange { label: 1001, .. })
    ));
}

#[test]
fn a_synset_list_beside_the_folder_sets_the_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("val");
    common::copy_to(
        &common::cached("photos/gold_fish.jpg"),
        &root.join("n01443537"),
        "a.jpg",
    );
    common::copy_to(
        &common::cached("photos/puppy.jpg"),
        &root.join("n02099601"),
        "b.jpg",
    );
    fs::write(
        tmp.path().join("LOC_synset_mapping.txt"),
        "n02099601 golden retriever\nn01443537 goldfish, Carassius auratus\n",
    )
    .expect("write");
    let folder = ImageFolder::open(&root).expect("open");
    assert_eq!(folder.num_classes(), 2);
    let labels: Vec<usize> = folder.samples().iter().map(|x| x.label).collect();
    assert_eq!(labels, [1, 0]);
    fs::write(
        tmp.path().join("LOC_synset_mapping.txt"),
        "n02099601 golden retriever\ngoldfish\n",
    )
    .expect("write");
    let e = ImageFolder::open(&root).expect_err("bad list");
    assert!(e.to_string().contains("LOC_synset_mapping.txt:2"), "{e}");
}
