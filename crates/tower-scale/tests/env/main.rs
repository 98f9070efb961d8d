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
