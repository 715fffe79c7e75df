//! The read-only status page at `GET /`: one HTML document that works without JavaScript and
//! refreshes itself (`<meta http-equiv="refresh">`).
//!
//! [`PageView`] is plain data the daemon fills from its status map; [`render`] turns it into
//! HTML with `maud`, whose templates HTML-escape every spliced value unless told otherwise (this
//! module never tells it otherwise), so a store title like `<script>` is text. The page loads one
//! same-origin stylesheet ([`STYLESHEET`] at `/page.css`) and nothing else: no script, no image,
//! no third-party asset, which the server's Content-Security-Policy ([`CSP`]) enforces.

use std::time::Duration;

use jiff::Timestamp;
use maud::{DOCTYPE, Markup, html};

use crate::status::Phase;

/// The page's Content-Security-Policy: nothing but same-origin styles and images; no script at
/// all, no framing, no form posts, no `<base>` tricks.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; \
                       form-action 'none'; frame-ancestors 'none'";

/// The operations table shows at most this many, newest first.
pub const MAX_OPERATIONS: usize = 50;

/// Everything the page shows. Every string is shown as text.
#[derive(Debug, Clone, PartialEq)]
pub struct PageView {
    pub generated_at: Timestamp,
    /// The page reloads itself this often.
    pub refresh: Duration,
    pub ready: bool,
    /// Why the daemon is not ready (`/readyz`'s reason), when it is not.
    pub not_ready_reason: Option<String>,
    pub source: SourceView,
    pub stores: Vec<StoreRow>,
    /// Newest first; only the first [`MAX_OPERATIONS`] are shown.
    pub operations: Vec<OperationRow>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceView {
    pub revision: Option<String>,
    pub last_success: Option<Timestamp>,
    pub stale: bool,
}

/// One store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreRow {
    pub name: String,
    /// The shop's title (from the store file), shown under the name.
    pub title: Option<String>,
    pub engine: Option<String>,
    pub phase: Phase,
    /// The human reason of the phase.
    pub reason: String,
    /// The shop's URL; a link only when it is http(s).
    pub url: Option<String>,
    pub owner: Option<String>,
    pub revision: Option<String>,
    /// When the store was first installed (its age).
    pub created: Option<Timestamp>,
    pub last_transition: Option<Timestamp>,
    pub last_error: Option<String>,
    pub next_attempt: Option<Timestamp>,
    pub last_backup: Option<Timestamp>,
}

impl StoreRow {
    /// A row with only the always-known fields set.
    pub fn new(name: impl Into<String>, phase: Phase, reason: impl Into<String>) -> StoreRow {
        StoreRow {
            name: name.into(),
            title: None,
            engine: None,
            phase,
            reason: reason.into(),
            url: None,
            owner: None,
            revision: None,
            created: None,
            last_transition: None,
            last_error: None,
            next_attempt: None,
            last_backup: None,
        }
    }
}

/// One operation storekeeper ran (install, upgrade, delete...).
#[derive(Debug, Clone, PartialEq)]
pub struct OperationRow {
    pub at: Timestamp,
    pub store: String,
    pub action: String,
    /// `ok`, or an error code.
    pub result: String,
    pub duration: Option<Duration>,
    pub message: String,
}

