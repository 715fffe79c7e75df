//! A store file's `[backup]` table and its `restore_from`: what the store changes about the
//! operator's backups (`[backup]` in storekeeper.toml), and where a new store's data comes from.
//! Read with the same strict, span-keeping reader as the rest of the file, so every problem is
//! reported at its line with a hint.
//!
//! The cron check lives here (not in `config`) because both files have a `schedule`.

use std::ops::Range;
use std::str::FromStr;

use serde::Serialize;

use super::StoreName;
use super::read::{Ctx, Table};

const BACKUP_KEYS: &[&str] = &[
    "enabled",
    "final",
    "schedule",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
];
const RESTORE_KEYS: &[&str] = &["store", "snapshot"];

/// The most snapshots one retention rule may keep (the backup script takes at most 4 digits).
pub const MAX_KEEP: u32 = 9999;

/// Per-store backup settings; `None` fields take the operator's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct StoreBackup {
    /// `false`: no backup CronJob for this store (`None`: the operator's `[backup]` decides).
    pub enabled: Option<bool>,
    /// `false`, written explicitly: the store is deleted without a final backup.
    pub final_backup: bool,
    pub schedule: Option<String>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
}

impl StoreBackup {
    /// The defaults: the operator's settings, with a final backup.
    pub fn inherit() -> StoreBackup {
        StoreBackup {
            final_backup: true,
            ..StoreBackup::default()
        }
    }
}

/// Which snapshot a new store is provisioned from (a restore, or a clone when `store` is another
/// store's name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreFrom {
    pub store: StoreName,
    pub snapshot: Snapshot,
}

/// A snapshot: the newest of the source store, or one by id (a prefix of at least 8 hex digits,
/// as restic shows them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum Snapshot {
    Latest,
    Id(String),
}

impl Snapshot {
    pub fn parse(s: &str) -> Option<Snapshot> {
        if s == "latest" {
            return Some(Snapshot::Latest);
        }
        let hex = (8..=64).contains(&s.len()) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        hex.then(|| Snapshot::Id(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Snapshot::Latest => "latest",
            Snapshot::Id(id) => id,
        }
    }
}

impl From<Snapshot> for String {
    fn from(s: Snapshot) -> String {
        s.as_str().to_string()
    }
}

/// Checks a cron schedule as a Kubernetes CronJob takes it: five fields (minute, hour, day of
/// month, month, day of week) or a nickname (`@daily`...). Parsed by `croner` (seconds and years
/// disallowed), then held to what the API server's parser (robfig/cron's standard parser)
/// accepts, which is less than croner: no `L`, `W` or `#`, and days of the week 0–6.
pub fn check_schedule(s: &str) -> Result<(), String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("the schedule is empty".into());
    }
    if s.len() > 100 || s.chars().any(char::is_control) {
        return Err("a schedule is one short line".into());
    }
    if s.starts_with("TZ=") || s.starts_with("CRON_TZ=") {
        return Err("a time zone inside the schedule is not accepted by Kubernetes".into());
    }
    let parser = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build();
    parser.parse(s).map_err(|e| format!("not a cron schedule: {e}"))?;
    if s.starts_with('@') {
        return Ok(());
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    let [_, _, dom, _, dow] = fields.as_slice() else {
        return Err("a schedule has five fields: minute hour day-of-month month day-of-week".into());
    };
    if dom.contains(['L', 'l', 'W', 'w']) {
        return Err("`L` and `W` in the day of month are not accepted by Kubernetes".into());
    }
    if dow.contains(['L', 'l', '#']) {
        return Err("`L` and `#` in the day of week are not accepted by Kubernetes".into());
    }
    let over_six = dow.split(',').any(|item| {
        let range = item.split('/').next().unwrap_or_default();
        range.split('-').any(|n| u32::from_str(n).is_ok_and(|n| n > 6))
    });
    if over_six {
        return Err("days of the week are 0–6 (Sunday is 0) in Kubernetes; 7 is not accepted".into());
    }
    Ok(())
}

