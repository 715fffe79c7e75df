//! `[[notify]]` entries of `storekeeper.toml`: the raw serde struct (unknown keys rejected, like
//! the rest of the config) and the validated [`NotifySettings`]. No file is read here: `url_file`
//! and `secret_file` are read when the [`super::Notifier`] starts, so `validate` works without
//! the secrets present.

use std::collections::BTreeSet;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::EventKind;
use crate::config::HumanDuration;

/// Which payload a target gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetType {
    /// storekeeper's own JSON document, optionally HMAC-signed (README: "Notifications").
    Webhook,
    /// A Slack-compatible incoming webhook (`text` + `attachments`; Mattermost and Rocket.Chat
    /// take the same).
    Slack,
    /// A Discord incoming webhook (`embeds`, no mentions).
    Discord,
}

impl TargetType {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetType::Webhook => "webhook",
            TargetType::Slack => "slack",
            TargetType::Discord => "discord",
        }
    }
}

/// Where the target's URL comes from. A Slack or Discord URL is itself a credential (anyone
/// holding it can post), so it can live in a file and it is never printed: `Debug` redacts it.
#[derive(Clone, PartialEq)]
pub enum UrlSource {
    Inline(String),
    File(PathBuf),
}

impl std::fmt::Debug for UrlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UrlSource::Inline(_) => f.write_str("Inline(<redacted>)"),
            UrlSource::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

/// One validated `[[notify]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifySettings {
    /// The `target` label of `storekeeper_notifications_total` and the name in logs.
    pub name: String,
    pub target: TargetType,
    pub url: UrlSource,
    /// Webhook only: the HMAC-SHA256 key, read from this file (trailing newline trimmed).
    pub secret_file: Option<PathBuf>,
    /// The kinds this target receives.
    pub events: BTreeSet<EventKind>,
    /// Per request, connect to last byte of the response.
    pub timeout: Duration,
    /// Attempts per event before it is given up (`result="failed"`).
    pub max_attempts: NonZeroU32,
    /// The first retry delay; it doubles per attempt up to 60 s, with jitter.
    pub backoff: Duration,
    /// Events waiting for this target; when full, new ones are dropped (`result="dropped"`).
    pub queue_size: NonZeroUsize,
}

/// `[[notify]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    name: String,
    #[serde(rename = "type")]
    target: TargetType,
    url: Option<String>,
    url_file: Option<PathBuf>,
    secret_file: Option<PathBuf>,
    events: Option<Vec<EventKind>>,
    timeout: Option<HumanDuration>,
    max_attempts: Option<u32>,
    backoff: Option<HumanDuration>,
    queue_size: Option<usize>,
}

type Invalid = (&'static str, String);

/// Validates every entry: names unique and label-safe, exactly one of `url` / `url_file`, a
/// usable URL, `secret_file` only on webhooks, bounded numbers. Errors name the entry but never
/// echo a URL.
pub fn settings(raw: Vec<RawNotify>) -> Result<Vec<NotifySettings>, Invalid> {
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        let s = entry(r)?;
        if !names.insert(s.name.clone()) {
            return Err((
                "notify.name",
                format!("two [[notify]] entries are named `{}`", s.name),
            ));
        }
        out.push(s);
    }
    Ok(out)
}

