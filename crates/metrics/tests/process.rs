//! The process metrics move with the process: collected at each render of an installed
//! `PrometheusMetrics` (its own test binary: it installs the global recorder).

use std::fs::File;

use tower_scale_metrics::{PrometheusMetrics, names};

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

#[test]
fn process_metrics_are_collected_at_each_scrape() {
    let metrics = PrometheusMetrics::install().unwrap();
    let text = metrics.render();
    for m in names::PROCESS_METRICS {
        let type_line = format!("# TYPE {} {}", m.name, m.kind.as_str());
        assert!(text.contains(&type_line), "{type_line} missing:\n{text}");
    }
    let rss = value(&text, names::PROCESS_RESIDENT_MEMORY_BYTES.name);
    assert!(rss > 1_000_000.0, "resident memory {rss}");

    // Twenty more open files show in the next scrape.
    let fds = value(&text, names::PROCESS_OPEN_FDS.name);
    let files: Vec<File> = (0..20)
        .map(|_| File::open("/proc/self/stat").unwrap())
        .collect();
    let more = value(&metrics.render(), names::PROCESS_OPEN_FDS.name);
    assert!(
        more >= fds + 20.0,
        "{fds} open fds, then {more} with 20 more files"
    );
    drop(files);

    // Resident memory grows by a touched 64 MiB buffer.
    let buffer = vec![1u8; 64 << 20];
    let grown = value(&metrics.render(), names::PROCESS_RESIDENT_MEMORY_BYTES.name);
    assert!(grown >= rss + 60.0 * 1024.0 * 1024.0, "{rss} then {grown}");
    assert_eq!(buffer.iter().map(|&b| u64::from(b)).sum::<u64>(), 64 << 20);

    // CPU seconds (whole seconds, as the collector reports them) count work done.
    let cpu = value(&metrics.render(), names::PROCESS_CPU_SECONDS_TOTAL.name);
    let mut x = 0u64;
    let mut later = cpu;
    for round in 0..400 {
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        if round % 10 == 9 {
            later = value(&metrics.render(), names::PROCESS_CPU_SECONDS_TOTAL.name);
            if later > cpu {
                break;
            }
        }
    }
    assert!(
        later > cpu,
        "CPU seconds stayed at {cpu} after busy work ({x})"
    );
}
