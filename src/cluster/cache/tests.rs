use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::Event;
use tokio::sync::{Notify, mpsc};

use super::*;
use crate::cluster::{ANN_HASH, MANAGED_BY, MANAGER, STORE_LABEL, observed_from};

/// A namespace at a resourceVersion; `store` makes it ours, `hash` annotates it.
fn ns(name: &str, rv: &str, store: Option<&str>, hash: Option<&str>) -> Namespace {
    let labels = store.map(|s| {
        [
            (MANAGED_BY.to_string(), MANAGER.to_string()),
            (STORE_LABEL.to_string(), s.to_string()),
        ]
        .into()
    });
    let annotations = hash.map(|h| [(ANN_HASH.to_string(), h.to_string())].into());
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            resource_version: Some(rv.into()),
            labels,
            annotations,
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

fn synced(items: &[Namespace]) -> State {
    let mut s = State::default();
    s.apply(Event::Init);
    for n in items {
        s.apply(Event::InitApply(n.clone()));
    }
    s.apply(Event::InitDone);
    s
}

fn hash_of(s: &State, store: &str) -> Option<String> {
    let name = StoreName::new(store).unwrap_or_else(|e| panic!("{e}"));
    s.observed().stores.get(&name)?.applied_hash.clone()
}

#[test]
fn nothing_is_answered_before_the_first_complete_list() {
    let mut s = State::default();
    assert_eq!(s.answerable(), Err(Miss::NotSynced));
    s.apply(Event::Init);
    s.apply(Event::InitApply(ns("store-a", "5", Some("a"), Some("h1"))));
    assert_eq!(s.answerable(), Err(Miss::NotSynced), "a list in progress");
    assert!(s.apply(Event::InitDone), "the first list is news");
    assert_eq!(s.answerable(), Ok(true));
    assert_eq!(hash_of(&s, "a").as_deref(), Some("h1"));
    assert_eq!(s.changes(), Some(1));
}

#[test]
fn a_read_waits_for_the_daemons_own_write_which_is_no_change_by_others() {
    let mut s = synced(&[ns("store-a", "5", Some("a"), Some("h1"))]);
    let before = s.changes();
    s.wrote(Some("9"));
    assert_eq!(s.answerable(), Ok(false), "our write is not in yet");
    assert!(!s.apply(Event::Apply(ns("store-a", "9", Some("a"), Some("h2")))));
    assert_eq!(s.answerable(), Ok(true));
    assert_eq!(hash_of(&s, "a").as_deref(), Some("h2"));
    assert_eq!(s.changes(), before, "our own write does not wake the planner");
}

#[test]
fn any_newer_event_covers_an_earlier_write() {
    let mut s = synced(&[ns("store-a", "5", Some("a"), None)]);
    s.wrote(Some("9"));
    // Someone else's write came after ours; the stream is ordered, so ours is in.
    assert!(s.apply(Event::Apply(ns("other", "12", None, None))));
    assert_eq!(s.answerable(), Ok(true));
    assert!(s.ours.is_empty(), "nothing left to wait for");
}

#[test]
fn an_event_that_beats_the_write_response_still_counts() {
    let mut s = synced(&[ns("store-a", "5", Some("a"), None)]);
    // The watch delivered our write before its HTTP response came back.
    s.apply(Event::Apply(ns("store-a", "9", Some("a"), Some("h2"))));
    s.wrote(Some("9"));
    assert_eq!(s.answerable(), Ok(true));
    assert!(s.ours.is_empty());
}

#[test]
fn changes_and_deletions_by_others_are_counted() {
    let mut s = synced(&[
        ns("store-a", "5", Some("a"), Some("h1")),
        ns("store-b", "6", Some("b"), Some("h1")),
    ]);
    let c0 = s.changes().unwrap_or_default();
    assert!(s.apply(Event::Apply(ns("store-a", "7", Some("a"), Some("edited")))));
    assert!(s.apply(Event::Delete(ns("store-b", "8", Some("b"), Some("h1")))));
    assert_eq!(s.changes(), Some(c0 + 2));
    let o = s.observed();
    assert_eq!(hash_of(&s, "a").as_deref(), Some("edited"));
    assert_eq!(o.stores.len(), 1, "b is gone: {o:?}");
}

#[test]
fn a_relist_replaces_everything_and_says_whether_anything_differed() {
    let a = ns("store-a", "5", Some("a"), None);
    let b = ns("store-b", "6", Some("b"), None);
    let mut s = synced(&[a.clone(), b.clone()]);
    // After 410 Gone: a fresh list that no longer has b (deleted while we were away).
    s.apply(Event::Init);
    assert_eq!(s.answerable(), Err(Miss::NotSynced));
    s.apply(Event::InitApply(a.clone()));
    assert!(s.apply(Event::InitDone));
    assert_eq!(s.observed().stores.len(), 1);
    // The same list again: nothing to plan for.
    s.apply(Event::Init);
    s.apply(Event::InitApply(a));
    assert!(!s.apply(Event::InitDone));
}

#[test]
fn a_watch_error_means_lists_until_an_event_or_an_equal_list_proves_it_live() {
    let a = ns("store-a", "5", Some("a"), None);
    let mut s = synced(std::slice::from_ref(&a));
    s.failed();
    assert_eq!(s.answerable(), Err(Miss::NotSynced));
    assert_eq!(s.changes(), None, "no skipping on a cache that may be stale");
    // A list that differs (something happened that the watch has not delivered yet) proves nothing.
    let a2 = ns("store-a", "7", Some("a"), Some("x"));
    assert!(!s.check(std::slice::from_ref(&a2), Some("7")));
    assert_eq!(s.answerable(), Err(Miss::NotSynced));
    // An equal list does, and it vouches for everything up to its own version.
    s.wrote(Some("6"));
    assert!(s.check(std::slice::from_ref(&a), Some("6")));
    assert_eq!(s.answerable(), Ok(true));
    // Or an event, once the watch resumes.
    s.failed();
    s.apply(Event::Apply(a2));
    assert_eq!(s.answerable(), Ok(true));
}

#[test]
fn versions_that_are_not_integers_turn_the_cache_off() {
    let mut s = synced(&[ns("store-a", "5", Some("a"), None)]);
    s.wrote(Some("abc"));
    assert_eq!(s.answerable(), Err(Miss::Incomparable));
    let mut s = synced(&[ns("store-a", "5", Some("a"), None)]);
    s.apply(Event::Apply(ns("store-b", "007", Some("b"), None)));
    assert_eq!(s.answerable(), Err(Miss::Incomparable), "leading zeros");
    for bad in ["", "0", "-1", "+1", "1.5", "99999999999999999999999"] {
        assert_eq!(parse_rv(bad), None, "{bad:?}");
    }
    assert_eq!(parse_rv("18446744073709551615"), Some(u64::MAX));
}

#[test]
fn the_cache_sees_what_a_list_of_the_same_namespaces_shows() {
    let items = [
        ns("store-b", "3", Some("b"), Some("hb")),
        ns("kube-system", "1", None, None),
        // A second namespace claiming store a: both paths must resolve it the same way.
        ns("zz-imposter", "4", Some("a"), Some("wrong")),
        ns("store-a", "2", Some("a"), Some("ha")),
        ns("half-ours", "5", None, Some("x")),
    ];
    let s = synced(&items);
    assert_eq!(s.observed(), observed_from(&items));
}

fn cache(state: State) -> (NamespaceCache, Arc<Shared>) {
    let (wake, _) = mpsc::channel(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(state),
        changed: Notify::new(),
        wake,
    });
    let task = tokio::spawn(std::future::pending::<()>()).abort_handle();
    (
        NamespaceCache {
            shared: Arc::clone(&shared),
            task,
        },
        shared,
    )
}

