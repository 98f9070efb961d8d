//! Environment overrides of the stack config: `REDIS_*` and `TOWER_SCALE__SECTION__FIELD`,
//! field by field over the file's values.
#![cfg(feature = "stack")]

use std::process::Command;
use std::time::Duration;

use tower_scale::stack::StackConfig;

/// Runs the test named `name` of this binary again in a child process with `vars` set, and
/// fails when it fails: the process environment is only changed in that child (setting it in
/// this process would race with the other tests).
fn in_child_with_env(name: &str, vars: &[(&str, &str)]) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("TOWER_SCALE_TEST_CHILD", "1")
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the child test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_child() -> bool {
    std::env::var_os("TOWER_SCALE_TEST_CHILD").is_some()
}

const FILE: &str = r#"
[redis]
url = "redis://file-host:6379"
key_prefix = "shop"
command_timeout = "75ms"
breaker_enabled = false
"#;

/// `REDIS_URL` used to replace the whole `[redis]` section: the file's key prefix, timeouts
/// and breaker settings were dropped for the defaults.
#[test]
fn redis_url_from_the_environment_keeps_the_files_other_redis_settings() {
    if !is_child() {
        return in_child_with_env(
            "redis_url_from_the_environment_keeps_the_files_other_redis_settings",
            &[("REDIS_URL", "redis://env-host:6380")],
        );
    }
    let config = StackConfig::from_toml(FILE)
        .unwrap()
        .redis_from_env()
        .unwrap();
    let redis = config.redis.unwrap();
    assert_eq!(redis.url, "redis://env-host:6380");
    assert_eq!(redis.key_prefix, "shop");
    assert_eq!(redis.command_timeout, Duration::from_millis(75));
    assert!(!redis.breaker_enabled);
}

/// Every section, as a file would set them.
const FULL: &str = r#"
[redis]
url = "redis://file-host:6379"
key_prefix = "shop"
command_timeout = "75ms"
[redis.breaker]
wait_in_open = "2s"

[shutdown]
pre_stop_delay = "1s"

[metrics]
path = "/internal/metrics"
global_labels = { service = "shop" }

[pressure]
max_lag = "150ms"
exempt_paths = ["/livez"]

[rate_limit]
quotas = [{ count = 3, period = "10s" }]
key = { type = "header", name = "x-api-key" }

[session]
secure = false
ttl = "1h"
signing_keys = ["a signing key of at least thirty-two bytes"]

[cache]
ttl = "30s"
[cache.tiers]
l1_max_bytes = 1048576

[compression]
encodings = ["gzip", "br"]
levels = [["gzip", 9]]
[compression.adaptive]
busy_lag = "15ms"

[decompression]
max_bytes = 4096

[breaker.routes."/payments"]
minimum_calls = 4

[offload]
threads = 2

[pubsub]
delivery = "stream"

[replica]
secret = "a replica secret of at least thirty-two bytes"
"#;

fn vars<'a>(list: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    list.iter().copied()
}

#[test]
fn every_field_of_every_section_can_be_set_alone_and_the_rest_stays() {
    let file = StackConfig::from_toml(FULL).unwrap();
    let config = file
        .clone()
        .env_overrides_from(vars(&[
            ("TOWER_SCALE__SESSION__TTL", "2h"),
            ("TOWER_SCALE__REDIS__BREAKER__WAIT_IN_OPEN", "3s"),
            ("TOWER_SCALE__REDIS__KEY_PREFIX", "123"),
            (
                "TOWER_SCALE__RATE_LIMIT__QUOTAS",
                r#"[{ count = 5, period = "1s" }]"#,
            ),
            ("TOWER_SCALE__PRESSURE__MAX_IN_FLIGHT", "64"),
            ("TOWER_SCALE__COMPRESSION__ADAPTIVE__SATURATED_LAG", "80ms"),
            ("TOWER_SCALE__METRICS__GLOBAL_LABELS__INSTANCE", "a1"),
            (
                "tower_scale__shutdown__drain_timeout",
                "unused: lower case is not the scheme",
            ),
            ("UNRELATED", "x"),
        ]))
        .unwrap();
    let session = &config.session.as_ref().unwrap().config;
    assert_eq!(session.ttl, Duration::from_secs(7200));
    assert!(!session.secure, "the file's other session fields stay");
    let redis = config.redis.as_ref().unwrap();
    assert_eq!(redis.breaker.wait_in_open, Duration::from_secs(3));
    assert_eq!(
        redis.key_prefix, "123",
        "a string field takes the text as it is"
    );
    assert_eq!(redis.command_timeout, Duration::from_millis(75));
    assert_eq!(redis.url, "redis://file-host:6379");
    let quotas = &config.rate_limit.as_ref().unwrap().quotas;
    assert_eq!(quotas.len(), 1);
    assert_eq!(quotas[0].count, 5);
    let pressure = config.pressure.as_ref().unwrap();
    assert_eq!(pressure.max_in_flight, Some(64));
    assert_eq!(pressure.max_lag, Some(Duration::from_millis(150)));
    let adaptive = config
        .compression
        .as_ref()
        .unwrap()
        .adaptive
        .as_ref()
        .unwrap();
    assert_eq!(adaptive.saturated_lag, Duration::from_millis(80));
    assert_eq!(adaptive.busy_lag, Duration::from_millis(15));
    let labels = &config.metrics.as_ref().unwrap().global_labels;
    assert_eq!(labels["service"], "shop");
    assert_eq!(labels["instance"], "a1");
    // Every section no variable named is exactly the file's.
    assert_eq!(config.shutdown, file.shutdown);
    assert_eq!(config.cache, file.cache);
    assert_eq!(config.decompression, file.decompression);
    assert_eq!(config.breaker, file.breaker);
    assert_eq!(config.offload, file.offload);
    assert_eq!(config.pubsub, file.pubsub);
    assert_eq!(config.replica, file.replica);
    assert_eq!(
        config.compression.as_ref().unwrap().response,
        file.compression.as_ref().unwrap().response
    );
}