/// Reads `[backup]`; every problem is reported, and the valid fields are kept.
pub(super) fn read_backup(ctx: &mut Ctx<'_>, root: &Table<'_, '_>) -> StoreBackup {
    let mut b = StoreBackup::inherit();
    let Some(t) = root.table(ctx, "backup") else {
        return b;
    };
    t.deny_unknown(ctx, BACKUP_KEYS);
    b.enabled = t.boolean(ctx, "enabled").map(|v| v.0);
    if let Some((v, _)) = t.boolean(ctx, "final") {
        b.final_backup = v;
    }
    if let Some((s, span)) = t.string(ctx, "schedule") {
        match check_schedule(&s) {
            Ok(()) => b.schedule = Some(s.trim().to_string()),
            Err(why) => ctx.error(
                span,
                &t.field("schedule"),
                format!("`backup.schedule` {s:?}: {why}"),
                Some("write five fields, e.g. \"30 3 * * *\" (03:30 every day), or \"@daily\"".into()),
            ),
        }
    }
    b.keep_daily = keep(ctx, &t, "keep_daily");
    b.keep_weekly = keep(ctx, &t, "keep_weekly");
    b.keep_monthly = keep(ctx, &t, "keep_monthly");
    b
}

fn keep(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, key: &str) -> Option<u32> {
    let (n, span) = t.number(ctx, key)?;
    if n.fract() != 0.0 || !(0.0..=f64::from(MAX_KEEP)).contains(&n) {
        ctx.error(
            span,
            &t.field(key),
            format!("`backup.{key}` must be a whole number from 0 to {MAX_KEEP}, found {n}"),
            Some("the number of snapshots this rule keeps; 0 keeps none by this rule".into()),
        );
        return None;
    }
    Some(n as u32)
}

/// Reads `restore_from = { store = "...", snapshot = "latest" | "<id>" }`.
pub(super) fn read_restore_from(ctx: &mut Ctx<'_>, root: &Table<'_, '_>) -> Option<RestoreFrom> {
    let t = root.table(ctx, "restore_from")?;
    t.deny_unknown(ctx, RESTORE_KEYS);
    let store = match t.string(ctx, "store") {
        Some((s, span)) => match StoreName::new(&s) {
            Ok(name) => Some(name),
            Err(msg) => {
                let hint = "the name of the store whose backups to restore (its file name without .toml)";
                ctx.error(span, &t.field("store"), msg, Some(hint.into()));
                None
            }
        },
        None => {
            missing(ctx, &t, "store");
            None
        }
    };
    let snapshot = match t.string(ctx, "snapshot") {
        Some((s, span)) => snapshot(ctx, &t, &s, span),
        None if t.get("snapshot").is_some() => None,
        None => Some(Snapshot::Latest),
    };
    Some(RestoreFrom {
        store: store?,
        snapshot: snapshot?,
    })
}

fn snapshot(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, s: &str, span: Range<usize>) -> Option<Snapshot> {
    let found = Snapshot::parse(s);
    if found.is_none() {
        ctx.error(
            span,
            &t.field("snapshot"),
            format!("`restore_from.snapshot` must be \"latest\" or a snapshot id, found {s:?}"),
            Some(
                "an id is 8 to 64 lower-case hex digits, as `storekeeper backups <store>` lists them".into(),
            ),
        );
    }
    found
}

fn missing(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, key: &str) {
    if t.get(key).is_some() {
        return; // present with the wrong type: reported already
    }
    ctx.error(
        t.span.clone(),
        &t.field(key),
        format!("`restore_from` is missing `{key}`"),
        Some("write `restore_from = { store = \"old-shop\", snapshot = \"latest\" }`".into()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_held_to_what_kubernetes_accepts() {
        for ok in [
            "30 3 * * *",
            "*/15 * * * *",
            "0 0 * * MON-FRI",
            "0 4 1,15 * *",
            "@daily",
            "@weekly",
            "0 2 * JAN,JUL SUN",
            "5 4 * * 0-6/2",
        ] {
            assert_eq!(check_schedule(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("30 3 * *", "cron"),
            ("0 30 3 * * *", "cron"),
            ("61 3 * * *", "cron"),
            ("0 0 L * *", "`L` and `W`"),
            ("0 0 15W * *", "`L` and `W`"),
            ("0 0 * * 5L", "`L` and `#`"),
            ("0 0 * * 1#2", "`L` and `#`"),
            ("0 0 * * 7", "0–6"),
            ("0 0 * * 5-7", "0–6"),
            ("TZ=UTC 0 0 * * *", "time zone"),
            ("@every 5m", "cron"),
        ] {
            let e = check_schedule(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn snapshots_are_latest_or_hex_ids() {
        assert_eq!(Snapshot::parse("latest"), Some(Snapshot::Latest));
        assert_eq!(Snapshot::parse("3f2a9c1b"), Some(Snapshot::Id("3f2a9c1b".into())));
        for bad in [
            "Latest",
            "3f2a9c1",
            "3F2A9C1B",
            "3f2a9c1b; rm -rf /",
            &"a".repeat(65),
            "",
        ] {
            assert_eq!(Snapshot::parse(bad), None, "{bad}");
        }
    }
}