/// The stylesheet served at `/page.css`. Phase colours are classes of a fixed set.
pub const STYLESHEET: &str = r#"
:root { color-scheme: light dark; --ok: #067647; --warn: #b54708; --bad: #b42318; --idle: #475467; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5rem; }
h1 { font-size: 1.4rem; margin: 0 0 .5rem; } h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #8884; vertical-align: top; }
th { font-weight: 600; white-space: nowrap; } td.err { max-width: 28rem; overflow-wrap: anywhere; }
.title { color: #667085; font-size: .9em; } .muted { color: #667085; } time { white-space: nowrap; }
.phase { display: inline-block; padding: 0 .45rem; border-radius: .6rem; color: #fff; font-weight: 600; }
.phase-ready { background: var(--ok); } .phase-failed, .phase-invalid { background: var(--bad); }
.phase-blocked, .phase-deleting, .phase-pendingdeletion { background: var(--warn); }
.phase-pending, .phase-provisioning, .phase-suspended { background: var(--idle); }
.counts { list-style: none; padding: 0; display: flex; gap: 1rem; flex-wrap: wrap; }
.badge-ok { color: var(--ok); font-weight: 600; } .badge-bad { color: var(--bad); font-weight: 600; }
"#;

fn phase_class(p: Phase) -> &'static str {
    match p {
        Phase::Pending => "phase phase-pending",
        Phase::Provisioning => "phase phase-provisioning",
        Phase::Ready => "phase phase-ready",
        Phase::Failed => "phase phase-failed",
        Phase::Deleting => "phase phase-deleting",
        Phase::Invalid => "phase phase-invalid",
        Phase::Suspended => "phase phase-suspended",
        Phase::Blocked => "phase phase-blocked",
        Phase::PendingDeletion => "phase phase-pendingdeletion",
    }
}

/// `3d 4h`, `5h 2m`, `2m 10s`, `8s`: the time from `then` to `now`.
pub fn age(then: Timestamp, now: Timestamp) -> String {
    let secs = now.as_second().saturating_sub(then.as_second()).max(0);
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// A link only for plain http(s) URLs: anything else (`javascript:`, `data:`) is text.
fn safe_link(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && !url.contains(|c: char| c.is_whitespace() || c.is_control())
}

fn time(t: Option<Timestamp>, now: Timestamp) -> Markup {
    html! {
        @if let Some(t) = t {
            time datetime=(t) title=(t) { (age(t, now)) " ago" }
        } @else { span.muted { "—" } }
    }
}

fn time_at(t: Option<Timestamp>) -> Markup {
    html! {
        @if let Some(t) = t { time datetime=(t) { (t.strftime("%Y-%m-%d %H:%M:%S UTC")) } }
        @else { span.muted { "—" } }
    }
}

fn text(s: Option<&str>) -> Markup {
    html! { @if let Some(s) = s { (s) } @else { span.muted { "—" } } }
}

fn header(view: &PageView) -> Markup {
    let now = view.generated_at;
    html! {
        header {
            h1 { "storekeeper" }
            p #readiness {
                @if view.ready { span.badge-ok { "ready" } }
                @else {
                    span.badge-bad { "not ready" }
                    @if let Some(r) = &view.not_ready_reason { ": " (r) }
                }
            }
            p #source {
                "source revision " code { (text(view.source.revision.as_deref())) }
                ", last read " (time(view.source.last_success, now))
                @if view.source.stale { " · " span.badge-bad { "stale" } }
                @else { " · fresh" }
            }
        }
    }
}

fn counts(view: &PageView) -> Markup {
    html! {
        ul.counts #counts {
            @for p in Phase::ALL {
                li data-phase=(p.as_str()) {
                    span class=(phase_class(p)) { (p.as_str()) } " "
                    span.count { (view.stores.iter().filter(|s| s.phase == p).count()) }
                }
            }
        }
    }
}

fn store_row(s: &StoreRow, now: Timestamp) -> Markup {
    html! {
        tr id={ "store-" (s.name) } data-phase=(s.phase.as_str()) {
            td.name {
                a href={ "/stores/" (s.name) } { (s.name) }
                @if let Some(t) = &s.title { br; span.title { (t) } }
            }
            td { (text(s.engine.as_deref())) }
            td { span class=(phase_class(s.phase)) { (s.phase.as_str()) } br; span.muted { (s.reason) } }
            td.url {
                @match &s.url {
                    Some(u) if safe_link(u) => a href=(u) rel="noopener noreferrer" { (u) },
                    Some(u) => (u),
                    None => span.muted { "—" },
                }
            }
            td { (text(s.owner.as_deref())) }
            td { code { (text(s.revision.as_deref())) } }
            td { (time(s.created, now)) }
            td { (time(s.last_transition, now)) }
            td.err { (text(s.last_error.as_deref())) }
            td { (time_at(s.next_attempt)) }
            td { (time(s.last_backup, now)) }
        }
    }
}

fn stores(view: &PageView) -> Markup {
    html! {
        table #stores {
            thead { tr {
                th { "Store" } th { "Engine" } th { "Phase" } th { "URL" } th { "Owner" }
                th { "Revision" } th { "Age" } th { "Last transition" } th { "Last error" }
                th { "Next attempt" } th { "Last backup" }
            } }
            tbody {
                @for s in &view.stores { (store_row(s, view.generated_at)) }
                @if view.stores.is_empty() { tr { td colspan="11" .muted { "No stores." } } }
            }
        }
    }
}

