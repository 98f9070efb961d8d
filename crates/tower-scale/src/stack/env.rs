//! Environment overrides, field by field over the file's values (`REDIS_*` and
//! `TOWER_SCALE__SECTION__FIELD`), and the effective config printed with secrets hidden.

use serde::Deserialize;
use serde_json::Value;

use super::config::{StackConfig, StackError};
use super::redact::{redact, redact_urls};

/// The prefix of the generic variables: `TOWER_SCALE__<SECTION>__<FIELD>[__<FIELD>...]`.
pub const ENV_PREFIX: &str = "TOWER_SCALE__";

/// One field set from one variable.
struct Override {
    var: String,
    path: Vec<String>,
    value: Raw,
    /// Show the value in errors (not for secrets).
    shown: bool,
}

/// A value as the environment gives it.
enum Raw {
    /// Exactly this value.
    Json(Value),
    /// A string where the field holds a string, else a TOML value (`true`, `3`, `[1, 2]`,
    /// `{ a = 1 }`), else a string; empty: unset (none).
    Text(String),
}

impl StackConfig {
    /// Overrides fields from the process environment: the `REDIS_*` variables, then
    /// `TOWER_SCALE__SECTION__FIELD` ones (see [`env_overrides_from`](Self::env_overrides_from)).
    pub fn env_overrides(self) -> Result<Self, StackError> {
        self.env_overrides_from(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// Overrides fields from these variables, each field on its own: what a variable does not
    /// name keeps the file's value.
    ///
    /// - `REDIS_URL` (a comma-separated list: the first is `url`, the others `nodes`),
    ///   `REDIS_MODE`, `REDIS_NODES`, `REDIS_CONNECTION`, `REDIS_POOL_SIZE`,
    ///   `REDIS_CONNECT_TIMEOUT`, `REDIS_COMMAND_TIMEOUT`, `REDIS_KEY_PREFIX`,
    ///   `REDIS_TLS_CA_FILE`, `REDIS_TLS_CERT_FILE`, `REDIS_TLS_KEY_FILE` set the fields of
    ///   `[redis]`. `REDIS_URL` adds the section when the file has none; without either, the
    ///   other `REDIS_*` variables are ignored.
    /// - `TOWER_SCALE__<SECTION>__<FIELD>`, nested with `__`
    ///   (`TOWER_SCALE__REDIS__BREAKER__WAIT_IN_OPEN=2s`), names in any case. The value is a
    ///   string where the field holds one, otherwise a TOML value (`true`, `64`,
    ///   `["/livez"]`, `{ count = 3, period = "1s" }`), otherwise a string (`250ms`); empty
    ///   unsets an optional field. A variable naming a field of an absent section adds the
    ///   section; `TOWER_SCALE__<SECTION>={}` adds it with its defaults, and
    ///   `TOWER_SCALE__<SECTION>=` removes it. Applied in name order, after `REDIS_*`.
    ///
    /// A value that does not fit its field, or a name that is no field, is an error naming the
    /// variable; [`Stack::build`](super::Stack::build) names the variables that set a
    /// section's fields when that section is invalid.
    pub fn env_overrides_from<I, K, V>(self, vars: I) -> Result<Self, StackError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(k, _)| k.starts_with("REDIS_") || k.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        let mut overrides = redis_overrides(&vars, self.redis.is_some());
        for (var, value) in &vars {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if path.iter().any(String::is_empty) {
                return Err(StackError::new(
                    "env",
                    format!("{var}: expected {ENV_PREFIX}<SECTION>__<FIELD>, nested with __"),
                ));
            }
            let shown = !path
                .iter()
                .any(|p| super::redact::SECRET_FIELDS.contains(&p.as_str()));
            overrides.push(Override {
                var: var.clone(),
                path,
                value: Raw::Text(value.clone()),
                shown,
            });
        }
        self.apply(overrides)
    }

    /// Overrides the fields of `[redis]` named by the `REDIS_*` variables of the process
    /// environment (see [`env_overrides_from`](Self::env_overrides_from)); the file's other
    /// fields stay.
    pub fn redis_from_env(self) -> Result<Self, StackError> {
        let vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("REDIS_"))
            .collect();
        self.env_overrides_from(vars)
    }

    /// The config as TOML, secrets hidden: URL passwords, session signing keys and the
    /// replica secret are `***`. Unset options are left out.
    pub fn to_toml_redacted(&self) -> Result<String, StackError> {
        let value = serde_json::to_value(self).map_err(|e| StackError::new("toml", e))?;
        toml::to_string(&redact(value)).map_err(|e| StackError::new("toml", e))
    }

