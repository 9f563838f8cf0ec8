//! Sharding: `ulab run --shard i/n` runs configurations whose matrix index is `i-1` modulo
//! `n` (round robin over the matrix order, so shares differ by at most one configuration and
//! every host computes the same split from the same campaign file). `ulab merge` combines
//! the parts (see [`merge`]).
use anyhow::{bail, Context, Result};
use std::path::Path;

use crate::campaign::Configuration;
use crate::checkpoint::Checkpoint;
use crate::record::ConfigResult;
use crate::results::{self, config_dir, Metadata};

/// A share of a campaign: shard `index` (1-based) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("shard {s:?}: write i/n, e.g. 2/4"))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| format!("shard {s:?}: {i:?} is not a number"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("shard {s:?}: {n:?} is not a number"))?;
        if count == 0 || index == 0 || index > count {
            return Err(format!("shard {s:?}: need 1 <= i <= n"));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Whether the configuration at matrix position `pos` belongs to this shard.
    pub fn owns(&self, pos: usize) -> bool {
        pos % self.count == self.index - 1
    }

    /// This shard's configurations with their matrix positions.
    pub fn select(&self, all: &[Configuration]) -> Vec<(usize, Configuration)> {
        all.iter()
            .enumerate()
            .filter(|(i, _)| self.owns(*i))
            .map(|(i, c)| (i, c.clone()))
            .collect()
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("create {}", to.display()))?;
    for e in std::fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let e = e.with_context(|| format!("read {}", from.display()))?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)
                .with_context(|| format!("copy {} to {}", e.path().display(), target.display()))?;
        }
    }
    Ok(())
}

/// Merges result folders of one campaign (shards, or resumed parts) into `out`: refuses
/// folders of different campaigns and configurations finished in two parts; writes the
/// union's checkpoint, tables and metadata (times: the earliest start, the latest end).
pub fn merge(parts: &[&Path], out: &Path) -> Result<Checkpoint> {
    if parts.is_empty() {
        bail!("nothing to merge: name the result folders of the shards");
    }
    let mut merged: Option<Checkpoint> = None;
    let mut meta: Option<Metadata> = None;
    let mut sources = std::collections::BTreeMap::<String, String>::new();
    for part in parts {
        let cp = Checkpoint::read(part)?.with_context(|| {
            format!(
                "{}: no checkpoint.json (not a ulab results folder, or nothing finished)",
                part.display()
            )
        })?;
        let m: Metadata = results::read_json(&part.join("metadata.json"))?;
        match &mut merged {
            None => merged = Some(Checkpoint { finished: Vec::new(), ..cp.clone() }),
            Some(first) if first.digest != cp.digest => bail!(
                "{} is campaign {:?} (digest {}) but {} is {:?} (digest {}): refusing to merge different campaigns",
                part.display(),
                cp.campaign,
                cp.digest,
                parts[0].display(),
                first.campaign,
                first.digest
            ),
            Some(_) => {}
        }
        for slug in &cp.finished {
            if let Some(prev) = sources.insert(slug.clone(), part.display().to_string()) {
                bail!(
                    "configuration {slug} was finished in both {prev} and {}: merge one of them",
                    part.display()
                );
            }
        }
        meta = Some(match meta {
            None => m,
            Some(mut acc) => {
                acc.started_unix_ms = acc.started_unix_ms.min(m.started_unix_ms);
                acc.finished_unix_ms = acc.finished_unix_ms.max(m.finished_unix_ms);
                acc.shards.extend(m.shards);
                acc.weights.extend(m.weights);
                acc.monitor_serial = acc.monitor_serial.or(m.monitor_serial);
                acc
            }
        });
    }
    let mut merged = merged.context("nothing to merge")?;
    if let Some(existing) = Checkpoint::read(out)? {
        if existing.digest != merged.digest {
            bail!(
                "{} holds another campaign ({:?}): choose another --out",
                out.display(),
                existing.campaign
            );
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    for (slug, part) in &sources {
        let from = config_dir(Path::new(part), slug);
        let to = config_dir(out, slug);
        if from != to {
            let _ = std::fs::remove_dir_all(&to);
            copy_dir(&from, &to)?;
        }
    }
    if let Some(first) = parts.first() {
        let src = first.join("campaign.toml");
        if src.is_file() && src != out.join("campaign.toml") {
            std::fs::copy(&src, out.join("campaign.toml")).context("copy campaign.toml")?;
        }
    }
    merged.finished = sources.keys().cloned().collect();
    let all: Vec<ConfigResult> = results::load_results(out, &merged.finished)?;
    merged.finished = all.iter().map(|r| r.config.slug()).collect();
    results::write_tables(out, &all)?;
    results::write_predictor(out, &merged.finished)?;
    if let Some(mut m) = meta {
        m.shards.sort();
        m.shards.dedup();
        results::write_json(&out.join("metadata.json"), &m)?;
    }
    merged.save(out)?;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_split_round_robin() {
        let s: Shard = "2/3".parse().expect("valid");
        assert_eq!(s, Shard { index: 2, count: 3 });
        assert!("0/3".parse::<Shard>().is_err());
        assert!("4/3".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
        let owned: Vec<usize> = (0..7).filter(|&i| s.owns(i)).collect();
        assert_eq!(owned, [1, 4]);
        let total: usize = (1..=3)
            .map(|i| {
                (0..7)
                    .filter(|&p| Shard { index: i, count: 3 }.owns(p))
                    .count()
            })
            .sum();
        assert_eq!(total, 7);
    }
}
