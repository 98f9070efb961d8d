//! `example-quickstart --print-config`: the effective stack config, the environment's
//! overrides applied field by field, secrets hidden.

use std::process::Command;

const PASSWORD: &str = "Xy7-quickstart-secret";

fn print_config(vars: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_example-quickstart"))
        .arg("--print-config")
        .env_remove("TOWER_SCALE_CONFIG")
        .env("RUST_LOG", "off")
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn the_printed_config_has_the_overrides_and_never_the_redis_password() {
    let url = format!("redis://app:{PASSWORD}@10.1.2.3:6390/2");
    let (ok, stdout, stderr) = print_config(&[
        ("REDIS_URL", url.as_str()),
        ("REDIS_KEY_PREFIX", "quick"),
        ("TOWER_SCALE__SESSION__TTL", "2h"),
    ]);
    assert!(ok, "{stderr}");
    assert!(!stdout.contains(PASSWORD), "{stdout}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    for line in [
        "url = \"redis://app:***@10.1.2.3:6390/2\"",
        "key_prefix = \"quick\"",
        "ttl = \"2h\"",
        "[compression]",
        "l1_max_bytes = 16777216",
    ] {
        assert!(stdout.contains(line), "{line} missing from:\n{stdout}");
    }
}

#[test]
fn a_bad_variable_is_refused_naming_it_without_the_password() {
    let url = format!("redis://app:{PASSWORD}@10.1.2.3:6390/2");
    let (ok, stdout, stderr) = print_config(&[
        ("REDIS_URL", url.as_str()),
        ("REDIS_COMMAND_TIMEOUT", "soon"),
    ]);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("REDIS_COMMAND_TIMEOUT"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    assert!(!stdout.contains(PASSWORD), "{stdout}");
}
