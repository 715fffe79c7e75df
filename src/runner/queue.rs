//! The runner's keyed queue: pure bookkeeping, no I/O and no clock of its own (the caller passes
//! `now`), so every rule is unit-tested directly.
//!
//! - one entry per store: offering a store that is already queued replaces its work (newest wins);
//! - a store with an operation in flight is held: offers for it are refused, and the plan that
//!   follows the operation's end decides what runs next;
//! - a failed store is requeued at `now + backoff` (10 s doubling to 10 min, with jitter); the
//!   backoff is forgotten when the store's desired state changes, so fixing a file acts at once;
//! - entries start in due order (then in the order they were first queued).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use super::Work;
use crate::spec::StoreName;

/// First retry after a failure; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// Longest wait between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(600);

/// The delay before retry number `failures` (1 = after the first failure), ±20 % jitter,
/// never more than [`BACKOFF_MAX`].
pub fn backoff_delay(failures: u32) -> Duration {
    let doublings = failures.clamp(1, 8) - 1;
    let base = BACKOFF_BASE.saturating_mul(1u32 << doublings).min(BACKOFF_MAX);
    base.mul_f64(rand::random_range(0.8..1.2)).min(BACKOFF_MAX)
}

#[derive(Debug)]
struct Entry {
    work: Work,
    due: Instant,
    seq: u64,
}

#[derive(Debug, Clone)]
struct Retry {
    failures: u32,
    at: Instant,
    /// What failed; a different desired state is not held back by this failure.
    fingerprint: String,
}

/// What became of an offered piece of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// The store has an operation in flight; the plan after it ends decides.
    Held,
    /// Queued to start at `due` (now, or the retry time after a failure).
    Queued { due: Instant, retry: bool },
}

#[derive(Debug, Default)]
pub struct Queue {
    waiting: BTreeMap<StoreName, Entry>,
    order: BTreeSet<(Instant, u64, StoreName)>,
    running: BTreeSet<StoreName>,
    retries: BTreeMap<StoreName, Retry>,
    /// The epoch at which each store's last operation ended (see [`Queue::epoch`]).
    finished: BTreeMap<StoreName, u64>,
    epoch: u64,
    seq: u64,
}

