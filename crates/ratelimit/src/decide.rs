//! A policy's state, built by the layer and shared by its services, and the decisions made
//! on it: enforcing a store's answer, the local share while the store fails, locally blocked
//! keys, the refusal response.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{Response, StatusCode, header};
use tower_scale_core::{
    ConfigError, DefaultRefusal, Refusal, Refuse, StoreError, retry_after_value,
};

use crate::headers::{HeaderFields, Headers};
use crate::key::Key;
use crate::policy::{MissingKey, OnStoreError};
use crate::quota::Quota;
use crate::store::{Decision, MemoryStore, Store, policy_key};

/// Keys the fallback limiter holds at most.
const FALLBACK_KEYS: u64 = 100_000;

/// The reason token of a request over the limit.
const RATE_LIMITED: &str = "rate-limited";

/// Replaces `res`'s body with `text` (`text/plain`) when the body is of a type made from
/// text here: axum's `Body`, `String`, `Bytes`.
fn text_body<B: 'static>(res: &mut Response<B>, text: &'static str) {
    let body: &mut dyn Any = res.body_mut();
    let replaced = if let Some(body) = body.downcast_mut::<String>() {
        *body = text.to_owned();
        true
    } else if let Some(body) = body.downcast_mut::<bytes::Bytes>() {
        *body = bytes::Bytes::from_static(text.as_bytes());
        true
    } else {
        axum_text_body(body, text)
    };
    if replaced {
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
}

#[cfg(feature = "axum")]
fn axum_text_body(body: &mut dyn Any, text: &'static str) -> bool {
    body.downcast_mut::<axum::body::Body>()
        .map(|body| *body = axum::body::Body::from(text))
        .is_some()
}

#[cfg(not(feature = "axum"))]
fn axum_text_body(_body: &mut dyn Any, _text: &'static str) -> bool {
    false
}

/// One rate-limit policy: its configuration, its store, and its local state.
pub(crate) struct Policy {
    name: String,
    quotas: Vec<Quota>,
    store: Arc<dyn Store>,
    headers: bool,
    missing_key: MissingKey,
    on_store_error: OnStoreError,
    /// Decides while the store fails ([`OnStoreError::FailOpen`]): this instance's share.
    fallback: MemoryStore,
    fallback_instances: u32,
    fallback_quotas: Vec<Quota>,
    dry_run: bool,
    /// Set by `count_if`: admit by `peek`, count after the response by `consume`.
    count_after: bool,
    cost: u32,
    fields: HeaderFields,
    /// Registered under the policy's name once it is final: when the layer builds a service
    /// ([`register_metrics`](Self::register_metrics)), so no series is left under a name the
    /// policy had while being configured.
    counters: OnceLock<Counters>,
    /// Keys the shared store rejected for at least `min_wait`: rejected locally until then,
    /// without a round trip.
    local_block: Option<LocalBlock>,
    /// Whether a keyless request's setup error (no peer address) was logged.
    setup_error_logged: AtomicBool,
}

/// One instance's share of `q` when `instances` share it: the rate divided (the period
/// multiplied) and the burst divided, rounded down but never below 1 nor below a cost the
/// whole quota admits (so a request that fits the quota is not "never admissible" locally).
fn local_share(q: &Quota, instances: u32, cost: u32) -> Quota {
    let burst = q.max_burst();
    Quota {
        count: q.count,
        period: q.period.checked_mul(instances).unwrap_or(Duration::MAX),
        burst: Some((burst / instances).max(1).max(cost.min(burst))),
    }
}

/// Which store call decides.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    /// Admit and count at once.
    Check,
    /// Admit without counting (`count_if`).
    Peek,
    /// Count after the response (`count_if`).
    Consume,
}

struct LocalBlock {
    min_wait: Duration,
    until: moka::sync::Cache<Key, tokio::time::Instant>,
}

impl LocalBlock {
    fn new(min_wait: Duration, max_keys: u64) -> Self {
        Self {
            min_wait,
            until: moka::sync::Cache::builder()
                .max_capacity(max_keys.max(1))
                .time_to_live(Duration::from_secs(3600))
                .build(),
        }
    }
}

/// A copy of the policy's configuration for a layer configured while its policy is shared
/// (with a clone of the layer, or a service it built): the same store, with a local state of
/// its own, a fallback limiter and a list of blocked keys, both empty (the fallback limiter
/// takes its quotas on first use, and the copy's may differ).
impl Clone for Policy {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            quotas: self.quotas.clone(),
            store: Arc::clone(&self.store),
            headers: self.headers,
            missing_key: self.missing_key,
            on_store_error: self.on_store_error,
            fallback: MemoryStore::new(FALLBACK_KEYS),
            fallback_instances: self.fallback_instances,
            fallback_quotas: self.fallback_quotas.clone(),
            dry_run: self.dry_run,
            count_after: self.count_after,
            cost: self.cost,
            fields: self.fields.clone(),
            counters: OnceLock::new(),
            local_block: self.local_block.as_ref().map(|block| {
                LocalBlock::new(
                    block.min_wait,
                    block.until.policy().max_capacity().unwrap_or(1),
                )
            }),
            setup_error_logged: AtomicBool::new(false),
        }
    }
}

