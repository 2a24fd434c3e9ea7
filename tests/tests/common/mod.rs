//! Helpers shared by the black-box end-to-end tests: polling the gateway's
//! JSON API until a condition holds, and reading message ids out of what the
//! gateway published to MQTT.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rumqttc::Publish;
use seed_e2e::gateway::GatewayProcess;
use seed_e2e::mosquitto::Subscriber;
use serde_json::Value;
use tokio::time::Instant;

/// How often the status API is polled while waiting for a condition.
const POLL: Duration = Duration::from_millis(50);

/// Polls `/api/v1/status` until `done(status)` holds and returns that status.
/// Panics with `what`, the last status and the gateway log after `timeout`.
pub async fn wait_status(
    gw: &GatewayProcess,
    timeout: Duration,
    what: &str,
    done: impl FnMut(&Value) -> bool,
) -> Value {
    wait_api(gw, "/api/v1/status", timeout, what, done).await
}

/// Polls the JSON document at `path` until `done(document)` holds and
/// returns it. Panics with `what`, the last answer and the gateway log
/// after `timeout`.
pub async fn wait_api(
    gw: &GatewayProcess,
    path: &str,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let document = gw.api(path).await;
        if done(&document) {
            return document;
        }
        if Instant::now() >= deadline {
            panic!(
                "waited {timeout:?} for {what}; last {path}:\n{}\ngateway log (tail):\n{}",
                serde_json::to_string_pretty(&document).unwrap_or_default(),
                tail(&gw.log(), 40)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A number from a JSON path such as `["uplink", "backlog"]`; panics naming
/// the path when it is missing.
pub fn num(status: &Value, path: &[&str]) -> u64 {
    let mut v = status;
    for key in path {
        v = &v[key];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("status has no number at {path:?}: {status}"))
}

/// The JSON body of a publish.
pub fn body(p: &Publish) -> Value {
    serde_json::from_slice(&p.payload).unwrap_or_else(|e| {
        panic!(
            "payload on {} is not JSON ({e}): {}",
            p.topic,
            String::from_utf8_lossy(&p.payload)
        )
    })
}

/// The `msg_id` of an `up/...` publish.
pub fn msg_id(p: &Publish) -> String {
    body(p)["msg_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no msg_id in publish on {}", p.topic))
        .to_string()
}

/// Message ids (with how often each arrived) of the `up/transaction`
/// publishes in `got`.
pub fn transaction_ids(got: &[Publish]) -> BTreeMap<String, u64> {
    let mut ids = BTreeMap::new();
    for p in got.iter().filter(|p| p.topic.ends_with("/up/transaction")) {
        *ids.entry(msg_id(p)).or_insert(0) += 1;
    }
    ids
}

/// Collects publishes until every id of `expected` has arrived on an
/// `up/transaction` topic; returns everything collected. Panics naming the
/// first missing ids after `timeout`.
pub async fn collect_transactions(
    sub: &mut Subscriber,
    expected: &BTreeSet<String>,
    timeout: Duration,
) -> Vec<Publish> {
    collect_transactions_and(sub, expected, timeout, "nothing more", |_| true).await
}

/// Like [`collect_transactions`], and also until `also(all so far)` holds
/// (`also_what` says what that is in the failure message).
pub async fn collect_transactions_and(
    sub: &mut Subscriber,
    expected: &BTreeSet<String>,
    timeout: Duration,
    also_what: &str,
    mut also: impl FnMut(&[Publish]) -> bool,
) -> Vec<Publish> {
    let deadline = Instant::now() + timeout;
    let mut got: Vec<Publish> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    loop {
        if expected.is_subset(&seen) && also(&got) {
            return got;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match sub.next(left).await {
            Some(p) => {
                if p.topic.ends_with("/up/transaction") {
                    seen.insert(msg_id(&p));
                }
                got.push(p);
            }
            None => {
                let missing: Vec<&String> = expected.difference(&seen).collect();
                assert!(
                    !missing.is_empty(),
                    "every acked message reached MQTT, but after {timeout:?} still no {also_what} \
                     ({} publish(es) seen)",
                    got.len()
                );
                panic!(
                    "after {timeout:?}, {} of {} acked message(s) never reached MQTT \
                     (the gateway's promise is broken or it is too slow); first missing: {:?}; \
                     {} publish(es) seen in total",
                    missing.len(),
                    expected.len(),
                    &missing[..missing.len().min(10)],
                    got.len()
                );
            }
        }
    }
}

/// Ids that arrived more than once (QoS 1 allows it; tests report them).
pub fn duplicates(ids: &BTreeMap<String, u64>) -> u64 {
    ids.values().map(|n| n.saturating_sub(1)).sum()
}