fn operations(view: &PageView) -> Markup {
    html! {
        table #operations {
            thead { tr { th { "When" } th { "Store" } th { "Action" } th { "Result" } th { "Took" } th { "Message" } } }
            tbody {
                @for o in view.operations.iter().take(MAX_OPERATIONS) {
                    tr {
                        td { (time(Some(o.at), view.generated_at)) }
                        td { (o.store) } td { (o.action) } td { (o.result) }
                        td { @if let Some(d) = o.duration { (format!("{:.1}s", d.as_secs_f64())) } }
                        td.err { (o.message) }
                    }
                }
                @if view.operations.is_empty() { tr { td colspan="6" .muted { "No operations yet." } } }
            }
        }
    }
}

/// The whole page.
pub fn render(view: &PageView) -> String {
    let refresh = view.refresh.as_secs().max(1);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content=(refresh);
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { "storekeeper" }
                link rel="stylesheet" href="/page.css";
            }
            body {
                (header(view))
                h2 { "Phases" } (counts(view))
                h2 { "Stores" } (stores(view))
                h2 { "Last operations" } (operations(view))
                footer.muted { p { "Generated " (time_at(Some(view.generated_at))) "; refreshes every " (refresh) " s." } }
            }
        }
    }
    .into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn view(stores: Vec<StoreRow>) -> PageView {
        PageView {
            generated_at: ts("2026-11-22T14:00:00Z"),
            refresh: Duration::from_secs(10),
            ready: true,
            not_ready_reason: None,
            source: SourceView {
                revision: Some("git:3f2a".into()),
                last_success: Some(ts("2026-11-22T13:59:50Z")),
                stale: false,
            },
            stores,
            operations: Vec::new(),
        }
    }

    #[test]
    fn hostile_strings_are_text_and_script_urls_are_not_links() {
        let mut s = StoreRow::new("evil", Phase::Failed, "\"><img src=x onerror=alert(1)>");
        s.title = Some("<script>alert(1)</script>".into());
        s.url = Some("javascript:alert(1)".into());
        s.last_error = Some("</td></tr><tr><td>&amp;".into());
        let html = render(&view(vec![s]));
        assert!(
            !html.contains("<script>alert") && !html.contains("<img"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(
            html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"),
            "{html}"
        );
        assert!(
            html.contains("&lt;/td&gt;&lt;/tr&gt;&lt;tr&gt;&lt;td&gt;&amp;amp;"),
            "{html}"
        );
        assert!(!html.contains("href=\"javascript:"), "{html}");
        assert!(
            !html.contains("<script") && !html.contains(" style="),
            "no inline script or style"
        );
    }

    #[test]
    fn rows_counts_links_and_refresh() {
        let mut ready = StoreRow::new("chai-corner", Phase::Ready, "deployed");
        ready.url = Some("https://chai.example".into());
        ready.created = Some(ts("2026-11-19T10:00:00Z"));
        let html = render(&view(vec![
            ready,
            StoreRow::new("b", Phase::Failed, "x"),
            StoreRow::new("c", Phase::Failed, "y"),
        ]));
        assert!(
            html.contains("<meta http-equiv=\"refresh\" content=\"10\">"),
            "{html}"
        );
        assert!(html.contains("href=\"https://chai.example\""), "{html}");
        assert!(html.contains("href=\"/stores/chai-corner\""), "{html}");
        assert!(html.contains("3d 4h ago"), "{html}");
        assert!(
            html.contains(
                "<li data-phase=\"Failed\"><span class=\"phase phase-failed\">Failed</span> <span class=\"count\">2</span>"
            ),
            "{html}"
        );
    }

    #[test]
    fn only_the_last_fifty_operations_show() {
        let mut v = view(Vec::new());
        v.operations = (0..60)
            .map(|i| OperationRow {
                at: ts("2026-11-22T13:00:00Z"),
                store: format!("s{i}"),
                action: "upgrade".into(),
                result: "ok".into(),
                duration: Some(Duration::from_millis(1500)),
                message: String::new(),
            })
            .collect();
        let html = render(&v);
        assert!(html.contains("<td>s49</td>") && !html.contains("<td>s50</td>"));
        assert!(html.contains("1.5s"));
    }

    #[test]
    fn ages() {
        let now = ts("2026-11-22T14:00:00Z");
        assert_eq!(age(ts("2026-11-22T13:59:52Z"), now), "8s");
        assert_eq!(age(ts("2026-11-22T13:57:50Z"), now), "2m 10s");
        assert_eq!(age(ts("2026-11-22T09:00:00Z"), now), "5h 0m");
        assert_eq!(
            age(ts("2026-11-23T09:00:00Z"), now),
            "0s",
            "a clock skew shows 0s"
        );
    }
}
