//! Small statistics: nearest-rank percentiles (as the harness computes them), geometric
//! mean, and the one-sided Mann–Whitney U test used by `check`.

/// Nearest-rank percentile `p` (0–100) of the finite values; `None` when there are none.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let rank = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n);
    Some(v[rank - 1])
}

/// Median (nearest rank, the lower middle for even counts).
pub fn median(values: &[f64]) -> Option<f64> {
    percentile(values, 50.0)
}

/// Mean of the finite values.
pub fn mean(values: &[f64]) -> Option<f64> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Geometric mean of the positive finite values.
pub fn geomean(values: &[f64]) -> Option<f64> {
    let v: Vec<f64> = values
        .iter()
        .copied()
        .filter(|x| x.is_finite() && *x > 0.0)
        .collect();
    (!v.is_empty()).then(|| (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp())
}

/// The result of a one-sided Mann–Whitney U test.
#[derive(Clone, Debug, PartialEq)]
pub struct MannWhitney {
    /// U of the second sample (`current`): how often a current value beats a baseline one.
    pub u: f64,
    /// P(U ≥ u) under the null hypothesis of equal distributions.
    pub p_value: f64,
    /// "exact" (no ties, small samples) or "normal approximation with tie and continuity
    /// correction".
    pub method: &'static str,
}

/// Largest sample size for which the exact null distribution is enumerated.
const EXACT_MAX: usize = 30;

/// One-sided Mann–Whitney U test of `current` being stochastically greater than
/// `baseline` (e.g. slower). `None` when either sample is empty.
pub fn mann_whitney_greater(baseline: &[f64], current: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (baseline.len(), current.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    // Midranks over the pooled sample.
    let mut pooled: Vec<(f64, bool)> = baseline
        .iter()
        .map(|&x| (x, false))
        .chain(current.iter().map(|&x| (x, true)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = pooled.len();
    let mut ranks = vec![0.0; n];
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && pooled[j + 1].0 == pooled[i].0 {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        ranks[i..=j].iter_mut().for_each(|x| *x = r);
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let r2: f64 = pooled
        .iter()
        .zip(&ranks)
        .filter(|(p, _)| p.1)
        .map(|(_, r)| r)
        .sum();
    let u = r2 - (n2 * (n2 + 1)) as f64 / 2.0;
    if tie_term == 0.0 && n1 <= EXACT_MAX && n2 <= EXACT_MAX {
        let dist = u_distribution(n2, n1);
        let total: f64 = dist.iter().sum();
        let from = u.round() as usize;
        let tail: f64 = dist.iter().skip(from).sum();
        return Some(MannWhitney {
            u,
            p_value: (tail / total).clamp(0.0, 1.0),
            method: "exact",
        });
    }
    let (f1, f2, nf) = (n1 as f64, n2 as f64, n as f64);
    let mean_u = f1 * f2 / 2.0;
    let var = f1 * f2 / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    let p_value = if var <= 0.0 {
        // Every value equal: no evidence either way.
        1.0
    } else {
        let z = (u - mean_u - 0.5) / var.sqrt();
        1.0 - normal_cdf(z)
    };
    Some(MannWhitney {
        u,
        p_value: p_value.clamp(0.0, 1.0),
        method: "normal approximation with tie and continuity correction",
    })
}

/// Counts of each U value (0..=m·n) for samples of sizes m and n without ties:
/// `f(m, n, u) = f(m−1, n, u−n) + f(m, n−1, u)`.
fn u_distribution(m: usize, n: usize) -> Vec<f64> {
    // table[i][j] = distribution for sizes (i, j).
    let mut table: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); n + 1]; m + 1];
    for i in 0..=m {
        for j in 0..=n {
            if i == 0 || j == 0 {
                table[i][j] = vec![1.0];
                continue;
            }
            let mut d = vec![0.0; i * j + 1];
            for (u, c) in table[i - 1][j].iter().enumerate() {
                d[u + j] += c;
            }
            for (u, c) in table[i][j - 1].iter().enumerate() {
                d[u] += c;
            }
            table[i][j] = d;
        }
    }
    table[m][n].clone()
}

/// Standard normal cumulative distribution.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(5.0));
        assert_eq!(percentile(&v, 90.0), Some(9.0));
        assert_eq!(percentile(&v, 99.0), Some(10.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(median(&[3.0, f64::NAN, 1.0, 2.0]), Some(2.0));
    }

    #[test]
    fn geomean_of_ratios() {
        let g = geomean(&[0.5, 2.0]).unwrap_or(0.0);
        assert!((g - 1.0).abs() < 1e-12);
        assert_eq!(geomean(&[]), None);
    }

    #[test]
    fn normal_cdf_matches_tables() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(-1.644_854) - 0.05).abs() < 1e-6);
    }

    #[test]
    fn exact_u_distribution_small_case() {
        // Sizes 2 and 2: U ∈ {0,1,2,3,4} with counts 1,1,2,1,1 (C(4,2) = 6).
        assert_eq!(u_distribution(2, 2), vec![1.0, 1.0, 2.0, 1.0, 1.0]);
        let d = u_distribution(5, 7);
        assert_eq!(d.iter().sum::<f64>(), 792.0); // C(12, 5)
    }

    #[test]
    fn mann_whitney_exact_extremes() {
        // Every current value above every baseline value: p = 1 / C(10, 5) = 1/252.
        let base = [1.0, 2.0, 3.0, 4.0, 5.0];
        let cur = [6.0, 7.0, 8.0, 9.0, 10.0];
        let t = mann_whitney_greater(&base, &cur).unwrap_or_else(|| unreachable!());
        assert_eq!(t.method, "exact");
        assert_eq!(t.u, 25.0);
        assert!((t.p_value - 1.0 / 252.0).abs() < 1e-12);
        // The other way round: p = 1.
        let t = mann_whitney_greater(&cur, &base).unwrap_or_else(|| unreachable!());
        assert_eq!(t.u, 0.0);
        assert!((t.p_value - 1.0).abs() < 1e-12);
    }

    #[test]
    fn mann_whitney_normal_with_ties_agrees_with_reference() {
        // By hand (midranks; ties 2,2,3,2,2,3 so Σ(t³−t) = 72): U = 140.5 − 55 = 85.5,
        // σ² = 100/12 · (21 − 72/380), z = (85.5 − 50 − 0.5)/σ = 2.6578, p = 0.003933.
        let base = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 5.0, 6.0, 7.0, 8.0];
        let cur = [4.0, 5.0, 6.0, 7.0, 8.0, 8.0, 9.0, 10.0, 11.0, 12.0];
        let t = mann_whitney_greater(&base, &cur).unwrap_or_else(|| unreachable!());
        assert!(t.method.starts_with("normal"));
        assert_eq!(t.u, 85.5);
        assert!((t.p_value - 0.003_933).abs() < 1e-5, "p = {}", t.p_value);
    }

    #[test]
    fn mann_whitney_same_sample_is_not_significant() {
        let a: Vec<f64> = (0..20).map(|i| 10.0 + f64::from(i % 7) * 0.1).collect();
        let t = mann_whitney_greater(&a, &a).unwrap_or_else(|| unreachable!());
        assert!(t.p_value > 0.4, "p = {}", t.p_value);
        assert_eq!(mann_whitney_greater(&[], &a), None);
    }
}