/// Metric handles, resolved once per policy, when its layer first builds a service (install
/// the recorder before that).
/// Each request counts once: `allowed` / `rejected` by the store, `fallback_allowed` /
/// `fallback_rejected` by the local share while the store fails, `store_error` when the store
/// failed and the request was admitted or refused without a decision (`Admit`, `FailClosed`).
struct Counters {
    allowed: metrics::Counter,
    rejected: metrics::Counter,
    store_error: metrics::Counter,
    fallback_allowed: metrics::Counter,
    fallback_rejected: metrics::Counter,
}

impl Counters {
    fn new(policy: &str) -> Self {
        let counter = |decision: &'static str| metrics::counter!(crate::names::RATELIMIT_DECISIONS_TOTAL.name, "policy" => policy.to_owned(), "decision" => decision);
        Self {
            allowed: counter("allowed"),
            rejected: counter("rejected"),
            store_error: counter("store_error"),
            fallback_allowed: counter("fallback_allowed"),
            fallback_rejected: counter("fallback_rejected"),
        }
    }
}

/// Configuring the policy (the layer's setters).
impl Policy {
    /// A policy named `default` enforcing every quota in `store`; no quota, or an invalid
    /// one, is an error.
    pub(crate) fn new(store: impl Store, quotas: Vec<Quota>) -> Result<Self, ConfigError> {
        if quotas.is_empty() {
            return Err(ConfigError::new(
                "quotas",
                "a rate-limit policy needs at least one quota",
            ));
        }
        for (index, q) in quotas.iter().enumerate() {
            q.validate()
                .map_err(|source| ConfigError::new(format!("quotas[{index}]"), source))?;
        }
        let name = "default";
        let mut policy = Self {
            name: name.to_owned(),
            fields: HeaderFields::new(name, &quotas)?,
            quotas,
            store: Arc::new(store),
            headers: true,
            missing_key: MissingKey::Reject(StatusCode::BAD_REQUEST),
            on_store_error: OnStoreError::FailOpen,
            fallback: MemoryStore::new(FALLBACK_KEYS),
            fallback_instances: 1,
            fallback_quotas: Vec::new(),
            dry_run: false,
            count_after: false,
            cost: 1,
            counters: OnceLock::new(),
            local_block: None,
            setup_error_logged: AtomicBool::new(false),
        };
        policy.share_fallback();
        Ok(policy)
    }

    /// Recomputes this instance's share of the quotas, after a change.
    pub(crate) fn share_fallback(&mut self) {
        self.fallback_quotas = self
            .quotas
            .iter()
            .map(|q| local_share(q, self.fallback_instances, self.cost))
            .collect();
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn quotas(&self) -> &[Quota] {
        &self.quotas
    }

    /// Names the policy, with its header fields (see [`HeaderFields::new`]).
    pub(crate) fn set_name(&mut self, name: &str, fields: HeaderFields) {
        self.name = name.to_owned();
        self.fields = fields;
        self.counters = OnceLock::new();
    }

    pub(crate) fn set_headers(&mut self, on: bool) {
        self.headers = on;
    }

    pub(crate) fn set_missing_key(&mut self, missing: MissingKey) {
        self.missing_key = missing;
    }

    pub(crate) fn set_on_store_error(&mut self, mode: OnStoreError) {
        self.on_store_error = mode;
    }

    pub(crate) fn set_fallback_instances(&mut self, instances: u32) {
        self.fallback_instances = instances;
    }

    pub(crate) fn set_dry_run(&mut self, on: bool) {
        self.dry_run = on;
    }

    pub(crate) fn set_count_after(&mut self) {
        self.count_after = true;
    }

    pub(crate) fn set_block_locally(&mut self, min_wait: Duration, max_keys: u64) {
        self.local_block = Some(LocalBlock::new(min_wait, max_keys));
    }

    pub(crate) fn set_cost(&mut self, cost: u32) {
        self.cost = cost;
    }
}

/// Deciding (the service's request path).
impl Policy {
    /// Registers the decision counters under the policy's name, once: the layer calls it when
    /// it builds a service, so the series exist (at zero) before the first request.
    pub(crate) fn register_metrics(&self) {
        self.counters();
    }

