//! Secrets kept out of what the stack prints: URL passwords, signing keys and secrets.

use serde_json::Value;

/// Fields whose values are secrets wherever they appear: printed as `***`.
pub(crate) const SECRET_FIELDS: [&str; 2] = ["signing_keys", "secret"];

/// `text` with the password of every URL in it hidden ([`redact_url`](crate::redis::redact_url)):
/// a TOML error quotes the line it is on, which may be the `url` line.
pub(crate) fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ']' | '}'))
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str(&crate::redis::redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `value` with secrets hidden: every string's URL passwords, every secret field's value; and
/// without nulls (TOML has none: an absent field is an unset option).
pub(crate) fn redact(value: Value) -> Value {
    match value {
        Value::String(s) if s.contains("://") => Value::String(redact_urls(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let v = if SECRET_FIELDS.contains(&k.as_str()) {
                        hide(v)
                    } else {
                        redact(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

/// A secret's value replaced, keeping its shape (a list stays a list of the same length).
fn hide(value: Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(hide).collect()),
        Value::String(s) if s.is_empty() => Value::String(s),
        _ => Value::String("***".to_owned()),
    }
}
