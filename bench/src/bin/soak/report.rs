//! The soak's findings: its checks (each passed or failed, with what was
//! seen), its figures, and the markdown they are printed as.

use super::faults::Tally;

/// One check: what was expected, whether it held, what was seen.
pub(crate) struct Check {
    pub(crate) what: String,
    pub(crate) ok: bool,
    pub(crate) seen: String,
}

/// The figures and checks of a run.
#[derive(Default)]
pub(crate) struct Report {
    pub(crate) checks: Vec<Check>,
    /// `(figure, value)` rows.
    pub(crate) figures: Vec<(String, String)>,
    /// `(fault, injected, how they ended)` rows.
    pub(crate) faults: Vec<(String, u64, String)>,
}

impl Report {
    /// Records a check.
    pub(crate) fn check(&mut self, what: impl Into<String>, ok: bool, seen: impl Into<String>) {
        let check = Check {
            what: what.into(),
            ok,
            seen: seen.into(),
        };
        super::progress(format!(
            "check {}: {} ({})",
            if check.ok { "ok" } else { "FAILED" },
            check.what,
            check.seen
        ));
        self.checks.push(check);
    }

    /// Records a figure.
    pub(crate) fn figure(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.figures.push((name.into(), value.into()));
    }

    /// Records a fault's row.
    pub(crate) fn fault(&mut self, name: impl Into<String>, injected: u64, ended: impl Into<String>) {
        self.faults.push((name.into(), injected, ended.into()));
    }

    pub(crate) fn failed(&self) -> usize {
        self.checks.iter().filter(|c| !c.ok).count()
    }

    /// The three tables, markdown.
    pub(crate) fn markdown(&self) -> String {
        let cell = |s: &str| s.replace('|', "/");
        let mut out = String::from("| figure | value |\n|---|---:|\n");
        for (name, value) in &self.figures {
            out.push_str(&format!("| {} | {} |\n", cell(name), cell(value)));
        }
        out.push_str("\n| fault | injected | how each ended |\n|---|---:|---|\n");
        for (name, injected, ended) in &self.faults {
            out.push_str(&format!("| {} | {injected} | {} |\n", cell(name), cell(ended)));
        }
        out.push_str("\n| check | result | seen |\n|---|---|---|\n");
        for c in &self.checks {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                cell(&c.what),
                if c.ok { "ok" } else { "**FAILED**" },
                cell(&c.seen)
            ));
        }
        out
    }
}

/// A tally as `N × what, ...`, most first.
pub(crate) fn describe(tally: &Tally) -> String {
    let mut rows: Vec<(&String, &u64)> = tally.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    if rows.is_empty() {
        return "—".into();
    }
    rows.iter()
        .map(|(what, n)| format!("{n} × {what}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `q` quantile (nearest rank) of `values`, sorted in place.
pub(crate) fn quantile(values: &mut [u32], q: f64) -> Option<u32> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

/// Microseconds as milliseconds.
pub(crate) fn ms(us: Option<u32>) -> String {
    us.map_or("—".into(), |us| format!("{:.2} ms", us as f64 / 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_ranks() {
        let mut v: Vec<u32> = (1..=100).rev().collect();
        assert_eq!(quantile(&mut v, 0.5), Some(50));
        assert_eq!(quantile(&mut v, 0.99), Some(99));
        assert_eq!(quantile(&mut v, 1.0), Some(100));
        assert_eq!(quantile(&mut v, 0.0), Some(1));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn tallies_read_most_first() {
        let mut t = Tally::new();
        t.insert("408".into(), 3);
        t.insert("closed without an answer".into(), 1);
        t.insert("503".into(), 3);
        assert_eq!(describe(&t), "3 × 408, 3 × 503, 1 × closed without an answer");
        assert_eq!(describe(&Tally::new()), "—");
    }

    #[test]
    fn a_failed_check_fails_the_report() {
        let mut r = Report::default();
        r.check("one", true, "fine");
        assert_eq!(r.failed(), 0);
        r.check("two | three", false, "not");
        assert_eq!(r.failed(), 1);
        assert!(r.markdown().contains("| two / three | **FAILED** | not |"));
    }
}