    /// The decision counters (registered by [`register_metrics`](Self::register_metrics);
    /// afterwards one atomic load).
    #[inline]
    fn counters(&self) -> &Counters {
        self.counters.get_or_init(|| Counters::new(&self.name))
    }

    /// Whether responses carry the header fields.
    #[inline]
    pub(crate) fn headers_on(&self) -> bool {
        self.headers
    }

    /// What to do with a keyless request.
    #[inline]
    pub(crate) fn missing_key(&self) -> MissingKey {
        self.missing_key
    }

    /// The refusal of a keyless request ([`MissingKey::Reject`]). When the server's setup is
    /// the cause (`because`, e.g. no peer address), it is logged once per policy and the
    /// default refusal's empty body is replaced by it.
    #[cold]
    pub(crate) fn refuse_keyless<B: 'static>(
        &self,
        refuse: &impl Refuse<B>,
        status: StatusCode,
        because: Option<&'static str>,
    ) -> Response<B> {
        self.trace(None, "missing_key");
        let Some(because) = because else {
            return self.refuse(refuse, status, "missing-key", None);
        };
        if !self.setup_error_logged.swap(true, Ordering::Relaxed) {
            tracing::error!(policy = %self.name, "{because}");
        }
        let refusal = Refusal::new(status, "missing-peer-address").detail(&because);
        let mut res = refuse.refuse(&refusal);
        if (refuse as &dyn Any).is::<DefaultRefusal>() {
            text_body(&mut res, because);
        }
        self.add_headers(&mut res, None);
        res
    }

    /// A decision made in this process without waiting (memory, a live lease), when the
    /// store can make one: the verdict alone when the header fields are off.
    #[inline]
    pub(crate) fn decide_local(&self, key: &Key) -> Option<Decision> {
        let store = &self.store;
        if self.count_after {
            None
        } else if self.headers {
            store.check_local(&self.name, key, &self.quotas, self.cost)
        } else {
            store.admit_local(&self.name, key, &self.quotas, self.cost)
        }
    }

    /// The header fields for `d`, when they are on.
    #[inline]
    pub(crate) fn headers_for(&self, d: Option<&Decision>) -> Option<Headers> {
        self.headers.then(|| self.fields.for_decision(d))
    }

    pub(crate) fn add_headers<B>(&self, res: &mut Response<B>, d: Option<&Decision>) {
        if let Some(headers) = self.headers_for(d) {
            headers.insert(res);
        }
    }

    /// The response of a refused request: `refuse`'s, then `Retry-After` (unless it has one,
    /// or retrying cannot help) and the header fields.
    fn refuse<B>(
        &self,
        refuse: &impl Refuse<B>,
        status: StatusCode,
        reason: &'static str,
        d: Option<&Decision>,
    ) -> Response<B> {
        let wait = d.filter(|d| !d.never).map(|d| d.retry_after);
        let mut refusal = Refusal::new(status, reason).retry_after(wait);
        if let Some(d) = d {
            refusal = refusal.detail(d);
        }
        let mut res = refuse.refuse(&refusal);
        if let Some(wait) = wait {
            res.headers_mut()
                .entry(header::RETRY_AFTER)
                .or_insert_with(|| retry_after_value(wait));
        }
        self.add_headers(&mut res, d);
        res
    }

    /// Counts a decision of the store for `key` and answers `429` when it rejects (unless in
    /// dry-run mode).
    #[inline]
    pub(crate) fn enforce<B>(
        &self,
        refuse: &impl Refuse<B>,
        key: &Key,
        decision: Decision,
    ) -> Result<Option<Decision>, Response<B>> {
        self.enforce_counted(refuse, key, decision, false)
    }

    /// Counts `decision` (of the local share while the store fails, with `fallback`) and
    /// answers `429` when it rejects (unless in dry-run mode).
    fn enforce_counted<B>(
        &self,
        refuse: &impl Refuse<B>,
        key: &Key,
        decision: Decision,
        fallback: bool,
    ) -> Result<Option<Decision>, Response<B>> {
        let c = self.counters();
        let (counter, outcome) = match (fallback, decision.allowed) {
            (false, true) => (&c.allowed, "allowed"),
            (false, false) => (&c.rejected, "rejected"),
            (true, true) => (&c.fallback_allowed, "fallback_allowed"),
            (true, false) => (&c.fallback_rejected, "fallback_rejected"),
        };
        counter.increment(1);
        self.trace(Some(key), outcome);
        if !decision.allowed && !self.dry_run {
            return Err(self.refuse(
                refuse,
                StatusCode::TOO_MANY_REQUESTS,
                RATE_LIMITED,
                Some(&decision),
            ));
        }
        Ok(Some(decision))
    }

