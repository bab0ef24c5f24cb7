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

/// The gamma prior of the rate mixture: shape 1, and a scale that puts its mean at one
/// event per 100 agent-hours. Any prior keeps the bound valid; this one only decides which
/// rates it is tightest for.
const PRIOR_SHAPE: f64 = 1.0;
const PRIOR_RATE_HOURS: f64 = 100.0;

/// ln of the gamma–Poisson mixture martingale against rate `lambda`, after `events` in
/// `exposure` agent-hours (Robbins' method of mixtures; Howard, Ramdas, McAuliffe and Sekhon,
/// "Time-uniform, nonparametric, nonasymptotic confidence sequences", 2021, §3). Under the
/// true rate it is a nonnegative martingale, so by Ville's inequality it exceeds 1/alpha
/// with probability at most alpha, ever.
fn ln_mixture(events: f64, exposure: f64, lambda: f64) -> f64 {
    let (a, b) = (PRIOR_SHAPE, PRIOR_RATE_HOURS);
    a * b.ln() - ln_gamma(a) + ln_gamma(a + events)
        - (a + events) * (b + exposure).ln()
        - events * lambda.ln()
        + lambda * exposure
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

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9: about 15 significant digits).
pub fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_factorials() {
        let mut factorial = 1.0_f64;
        for n in 1..30 {
            assert!(
                (ln_gamma(f64::from(n)) - factorial.ln()).abs() < 1e-9,
                "{n}"
            );
            factorial *= f64::from(n);
        }
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-9);
    }

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
        assert!(zero_high > 0.0 && zero_high < 0.01, "{zero_high}");
        assert_eq!(rate_bounds(3.0, 0.0, 0.01), (0.0, f64::INFINITY));
    }
}
