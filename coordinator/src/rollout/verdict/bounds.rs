//! Anytime-valid bounds: they may be recomputed after every new observation, forever, and
//! the chance that any of them ever excludes the truth stays at most `alpha`. That is what
//! lets the verdict be watched on every reconcile pass without inflating false halts.

/// Half the width of a two-sided asymptotic confidence sequence for a mean after `n`
/// observations with standard deviation `sd`: the Robbins normal-mixture boundary of
/// Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas, "Time-uniform central limit theory and
/// asymptotic confidence sequences" (Annals of Statistics, 2024), eq. (2.5), tuned to be
/// tightest at `n_opt` observations.
pub fn mean_half_width(n: usize, sd: f64, alpha: f64, n_opt: f64) -> f64 {
    if n == 0 {
        return f64::INFINITY;
    }
    let t = n as f64;
    let log_term = -2.0 * alpha.ln();
    let rho2 = (log_term + (log_term + 1.0).ln()) / n_opt;
    let spread = 2.0 * (t * rho2 + 1.0) / (t * t * rho2);
    sd * (spread * ((t * rho2 + 1.0).sqrt() / alpha).ln()).sqrt()
}

/// Mean and sample standard deviation.
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// The alternatives the rate mixture averages over: 41 rates a quarter of a decade apart,
/// from 10⁻⁴ to 10⁶ events per agent-hour, equally weighted. Any fixed prior keeps the bound
/// valid; a wide one keeps it tight whatever the scale (a gamma prior centred on typical
/// crash rates made a crash loop of thousands per hour look like nothing at all).
const GRID_POINTS: i32 = 41;

fn grid_rate(k: i32) -> f64 {
    10f64.powf(-4.0 + f64::from(k) * 0.25)
}

/// ln of the Poisson mixture martingale against rate `lambda`, after `events` in `exposure`
/// agent-hours: the average over the grid of each alternative's likelihood ratio (Robbins'
/// method of mixtures; Howard, Ramdas, McAuliffe and Sekhon, "Time-uniform, nonparametric,
/// nonasymptotic confidence sequences", 2021). Under the true rate it is a nonnegative
/// martingale, so by Ville's inequality it exceeds 1/alpha with probability at most alpha,
/// ever.
fn ln_mixture(events: f64, exposure: f64, lambda: f64) -> f64 {
    let terms: Vec<f64> = (0..GRID_POINTS)
        .map(|k| {
            let theta = grid_rate(k);
            events * (theta / lambda).ln() - (theta - lambda) * exposure
        })
        .collect();
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln() - f64::from(GRID_POINTS).ln()
}

/// The rates not yet rejected after `events` in `exposure` agent-hours: `(low, high)`, each
/// valid at every moment with the pair's chance of error at most `alpha`. `high` is
/// infinite without exposure.
pub fn rate_bounds(events: f64, exposure: f64, alpha: f64) -> (f64, f64) {
    if exposure <= 0.0 {
        return (0.0, f64::INFINITY);
    }
    let limit = (1.0 / alpha).ln();
    let rejected = |lambda: f64| ln_mixture(events, exposure, lambda) >= limit;
    // The martingale is convex in ln(lambda) with its minimum at the observed rate (or at
    // zero without events): bisect on each side of it.
    let center = (events.max(0.5)) / exposure;
    let low = if events <= 0.0 || !rejected(center * 1e-9) {
        0.0
    } else {
        bisect_ln(center * 1e-9, center, |l| !rejected(l))
    };
    let mut far = center * 2.0;
    while !rejected(far) {
        far *= 2.0;
        if far > 1e12 {
            return (low, f64::INFINITY);
        }
    }
    let high = bisect_ln(center, far, rejected);
    (low, high)
}

/// The first point in `[lo, hi]` (on a log scale) where `flips` turns true, `flips(hi)` being true.
fn bisect_ln(mut lo: f64, mut hi: f64, flips: impl Fn(f64) -> bool) -> f64 {
    for _ in 0..60 {
        let mid = (lo * hi).sqrt();
        if flips(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_bound_narrows_with_samples_and_widens_with_confidence() {
        let at = |n, alpha| mean_half_width(n, 1.0, alpha, 30.0);
        assert!(at(10, 0.01) > at(100, 0.01));
        assert!(at(100, 0.01) > at(10_000, 0.01));
        assert!(at(100, 0.001) > at(100, 0.01));
        // Wider than the fixed-n normal interval (1.96 sd / sqrt(n) at 95 %): the price of
        // being allowed to look at every n.
        assert!(at(30, 0.05) > 1.96 / 30f64.sqrt());
        assert!(at(0, 0.01).is_infinite());
    }

    #[test]
    fn rate_bounds_hold_the_observed_rate_and_narrow_with_exposure() {
        let (low, high) = rate_bounds(10.0, 1_000.0, 0.01);
        assert!(low < 0.01 && 0.01 < high, "{low} {high}");
        let (low2, high2) = rate_bounds(100.0, 10_000.0, 0.01);
        assert!(low2 > low && high2 < high, "{low2} {high2}");
        let (zero_low, zero_high) = rate_bounds(0.0, 1_000.0, 0.01);
        assert_eq!(zero_low, 0.0);
        assert!(zero_high > 0.0 && zero_high < 0.02, "{zero_high}");
        assert_eq!(rate_bounds(3.0, 0.0, 0.01), (0.0, f64::INFINITY));
        // A crash loop: thousands an hour are told apart from a quiet baseline.
        let (loop_low, _) = rate_bounds(500.0, 0.002, 0.0001);
        assert!(loop_low > 100_000.0, "{loop_low}");
    }
}
