//! Accuracy of one configuration (DESIGN.md §3): top-1 and top-5 against accepted labels, and
//! agreement with a reference configuration (the F32 model) on the same images — the same
//! definitions as the agent's own accuracy report:
//!
//! - **top-1 / top-5**: the first class / one of the five first classes is among the image's
//!   accepted labels (the bundled photos accept several, e.g. tabby, tiger cat and Egyptian
//!   cat; see `datasets::bundled_photos`).
//! - **top-1 agreement**: the first class equals the reference's first class.
//! - **top-5 agreement**: the reference's first class is among the five first classes (top-5
//!   accuracy with the reference's answer as the label).
//! - **top-5 overlap**: mean share of the reference's five first classes that these five
//!   contain.
//!
//! Results are paired with labels by position and with the reference by image name.
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use ulayer::protocol::Classification;

/// Why accuracy could not be scored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AccuracyError {
    #[error("{results} classification results for {labels} label sets")]
    CountMismatch { results: usize, labels: usize },
    #[error("image {image}: no accepted label")]
    NoLabel { image: String },
    #[error("image {image}: not in the reference results")]
    NotInReference { image: String },
    #[error("image {image}: classifier returned no classes")]
    NoClasses { image: String },
}

/// Agreement with a reference configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub images: usize,
    pub top1: usize,
    pub top5: usize,
    /// Sum over images of `|top5 ∩ top5_ref| / 5`, divided by `images`.
    pub top5_overlap: f64,
    pub top1_pct: f64,
    pub top5_pct: f64,
}

/// Scores of one configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccuracyScore {
    pub images: usize,
    pub top1: usize,
    pub top5: usize,
    pub top1_pct: f64,
    pub top5_pct: f64,
    /// Against the reference, when one was given.
    pub agreement: Option<Agreement>,
}

/// The accepted classes of each photo, in order (for [`score`] on the bundled photos).
pub fn labels(photos: &[datasets::LabeledPhoto]) -> Vec<Vec<usize>> {
    photos.iter().map(|p| p.accepted.clone()).collect()
}

fn pct(k: usize, n: usize) -> f64 {
    100.0 * k as f64 / n.max(1) as f64
}

fn top(c: &Classification, k: usize) -> impl Iterator<Item = usize> + '_ {
    c.top.iter().take(k).map(|s| s.index)
}

fn first(c: &Classification) -> Result<usize, AccuracyError> {
    top(c, 1).next().ok_or_else(|| AccuracyError::NoClasses {
        image: c.image.clone(),
    })
}

/// Top-1/top-5 of `results` against `labels` (accepted classes per image, same order), and
/// agreement with `reference` (matched by image name) when given.
pub fn score(
    results: &[Classification],
    labels: &[Vec<usize>],
    reference: Option<&[Classification]>,
) -> Result<AccuracyScore, AccuracyError> {
    if results.len() != labels.len() {
        return Err(AccuracyError::CountMismatch {
            results: results.len(),
            labels: labels.len(),
        });
    }
    let (mut top1, mut top5) = (0, 0);
    for (c, accepted) in results.iter().zip(labels) {
        if accepted.is_empty() {
            return Err(AccuracyError::NoLabel {
                image: c.image.clone(),
            });
        }
        top1 += usize::from(accepted.contains(&first(c)?));
        top5 += usize::from(top(c, 5).any(|i| accepted.contains(&i)));
    }
    let agreement = reference.map(|r| agree(results, r)).transpose()?;
    let n = results.len();
    Ok(AccuracyScore {
        images: n,
        top1,
        top5,
        top1_pct: pct(top1, n),
        top5_pct: pct(top5, n),
        agreement,
    })
}

/// Agreement of `results` with `reference`, image by image (by name).
pub fn agree(
    results: &[Classification],
    reference: &[Classification],
) -> Result<Agreement, AccuracyError> {
    let by_name: HashMap<&str, &Classification> =
        reference.iter().map(|c| (c.image.as_str(), c)).collect();
    let (mut top1, mut top5, mut overlap) = (0, 0, 0.0);
    for c in results {
        let r = by_name
            .get(c.image.as_str())
            .ok_or_else(|| AccuracyError::NotInReference {
                image: c.image.clone(),
            })?;
        let want = first(r)?;
        top1 += usize::from(first(c)? == want);
        top5 += usize::from(top(c, 5).any(|i| i == want));
        let mine: Vec<usize> = top(c, 5).collect();
        overlap += top(r, 5).filter(|i| mine.contains(i)).count() as f64 / 5.0;
    }
    let n = results.len();
    Ok(Agreement {
        images: n,
        top1,
        top5,
        top5_overlap: overlap / n.max(1) as f64,
        top1_pct: pct(top1, n),
        top5_pct: pct(top5, n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ulayer::protocol::ClassScore;

    fn cls(image: &str, idx: &[usize]) -> Classification {
        Classification {
            image: image.into(),
            top: idx
                .iter()
                .map(|&index| ClassScore {
                    index,
                    name: format!("c{index}"),
                    probability: 0.1,
                })
                .collect(),
            latency_ms: 1.0,
        }
    }

    #[test]
    fn top1_top5_and_agreement_with_counts() {
        let labels = vec![vec![281, 282, 285], vec![1], vec![546]];
        let f32 = vec![
            cls("cat", &[282, 281, 7, 8, 9]),
            cls("fish", &[2, 1, 3, 4, 5]),
            cls("guitar", &[546, 402, 3, 4, 5]),
        ];
        let q8 = vec![
            cls("cat", &[281, 282, 7, 8, 10]),
            cls("fish", &[2, 3, 4, 5, 6]),
            cls("guitar", &[402, 546, 3, 4, 5]),
        ];
        let s = score(&q8, &labels, Some(&f32)).unwrap();
        assert_eq!((s.images, s.top1, s.top5), (3, 1, 2));
        let a = s.agreement.unwrap();
        // cat: 281 ≠ 282 but 282 in top-5; fish: 2 = 2; guitar: 402 ≠ 546, 546 in top-5.
        assert_eq!((a.top1, a.top5), (1, 3));
        assert!((a.top5_overlap - (4.0 + 4.0 + 5.0) / 15.0).abs() < 1e-12);
        let r = score(&f32, &labels, Some(&f32)).unwrap();
        assert_eq!((r.top1, r.top5), (2, 3));
        assert_eq!(r.agreement.map(|a| (a.top1, a.top5)), Some((3, 3)));
        assert!((r.top1_pct - 200.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn mismatches_are_errors_not_panics() {
        let a = vec![cls("x", &[1])];
        assert!(matches!(
            score(&a, &[], None),
            Err(AccuracyError::CountMismatch { .. })
        ));
        assert!(matches!(
            score(&a, &[vec![]], None),
            Err(AccuracyError::NoLabel { .. })
        ));
        assert!(matches!(
            score(&[cls("x", &[])], &[vec![1]], None),
            Err(AccuracyError::NoClasses { .. })
        ));
        assert!(matches!(
            score(&a, &[vec![1]], Some(&[cls("y", &[1])])),
            Err(AccuracyError::NotInReference { .. })
        ));
        let empty = score(&[], &[], Some(&[])).unwrap();
        assert_eq!((empty.images, empty.top1_pct), (0, 0.0));
    }
}