impl Queue {
    /// Increases every time an operation ends. A plan built from observations older than a
    /// store's last operation must not decide for that store ([`Queue::is_stale`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn is_stale(&self, store: &StoreName, plan_epoch: u64) -> bool {
        self.finished.get(store).is_some_and(|e| *e > plan_epoch)
    }

    pub fn is_running(&self, store: &StoreName) -> bool {
        self.running.contains(store)
    }

    /// Stores queued (not yet started).
    pub fn depth(&self) -> usize {
        self.waiting.len()
    }

    pub fn in_flight(&self) -> usize {
        self.running.len()
    }

    pub fn running(&self) -> &BTreeSet<StoreName> {
        &self.running
    }

    /// Queues work for its store, replacing what was queued for it.
    pub fn offer(&mut self, work: Work, now: Instant) -> Offer {
        let store = work.step.store.clone();
        if self.running.contains(&store) {
            return Offer::Held;
        }
        let fingerprint = work.fingerprint();
        if self
            .retries
            .get(&store)
            .is_some_and(|r| r.fingerprint != fingerprint)
        {
            self.retries.remove(&store);
        }
        let (due, retry) = match self.retries.get(&store) {
            Some(r) if r.at > now => (r.at, true),
            _ => (now, false),
        };
        // Keep the place in line of work that was already queued for the same time.
        let seq = match self.waiting.remove(&store) {
            Some(old) => {
                self.order.remove(&(old.due, old.seq, store.clone()));
                if old.due == due { old.seq } else { self.next_seq() }
            }
            None => self.next_seq(),
        };
        self.order.insert((due, seq, store.clone()));
        self.waiting.insert(store, Entry { work, due, seq });
        Offer::Queued { due, retry }
    }

    /// Drops queued work for a store the plan says needs nothing now. `settled`: the store is
    /// up to date, so a past failure no longer counts toward its backoff.
    pub fn withdraw(&mut self, store: &StoreName, settled: bool) {
        if let Some(old) = self.waiting.remove(store) {
            self.order.remove(&(old.due, old.seq, store.clone()));
        }
        if settled {
            self.retries.remove(store);
        }
    }

    /// Forgets a store entirely (neither desired nor observed any more).
    pub fn forget(&mut self, store: &StoreName) {
        self.withdraw(store, true);
        self.finished.remove(store);
    }

    /// Drops every queued entry (leadership lost: what was queued may be stale when it returns).
    pub fn clear_waiting(&mut self) {
        self.waiting.clear();
        self.order.clear();
    }

    /// Forgets the backoff of these stores (every store when empty): waiting work becomes due.
    pub fn retry_now(&mut self, stores: &[StoreName], now: Instant) {
        let named = |s: &StoreName| stores.is_empty() || stores.contains(s);
        self.retries.retain(|s, _| !named(s));
        let late: Vec<StoreName> = self
            .waiting
            .iter()
            .filter(|(s, e)| named(s) && e.due > now)
            .map(|(s, _)| s.clone())
            .collect();
        for s in late {
            if let Some(entry) = self.waiting.remove(&s) {
                self.order.remove(&(entry.due, entry.seq, s.clone()));
                self.order.insert((now, entry.seq, s.clone()));
                self.waiting.insert(s, Entry { due: now, ..entry });
            }
        }
    }

    /// Takes the next due entry and marks its store running.
    pub fn pop_due(&mut self, now: Instant) -> Option<Work> {
        let first = self.order.first()?.clone();
        if first.0 > now {
            return None;
        }
        self.order.remove(&first);
        let entry = self.waiting.remove(&first.2)?;
        self.running.insert(first.2);
        Some(entry.work)
    }

    /// When the earliest queued entry is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.order.first().map(|e| e.0)
    }

    /// The delay before the next try if the operation now ending for `store` failed.
    pub fn retry_delay(&self, store: &StoreName, fingerprint: &str) -> Duration {
        let failures = self
            .retries
            .get(store)
            .filter(|r| r.fingerprint == fingerprint)
            .map_or(0, |r| r.failures);
        backoff_delay(failures.saturating_add(1))
    }

    /// An operation ended. `failed_retry_in`: it failed, and the store may be tried again after
    /// this delay (from [`Queue::retry_delay`]).
    pub fn finish(
        &mut self,
        store: &StoreName,
        fingerprint: String,
        failed_retry_in: Option<Duration>,
        now: Instant,
    ) {
        self.running.remove(store);
        self.epoch += 1;
        self.finished.insert(store.clone(), self.epoch);
        match failed_retry_in {
            None => {
                self.retries.remove(store);
            }
            Some(delay) => {
                let failures = self
                    .retries
                    .get(store)
                    .filter(|r| r.fingerprint == fingerprint)
                    .map_or(0, |r| r.failures);
                self.retries.insert(
                    store.clone(),
                    Retry {
                        failures: failures.saturating_add(1),
                        at: now + delay,
                        fingerprint,
                    },
                );
            }
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Step};

    fn name(s: &str) -> StoreName {
        StoreName::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn work(store: &str, reason: &str) -> Work {
        Work::for_step(Step::new(name(store), Action::Upgrade, reason), "store-x")
    }

    #[test]
    fn backoff_grows_and_is_capped_at_ten_minutes() {
        let d1 = backoff_delay(1);
        assert!(
            d1 >= Duration::from_secs(8) && d1 <= Duration::from_secs(12),
            "{d1:?}"
        );
        let d3 = backoff_delay(3);
        assert!(
            d3 >= Duration::from_secs(32) && d3 <= Duration::from_secs(48),
            "{d3:?}"
        );
        for n in [7, 8, 20, u32::MAX] {
            assert!(backoff_delay(n) <= BACKOFF_MAX);
        }
        assert!(
            backoff_delay(0) <= Duration::from_secs(12),
            "0 is treated as the first failure"
        );
    }

    #[test]
    fn a_store_is_queued_once_and_the_newest_work_wins() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.offer(work("a", "first"), now);
        q.offer(work("b", "b"), now);
        q.offer(work("a", "second"), now);
        assert_eq!(q.depth(), 2);
        let first = q.pop_due(now).expect("a is due");
        assert_eq!(
            (first.step.store.as_str(), first.step.reason.as_str()),
            ("a", "second")
        );
        assert_eq!(q.pop_due(now).map(|w| w.step.store), Some(name("b")));
        assert!(q.pop_due(now).is_none());
    }

    #[test]
    fn a_running_store_is_held_and_plans_from_before_its_end_are_stale() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.offer(work("a", "v1"), now);
        let _running = q.pop_due(now);
        let plan_epoch = q.epoch();
        assert_eq!(q.offer(work("a", "v2"), now), Offer::Held);
        assert_eq!(q.depth(), 0, "held work is not queued");
        q.finish(&name("a"), "fp".into(), None, now);
        assert!(
            q.is_stale(&name("a"), plan_epoch),
            "a plan observed before the end"
        );
        assert!(!q.is_stale(&name("a"), q.epoch()));
        assert!(matches!(q.offer(work("a", "v3"), now), Offer::Queued { .. }));
    }

    #[test]
    fn a_failure_requeues_at_the_backoff_and_a_new_desired_state_resets_it() {
        let now = Instant::now();
        let mut q = Queue::default();
        let w = work("a", "v1");
        let fp = w.fingerprint();
        q.offer(w, now);
        let _ = q.pop_due(now);
        let delay = q.retry_delay(&name("a"), &fp);
        q.finish(&name("a"), fp.clone(), Some(delay), now);
        let Offer::Queued { due, retry } = q.offer(work("a", "v1"), now) else {
            panic!("queued")
        };
        assert!(retry && due == now + delay);
        assert!(q.pop_due(now).is_none(), "not before the retry time");
        assert_eq!(q.next_due(), Some(now + delay));
        assert!(q.pop_due(now + delay).is_some());
        // A second failure of the same work waits about twice as long.
        let second = q.retry_delay(&name("a"), &fp);
        assert!(second >= Duration::from_secs(16), "{second:?}");
        q.finish(&name("a"), fp, Some(second), now);
        // The desired state changed: no backoff.
        let mut changed = work("a", "v1");
        changed.revision = "other".into();
        changed.step.action = Action::Delete;
        assert_eq!(
            q.offer(changed, now),
            Offer::Queued {
                due: now,
                retry: false
            }
        );
    }

    #[test]
    fn retry_now_forgets_the_backoff_of_the_named_stores() {
        let now = Instant::now();
        let mut q = Queue::default();
        for s in ["a", "b"] {
            let w = work(s, "v1");
            let fp = w.fingerprint();
            q.offer(w, now);
            let _ = q.pop_due(now);
            q.finish(&name(s), fp, Some(Duration::from_secs(60)), now);
            q.offer(work(s, "v1"), now);
        }
        assert!(q.pop_due(now).is_none(), "both wait for their retry");
        q.retry_now(&[name("a")], now);
        assert_eq!(q.pop_due(now).map(|w| w.step.store), Some(name("a")));
        assert!(q.pop_due(now).is_none(), "b still waits");
        q.retry_now(&[], now);
        assert_eq!(q.pop_due(now).map(|w| w.step.store), Some(name("b")));
    }

    #[test]
    fn withdrawing_and_forgetting() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.offer(work("a", "v1"), now);
        q.withdraw(&name("a"), false);
        assert_eq!((q.depth(), q.next_due()), (0, None));
        q.offer(work("b", "v1"), now);
        q.clear_waiting();
        assert!(q.pop_due(now).is_none());
    }
}
