//! `docs/metrics.md` and the crates' `names` lists agree: every metric a crate declares is in
//! the documentation's table with the same kind and label keys, and the table lists nothing
//! the crates do not declare.
#![cfg(feature = "stack")]

use std::collections::BTreeMap;

/// One row of the table: kind, label keys, emitting crate.
#[derive(Debug, PartialEq)]
struct Row {
    kind: String,
    labels: Vec<String>,
    krate: String,
}

/// The words between backticks in `cell`, outside parentheses (which hold label values).
fn keys(cell: &str) -> Vec<String> {
    let mut depth = 0usize;
    let mut outside = String::new();
    for c in cell.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => outside.push(c),
            _ => {}
        }
    }
    outside
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The rows of the "Metric names" table, by metric name. A name listed twice is an error.
fn documented(text: &str) -> BTreeMap<String, Row> {
    let section = text
        .split("## Metric names")
        .nth(1)
        .expect("docs/metrics.md has a \"Metric names\" section");
    let section = section.split("\n## ").next().unwrap();
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 4, "a row has 4 cells: {line}");
        let name = keys(cells[0]);
        assert_eq!(name.len(), 1, "one metric per row: {line}");
        let krate = keys(cells[3]);
        assert_eq!(krate.len(), 1, "one emitting crate per row: {line}");
        let row = Row {
            kind: cells[1].to_owned(),
            labels: keys(cells[2]),
            krate: krate[0].clone(),
        };
        assert!(
            rows.insert(name[0].clone(), row).is_none(),
            "{} is listed twice",
            name[0]
        );
    }
    rows
}

#[test]
fn docs_list_every_metric_with_its_kind_and_labels() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
    let mut docs = documented(&std::fs::read_to_string(path).unwrap());
    let catalog = tower_scale::metrics_catalog();
    assert!(catalog.len() >= 30, "the catalog holds every crate's list");
    for (krate, metric) in catalog {
        let row = docs
            .remove(metric.name)
            .unwrap_or_else(|| panic!("{} ({krate}) is not in docs/metrics.md", metric.name));
        let expected = Row {
            kind: metric.kind.as_str().to_owned(),
            labels: metric.labels.iter().map(|l| (*l).to_owned()).collect(),
            krate: krate.to_owned(),
        };
        assert_eq!(row, expected, "docs/metrics.md's row of {}", metric.name);
    }
    assert!(
        docs.is_empty(),
        "docs/metrics.md lists metrics no crate declares: {docs:?}"
    );
}

/// The checker itself: a wrong kind, a missing label or an extra row are caught.
#[test]
fn the_table_parser_reads_names_kinds_and_label_keys() {
    let text = "## Metric names\n\n| metric | type | labels | emitted by |\n|---|---|---|---|\n\
        | `a_total` | counter | `kind` (`x`, `y`), `op` | `c` |\n\
        | `b` | gauge | – (value: 0 up) | `c` |\n\n## Next\n| `z` | gauge | – | `c` |\n";
    let rows = documented(text);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows["a_total"].labels, ["kind", "op"]);
    assert_eq!(rows["a_total"].kind, "counter");
    assert!(rows["b"].labels.is_empty());
}

/// "Latency is recorded as histograms with buckets, never summaries": the exporter gives every
/// histogram of every crate buckets, so a fleet's quantiles add up across instances.
#[test]
fn the_exporter_renders_every_histogram_with_buckets() {
    use tower_scale::metrics::{PrometheusMetrics, metrics};

    let (recorder, exporter) = PrometheusMetrics::builder().build().unwrap();
    let histograms: Vec<_> = tower_scale::metrics_catalog()
        .into_iter()
        .filter(|(_, m)| m.kind.as_str() == "histogram")
        .collect();
    assert!(histograms.len() >= 3, "{histograms:?}");
    metrics::with_local_recorder(&recorder, || {
        for (_, metric) in &histograms {
            let labels: Vec<(&str, &str)> = metric.labels.iter().map(|l| (*l, "x")).collect();
            metrics::histogram!(metric.name, &labels).record(0.002);
        }
    });
    let rendered = exporter.render();
    for (krate, metric) in &histograms {
        assert!(
            rendered.contains(&format!("{}_bucket{{", metric.name)),
            "{} ({krate}) is not rendered with buckets:\n{rendered}",
            metric.name
        );
    }
}
