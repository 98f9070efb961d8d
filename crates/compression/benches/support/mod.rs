//! What the compression benchmarks and tests share: the JSON bodies they compress and the
//! reading of their settings from the environment.
#![allow(dead_code)]

/// A JSON array of about `size` bytes, of the kind APIs return.
pub(crate) fn json(size: usize) -> String {
    let mut out = String::from("[");
    let mut i = 0;
    while out.len() < size {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"id":{i},"name":"item {i}","tags":["alpha","beta"],"price":{}.{:02},"active":{}}}"#,
            i * 7 % 1000,
            i % 100,
            i % 2 == 0
        ));
        i += 1;
    }
    out.push(']');
    out
}

/// An unsigned setting from the environment, or `default`.
pub(crate) fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
