//! The backend's side of an update: what it sends on `…/ota/command` and
//! what it reads back on `…/ota/progress` (docs/operations.md, "Updates").

use std::time::Duration;

use rumqttc::Publish;
use serde_json::Value;

use crate::mosquitto::Subscriber;

/// States after which an update is over (`rebooting` is an outcome too, but
/// the update goes on in the next system).
pub const FINAL_STATES: [&str; 4] = ["refused", "failed", "installed", "rolled_back"];

/// The `sha256` a command gives for a bundle.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// One `ota/progress` message.
pub fn report_of(p: &Publish) -> Value {
    serde_json::from_slice(&p.payload)
        .unwrap_or_else(|e| panic!("ota/progress payload is not JSON ({e})"))
}

pub fn is_final(report: &Value) -> bool {
    report["state"]
        .as_str()
        .is_some_and(|s| FINAL_STATES.contains(&s))
}

/// Reports of update `id` (of any, for `None`) until one in a state of
/// `until` or a final one, within `limit`; returns them in order of arrival.
pub async fn reports_until(
    progress: &mut Subscriber,
    id: Option<&str>,
    until: &[&str],
    limit: Duration,
) -> Vec<Value> {
    let ours = |r: &Value| id.is_none_or(|id| r["id"] == id);
    let done = |r: &Value| {
        ours(r) && (is_final(r) || r["state"].as_str().is_some_and(|s| until.contains(&s)))
    };
    let what = format!("update {id:?} to reach {until:?} or an outcome");
    let got = progress
        .collect_until(limit, &what, |got: &[Publish]| {
            got.iter().map(report_of).any(|r| done(&r))
        })
        .await;
    got.iter().map(report_of).filter(|r| ours(r)).collect()
}
