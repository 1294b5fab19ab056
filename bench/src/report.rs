//! Figures, tables and the Markdown report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How a figure is printed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unit {
    /// Seconds, printed as µs, ms or s.
    Secs,
    /// Bytes, printed as KiB or MiB.
    Bytes,
    /// A rate with its unit, e.g. "SVIDs/s".
    Rate(&'static str),
    /// A fraction, printed as a percentage.
    Fraction,
    /// A count of events.
    Count,
}

impl Unit {
    pub(crate) fn format(self, v: f64) -> String {
        match self {
            Unit::Secs if v < 1e-3 => format!("{:.0} µs", v * 1e6),
            Unit::Secs if v < 1.0 => format!("{:.2} ms", v * 1e3),
            Unit::Secs => format!("{v:.2} s"),
            Unit::Bytes if v < 1024.0 * 1024.0 => format!("{:.1} KiB", v / 1024.0),
            Unit::Bytes => format!("{:.1} MiB", v / (1024.0 * 1024.0)),
            Unit::Rate(unit) if v < 100.0 => format!("{v:.1} {unit}"),
            Unit::Rate(unit) => format!("{v:.0} {unit}"),
            Unit::Fraction => format!("{:.1} %", v * 100.0),
            Unit::Count => format!("{v:.0}"),
        }
    }
}

/// A goal from the issue, checked on the spire-rs figure.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Goal {
    /// spire-rs ÷ reference at least this.
    RatioAtLeast(f64),
    /// spire-rs ÷ reference at most this.
    RatioAtMost(f64),
    /// spire-rs figure at most this (in the row's unit).
    AtMost(f64),
    /// spire-rs figure at least this (in the row's unit).
    AtLeast(f64),
}

impl Goal {
    fn describe(self, unit: Unit) -> String {
        match self {
            Goal::RatioAtLeast(r) => format!("≥ {r:.2}x"),
            Goal::RatioAtMost(r) => format!("≤ {r:.2}x"),
            Goal::AtMost(v) => format!("≤ {}", unit.format(v)),
            Goal::AtLeast(v) => format!("≥ {}", unit.format(v)),
        }
    }

    fn met(self, ours: f64, ratio: Option<f64>) -> Option<bool> {
        match self {
            Goal::RatioAtLeast(r) => ratio.map(|x| x >= r),
            Goal::RatioAtMost(r) => ratio.map(|x| x <= r),
            Goal::AtMost(v) => Some(ours <= v),
            Goal::AtLeast(v) => Some(ours >= v),
        }
    }
}

/// One implementation's figure for one metric.
#[derive(Debug, Clone)]
pub(crate) enum Cell {
    Value(f64),
    /// Why there is no figure ("not run: …", "failed: …", "did not finish in 10 min …").
    Missing(String),
}

/// Figures of one implementation in one scenario, by key.
#[derive(Debug, Default)]
pub(crate) struct Metrics(BTreeMap<String, Cell>);

impl Metrics {
    pub(crate) fn set(&mut self, key: impl Into<String>, v: f64) {
        self.0.insert(key.into(), Cell::Value(v));
    }

    pub(crate) fn missing(&mut self, key: impl Into<String>, why: impl Into<String>) {
        self.0.insert(key.into(), Cell::Missing(why.into()));
    }
}

/// What became of one implementation in one scenario.
#[derive(Debug)]
pub(crate) enum Outcome {
    NotRun(String),
    Failed(String),
    Done(Metrics),
}