    fn apply(self, overrides: Vec<Override>) -> Result<Self, StackError> {
        if overrides.is_empty() {
            return Ok(self);
        }
        let mut from_env = self.from_env.clone();
        let mut root = serde_json::to_value(&self).map_err(|e| StackError::new("env", e))?;
        let mut config = self;
        for o in overrides {
            let shown = match &o.value {
                _ if !o.shown => String::new(),
                Raw::Text(t) => format!("={:?}", redact_urls(t)),
                Raw::Json(v) => format!("={}", redact_urls(&v.to_string())),
            };
            let var = &o.var;
            let bad = |why: &dyn std::fmt::Display| {
                StackError::new("env", format!("{var}{shown}: {why}"))
            };
            set(&mut root, &o.path, o.value).map_err(|e| bad(&e))?;
            config =
                StackConfig::deserialize(&root).map_err(|e| bad(&redact_urls(&e.to_string())))?;
            from_env.push((o.path[0].clone(), o.var.clone()));
        }
        config.from_env = from_env;
        Ok(config)
    }
}

/// The `REDIS_*` variables as overrides of `[redis]` fields.
fn redis_overrides(vars: &[(String, String)], has_section: bool) -> Vec<Override> {
    let get = |name: &str| {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let url = get("REDIS_URL").filter(|u| !u.trim().is_empty());
    if url.is_none() && !has_section {
        return Vec::new();
    }
    let field = |var: &str, name: &str, value: Raw| Override {
        var: var.to_owned(),
        path: vec!["redis".to_owned(), name.to_owned()],
        value,
        shown: true,
    };
    let mut out = Vec::new();
    let mut nodes: Option<Vec<Value>> = None;
    if let Some(url) = url {
        let mut urls = split_list(url);
        out.push(field(
            "REDIS_URL",
            "url",
            Raw::Json(Value::String(urls.next().unwrap_or_default())),
        ));
        let rest: Vec<Value> = urls.map(Value::String).collect();
        if !rest.is_empty() {
            nodes = Some(rest);
        }
    }
    if let Some(extra) = get("REDIS_NODES") {
        nodes
            .get_or_insert_with(Vec::new)
            .extend(split_list(extra).map(Value::String));
    }
    // The mode before the nodes: standalone with nodes is refused at build, not here.
    for (var, name) in [
        ("REDIS_MODE", "mode"),
        ("REDIS_CONNECTION", "connection"),
        ("REDIS_CONNECT_TIMEOUT", "connect_timeout"),
        ("REDIS_COMMAND_TIMEOUT", "command_timeout"),
        ("REDIS_KEY_PREFIX", "key_prefix"),
        ("REDIS_TLS_CA_FILE", "tls_ca_file"),
        ("REDIS_TLS_CERT_FILE", "tls_cert_file"),
        ("REDIS_TLS_KEY_FILE", "tls_key_file"),
    ] {
        if let Some(value) = get(var) {
            out.push(field(
                var,
                name,
                Raw::Json(Value::String(value.trim().to_owned())),
            ));
        }
    }
    if let Some(size) = get("REDIS_POOL_SIZE") {
        let value = size
            .trim()
            .parse::<u64>()
            .map_or_else(|_| Value::String(size.to_owned()), Value::from);
        out.push(field("REDIS_POOL_SIZE", "pool_size", Raw::Json(value)));
    }
    if let Some(nodes) = nodes {
        let var = if get("REDIS_NODES").is_some() {
            "REDIS_NODES"
        } else {
            "REDIS_URL"
        };
        out.push(field(var, "nodes", Raw::Json(Value::Array(nodes))));
    }
    out
}

fn split_list(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Sets the field at `path` of `root`, adding the tables on the way.
fn set(root: &mut Value, path: &[String], value: Raw) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("no field named")?;
    let mut at = root;
    for (i, key) in parents.iter().enumerate() {
        let Value::Object(map) = at else {
            return Err(format!("{} is not a table", path[..i].join(".")));
        };
        let next = map.entry(key.clone()).or_insert(Value::Null);
        if next.is_null() {
            *next = Value::Object(serde_json::Map::new());
        }
        at = next;
    }
    let Value::Object(map) = at else {
        return Err(format!("{} is not a table", parents.join(".")));
    };
    let value = match value {
        Raw::Json(v) => v,
        Raw::Text(t) if t.is_empty() => Value::Null,
        Raw::Text(t) => match map.get(last) {
            Some(Value::String(_)) => Value::String(t),
            _ => parse_toml_value(&t).unwrap_or(Value::String(t)),
        },
    };
    map.insert(last.clone(), value);
    Ok(())
}

/// `text` as a TOML value (`true`, `3`, `"x"`, `[1, 2]`, `{ a = 1 }`), if it is one.
fn parse_toml_value(text: &str) -> Option<Value> {
    let mut table: toml::Table = toml::from_str(&format!("v = {text}")).ok()?;
    serde_json::to_value(table.remove("v")?).ok()
}
