//! Quantiles and the numbers read from the gateway's lines.

/// The `q` quantile by linear interpolation between the closest ranks (as
/// `wsgate-bench`'s).
pub(super) fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

pub(super) fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

pub(super) fn range(values: &[f64], precision: usize) -> String {
    let (lo, hi) = (quantile(values, 0.0), quantile(values, 1.0));
    format!("{lo:.precision$}–{hi:.precision$}")
}

/// The number after `key` in `line` (`instantiate 0.123 ms`).
pub(super) fn number_after(line: &str, key: &str) -> Option<f64> {
    line.split(key)
        .nth(1)?
        .split_whitespace()
        .next()?
        .trim_end_matches(')')
        .parse()
        .ok()
}
