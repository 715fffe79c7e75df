//! The request bodies: storekeeper's own webhook JSON, Slack's and Discord's incoming-webhook
//! shapes. Every field comes from the [`StoreEvent`], which holds no secret. Store-derived text is
//! escaped for each receiver's markup so a store title cannot ping a channel or forge a link.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{StoreEvent, TargetType};

/// The version of the webhook JSON document; bumped only on an incompatible change.
pub const WEBHOOK_VERSION: u32 = 1;

/// The JSON body for a target. `id` identifies the delivery: retries send the same body, so a
/// receiver can drop duplicates by it.
pub fn render(target: TargetType, ev: &StoreEvent, id: &str) -> Vec<u8> {
    let v = match target {
        TargetType::Webhook => webhook(ev, id),
        TargetType::Slack => slack(ev),
        TargetType::Discord => discord(ev),
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

/// `sha256=<hex HMAC-SHA256 of the raw body>`, the value of `X-Storekeeper-Signature-256`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(e) => unreachable!("HMAC takes any key length: {e}"),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn severity(ev: &StoreEvent) -> &'static str {
    if ev.kind.is_warning() { "warning" } else { "info" }
}

fn webhook(ev: &StoreEvent, id: &str) -> Value {
    json!({
        "version": WEBHOOK_VERSION,
        "id": id,
        "event": ev.kind.as_str(),
        "severity": severity(ev),
        "store": ev.store,
        "namespace": ev.namespace,
        "engine": ev.engine,
        "phase": ev.phase,
        "reason": ev.reason,
        "code": ev.code,
        "revision": ev.revision,
        "url": ev.url,
        "at": ev.at.to_string(),
    })
}

/// Only plain http(s) URLs become links; anything else is shown as text.
fn link_url(ev: &StoreEvent) -> Option<&str> {
    ev.url.as_deref().filter(|u| {
        (u.starts_with("https://") || u.starts_with("http://"))
            && !u.contains(|c: char| c.is_whitespace() || c.is_control() || "<>|\"'`".contains(c))
    })
}

/// Slack's three control characters, and only those (Slack "Formatting text": escape `&`, `<`,
/// `>`), so `<!channel>` or `<https://evil|x>` in a store title stay text.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn colour(ev: &StoreEvent) -> u32 {
    if ev.kind.is_warning() { 0xd92d20 } else { 0x12b76a }
}

fn headline(ev: &StoreEvent) -> String {
    format!("{}: {}", ev.store, ev.kind.as_str().replace('_', " "))
}

/// `text` (shown in notifications and by every Slack-compatible receiver) plus one legacy
/// attachment for the colour bar and fields: Mattermost and Rocket.Chat understand attachments
/// but not Block Kit.
fn slack(ev: &StoreEvent) -> Value {
    let name = slack_escape(&ev.store);
    let store = match link_url(ev) {
        Some(u) => format!("<{}|{name}>", slack_escape(u)),
        None => name,
    };
    let text = format!(
        "*{store}*: {} — {}",
        ev.kind.as_str().replace('_', " "),
        slack_escape(&ev.reason)
    );
    let mut fields = vec![json!({"title": "Phase", "value": ev.phase, "short": true})];
    for (title, value) in detail_fields(ev) {
        fields.push(json!({"title": title, "value": slack_escape(&value), "short": true}));
    }
    json!({
        "text": text,
        "attachments": [{
            "fallback": slack_escape(&headline(ev)),
            "color": format!("#{:06x}", colour(ev)),
            "fields": fields,
            "footer": "storekeeper",
            "ts": ev.at.as_second(),
        }],
    })
}

/// Engine, code and revision, where known.
fn detail_fields(ev: &StoreEvent) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(e) = ev.engine {
        out.push(("Engine", e.to_string()));
    }
    if let Some(c) = ev.code {
        out.push(("Code", c.to_string()));
    }
    if let Some(r) = &ev.revision {
        out.push(("Revision", r.clone()));
    }
    out
}

