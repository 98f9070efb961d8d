//! The Redis store: GCRA over every quota of a policy in one script, one round trip.

use std::sync::LazyLock;
use std::time::Duration;

use tower_scale_redis::RedisBackend;
use tower_scale_redis::redis::{ErrorKind, Script, ServerErrorKind, Value};

use super::{Decision, Store};
use crate::{BoxFuture, Quota, StoreError};

/// GCRA over every quota of a policy in one round trip, with Redis's own clock so the
/// instances' clocks do not matter, and without reading it: each key's expiry *is* its
/// quota's theoretical arrival time (TAT), so `PTTL` gives the TAT minus now in Redis's time
/// (a missing or expired key: 0, the quota is full). KEYS: one per quota (sharing a hash
/// tag). ARGV, per quota: the increment (`cost × emission interval`, µs) and the window
/// (`burst × emission interval`, µs); then optionally `peek` (decide, write nothing).
///
/// Per quota and decision: `PTTL`; when admitted, `PEXPIRE` (or `SET "" PX` when the key is
/// missing). A rejection writes nothing. With the `EVALSHA`, an admitted request costs Redis
/// three commands, a rejected one two, and no `TIME`. Keys are gone as soon as their quota
/// is full again.
///
/// Expiries count in milliseconds. When the increment is not a whole number of them (more
/// than 1,000 requests per second, or a period that does not divide into whole ms), the key's
/// value holds the TAT's remainder below its expiry (0–999 µs), read with `GET`: four
/// commands then when admitted, three when rejected, the TAT still exact to the µs.
///
/// The reply is, per quota, that TAT minus now as left by this call: `d ≥ 0` when admitted,
/// `-1 - d` (with the TAT before the call) when rejected. One integer for one quota, an array
/// for several. The client derives `remaining`, `reset` and `retry_after` from it, knowing
/// the quotas; an integer reply costs neither side any formatting or parsing.
///
/// Redis before 7.2 reads its clock anew for each command of a script: when its millisecond
/// ticks between the `PTTL` and the `PEXPIRE` (a few µs apart), or redis-server is descheduled
/// there, the TAT lands that much later than it should, never earlier, so the limit errs to
/// the strict side (see the guide, "What a decision costs Redis").
/// A key holding something that is not a TAT (no expiry, another type, garbage) is
/// overwritten when admitted.
static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA_CODE));

/// The script, in `gcra.lua`.
const GCRA_CODE: &str = include_str!("gcra.lua");

/// The SHA1 of the GCRA script (for comparing with `redis-benchmark EVALSHA`).
#[doc(hidden)]
pub fn gcra_script_hash() -> &'static str {
    GCRA.get_hash()
}

/// The Redis store: one limit shared by every instance, one `EVALSHA` per decision.
/// Keys are `<prefix>:ratelimit:{<key>}:t<quota index>`, so a policy's keys share a slot
/// and the script runs on Redis Cluster.
#[derive(Clone, Debug)]
pub struct RedisStore {
    backend: RedisBackend,
}

impl RedisStore {
    /// A store on the shared backend.
    pub fn new(backend: RedisBackend) -> Self {
        Self { backend }
    }
}

impl RedisStore {
    /// `EVALSHA <gcra> <n> <key 0>… <increment µs> <window µs>… [peek]`, written straight
    /// into one command: the keys `<prefix>:ratelimit:{<tag>}:t<i>` (as
    /// [`Keys::tagged`](tower_scale_redis::Keys::tagged) writes them) in one buffer, no
    /// argument allocated on its own.
    fn command(
        &self,
        tag: &str,
        quotas: &[Quota],
        cost: u32,
        peek: bool,
    ) -> tower_scale_redis::redis::Cmd {
        let prefix = self.backend.keys().prefix();
        let mut key = String::with_capacity(prefix.len() + tag.len() + 18);
        self.backend
            .keys()
            .push_tagged_base(&mut key, "ratelimit", tag);
        key.push('t');
        let base = key.len();
        let mut cmd = tower_scale_redis::redis::Cmd::with_capacity(
            3 + 3 * quotas.len() + 1,
            60 + quotas.len() * (key.len() + 24),
        );
        cmd.arg("EVALSHA").arg(GCRA.get_hash()).arg(quotas.len());
        let mut index = itoa::Buffer::new();
        for i in 0..quotas.len() {
            key.truncate(base);
            key.push_str(index.format(i));
            cmd.arg(key.as_str());
        }
        for q in quotas {
            let g = Gcra::new(q, cost);
            cmd.arg(g.inc).arg(g.window);
        }
        if peek {
            cmd.arg("peek");
        }
        cmd
    }

    async fn run(
        &self,
        tag: &str,
        quotas: &[Quota],
        cost: u32,
        peek: bool,
    ) -> Result<Decision, StoreError> {
        if quotas.iter().any(|q| cost > q.max_burst()) {
            return Ok(Decision::never());
        }
        let cmd = self.command(tag, quotas, cost, peek);
        let reply: Value = match self.backend.query(&cmd).await {
            Err(tower_scale_redis::Error::Redis(e))
                if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) =>
            {
                // First use, restart, failover or `SCRIPT FLUSH`: load it, then again.
                let load = tower_scale_redis::redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(GCRA_CODE)
                    .to_owned();
                self.backend
                    .query::<()>(&load)
                    .await
                    .map_err(|e| store_error("rate-limit store: Redis SCRIPT LOAD failed", e))?;
                self.backend.query(&cmd).await
            }
            reply => reply,
        }
        .map_err(|e| store_error("rate-limit store: Redis EVALSHA failed", e))?;
        decide(&reply, quotas, cost)
            .ok_or_else(|| StoreError::corrupt(format!("unexpected script reply {reply:?}")))
    }
}

