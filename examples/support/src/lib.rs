//! What every example shares, so they all behave alike:
//!
//! - [`listen_addr`]: where an example listens, from `HOST` (an IP address, default
//!   `127.0.0.1`) and `PORT` (default: the example's own);
//! - [`exit_code`]: `main`'s result as an exit code, a failure printed as
//!   `error: <message>` with its causes (the `Display` form, never the `Debug` one).

use std::error::Error;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

/// The address an example listens on: `HOST` (default `127.0.0.1`) and `PORT` (default
/// `default_port`; `0` picks a free port).
pub fn listen_addr(default_port: u16) -> Result<SocketAddr, AddrError> {
    listen_addr_from(|name| std::env::var(name).ok(), default_port)
}

/// [`listen_addr`] with the variables read by `get` (for tests, or an example's own
/// environment reader).
pub fn listen_addr_from(
    get: impl Fn(&str) -> Option<String>,
    default_port: u16,
) -> Result<SocketAddr, AddrError> {
    let ip = match get("HOST") {
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(host) => host.trim().parse().map_err(|_| AddrError {
            variable: "HOST",
            value: host,
            expected: "an IP address such as 127.0.0.1, 0.0.0.0 or ::1",
        })?,
    };
    let port = match get("PORT") {
        None => default_port,
        Some(port) => port.trim().parse().map_err(|_| AddrError {
            variable: "PORT",
            value: port,
            expected: "a port number, 0 to 65535",
        })?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// A `HOST` or `PORT` that is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrError {
    variable: &'static str,
    value: String,
    expected: &'static str,
}

impl AddrError {
    /// The variable that is wrong: `HOST` or `PORT`.
    pub fn variable(&self) -> &'static str {
        self.variable
    }
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={:?}: expected {}",
            self.variable, self.value, self.expected
        )
    }
}

impl Error for AddrError {}

/// `main`'s result as the process's exit code: a failure is printed to stderr as
/// `error: <message>`, then `caused by: <source>` for each cause, and exits with 1.
pub fn exit_code<E: Into<Box<dyn Error>>>(result: Result<ExitCode, E>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", describe(&*e.into()));
            ExitCode::FAILURE
        }
    }
}

/// `error: <message>` and a `caused by:` line per source.
pub fn describe(e: &dyn Error) -> String {
    let mut text = format!("error: {e}");
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn host_and_port_with_defaults() {
        assert_eq!(
            listen_addr_from(env(&[]), 3000).unwrap(),
            "127.0.0.1:3000".parse().unwrap()
        );
        assert_eq!(
            listen_addr_from(env(&[("HOST", "0.0.0.0"), ("PORT", "8080")]), 3000).unwrap(),
            "0.0.0.0:8080".parse().unwrap()
        );
        assert_eq!(
            listen_addr_from(env(&[("HOST", "::1")]), 3000).unwrap(),
            "[::1]:3000".parse().unwrap()
        );
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        let e = listen_addr_from(env(&[("PORT", "80a")]), 3000).unwrap_err();
        assert_eq!(
            e.to_string(),
            "PORT=\"80a\": expected a port number, 0 to 65535"
        );
        let e = listen_addr_from(env(&[("HOST", "localhost:1")]), 3000).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("HOST=\"localhost:1\": expected an IP address")
        );
    }

    #[derive(Debug)]
    struct Starting(AddrError);

    impl fmt::Display for Starting {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cannot start")
        }
    }

    impl Error for Starting {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn causes_are_listed() {
        let e = Starting(listen_addr_from(env(&[("PORT", "x")]), 3000).unwrap_err());
        assert_eq!(
            describe(&e),
            "error: cannot start\n  caused by: PORT=\"x\": expected a port number, 0 to 65535"
        );
    }
}