#[test]
fn sections_are_added_and_removed_from_the_environment() {
    let file = StackConfig::from_toml(FULL).unwrap();
    let config = StackConfig::from_toml("[cache]\nttl = \"30s\"")
        .unwrap()
        .env_overrides_from(vars(&[
            ("TOWER_SCALE__CACHE", ""),
            ("TOWER_SCALE__METRICS", "{}"),
            ("TOWER_SCALE__DECOMPRESSION__MAX_BYTES", "2048"),
        ]))
        .unwrap();
    assert!(config.cache.is_none());
    assert_eq!(config.metrics, Some(Default::default()));
    assert_eq!(config.decompression.unwrap().max_bytes, 2048);
    // Without the adaptive table, adaptive compression stays off; the environment turns it on.
    let mut no_adaptive = file;
    no_adaptive.compression.as_mut().unwrap().adaptive = None;
    let on = no_adaptive
        .env_overrides_from(vars(&[(
            "TOWER_SCALE__COMPRESSION__ADAPTIVE__BUSY_LAG",
            "5ms",
        )]))
        .unwrap();
    let adaptive = on.compression.unwrap().adaptive.unwrap();
    assert_eq!(adaptive.busy_lag, Duration::from_millis(5));
}

#[test]
fn redis_variables_set_their_fields_only() {
    let config = StackConfig::from_toml(FULL)
        .unwrap()
        .env_overrides_from(vars(&[
            (
                "REDIS_URL",
                "redis://:pw@env-host:7000, redis://:pw@env-host:7001",
            ),
            ("REDIS_MODE", "cluster"),
            ("REDIS_NODES", "redis://:pw@env-host:7002"),
            ("REDIS_COMMAND_TIMEOUT", "40ms"),
            ("REDIS_POOL_SIZE", "4"),
        ]))
        .unwrap();
    let redis = config.redis.unwrap();
    assert_eq!(redis.url, "redis://:pw@env-host:7000");
    assert_eq!(
        redis.nodes,
        ["redis://:pw@env-host:7001", "redis://:pw@env-host:7002"]
    );
    assert_eq!(redis.command_timeout, Duration::from_millis(40));
    assert_eq!(redis.pool_size, Some(4));
    assert_eq!(redis.key_prefix, "shop");
    assert_eq!(redis.breaker.wait_in_open, Duration::from_secs(2));
    // REDIS_URL adds the section to a file without one; without it the others are ignored.
    let added = StackConfig::default()
        .env_overrides_from(vars(&[
            ("REDIS_URL", "redis://h:1"),
            ("REDIS_KEY_PREFIX", "k"),
        ]))
        .unwrap()
        .redis
        .unwrap();
    assert_eq!(
        (added.url.as_str(), added.key_prefix.as_str()),
        ("redis://h:1", "k")
    );
    let none = StackConfig::default()
        .env_overrides_from(vars(&[("REDIS_KEY_PREFIX", "k")]))
        .unwrap();
    assert!(none.redis.is_none());
}