/// A failed command, its source kept: unavailable when Redis could not be reached.
fn store_error(message: &'static str, e: tower_scale_redis::Error) -> StoreError {
    let unavailable = e.is_unavailable();
    StoreError::with_source(message, unavailable, e)
}

/// One quota's figures for the script, in µs.
struct Gcra {
    interval: u64,
    inc: u64,
    window: u64,
}

impl Gcra {
    fn new(quota: &Quota, cost: u32) -> Self {
        let interval = u64::try_from(quota.emission_interval().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let window = interval.saturating_mul(u64::from(quota.max_burst()));
        Self {
            interval,
            inc: interval.saturating_mul(u64::from(cost)),
            window,
        }
    }
}

/// The decision from the script's reply (see [`GCRA`]): per quota, its TAT minus now, or
/// `-1 -` that when rejected. `None` for anything else: another type, a count of values
/// other than one per quota, signs that disagree, an admitted TAT beyond the window, or a
/// rejection no quota explains.
fn decide(reply: &Value, quotas: &[Quota], cost: u32) -> Option<Decision> {
    let mut decision = Decision::unlimited();
    let mut verdict = None;
    let mut each = |quota: &Quota, value: &Value| -> Option<()> {
        let Value::Int(r) = *value else {
            return None;
        };
        let admitted = r >= 0;
        if *verdict.get_or_insert(admitted) != admitted {
            return None;
        }
        let g = Gcra::new(quota, cost);
        let ahead = u64::try_from(if admitted { r } else { -1 - r }).ok()?;
        if admitted && ahead > g.window {
            return None;
        }
        if !admitted {
            decision.allowed = false;
            let wait = ahead.saturating_add(g.inc).saturating_sub(g.window);
            decision.retry_after = decision.retry_after.max(Duration::from_micros(wait));
        }
        let left = (g.window - ahead.min(g.window)) / g.interval;
        decision.remaining = decision
            .remaining
            .min(u32::try_from(left).unwrap_or(u32::MAX));
        decision.reset = decision.reset.max(Duration::from_micros(ahead));
        Some(())
    };
    match (reply, quotas) {
        (Value::Int(_), [quota]) => each(quota, reply)?,
        (Value::Array(values), _) if quotas.len() > 1 && values.len() == quotas.len() => {
            for (quota, value) in quotas.iter().zip(values) {
                each(quota, value)?;
            }
        }
        _ => return None,
    }
    if !decision.allowed && decision.retry_after.is_zero() {
        return None;
    }
    Some(decision)
}

impl Store for RedisStore {
    fn check<'a>(
        &'a self,
        key: &'a str,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(self.run(key, quotas, cost, false))
    }

    /// Writes the Redis keys from the policy name and the key, with no `"<policy>:<key>"`
    /// string in between.
    fn check_key<'a>(
        &'a self,
        policy: &'a str,
        key: &'a crate::Key,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(async move {
            let tag = super::policy_key(policy, key);
            self.run(&tag, quotas, cost, false).await
        })
    }

    fn peek<'a>(
        &'a self,
        key: &'a str,
        quotas: &'a [Quota],
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(self.run(key, quotas, cost, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_replies_are_decided_or_refused() {
        // 100/s burst 100: one cell every 10 ms, a window of 1 s.
        let q = [Quota::per_second(100)];
        let d = decide(&Value::Int(10_000), &q, 1).unwrap();
        assert!(d.allowed);
        assert_eq!(
            (d.retry_after, d.remaining, d.reset),
            (Duration::ZERO, 99, Duration::from_millis(10))
        );
        // Rejected with the TAT a full window ahead: one cell in 10 ms.
        let d = decide(&Value::Int(-1 - 1_000_000), &q, 1).unwrap();
        assert!(!d.allowed);
        assert_eq!(
            (d.retry_after, d.remaining, d.reset),
            (Duration::from_millis(10), 0, Duration::from_secs(1))
        );
        // A cost of 5 with 3 cells left: 20 ms to wait, 3 remaining.
        let d = decide(&Value::Int(-1 - 970_000), &q, 5).unwrap();
        assert_eq!(
            (d.allowed, d.retry_after, d.remaining),
            (false, Duration::from_millis(20), 3)
        );
        // Two quotas: the tighter one sets remaining, the longer TAT the reset.
        let two = [Quota::per_second(10), Quota::per_hour(1000)];
        let d = decide(
            &Value::Array(vec![Value::Int(900_000), Value::Int(36_000_000)]),
            &two,
            1,
        )
        .unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, 1);
        assert_eq!(d.reset, Duration::from_secs(36));
        let d = decide(
            &Value::Array(vec![Value::Int(-1 - 950_000), Value::Int(-1)]),
            &two,
            1,
        )
        .unwrap();
        assert_eq!(
            (d.allowed, d.retry_after),
            (false, Duration::from_millis(50))
        );

        for (garbage, quotas) in [
            (Value::Int(1_000_001), &q[..]), // admitted beyond the window
            (Value::Int(-1), &q[..]),        // rejected though the quota has room
            (Value::BulkString(b"1 0 99 10000".to_vec()), &q[..]),
            (Value::Nil, &q[..]),
            (Value::Array(vec![Value::Int(1)]), &q[..]),
            (Value::Int(1), &two[..]),
            (Value::Array(vec![Value::Int(1)]), &two[..]),
            (
                Value::Array(vec![Value::Int(1), Value::Int(-1 - 36_000_000)]),
                &two[..],
            ),
            (Value::Array(vec![Value::Int(1), Value::Okay]), &two[..]),
        ] {
            assert!(decide(&garbage, quotas, 1).is_none(), "{garbage:?}");
        }
    }
}
