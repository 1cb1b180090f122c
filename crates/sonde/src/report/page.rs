//! What a report shows, before any HTML: charts (each a set of labelled
//! series on two named axes), tables, and the facts of the run. Pure data;
//! the page's script draws the charts from it as serialized.

use serde::Serialize;

/// One axis: what it measures and in what unit, and whether it is drawn
/// on a log scale.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Axis {
    /// What it measures ("throughput").
    pub label: String,
    /// Its unit ("Mbit/s"); every axis has one.
    pub unit: String,
    /// A log (base 10) scale.
    pub log: bool,
}

impl Axis {
    /// A linear axis.
    pub fn linear(label: &str, unit: &str) -> Self {
        Self {
            label: label.into(),
            unit: unit.into(),
            log: false,
        }
    }

    /// A log-scaled axis.
    pub fn log(label: &str, unit: &str) -> Self {
        Self {
            log: true,
            ..Self::linear(label, unit)
        }
    }
}

/// How a series is drawn.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    /// Points joined by lines.
    Line,
    /// Points alone (measurements a fitted line runs through).
    Points,
    /// A step per bucket (a histogram).
    Steps,
}

/// One labelled series: its points, in order of x.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Series {
    /// Its name in the legend.
    pub label: String,
    /// How it is drawn.
    pub style: Style,
    /// The x of each point.
    pub x: Vec<f64>,
    /// The y of each point.
    pub y: Vec<f64>,
}

impl Series {
    /// A line through `points`.
    pub fn line(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self::styled(label, Style::Line, points)
    }

    /// A series drawn in `style`.
    pub fn styled(label: impl Into<String>, style: Style, points: Vec<(f64, f64)>) -> Self {
        let (x, y) = points.into_iter().unzip();
        Self {
            label: label.into(),
            style,
            x,
            y,
        }
    }
}

/// One chart.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Chart {
    /// Unique on its page (the element the script draws into).
    pub id: String,
    /// Its heading.
    pub title: String,
    /// The horizontal axis.
    pub x: Axis,
    /// The vertical axis.
    pub y: Axis,
    /// What is drawn; a chart with none is left out of the page.
    pub series: Vec<Series>,
}

impl Chart {
    /// An empty chart.
    pub fn new(id: &str, title: &str, x: Axis, y: Axis) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            x,
            y,
            series: Vec::new(),
        }
    }
}

/// A table: a header row and rows of text.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Table {
    /// Its heading.
    pub title: String,
    /// Column names.
    pub head: Vec<String>,
    /// Cells, row by row.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(title: &str, head: &[&str]) -> Self {
        Self {
            title: title.into(),
            head: head.iter().map(|h| (*h).to_string()).collect(),
            rows: Vec::new(),
        }
    }
}

/// The facts every page starts with.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Facts {
    /// The page's title.
    pub title: String,
    /// The command line that made it.
    pub command: String,
    /// When the run was (or the report was made, when the run does not
    /// say).
    pub date: String,
    /// This end's address or name.
    pub local: String,
    /// The peer's.
    pub remote: String,
    /// sonde's version (or the tool that made the result).
    pub version: String,
    /// The peer's version, when known.
    pub peer_version: String,
}

/// A whole report.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Page {
    /// Title, command, date, hosts, versions.
    pub facts: Facts,
    /// Charts, in order.
    pub charts: Vec<Chart>,
    /// Tables, after the charts.
    pub tables: Vec<Table>,
}

impl Page {
    /// Adds `chart` when it has anything to draw.
    pub fn chart(&mut self, chart: Chart) {
        if chart.series.iter().any(|s| !s.x.is_empty()) {
            self.charts.push(chart);
        }
    }

    /// Adds `table` when it has rows.
    pub fn table(&mut self, table: Table) {
        if !table.rows.is_empty() {
            self.tables.push(table);
        }
    }
}

/// Jain's fairness index of `shares` (1 when all are equal, 1/n when one
/// has everything); `None` for fewer than two or all zero.
pub fn jain(shares: &[f64]) -> Option<f64> {
    let n = shares.len() as f64;
    let sum: f64 = shares.iter().sum();
    let squares: f64 = shares.iter().map(|x| x * x).sum();
    (shares.len() >= 2 && squares > 0.0).then(|| sum * sum / (n * squares))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_is_one_for_equal_shares_and_one_over_n_for_a_hog() {
        assert_eq!(jain(&[5.0, 5.0, 5.0, 5.0]), Some(1.0));
        assert_eq!(jain(&[8.0, 0.0, 0.0, 0.0]), Some(0.25));
        assert_eq!(jain(&[3.0]), None);
        assert_eq!(jain(&[0.0, 0.0]), None);
    }

    #[test]
    fn empty_charts_and_tables_are_left_out() {
        let mut page = Page::default();
        page.chart(Chart::new(
            "a",
            "A",
            Axis::linear("t", "s"),
            Axis::linear("y", "u"),
        ));
        page.table(Table::new("T", &["x"]));
        assert!(page.charts.is_empty() && page.tables.is_empty());
    }
}
