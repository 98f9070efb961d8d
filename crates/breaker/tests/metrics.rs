//! The metric series of keyed breakers stay bounded however many keys a client makes up.

use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use tower_scale_breaker::{
    BreakerConfig, CircuitBreaker, KeyedBreakers, Outcome, SlidingWindow, names,
};

fn config() -> BreakerConfig {
    let mut config = BreakerConfig::default();
    config.sliding_window = SlidingWindow::Count { size: 4 };
    config.minimum_calls = 4;
    config.wait_in_open = Duration::from_secs(20);
    config
}

/// The sample lines of `breaker_*` metrics in the exporter's output: one per live series.
fn breaker_series(recorder: &PrometheusRecorder) -> Vec<String> {
    recorder
        .handle()
        .render()
        .lines()
        .filter(|l| l.starts_with("breaker_"))
        .map(str::to_owned)
        .collect()
}

/// A client requesting 10,000 made-up paths, each with its own breaker (half of them opened
/// by failures), must not leave 10,000 series behind in the Prometheus output.
#[test]
fn ten_thousand_made_up_paths_cannot_grow_the_metric_series() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let breakers = KeyedBreakers::new(config(), 100).unwrap();
    metrics::with_local_recorder(&recorder, || {
        for n in 0..10_000 {
            let breaker = breakers.get(&format!("/users/{n}"));
            let outcome = if n % 2 == 0 {
                Outcome::FAILURE
            } else {
                Outcome::Success
            };
            for _ in 0..4 {
                if let Ok(permit) = breaker.try_acquire() {
                    permit.record(outcome);
                }
            }
        }
        assert!(breakers.len() <= 100);
    });
    let series = breaker_series(&recorder);
    assert!(
        series.len() <= 20,
        "{} breaker series for at most 100 live breakers: {:?}",
        series.len(),
        &series[..series.len().min(5)]
    );
}

/// A keyed group reports how many of its live breakers are in each state, under its own name;
/// evicted breakers leave the counts.
#[test]
fn a_keyed_group_counts_its_live_breakers_per_state() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let breakers = KeyedBreakers::named("users", config(), 100).unwrap();
    let live = metrics::with_local_recorder(&recorder, || {
        for n in 0..10_000 {
            let breaker = breakers.get(&format!("/users/{n}"));
            for _ in 0..4 {
                if let Ok(permit) = breaker.try_acquire() {
                    permit.record(Outcome::FAILURE);
                }
            }
        }
        // The last ten keys are closed again.
        for n in 9_990..10_000 {
            breakers.get(&format!("/users/{n}")).reset();
        }
        breakers.len()
    });
    let series = breaker_series(&recorder);
    let count = |state: &str| -> u64 {
        let prefix = format!("breaker_keys{{breaker=\"users\",state=\"{state}\"}} ");
        series
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.parse().unwrap())
    };
    assert!(live <= 100, "{live} breakers held");
    assert_eq!(count("closed") + count("open"), live, "{series:#?}");
    // At most those ten (the cache may not have admitted all of them).
    assert!(count("closed") <= 10, "{series:#?}");
    assert!(
        series.iter().any(|l| l.starts_with(
            "breaker_transitions_total{breaker=\"users\",from=\"closed\",to=\"open\"} 10000"
        )),
        "{series:#?}"
    );
    assert!(series.iter().all(|l| !l.contains("/users/")), "{series:#?}");
}

/// A breaker that opens moves its state gauge to 2 and counts the `closed` → `open`
/// transition; forcing it open and resetting it move them again.
#[test]
fn a_breaker_reports_its_state_and_transitions() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let breaker = CircuitBreaker::named("payments", config()).unwrap();
    let state = format!("{}{{breaker=\"payments\"}}", names::BREAKER_STATE.name);
    let moved = |from: &str, to: &str| {
        format!(
            "{}{{breaker=\"payments\",from=\"{from}\",to=\"{to}\"}}",
            names::BREAKER_TRANSITIONS_TOTAL.name
        )
    };
    let value = |text: &str, series: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    };
    metrics::with_local_recorder(&recorder, || {
        for _ in 0..4 {
            breaker.try_acquire().unwrap().record(Outcome::FAILURE);
        }
    });
    let text = recorder.handle().render();
    assert_eq!(value(&text, &state), Some(2.0), "{text}");
    assert_eq!(value(&text, &moved("closed", "open")), Some(1.0), "{text}");
    metrics::with_local_recorder(&recorder, || breaker.reset());
    let text = recorder.handle().render();
    assert_eq!(value(&text, &state), Some(0.0), "{text}");
    assert_eq!(value(&text, &moved("open", "closed")), Some(1.0), "{text}");
}
