//! ACL users: the backend works as a user limited to its keys (`~t:*`) and without the
//! dangerous commands, over plain TCP and TLS, in both connection kinds; a wrong password is a
//! clear error that does not show the password.

use std::time::Duration;

use tower_scale_redis::redis;
use tower_scale_redis::{RedisBackend, RedisConfig};
use tower_scale_testkit::{RedisServer, TlsFiles};

use crate::support::bounded;
use crate::{KINDS, round_trip};

const PASSWORD: &str = "acl-Pw-7f3e";
/// The limited user: keys and channels of the prefix `t` only, no admin or dangerous command.
const RULES: [&str; 4] = ["~t:*", "&t:*", "+@all", "-@dangerous"];

fn url(scheme: &str, port: u16, password: &str) -> String {
    format!("{scheme}://app:{password}@127.0.0.1:{port}")
}

/// The backend works as `app`, and Redis applies `app`'s limits to it.
async fn works_as_the_limited_user(mut config: RedisConfig) {
    config.key_prefix = "t".to_owned();
    config.command_timeout = Duration::from_secs(5);
    let backend = RedisBackend::new(config).unwrap();
    round_trip(&backend, "acl").await;
    let me: String = bounded(backend.query(redis::cmd("ACL").arg("WHOAMI")))
        .await
        .unwrap();
    assert_eq!(me, "app");
    let err = bounded(backend.query::<()>(redis::cmd("SET").arg("other:key").arg(1)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NoPerm"), "{err}");
    assert!(
        !err.is_unavailable(),
        "a refused command is not an outage: {err}"
    );
    let err = bounded(backend.query::<()>(&redis::cmd("FLUSHALL")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NoPerm"), "{err}");
}

#[tokio::test]
async fn the_backend_works_as_a_limited_acl_user() {
    let server = RedisServer::start();
    server.add_acl_user("app", PASSWORD, &RULES);
    for kind in KINDS {
        let mut config = RedisConfig::new(url("redis", server.port(), PASSWORD));
        config.connection = kind;
        works_as_the_limited_user(config).await;
    }
}

#[tokio::test]
async fn the_backend_works_as_a_limited_acl_user_over_tls() {
    let tls = TlsFiles::generate();
    let server = RedisServer::start_tls(&tls, false);
    server.add_acl_user("app", PASSWORD, &RULES);
    for kind in KINDS {
        let mut config = RedisConfig::new(url("rediss", server.tls_port().unwrap(), PASSWORD));
        config.connection = kind;
        config.tls_ca_file = Some(tls.ca_file());
        works_as_the_limited_user(config).await;
    }
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error_without_the_password() {
    let tls = TlsFiles::generate();
    let server = RedisServer::start_tls(&tls, false);
    server.add_acl_user("app", PASSWORD, &RULES);
    let wrong = "wrong-Pw-91c2";
    let mut configs = Vec::new();
    for kind in KINDS {
        let mut plain = RedisConfig::new(url("redis", server.port(), wrong));
        plain.connection = kind;
        let mut tls_config = RedisConfig::new(url("rediss", server.tls_port().unwrap(), wrong));
        tls_config.connection = kind;
        tls_config.tls_ca_file = Some(tls.ca_file());
        configs.extend([plain, tls_config]);
    }
    for mut config in configs {
        config.command_timeout = Duration::from_secs(5);
        let what = format!("{config:?}");
        assert!(!what.contains(wrong), "{what}");
        let backend = RedisBackend::new(config).unwrap();
        let err = bounded(backend.ping()).await.unwrap_err();
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(text.contains("AuthenticationFailed"), "{what}: {text}");
            assert!(
                !text.contains(wrong),
                "{what}: the error shows the password: {text}"
            );
        }
        assert!(!err.is_timeout(), "{what}: {err}");
    }
}