#[test]
fn bad_values_are_errors_naming_the_variable_without_secrets() {
    for (var, value) in [
        ("TOWER_SCALE__SESSION__TTL", "soon"),
        ("TOWER_SCALE__SESION__TTL", "1h"),
        ("TOWER_SCALE__SESSION__TTLL", "1h"),
        ("TOWER_SCALE__SESSION__TTL__X", "1h"),
        ("TOWER_SCALE__PRESSURE__MAX_IN_FLIGHT", "many"),
        ("TOWER_SCALE__", "x"),
        ("REDIS_POOL_SIZE", "many"),
        ("REDIS_MODE", "sharded"),
        ("REDIS_COMMAND_TIMEOUT", "soon"),
    ] {
        let e = StackConfig::from_toml(FULL)
            .unwrap()
            .env_overrides_from([(var, value)])
            .unwrap_err();
        assert_eq!(e.section(), "env");
        assert!(e.to_string().contains(var), "{e} should name {var}");
    }
    let e = StackConfig::from_toml(FULL)
        .unwrap()
        .env_overrides_from([
            ("REDIS_URL", "redis://:Xy7-secret@h:1"),
            ("REDIS_MODE", "x"),
        ])
        .unwrap_err();
    assert!(!e.to_string().contains("Xy7-secret"), "{e}");
    let e = StackConfig::from_toml(FULL)
        .unwrap()
        .env_overrides_from([("TOWER_SCALE__REPLICA__SECRET__X", "hidden-value")])
        .unwrap_err();
    assert!(
        e.to_string().contains("TOWER_SCALE__REPLICA__SECRET__X"),
        "{e}"
    );
    assert!(
        !e.to_string().contains("hidden-value"),
        "a secret's value is not shown: {e}"
    );
}

#[test]
fn an_invalid_section_names_the_variables_that_set_it() {
    let config = StackConfig::from_toml("[session]\nttl = \"1h\"")
        .unwrap()
        .env_overrides_from([("TOWER_SCALE__SESSION__TTL", "0s")])
        .unwrap();
    let e = tower_scale::stack::Stack::build(&config).unwrap_err();
    assert_eq!(e.section(), "session");
    assert!(e.to_string().contains("TOWER_SCALE__SESSION__TTL"), "{e}");
}

const PASSWORD: &str = "Xy7-env-secret";

#[test]
fn the_printed_config_hides_every_secret_and_reads_back_as_the_same_config() {
    let config = StackConfig::from_toml(FULL)
        .unwrap()
        .env_overrides_from(vars(&[(
            "REDIS_URL",
            &format!("redis://app:{PASSWORD}@env-host:6380"),
        )]))
        .unwrap();
    let printed = config.to_toml_redacted().unwrap();
    for secret in [
        PASSWORD,
        "a signing key of at least thirty-two bytes",
        "a replica secret of at least thirty-two bytes",
    ] {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
    }
    assert!(printed.contains("env-host:6380"), "{printed}");
    assert!(printed.contains("key_prefix = \"shop\""), "{printed}");
    // Read back, it is the effective config (the secrets aside).
    let mut back = StackConfig::from_toml(&printed).unwrap();
    let mut expected = config;
    for c in [&mut back, &mut expected] {
        c.redis.as_mut().unwrap().url = String::new();
        c.session.as_mut().unwrap().config.signing_keys.clear();
        c.replica.as_mut().unwrap().secret.clear();
    }
    assert_eq!(back.redis, expected.redis);
    assert_eq!(back.session, expected.session);
    assert_eq!(back.replica, expected.replica);
    for (a, b) in [
        (
            format!("{:?}", back.metrics),
            format!("{:?}", expected.metrics),
        ),
        (
            format!("{:?}", back.compression),
            format!("{:?}", expected.compression),
        ),
        (format!("{:?}", back.cache), format!("{:?}", expected.cache)),
        (
            format!("{:?}", back.rate_limit),
            format!("{:?}", expected.rate_limit),
        ),
        (
            format!("{:?}", back.breaker),
            format!("{:?}", expected.breaker),
        ),
        (
            format!("{:?}", back.pubsub),
            format!("{:?}", expected.pubsub),
        ),
        (
            format!("{:?}", back.pressure),
            format!("{:?}", expected.pressure),
        ),
    ] {
        assert_eq!(a, b);
    }
}

#[test]
fn redis_tls_variables_set_the_tls_files() {
    let redis = StackConfig::default()
        .env_overrides_from(vars(&[
            ("REDIS_URL", "rediss://app:pw@h:6380"),
            ("REDIS_TLS_CA_FILE", "/etc/redis/ca.crt"),
            ("REDIS_TLS_CERT_FILE", "/etc/redis/client.crt"),
            ("REDIS_TLS_KEY_FILE", "/etc/redis/client.key"),
        ]))
        .unwrap()
        .redis
        .unwrap();
    assert_eq!(redis.url, "rediss://app:pw@h:6380");
    assert_eq!(
        [
            &redis.tls_ca_file,
            &redis.tls_cert_file,
            &redis.tls_key_file
        ],
        [
            &Some("/etc/redis/ca.crt".into()),
            &Some("/etc/redis/client.crt".into()),
            &Some("/etc/redis/client.key".into()),
        ]
    );
}