/// Backslash-escapes Discord's markdown characters so a title renders literally.
fn discord_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\*_~`|>[]()#-".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Truncates to at most `max` characters (Discord counts characters).
fn clip(s: String, max: usize) -> String {
    match s.char_indices().nth(max.saturating_sub(1)) {
        Some((i, _)) if s.chars().count() > max => format!("{}…", &s[..i]),
        _ => s,
    }
}

/// One embed; `allowed_mentions: {parse: []}` so no text can ping @everyone, a role or a user.
/// Within Discord's limits: title 256, description 4096, field values 1024 characters.
fn discord(ev: &StoreEvent) -> Value {
    let mut fields = vec![json!({"name": "Phase", "value": ev.phase, "inline": true})];
    for (name, value) in detail_fields(ev) {
        fields.push(json!({"name": name, "value": clip(discord_escape(&value), 1024), "inline": true}));
    }
    let mut embed = json!({
        "title": clip(headline(ev), 256),
        "description": clip(discord_escape(&ev.reason), 4096),
        "color": colour(ev),
        "timestamp": ev.at.to_string(),
        "fields": fields,
        "footer": {"text": "storekeeper"},
    });
    if let Some(u) = link_url(ev) {
        embed["url"] = json!(u);
    }
    json!({
        "username": "storekeeper",
        "embeds": [embed],
        "allowed_mentions": {"parse": []},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::EventKind;

    fn hostile() -> StoreEvent {
        let mut ev = StoreEvent::new(
            EventKind::Failed,
            "shop",
            "store-shop",
            "Failed",
            "title <!channel> & <https://evil.example|click> @everyone *bold*",
        );
        ev.url = Some("https://shop.example".into());
        ev.code = Some("helm_timeout");
        ev
    }

    #[test]
    fn slack_escapes_its_control_characters() {
        let v: Value = serde_json::from_slice(&render(TargetType::Slack, &hostile(), "i")).expect("json");
        let text = v["text"].as_str().expect("text");
        assert!(
            text.starts_with("*<https://shop.example|shop>*: failed"),
            "{text}"
        );
        assert!(
            !text.contains("<!channel>") && !text.contains("<https://evil"),
            "{text}"
        );
        assert!(
            text.contains("&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"),
            "{text}"
        );
        assert_eq!(v["attachments"][0]["color"], "#d92d20");
    }

    #[test]
    fn discord_allows_no_mentions_and_escapes_markdown() {
        let v: Value = serde_json::from_slice(&render(TargetType::Discord, &hostile(), "i")).expect("json");
        assert_eq!(v["allowed_mentions"], json!({"parse": []}));
        let d = v["embeds"][0]["description"].as_str().expect("description");
        assert!(d.contains("\\*bold\\*") && d.contains("\\|click"), "{d}");
        assert_eq!(v["embeds"][0]["url"], "https://shop.example");
        let long = StoreEvent::new(EventKind::Failed, "s", "n", "Failed", "x".repeat(5000));
        let v: Value = serde_json::from_slice(&render(TargetType::Discord, &long, "i")).expect("json");
        assert_eq!(
            v["embeds"][0]["description"].as_str().map(|s| s.chars().count()),
            Some(4096)
        );
    }

    #[test]
    fn a_script_url_is_never_a_link() {
        let mut ev = hostile();
        ev.url = Some("javascript:alert(1)".into());
        let slack: Value = serde_json::from_slice(&render(TargetType::Slack, &ev, "i")).expect("json");
        assert!(
            slack["text"].as_str().is_some_and(|t| t.starts_with("*shop*")),
            "{slack}"
        );
        let discord: Value = serde_json::from_slice(&render(TargetType::Discord, &ev, "i")).expect("json");
        assert!(discord["embeds"][0].get("url").is_none());
    }

    #[test]
    fn signature_is_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        let sig = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