impl Outcome {
    fn cell(&self, key: &str) -> Cell {
        match self {
            Outcome::NotRun(why) => Cell::Missing(format!("not run ({why})")),
            Outcome::Failed(why) => Cell::Missing(format!("failed: {}", first_line(why))),
            Outcome::Done(m) => {
                m.0.get(key)
                    .cloned()
                    .unwrap_or_else(|| Cell::Missing("not measured".into()))
            }
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// A row of a scenario's table.
#[derive(Debug, Clone)]
pub(crate) struct RowSpec {
    pub(crate) key: String,
    pub(crate) label: String,
    pub(crate) unit: Unit,
    pub(crate) goal: Option<Goal>,
}

pub(crate) fn row(key: impl Into<String>, label: impl Into<String>, unit: Unit) -> RowSpec {
    RowSpec {
        key: key.into(),
        label: label.into(),
        unit,
        goal: None,
    }
}

impl RowSpec {
    pub(crate) fn goal(mut self, g: Goal) -> Self {
        self.goal = Some(g);
        self
    }
}

/// One scenario's part of the report.
#[derive(Debug)]
pub(crate) struct Section {
    pub(crate) title: String,
    pub(crate) description: String,
    pub(crate) rows: Vec<RowSpec>,
    pub(crate) reference: Outcome,
    pub(crate) ours: Outcome,
    pub(crate) notes: Vec<String>,
    pub(crate) seconds: f64,
}

impl Section {
    /// Scenario failures (not timeouts the scenario reports as missing figures).
    pub(crate) fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, o) in [
            ("reference SPIRE", &self.reference),
            ("spire-rs", &self.ours),
        ] {
            if let Outcome::Failed(why) = o {
                out.push(format!("{} / {name}: {why}", self.title));
            }
        }
        out
    }

    /// spire-rs figures that are missing (a smoke run wants every one).
    pub(crate) fn missing_ours(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter_map(|r| match self.ours.cell(&r.key) {
                Cell::Missing(why) => {
                    Some(format!("{} / spire-rs / {}: {why}", self.title, r.label))
                }
                Cell::Value(_) => None,
            })
            .collect()
    }

    pub(crate) fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "### {}\n", self.title);
        if !self.description.is_empty() {
            let _ = writeln!(s, "{}\n", self.description);
        }
        let _ = writeln!(
            s,
            "| metric | reference SPIRE | spire-rs | spire-rs ÷ reference | goal |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---|");
        for r in &self.rows {
            let reference = self.reference.cell(&r.key);
            let ours = self.ours.cell(&r.key);
            let show = |c: &Cell| match c {
                Cell::Value(v) => r.unit.format(*v),
                Cell::Missing(why) => why.replace('|', "/"),
            };
            let ratio = match (&reference, &ours) {
                (Cell::Value(a), Cell::Value(b)) if *a > 0.0 => Some(b / a),
                _ => None,
            };
            let goal = match (r.goal, &ours) {
                (Some(g), Cell::Value(v)) => match g.met(*v, ratio) {
                    Some(true) => format!("{}: met", g.describe(r.unit)),
                    Some(false) => format!("{}: **missed**", g.describe(r.unit)),
                    None => g.describe(r.unit),
                },
                (Some(g), Cell::Missing(_)) => g.describe(r.unit),
                (None, _) => String::new(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                r.label,
                show(&reference),
                show(&ours),
                ratio
                    .map(|x| format!("{x:.2}x"))
                    .unwrap_or_else(|| "-".into()),
                goal
            );
        }
        s.push('\n');
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        if !self.notes.is_empty() {
            s.push('\n');
        }
        s
    }
}

/// `n` with its thousands separated by spaces, as the issue writes them: `100 000`.
pub(crate) fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Nearest-rank percentile of sorted samples.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median of unsorted samples.
pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[3.0], 90.0), 3.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(count(1_000_000), "1 000 000");
        assert_eq!(count(999), "999");
        assert_eq!(count(10_000), "10 000");
    }

    #[test]
    fn units() {
        assert_eq!(Unit::Secs.format(0.000_250), "250 µs");
        assert_eq!(Unit::Secs.format(0.25), "250.00 ms");
        assert_eq!(Unit::Bytes.format(3.0 * 1024.0 * 1024.0), "3.0 MiB");
        assert_eq!(Unit::Fraction.format(0.7), "70.0 %");
    }
}
