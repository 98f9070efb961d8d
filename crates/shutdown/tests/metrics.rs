//! `shutdown_phase` follows the phases: 1 (not ready) once triggered, 5 (done) at the end (its
//! own test binary: it installs the global recorder, which the runtime's tasks report to).

use std::convert::Infallible;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::time::sleep;
use tower_scale_shutdown::{Phase, Shutdown, ShutdownConfig, names};

fn value(text: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(names::SHUTDOWN_PHASE.name)?
            .strip_prefix(' ')?
            .parse()
            .ok()
    })
}

#[tokio::test(start_paused = true)]
async fn the_phase_gauge_follows_the_shutdown() {
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    let mut config = ShutdownConfig::default();
    config.pre_stop_delay = Duration::from_secs(5);
    let shutdown = Shutdown::new(config);
    let run = tokio::spawn({
        let s = shutdown.clone();
        async move {
            s.run(async {
                sleep(Duration::from_secs(3600)).await;
                Ok::<(), Infallible>(())
            })
            .await
        }
    });
    sleep(Duration::from_secs(1)).await;
    assert_eq!(
        value(&handle.render()),
        None,
        "nothing reported while running"
    );
    shutdown.trigger();
    sleep(Duration::from_secs(1)).await;
    assert_eq!(shutdown.phase(), Phase::NotReady);
    assert_eq!(value(&handle.render()), Some(1.0));
    run.await.unwrap();
    assert_eq!(shutdown.phase(), Phase::Done);
    assert_eq!(value(&handle.render()), Some(5.0));
}
