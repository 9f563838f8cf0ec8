//! `ulab run --shard i/n` + `ulab merge` give the unsharded run's configuration set; merge
//! refuses parts of different campaigns.
use crate::common::*;

const MATRIX: &str = "models = [\"mobilenet-v1\", \"squeezenet1.1\"]\nmechanisms = [\"cpu\"]\nprecisions = [\"f32\", \"quint8\"]";

#[test]
fn shards_merged_equal_the_unsharded_run() {
    let _cpu = sharing_the_cpu();
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = campaign(tmp.path(), "sharded", MATRIX, "kind = \"none\"", "");
    let whole = tmp.path().join("whole");
    let o = run(&path, &whole, &[], &[]);
    assert!(o.status.success(), "{}", text(&o));

    let parts: Vec<_> = (1..=3)
        .map(|i| {
            let dir = tmp.path().join(format!("part{i}"));
            let o = run(&path, &dir, &["--shard", &format!("{i}/3")], &[]);
            assert!(o.status.success(), "shard {i}: {}", text(&o));
            dir
        })
        .collect();
    // Shares are disjoint and cover the matrix.
    let mut seen = Vec::new();
    for p in &parts {
        seen.extend(checkpoint(p).finished);
    }
    seen.sort();
    let mut all = checkpoint(&whole).finished;
    all.sort();
    assert_eq!(seen, all);

    let merged = tmp.path().join("merged");
    let o = ulab()
        .arg("merge")
        .args(&parts)
        .arg("--out")
        .arg(&merged)
        .output()
        .expect("merge runs");
    assert!(o.status.success(), "{}", text(&o));
    for table in ["summary", "runs", "layers"] {
        let a =
            harness::results::read_parquet(&whole.join(format!("{table}.parquet"))).expect("whole");
        let b = harness::results::read_parquet(&merged.join(format!("{table}.parquet")))
            .expect("merged");
        assert_eq!(configs_in(&a), configs_in(&b), "{table}");
        assert_eq!(a.height(), b.height(), "{table}");
    }
    let meta: harness::results::Metadata =
        harness::results::read_json(&merged.join("metadata.json")).expect("metadata");
    assert_eq!(meta.shards, ["1/3", "2/3", "3/3"]);

    // A part of another campaign is refused, and so is a configuration present twice.
    let other = campaign(
        tmp.path(),
        "other",
        "models = [\"mobilenet-v1\"]",
        "kind = \"none\"",
        "",
    );
    let odir = tmp.path().join("other");
    let o = run(&other, &odir, &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = ulab()
        .arg("merge")
        .arg(&parts[0])
        .arg(&odir)
        .arg("--out")
        .arg(tmp.path().join("bad"))
        .output()
        .expect("merge runs");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("refusing to merge different campaigns"),
        "{}",
        text(&o)
    );
    let o = ulab()
        .arg("merge")
        .arg(&parts[0])
        .arg(&whole)
        .arg("--out")
        .arg(tmp.path().join("bad2"))
        .output()
        .expect("merge runs");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("finished in both"),
        "{}",
        text(&o)
    );
}
