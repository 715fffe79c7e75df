//! The everyday verbs: `suspend` and `resume` (an annotation override on the store's
//! namespace), `reconcile` and `logs` (asking the running daemon), and the small HTTP client
//! they and `status` share (with the `[http] token_file` token when one is configured).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;

use storekeeper::cluster::{ANN_SUSPENDED, Cluster, ClusterOps, Suspension};
use storekeeper::config::Settings;
use storekeeper::spec::StoreName;

/// `storekeeper suspend <store>`: the daemon leaves the store alone (no install, upgrade or
/// delete) until `resume`, whatever its file says.
pub async fn suspend(settings: Settings, store: &str, by: Option<String>) -> anyhow::Result<ExitCode> {
    let (cluster, namespace) = ours(&settings, store).await?;
    let s = Suspension {
        at: jiff::Timestamp::now(),
        by: by.unwrap_or_else(|| crate::cmd::approver(&settings)),
    };
    let ann = [(ANN_SUSPENDED, Some(serde_json::to_string(&s)?))].into();
    cluster.annotate(&namespace, &ann).await?;
    println!(
        "suspended: {store} (namespace {namespace}) by {} at {}; it overrides the store file until `storekeeper resume {store}`",
        s.by, s.at
    );
    Ok(ExitCode::SUCCESS)
}

/// `storekeeper resume <store>`: lifts `suspend`. A `suspend = true` in the file still wins.
pub async fn resume(settings: Settings, store: &str) -> anyhow::Result<ExitCode> {
    let (cluster, namespace) = ours(&settings, store).await?;
    let ann = [(ANN_SUSPENDED, None)].into();
    cluster.annotate(&namespace, &ann).await?;
    println!("resumed: {store}; the daemon acts on its store file again");
    let file_says = storekeeper::daemon::read_source(&settings)
        .ok()
        .and_then(|s| {
            let name = StoreName::new(store).ok()?;
            s.stores
                .get(&name)
                .and_then(|r| r.as_ref().ok())
                .map(|spec| spec.suspend)
        })
        .unwrap_or(false);
    if file_says {
        println!("note: its store file says suspend = true, so it stays suspended until the file changes");
    }
    Ok(ExitCode::SUCCESS)
}

/// The store's namespace, when it exists and is ours.
async fn ours(settings: &Settings, store: &str) -> anyhow::Result<(Cluster, String)> {
    let name = StoreName::new(store).map_err(anyhow::Error::msg)?;
    let (client, _) = storekeeper::cluster::client(&settings.cluster).await?;
    let cluster = Cluster::new(client);
    let observed = cluster.observe().await?;
    let Some(o) = observed.stores.get(&name) else {
        anyhow::bail!("no store {store} in the cluster (no namespace with storekeeper's labels)");
    };
    Ok((cluster, o.namespace.clone()))
}

/// `storekeeper reconcile [<store>...]`: asks the daemon to fetch, plan and run now (the named
/// stores, or all, lose their backoff), waits until that plan's work has ended, and prints each
/// store's outcome. Exit 1 when a named store ends Failed or the wait times out.
pub async fn reconcile(
    settings: Settings,
    stores: &[String],
    url: Option<String>,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let base = url.unwrap_or_else(|| format!("http://{}", settings.http.listen));
    let query: Vec<String> = stores.iter().map(|s| format!("store={s}")).collect();
    let answer: Value = serde_json::from_str(&request(
        &settings,
        &base,
        "POST",
        &format!("/reconcile?{}", query.join("&")),
    )?)?;
    let asked: jiff::Timestamp = answer["requested_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("the daemon did not say when it took the request: {answer}"))?;
    let started = Instant::now();
    let doc = loop {
        let doc: Value = serde_json::from_str(&request(&settings, &base, "GET", "/stores")?)?;
        if settled(&doc, asked, stores) {
            break doc;
        }
        if started.elapsed() > timeout {
            eprintln!(
                "error: still working after {}s; see `storekeeper status`",
                timeout.as_secs()
            );
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut failed = false;
    for s in doc["stores"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let name = s["name"].as_str().unwrap_or("-");
        if !stores.is_empty() && !stores.iter().any(|n| n == name) {
            continue;
        }
        let phase = s["phase"].as_str().unwrap_or("-");
        failed |= phase == "Failed";
        println!("{name:<24} {phase:<16} {}", s["reason"].as_str().unwrap_or(""));
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A plan after the request was made, and none of the stores asked about queued or in flight.
fn settled(doc: &Value, asked: jiff::Timestamp, stores: &[String]) -> bool {
    let planned = doc["planned_at"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .is_some_and(|t| t > asked);
    let busy = |s: &Value| matches!(s["phase"].as_str(), Some("Pending" | "Provisioning" | "Deleting"));
    let list = doc["stores"].as_array().map(Vec::as_slice).unwrap_or_default();
    planned
        && !list
            .iter()
            .filter(|s| stores.is_empty() || stores.iter().any(|n| s["name"] == n.as_str()))
            .any(busy)
}

/// `storekeeper logs <store>`: the store's recent operations, from the daemon.
pub fn logs(settings: &Settings, store: &str, url: Option<String>) -> anyhow::Result<ExitCode> {
    let base = url.unwrap_or_else(|| format!("http://{}", settings.http.listen));
    let name = StoreName::new(store).map_err(anyhow::Error::msg)?;
    let doc: Value = serde_json::from_str(&request(
        settings,
        &base,
        "GET",
        &format!("/stores/{name}/operations"),
    )?)?;
    let ops = doc["operations"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if ops.is_empty() {
        println!("no operations of {store} in the daemon's log (it keeps the last 200 of all stores)");
    }
    for o in ops {
        let text = |k: &str| o[k].as_str().unwrap_or("-").to_string();
        println!(
            "{}  {:<18} {:<22} {}  {}",
            text("finished"),
            text("action"),
            text("result"),
            text("revision"),
            text("message")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One HTTP/1.1 request to the daemon over plain TCP (loopback, no TLS), with the access token
/// when `[http] token_file` is set. Returns the body of a 2xx answer.
pub fn request(settings: &Settings, base: &str, method: &str, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let authority = base
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("--url must start with http://"))?
        .trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(authority).map_err(|e| {
        anyhow::anyhow!("cannot reach the daemon at {base}: {e} (is `storekeeper run` running?)")
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = match &settings.http.token_file {
        Some(f) => {
            let token = std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("cannot read the token file {}: {e}", f.display()))?;
            format!("Authorization: Bearer {}\r\n", token.trim_end())
        }
        None => String::new(),
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.take(16 * 1024 * 1024).read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("malformed HTTP response"))?;
    let status = head.lines().next().unwrap_or_default();
    if !(status.starts_with("HTTP/1.1 2")) {
        anyhow::bail!("daemon answered: {status}: {}", body.trim());
    }
    Ok(body.to_string())
}
