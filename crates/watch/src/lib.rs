//! Watches the control group's configuration for one database: a thread long-polls
//! `GET /v1/config?after=EPOCH` at the control members in turn (the next one when a member
//! fails) and hands each newer topology to a callback. Shards in cluster mode and the proxy
//! both route by what it delivers. [`call`] makes one change through the control API (the
//! proxy's ACL SETUSER and DELUSER).

use std::time::Duration;

use tessera_protocol::cluster::Topology;

/// How long one watch request waits at the control member for a change.
const WATCH_WAIT_MS: u64 = 30_000;

pub mod users;

/// Starts the watcher thread. `on_update` gets each topology newer than the last; it returns
/// false when nobody listens any more, which ends the thread.
pub fn spawn(
    members: Vec<String>,
    token: Option<String>,
    database: String,
    on_update: impl FnMut(Topology) -> bool + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("cluster-watch".into())
        .spawn(move || watch(members, token, database, on_update))
}

/// Long-polls the control members in turn, sending each newer topology of `database`.
fn watch(
    members: Vec<String>,
    token: Option<String>,
    database: String,
    mut on_update: impl FnMut(Topology) -> bool,
) {
    let client = match reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(WATCH_WAIT_MS + 10_000))
        .connect_timeout(Duration::from_secs(2))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("cannot make the cluster watcher's HTTP client: {e}");
            return;
        }
    };
    let mut epoch = 0u64;
    let mut member = 0usize;
    let mut failures = 0u32;
    loop {
        let url = format!(
            "http://{}/v1/config?after={epoch}&wait_ms={WATCH_WAIT_MS}",
            members[member % members.len()]
        );
        let mut req = client.get(&url);
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let body = req
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.bytes());
        match body {
            Ok(body) => match Topology::from_config_json(&body, &database) {
                Ok(t) => {
                    failures = 0;
                    if t.epoch > epoch {
                        epoch = t.epoch;
                        if !on_update(t) {
                            return;
                        }
                    }
                }
                Err(e) => {
                    // The database may not exist yet (or any more): ask again after a while.
                    if failures.is_multiple_of(30) {
                        tracing::warn!("cluster configuration: {e}");
                    }
                    failures += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
            },
            Err(e) => {
                if failures.is_multiple_of(30) {
                    tracing::warn!("watching the control group at {url}: {e}");
                }
                failures += 1;
                member += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// Makes one request of the control API (`method` `path` with a JSON body), at the members in
/// turn while they cannot be reached. A member that answered is the answer: its JSON, or its
/// refusal's message as the error. Once a request may have reached a member (it was sent and
/// no answer came in time) it is not sent again: the error says the outcome is unknown.
pub fn call(
    members: &[String],
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("not an HTTP method: {method}"))?;
    let mut unreachable = String::from("no control member is configured");
    for member in members {
        let mut req = client
            .request(method.clone(), format!("http://{member}{path}"))
            .json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = match req.send() {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                unreachable = format!("control member {member} cannot be reached: {e}");
                continue;
            }
            Err(e) => {
                return Err(format!(
                    "the control group did not answer ({e}): the change may or may not have been made"
                ));
            }
        };
        let ok = resp.status().is_success();
        let v: serde_json::Value = resp
            .json()
            .map_err(|e| format!("the control group's answer is not JSON: {e}"))?;
        if ok {
            return Ok(v);
        }
        return Err(v["error"]["message"]
            .as_str()
            .unwrap_or("the control group refused the change")
            .to_string());
    }
    Err(unreachable)
}