    /// Asks the store (by I/O): `peek` for a policy that counts after the response (with the
    /// key to count it under later), else `check`. A key rejected for long enough is
    /// remembered as blocked ([`blocked`](Self::blocked)).
    pub(crate) async fn ask(
        &self,
        key: &Key,
    ) -> (Op, Result<Decision, StoreError>, Option<String>) {
        let (op, result, full_key) = if self.count_after {
            let full_key = policy_key(&self.name, key);
            let result = self.store.peek(&full_key, &self.quotas, self.cost).await;
            (Op::Peek, result, Some(full_key))
        } else {
            let result = self
                .store
                .check_key(&self.name, key, &self.quotas, self.cost)
                .await;
            (Op::Check, result, None)
        };
        if let (Some(block), Ok(d)) = (&self.local_block, &result)
            && !d.allowed
            && !d.never
            && d.retry_after >= block.min_wait
        {
            block
                .until
                .insert(key.clone(), tokio::time::Instant::now() + d.retry_after);
        }
        (op, result, full_key)
    }

    /// `Ok(decision)` to call the service (with the headers of `decision`), or the answer.
    pub(crate) fn judge<B>(
        &self,
        refuse: &impl Refuse<B>,
        key: &Key,
        op: Op,
        result: Result<Decision, StoreError>,
    ) -> Result<Option<Decision>, Response<B>> {
        match result {
            Ok(d) => self.enforce(refuse, key, d),
            Err(e) => {
                tracing::warn!(policy = %self.name, error = %e, "rate-limit store failed");
                match self.on_store_error {
                    OnStoreError::FailOpen => {
                        let d = self.local_decision(&policy_key(&self.name, key), op);
                        self.enforce_counted(refuse, key, d, true)
                    }
                    OnStoreError::Admit => {
                        self.counters().store_error.increment(1);
                        self.trace(Some(key), "store_error_admitted");
                        Ok(None)
                    }
                    OnStoreError::FailClosed => {
                        self.counters().store_error.increment(1);
                        self.trace(Some(key), "store_error_refused");
                        Err(self.refuse(
                            refuse,
                            StatusCode::SERVICE_UNAVAILABLE,
                            "store-unavailable",
                            None,
                        ))
                    }
                }
            }
        }
    }

    /// The decision as a `debug` event, `rate limit decision`, in the request's span: the
    /// policy, the `outcome`, the key's kind and whether the policy only counts (dry run);
    /// never the key, which may be a secret. Nothing is formatted while the level is off.
    #[inline]
    fn trace(&self, key: Option<&Key>, outcome: &'static str) {
        tracing::debug!(
            policy = %self.name,
            outcome,
            key_kind = key.map_or("none", Key::kind),
            dry_run = self.dry_run,
            "rate limit decision"
        );
    }

    /// The local limiter's decision, on this instance's share of the quotas.
    fn local_decision(&self, key: &str, op: Op) -> Decision {
        let (quotas, cost) = (&self.fallback_quotas, self.cost);
        match op {
            Op::Check => self.fallback.decide::<true>(&Key::from(key), quotas, cost),
            Op::Peek => self.fallback.decide_counted(key, quotas, cost, false),
            Op::Consume => self.fallback.decide_counted(key, quotas, cost, true),
        }
    }

    /// A 429 for a key this instance remembers as blocked ([`block_locally`](
    /// crate::RateLimitLayer::block_locally)), unless in dry-run mode.
    #[inline]
    pub(crate) fn blocked<B>(&self, refuse: &impl Refuse<B>, key: &Key) -> Option<Response<B>> {
        let until = self.local_block.as_ref()?.until.get(key)?;
        let now = tokio::time::Instant::now();
        if until <= now {
            return None;
        }
        let decision = Decision::rejected(until - now);
        self.counters().rejected.increment(1);
        self.trace(Some(key), "blocked");
        (!self.dry_run).then(|| {
            self.refuse(
                refuse,
                StatusCode::TOO_MANY_REQUESTS,
                RATE_LIMITED,
                Some(&decision),
            )
        })
    }

    /// Counts a request of a `count_if` policy after a response that counts; the decision
    /// when it was counted (for the headers).
    pub(crate) async fn consume(&self, key: &str) -> Option<Decision> {
        let d = match self.store.consume(key, &self.quotas, self.cost).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(policy = %self.name, error = %e, "rate-limit store failed");
                match self.on_store_error {
                    OnStoreError::FailOpen => self.local_decision(key, Op::Consume),
                    OnStoreError::Admit | OnStoreError::FailClosed => return None,
                }
            }
        };
        d.allowed.then_some(d)
    }
}