fn entry(r: RawNotify) -> Result<NotifySettings, Invalid> {
    let name = r.name;
    let label_safe = (1..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !label_safe {
        return Err((
            "notify.name",
            format!("notify name `{name}` must be 1–40 characters of a-z, 0-9, '-', '_'"),
        ));
    }
    let bad = |field, why: &str| (field, format!("notify `{name}`: {why}"));
    let url = match (r.url, r.url_file) {
        (Some(u), None) => {
            check_url(&u).map_err(|why| bad("notify.url", why))?;
            UrlSource::Inline(u)
        }
        (None, Some(p)) => UrlSource::File(p),
        _ => return Err(bad("notify.url", "set exactly one of `url` or `url_file`")),
    };
    if r.secret_file.is_some() && r.target != TargetType::Webhook {
        return Err(bad(
            "notify.secret_file",
            "`secret_file` signs the generic webhook only (type = \"webhook\")",
        ));
    }
    let events = match r.events {
        None => EventKind::ALL.into_iter().collect(),
        Some(list) if list.is_empty() => {
            return Err(bad(
                "notify.events",
                "`events` is empty; omit it to receive every event",
            ));
        }
        Some(list) => list.into_iter().collect(),
    };
    let max_attempts = r.max_attempts.unwrap_or(5);
    let max_attempts = NonZeroU32::new(max_attempts)
        .filter(|n| n.get() <= 20)
        .ok_or_else(|| bad("notify.max_attempts", "`max_attempts` must be 1–20"))?;
    let queue_size = NonZeroUsize::new(r.queue_size.unwrap_or(256))
        .filter(|n| n.get() <= 10_000)
        .ok_or_else(|| bad("notify.queue_size", "`queue_size` must be 1–10000"))?;
    let timeout = r.timeout.map_or(Duration::from_secs(10), |d| d.0);
    if timeout > Duration::from_secs(300) {
        return Err(bad("notify.timeout", "`timeout` must be at most 5m"));
    }
    Ok(NotifySettings {
        name,
        target: r.target,
        url,
        secret_file: r.secret_file,
        events,
        timeout,
        max_attempts,
        backoff: r
            .backoff
            .map_or(Duration::from_secs(1), |d| d.0.min(Duration::from_secs(60))),
        queue_size,
    })
}

/// An `http://` or `https://` URL with a host. The message never contains the URL.
pub(super) fn check_url(url: &str) -> Result<hyper::Uri, &'static str> {
    let uri: hyper::Uri = url.trim().parse().map_err(|_| "the URL does not parse")?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("the URL must start with https:// (or http://)"),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host");
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Vec<NotifySettings>, Invalid> {
        #[derive(Deserialize)]
        struct Doc {
            notify: Vec<RawNotify>,
        }
        let doc: Doc = toml::from_str(src).map_err(|e| ("toml", e.to_string()))?;
        settings(doc.notify)
    }

    #[test]
    fn defaults_and_filters() {
        let s = parse(
            "[[notify]]\nname = \"ops\"\ntype = \"slack\"\nurl_file = \"/etc/sk/slack\"\n\
             events = [\"failed\", \"backup_failed\"]\n\
             [[notify]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"https://h.example/x\"\n\
             secret_file = \"/etc/sk/hmac\"\ntimeout = \"3s\"\nmax_attempts = 2\n",
        )
        .expect("valid");
        assert_eq!(s[0].events, [EventKind::Failed, EventKind::BackupFailed].into());
        assert_eq!(s[0].timeout, Duration::from_secs(10));
        assert_eq!(s[0].max_attempts.get(), 5);
        assert_eq!(s[0].queue_size.get(), 256);
        assert_eq!(s[1].events.len(), EventKind::ALL.len());
        assert_eq!(
            (s[1].timeout, s[1].max_attempts.get()),
            (Duration::from_secs(3), 2)
        );
    }

    #[test]
    fn inline_urls_never_show_in_debug_or_errors() {
        let s = parse(
            "[[notify]]\nname = \"a\"\ntype = \"slack\"\nurl = \"https://hooks.example/T0/B0/SECRETPART\"\n",
        )
        .expect("valid");
        assert!(!format!("{s:?}").contains("SECRETPART"), "{s:?}");
        let e = parse("[[notify]]\nname = \"a\"\ntype = \"slack\"\nurl = \"ftp://x/SECRETPART\"\n")
            .expect_err("bad scheme");
        assert_eq!(e.0, "notify.url");
        assert!(!e.1.contains("SECRETPART"), "{}", e.1);
    }

    #[test]
    fn bad_entries_are_refused_with_the_field() {
        let cases = [
            (
                "name = \"Ops Team\"\ntype = \"slack\"\nurl = \"https://x\"\n",
                "notify.name",
            ),
            ("name = \"a\"\ntype = \"slack\"\n", "notify.url"),
            (
                "name = \"a\"\ntype = \"slack\"\nurl = \"https://x\"\nurl_file = \"/f\"\n",
                "notify.url",
            ),
            (
                "name = \"a\"\ntype = \"slack\"\nurl = \"https://x\"\nsecret_file = \"/f\"\n",
                "notify.secret_file",
            ),
            (
                "name = \"a\"\ntype = \"webhook\"\nurl = \"https://x\"\nevents = []\n",
                "notify.events",
            ),
            (
                "name = \"a\"\ntype = \"webhook\"\nurl = \"https://x\"\nmax_attempts = 0\n",
                "notify.max_attempts",
            ),
            (
                "name = \"a\"\ntype = \"webhook\"\nurl = \"https://x\"\nqueue_size = 0\n",
                "notify.queue_size",
            ),
        ];
        for (body, field) in cases {
            let e = parse(&format!("[[notify]]\n{body}")).expect_err(body);
            assert_eq!(e.0, field, "{body}: {}", e.1);
        }
        let twice = "[[notify]]\nname = \"a\"\ntype = \"slack\"\nurl = \"https://x\"\n";
        let e = parse(&format!("{twice}{twice}")).expect_err("duplicate");
        assert!(e.1.contains("two [[notify]] entries"), "{}", e.1);
        for body in ["typ = \"slack\"", "type = \"teams\"", "events = [\"faild\"]"] {
            let src = format!("[[notify]]\nname = \"a\"\nurl = \"https://x\"\ntype = \"slack\"\n{body}\n");
            let src = if body.starts_with("type") {
                src.replacen("type = \"slack\"\n", "", 1)
            } else {
                src
            };
            assert!(parse(&src).is_err(), "{body}");
        }
    }
}
