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
