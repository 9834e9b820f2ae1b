//! Statistical helpers shared by the generator tests.
//!
//! The χ² goodness-of-fit test bins adjacent items until every bin expects at least five draws (the
//! usual validity condition of the χ² approximation), and the critical value at p = 0.001 comes from
//! the Wilson–Hilferty approximation, which is within a fraction of a percent of the exact quantile
//! for the hundreds of degrees of freedom the tests use.

/// The smallest expected count a χ² bin may have.
const BIN_EXPECTED_MIN: f64 = 5.0;

/// The outcome of a χ² goodness-of-fit test.
#[derive(Debug, Clone, Copy)]
pub struct ChiSquare {
    pub statistic: f64,
    pub bins: usize,
    pub degrees_of_freedom: u64,
}

/// Compares observed counts per item against expected probabilities per item (which must sum to 1).
/// Adjacent items are merged into one bin until the bin expects at least five draws; a short last bin
/// is merged into the one before it.
pub fn chi_square(observed: &[u64], probabilities: &[f64]) -> ChiSquare {
    assert_eq!(observed.len(), probabilities.len());
    let draws: u64 = observed.iter().sum();
    let draws = draws as f64;

    let mut bins: Vec<(f64, f64)> = Vec::new();
    let (mut bin_observed, mut bin_expected) = (0.0, 0.0);
    for (&count, &probability) in observed.iter().zip(probabilities) {
        bin_observed += count as f64;
        bin_expected += probability * draws;
        if bin_expected >= BIN_EXPECTED_MIN {
            bins.push((bin_observed, bin_expected));
            (bin_observed, bin_expected) = (0.0, 0.0);
        }
    }
    if bin_expected > 0.0 || bin_observed > 0.0 {
        match bins.last_mut() {
            Some(last) => {
                last.0 += bin_observed;
                last.1 += bin_expected;
            }
            None => bins.push((bin_observed, bin_expected)),
        }
    }

    let statistic = bins
        .iter()
        .map(|&(observed, expected)| (observed - expected).powi(2) / expected)
        .sum();
    ChiSquare {
        statistic,
        bins: bins.len(),
        degrees_of_freedom: bins.len() as u64 - 1,
    }
}

/// The upper 0.001 quantile of the χ² distribution with `degrees_of_freedom` degrees of freedom, by
/// the Wilson–Hilferty cube approximation.
pub fn chi_square_critical_p001(degrees_of_freedom: u64) -> f64 {
    // The standard normal quantile of 0.999.
    const Z_0999: f64 = 3.090_232_306_167_813;
    let k = degrees_of_freedom as f64;
    let spread = 2.0 / (9.0 * k);
    k * (1.0 - spread + Z_0999 * spread.sqrt()).powi(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_hilferty_matches_table_quantiles() {
        // Upper 0.001 quantiles from the standard χ² tables.
        for (degrees_of_freedom, table) in [(30, 59.703), (100, 149.449), (1000, 1143.917)] {
            let approximation = chi_square_critical_p001(degrees_of_freedom);
            assert!(
                (approximation - table).abs() / table < 0.005,
                "df {degrees_of_freedom}: {approximation} vs {table}"
            );
        }
    }

    #[test]
    fn chi_square_bins_small_expectations() {
        // Expected counts 50, 30, 10, 4, 3, 2, 1: the last four merge into one bin of 10.
        let probabilities = [0.5, 0.3, 0.1, 0.04, 0.03, 0.02, 0.01];
        let observed = [50, 30, 10, 4, 3, 2, 1];
        let test = chi_square(&observed, &probabilities);
        assert_eq!(test.bins, 4);
        assert_eq!(test.degrees_of_freedom, 3);
        assert!(test.statistic.abs() < 1e-9);
    }
}
