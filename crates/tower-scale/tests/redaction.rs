//! A stack config's `Debug` output hides the Redis password (issue 21): it used to print the
//! Redis URL, password included.
#![cfg(feature = "stack")]

use tower_scale::stack::StackConfig;

const PASSWORD: &str = "Xy7-stack-secret";

#[test]
fn a_stack_configs_debug_output_hides_the_redis_password() {
    for redis in [
        format!("url = \"redis://app:{PASSWORD}@10.0.0.5:6379/2\""),
        format!(
            "mode = \"cluster\"\nurl = \"redis://:{PASSWORD}@10.0.0.5:7000\"\n\
             nodes = [\"redis://app:{PASSWORD}@10.0.0.6:7000\", \"redis://app:{PASSWORD}@10.0.0.7:7000\"]"
        ),
    ] {
        let config = StackConfig::from_toml(&format!("[redis]\n{redis}\n")).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains(PASSWORD), "{debug}");
        assert!(
            debug.contains("10.0.0.5"),
            "the host stays readable: {debug}"
        );
        let pretty = format!("{config:#?}");
        assert!(!pretty.contains(PASSWORD), "{pretty}");
    }
}

/// A TOML error quotes the line it is on: a typo on the `url` line printed the password.
#[test]
fn a_config_error_on_the_url_line_hides_the_redis_password() {
    for text in [
        format!("[redis]\nurl = \"redis://app:{PASSWORD}@10.0.0.5:6379/2\" command_timeout = 5\n"),
        format!("[redis]\nurl = [\"redis://app:{PASSWORD}@10.0.0.5:6379\"]\n"),
        format!("[redis]\nurl = \"rediss://:{PASSWORD}@10.0.0.5:6380\"\nmode = \"sentinel\"\n"),
    ] {
        let e = StackConfig::from_toml(&text).unwrap_err();
        for shown in [e.to_string(), format!("{e:?}")] {
            assert!(!shown.contains(PASSWORD), "{shown}");
        }
    }
}
