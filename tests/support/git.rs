//! Real Git repositories for tests: a bare remote with a work clone driven by the `git` CLI, and
//! the remote served over smart HTTP (`git http-backend` as CGI on 127.0.0.1).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A Git source on `url`'s `main` branch with the stores under `stores.d` and its state in
/// `state`: what most tests and benches read.
pub fn git_settings(url: String, state: &Path) -> storekeeper::config::GitSettings {
    git_settings_at(url, storekeeper::config::GitRef::Branch("main".into()), state)
}

/// [`git_settings`] at another branch, tag or commit.
pub fn git_settings_at(
    url: String,
    reference: storekeeper::config::GitRef,
    state: &Path,
) -> storekeeper::config::GitSettings {
    storekeeper::config::GitSettings {
        url,
        reference,
        subpath: PathBuf::from("stores.d"),
        ssh_key_file: None,
        known_hosts_file: None,
        token_file: None,
        token_env: None,
        poll_interval: std::time::Duration::from_secs(30),
        state_dir: state.to_path_buf(),
        webhook_secret_file: None,
    }
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare remote and a work clone that pushes to it.
pub struct Remote {
    pub tmp: tempfile::TempDir,
    pub bare: PathBuf,
    pub work: PathBuf,
}

impl Remote {
    pub fn new() -> Remote {
        let tmp = tempfile::tempdir().expect("tempdir");
        let bare = tmp.path().join("remote.git");
        let work = tmp.path().join("work");
        Remote::init(&bare, &work);
        Remote { tmp, bare, work }
    }

    pub fn init(bare: &Path, work: &Path) {
        let parent = bare.parent().expect("parent");
        git(parent, &["init", "--bare", "-b", "main", &bare.to_string_lossy()]);
        std::fs::create_dir_all(work).expect("work");
        git(work, &["init", "-b", "main"]);
        git(work, &["remote", "add", "origin", &bare.to_string_lossy()]);
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Writes (`Some`) or deletes (`None`) files under the work tree, commits, pushes `main`.
    pub fn commit(&self, files: &[(&str, Option<&str>)]) -> String {
        for (path, content) in files {
            let p = self.work.join(path);
            match content {
                Some(c) => {
                    if p.is_dir() {
                        std::fs::remove_dir_all(&p).expect("rm dir");
                    }
                    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                    std::fs::write(&p, c).expect("write");
                }
                None if p.is_dir() => std::fs::remove_dir_all(&p).expect("rm dir"),
                None => {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "--allow-empty", "-q", "-m", "change"]);
        git(&self.work, &["push", "-q", "origin", "HEAD:main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

// --- smart HTTP -----------------------------------------------------------------------------

/// Serves every repository under `root` with `git http-backend`, one thread per connection.
/// With `token`, requests must carry HTTP Basic auth `x-access-token:<token>`.
pub fn serve_http(root: PathBuf, token: Option<String>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            let token = token.clone();
            std::thread::spawn(move || {
                if let Err(e) = handle(stream, &root, token.as_deref()) {
                    eprintln!("http test server: {e}");
                }
            });
        }
    });
    port
}

fn handle(stream: TcpStream, root: &Path, token: Option<&str>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    }
    if let Some(token) = token {
        // base64("x-access-token:" + token), computed by the git CLI's own helper would be
        // overkill; compare the decoded form instead.
        let ok = get("authorization")
            .and_then(|v| v.strip_prefix("Basic ").map(str::to_string))
            .and_then(|b| decode_b64(&b))
            .is_some_and(|creds| creds == format!("x-access-token:{token}"));
        if !ok {
            out.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
                  Content-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(ct) = get("content-type") {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(p) = get("git-protocol") {
        cmd.env("GIT_PROTOCOL", p);
    }
    if let Some(enc) = get("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", enc);
    }
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("stdin"))?;
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let output = child.wait_with_output()?;
    let _ = writer.join();
    let cgi = output.stdout;
    let split = cgi
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| cgi.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2)))
        .unwrap_or((cgi.len(), cgi.len()));
    let head = String::from_utf8_lossy(&cgi[..split.0]).into_owned();
    let content = &cgi[split.1..];
    let mut status = "200 OK".to_string();
    let mut response = String::new();
    for h in head.lines().filter(|l| !l.trim().is_empty()) {
        match h.split_once(':') {
            Some((n, v)) if n.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            _ => {
                response.push_str(h.trim_end());
                response.push_str("\r\n");
            }
        }
    }
    let head = format!(
        "HTTP/1.1 {status}\r\n{response}Content-Length: {}\r\nConnection: close\r\n\r\n",
        content.len()
    );
    out.write_all(head.as_bytes())?;
    out.write_all(content)?;
    out.flush()
}

pub fn decode_b64(s: &str) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.trim().bytes().filter(|&c| c != b'=') {
        bits = (bits << 6) | ALPHABET.iter().position(|&a| a == c)? as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    String::from_utf8(out).ok()
}
