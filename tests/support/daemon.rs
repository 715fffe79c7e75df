//! A `storekeeper run` process with its HTTP address and logs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Env, signal};

/// Collects a spawned child's stderr (piped) into a shared string on its own thread, and sends
/// every `addr=` value it logs (the HTTP server's address) on the returned channel.
pub fn collect_stderr(child: &mut Child) -> (Arc<Mutex<String>>, std::sync::mpsc::Receiver<String>) {
    let stderr = child.stderr.take().expect("stderr");
    let logs = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Arc::clone(&logs);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("addr=").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
            if let Ok(mut l) = sink.lock() {
                l.push_str(&line);
                l.push('\n');
            }
        }
    });
    (logs, rx)
}

/// A running daemon whose stderr is collected and whose HTTP address is known.
pub struct Daemon {
    pub child: Child,
    pub addr: String,
    pub logs: Arc<Mutex<String>>,
}

impl Daemon {
    pub fn start(env: &Env, extra_env: &[(&str, String)]) -> Daemon {
        Daemon::start_with_config(env, &env.config, extra_env)
    }

    /// A daemon with another config file (e.g. a second replica with its own helm log).
    pub fn start_with_config(env: &Env, config: &std::path::Path, extra_env: &[(&str, String)]) -> Daemon {
        let mut cmd = env.storekeeper_with(config, &["run", "--listen", "127.0.0.1:0"]);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let (logs, rx) = collect_stderr(&mut child);
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("daemon did not report its HTTP address");
        Daemon { child, addr, logs }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        request(&self.addr, "GET", path)
    }

    pub fn metrics(&self) -> String {
        let (code, body) = self.get("/metrics");
        assert_eq!(code, 200);
        body
    }

    pub fn stop(mut self) -> String {
        signal(&self.child, "TERM");
        let status = self.child.wait().expect("wait");
        assert_eq!(status.code(), Some(0));
        std::thread::sleep(Duration::from_millis(200));
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

pub fn request(addr: &str, method: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The value of one series in Prometheus text, or None when absent.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
}

impl Daemon {
    /// Waits until `/stores/{store}` reports the store Ready; false when `limit` passes first.
    /// `GET /stores/<name>` as JSON; `null` when the daemon does not know the store.
    pub fn store(&self, name: &str) -> serde_json::Value {
        let (code, body) = self.get(&format!("/stores/{name}"));
        if code != 200 {
            return serde_json::Value::Null;
        }
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
    }

    /// The store's phase in `/stores`, `-` when unknown.
    pub fn phase(&self, name: &str) -> String {
        self.store(name)["phase"].as_str().unwrap_or("-").to_string()
    }

    pub fn wait_ready(&self, store: &str, limit: Duration) -> bool {
        let path = format!("/stores/{store}");
        super::wait_for(limit, || self.get(&path).1.contains("\"Ready\""))
    }

    /// Everything the daemon logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }
}