#[tokio::test(start_paused = true)]
async fn a_read_answers_as_soon_as_the_write_arrives_and_gives_up_after_the_wait() {
    let (c, shared) = cache(synced(&[ns("store-a", "5", Some("a"), Some("h1"))]));
    c.wrote(Some("9"));
    let late = Arc::clone(&shared);
    let arrival = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        late.lock()
            .apply(Event::Apply(ns("store-a", "9", Some("a"), Some("h2"))));
        late.changed.notify_waiters();
    });
    let started = Instant::now();
    let o = c.read(WRITE_WAIT).await.expect("answered from the cache");
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    let a = StoreName::new("a").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(o.stores[&a].applied_hash.as_deref(), Some("h2"));
    arrival.await.expect("joined");

    c.wrote(Some("11"));
    let started = Instant::now();
    assert_eq!(c.read(WRITE_WAIT).await, Err(Miss::Behind));
    assert_eq!(started.elapsed(), WRITE_WAIT);
}

#[tokio::test]
async fn a_stopped_watch_is_never_waited_for() {
    let (c, shared) = cache(synced(&[]));
    drop(StopGuard(Arc::clone(&shared)));
    assert_eq!(c.read(WRITE_WAIT).await, Err(Miss::Stopped));
    assert_eq!(c.changes(), None);
}
