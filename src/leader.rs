//! Optional leader election through a `coordination.k8s.io/v1` Lease, the way client-go's
//! `leaderelection` package does it: the Lease records `holderIdentity`, `leaseDurationSeconds`,
//! `acquireTime`, `renewTime` and `leaseTransitions`; every write is a PUT carrying the
//! `resourceVersion` that was read, so of two candidates writing at once the API server accepts
//! one and answers the other 409 Conflict.
//!
//! The decision is a pure function of the Lease as read and of `now` ([`decide`]); the API calls
//! around it are in [`Leader`]. Expiry is judged on the wall clock (`renewTime + leaseDuration <
//! now`), so the candidates' clocks must agree to well within a lease duration (NTP). A leader
//! steps down on its *monotonic* clock one lease duration after the start of its last successful
//! renewal, which is never later than the moment a standby with a synchronized clock may take over.
//!
//! Caveat shared with every lease-based election: a helm operation already running when
//! leadership is lost runs on (killing helm mid-upgrade would strand the release in
//! `pending-upgrade`). The daemon must check leadership before it *starts* work, and keep
//! renewing while it drains (see [`Leader::spawn`]).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// Lease-based leader election (coordination.k8s.io/v1), like client-go's leaderelection:
/// holderIdentity, leaseDurationSeconds, acquireTime, renewTime, leaseTransitions.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaderConfig {
    /// Namespace of the Lease (the daemon's own namespace in-cluster).
    pub namespace: String,
    /// Name of the Lease; every replica of one deployment uses the same name.
    pub name: String,
    /// Unique per process (the pod name in-cluster; see [`default_identity`]).
    pub identity: String,
    /// How long a lease is valid after its last renewal; a standby takes over after this.
    pub lease_duration: Duration,
    /// How often the leader renews, and how often a standby retries. Must be well below
    /// `lease_duration` (client-go's defaults: 15 s lease, 2 s retry).
    pub renew_every: Duration,
}

impl LeaderConfig {
    /// The election settings (validated by `config`) plus this process's identity.
    pub fn from_settings(settings: &crate::config::LeaderSettings) -> LeaderConfig {
        LeaderConfig {
            namespace: settings.namespace.clone(),
            name: settings.lease_name.clone(),
            identity: default_identity(),
            lease_duration: settings.lease_duration,
            renew_every: settings.renew_every,
        }
    }

    /// `leaseDurationSeconds` as written to the Lease: whole seconds, rounded up, at least 1.
    fn lease_seconds(&self) -> i32 {
        let secs = self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
    }
}

/// A failed election attempt. Always retryable: the renew loop tries again after `renew_every`
/// (a 409 Conflict is not an error: it means another candidate won, see
/// [`Leader::try_acquire_or_renew`]).
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("invalid leader election settings: {0}")]
    Config(String),
    #[error("kubernetes API (lease): {0}")]
    Api(#[from] kube::Error),
}

impl LeaderError {
    /// A bounded code for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            LeaderError::Config(_) => "leader_config",
            LeaderError::Api(_) => "lease_api",
        }
    }
}

/// `$POD_NAME` when set (the chart sets it from the downward API), else the host name: who
/// this process is, for Kubernetes Events' `reportingInstance`. The one place `POD_NAME` is read.
pub fn instance_name() -> (String, bool) {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.trim().is_empty()
    {
        return (pod.trim().to_string(), true);
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "storekeeper".to_string());
    (host, false)
}

/// The pod name, else `<hostname>_<8 random hex digits>` like client-go's `hostname_uuid`, so
/// two processes on one host never share an identity.
pub fn default_identity() -> String {
    match instance_name() {
        (pod, true) => pod,
        (host, false) => format!("{host}_{:08x}", rand::rng().random::<u32>()),
    }
}

/// What one attempt does, given the Lease as read.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No Lease yet: create it, holding it.
    Create(LeaseSpec),
    /// The Lease is ours: write this spec (a fresh `renewTime`).
    Renew(LeaseSpec),
    /// Free (no holder) or expired: take it over with this spec (a new `acquireTime`,
    /// `leaseTransitions` + 1).
    Take(LeaseSpec),
    /// Someone else holds a live lease.
    Follow { holder: String },
}

/// Whether a holder's claim has lapsed at `now`: `renewTime` (or `acquireTime` if never renewed)
/// plus the *lease's* `leaseDurationSeconds` is before `now`. A lease with no holder, or with
/// no time at all, is free.
pub fn expired(spec: &LeaseSpec, now: Timestamp, default_duration: Duration) -> bool {
    if holder(spec).is_none() {
        return true;
    }
    let Some(last) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let duration = spec.lease_duration_seconds.map_or_else(
        || SignedDuration::try_from(default_duration).unwrap_or(SignedDuration::MAX),
        |s| SignedDuration::from_secs(i64::from(s.max(0))),
    );
    match last.0.checked_add(duration) {
        Ok(until) => until < now,
        // Overflow: a claim valid "forever" — never expired.
        Err(_) => false,
    }
}

/// Carries over the fields of the spec that leader election does not own (coordinated
/// leader election's `preferredHolder` and `strategy`).
fn keep(new: LeaseSpec, old: &LeaseSpec) -> LeaseSpec {
    LeaseSpec {
        preferred_holder: old.preferred_holder.clone(),
        strategy: old.strategy.clone(),
        ..new
    }
}

/// The holder, if any (an empty string means released).
fn holder(spec: &LeaseSpec) -> Option<&str> {
    spec.holder_identity.as_deref().filter(|h| !h.is_empty())
}

/// The pure core of one attempt: what to write (if anything) given the Lease as read at `now`.
pub fn decide(current: Option<&LeaseSpec>, config: &LeaderConfig, now: Timestamp) -> Decision {
    let fresh = |acquire: MicroTime, transitions: i32| LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(config.lease_seconds()),
        acquire_time: Some(acquire),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let Some(spec) = current else {
        return Decision::Create(fresh(MicroTime(now), 0));
    };
    let transitions = spec.lease_transitions.unwrap_or(0);
    match holder(spec) {
        // Keep our original acquireTime and transition count.
        Some(h) if h == config.identity => Decision::Renew(keep(
            fresh(spec.acquire_time.clone().unwrap_or(MicroTime(now)), transitions),
            spec,
        )),
        Some(h) if !expired(spec, now, config.lease_duration) => Decision::Follow {
            holder: h.to_string(),
        },
        // A change of holder counts a transition, as in client-go.
        _ => Decision::Take(keep(fresh(MicroTime(now), transitions.saturating_add(1)), spec)),
    }
}

/// One candidate in the election. Cloning is cheap (an API handle and the settings).
#[derive(Clone)]
pub struct Leader {
    leases: Api<Lease>,
    config: LeaderConfig,
}

/// Whether an API error is the optimistic-concurrency loss (409 Conflict or AlreadyExists).
fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl Leader {
    pub fn new(client: kube::Client, config: LeaderConfig) -> Leader {
        Leader {
            leases: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    pub fn config(&self) -> &LeaderConfig {
        &self.config
    }

    /// One attempt: create the Lease if absent; take it if it is ours or expired (renewTime +
    /// leaseDuration < now); renew it if ours. Optimistic concurrency through resourceVersion (a
    /// 409 means someone else won: not leader). Returns whether we hold the lease after this
    /// attempt.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, LeaderError> {
        let current = self.leases.get_opt(&self.config.name).await?;
        let now = Timestamp::now();
        let decision = decide(current.as_ref().and_then(|l| l.spec.as_ref()), &self.config, now);
        let result = match decision {
            Decision::Follow { .. } => return Ok(false),
            Decision::Create(spec) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        labels: Some(
                            [(
                                crate::cluster::MANAGED_BY.to_string(),
                                crate::cluster::MANAGER.to_string(),
                            )]
                            .into(),
                        ),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.leases.create(&PostParams::default(), &lease).await.map(drop)
            }
            Decision::Renew(spec) | Decision::Take(spec) => {
                // `current` is Some here; its metadata carries the resourceVersion we read.
                let mut lease = current.unwrap_or_default();
                lease.spec = Some(spec);
                self.leases
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
                    .map(drop)
            }
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the lease up on clean shutdown (clears holderIdentity) so a standby takes over at
    /// once. Does nothing if the lease is not ours. A conflicting write is re-read and retried.
    pub async fn release(&self) -> Result<(), LeaderError> {
        for _ in 0..3 {
            let Some(mut lease) = self.leases.get_opt(&self.config.name).await? else {
                return Ok(());
            };
            let Some(spec) = lease.spec.as_mut() else {
                return Ok(());
            };
            if holder(spec) != Some(self.config.identity.as_str()) {
                return Ok(());
            }
            // As client-go does: no holder, a 1 s duration, times set to now.
            let now = MicroTime(Timestamp::now());
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.acquire_time = Some(now.clone());
            spec.renew_time = Some(now);
            match self
                .leases
                .replace(&self.config.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => {
                    info!(lease = %self.config.name, identity = %self.config.identity, "Released the lease");
                    return Ok(());
                }
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Spawns the renew loop: publishes leadership on the returned watch (true = leader). Losing
    /// the lease (renew failed past the lease duration, or another holder) flips it to false
    /// immediately.
    ///
    /// `shutdown` should turn true once the daemon has *finished* its in-flight work, not at the
    /// first SIGTERM: the loop keeps renewing until then (so no standby starts while our helm
    /// still runs), then releases the lease if it holds it and publishes false. The sender is
    /// dropped when the loop ends (or if it panics), so a closed channel means "not leader".
    /// Dropping the `shutdown` sender counts as shutdown.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(self.run(tx, shutdown));
        rx
    }

    /// What an attempt means for our claim: until when we lead, if at all.
    fn settle(
        &self,
        attempt: Result<Result<bool, LeaderError>, tokio::time::error::Elapsed>,
        started: Instant,
        leading_until: Option<Instant>,
        publish: &impl Fn(bool) -> bool,
    ) -> Option<Instant> {
        let cfg = &self.config;
        match attempt {
            Ok(Ok(true)) => {
                if publish(true) {
                    info!(lease = %cfg.name, identity = %cfg.identity, "Became leader");
                }
                Some(started + cfg.lease_duration)
            }
            Ok(Ok(false)) => {
                if publish(false) {
                    warn!(lease = %cfg.name, identity = %cfg.identity, "Lost leadership: another holder");
                }
                None
            }
            Ok(Err(e)) => {
                warn!(lease = %cfg.name, error = %e, code = e.code(), "Lease attempt failed");
                leading_until
            }
            Err(_) => {
                warn!(lease = %cfg.name, code = "lease_timeout", "Lease attempt timed out");
                leading_until
            }
        }
    }

    /// The leader renews every `renew_every` (never past its claim); standbys retry with up
    /// to 20 % jitter so they don't hit the API in lockstep.
    fn next_wait(&self, leading_until: Option<Instant>) -> Duration {
        let every = self.config.renew_every;
        match leading_until {
            Some(u) => every.min(u.saturating_duration_since(Instant::now())),
            None => every.mul_f64(1.0 + rand::rng().random_range(0.0..0.2)),
        }
    }

    async fn run(self, tx: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
        let cfg = &self.config;
        // When we lead: the instant by which we must have renewed again, else step down.
        let mut leading_until: Option<Instant> = None;
        let publish = |leader: bool| {
            tx.send_if_modified(|v| {
                let changed = *v != leader;
                *v = leader;
                changed
            })
        };
        loop {
            if *shutdown.borrow() {
                break;
            }
            if leading_until.is_some_and(|u| Instant::now() >= u) {
                leading_until = None;
                if publish(false) {
                    warn!(lease = %cfg.name, identity = %cfg.identity, "Lost leadership: could not renew in time");
                }
            }
            let started = Instant::now();
            // An attempt never outlives our claim: a hung request must not keep us leader.
            let limit = leading_until.map_or(cfg.renew_every.max(Duration::from_secs(1)), |u| {
                u.saturating_duration_since(started)
            });
            let attempt = tokio::select! {
                r = tokio::time::timeout(limit, self.try_acquire_or_renew()) => r,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            leading_until = self.settle(attempt, started, leading_until, &publish);
            let wait = self.next_wait(leading_until);
            tokio::select! {
                _ = tokio::time::sleep_until(started + wait) => {}
                // True, or the sender is gone: either way, stop.
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        if leading_until.is_some() {
            // Bounded: a dead API must not hold up the exit; the lease then simply expires.
            match tokio::time::timeout(cfg.lease_duration, self.release()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(lease = %cfg.name, error = %e, "Cannot release the lease"),
                Err(_) => warn!(lease = %cfg.name, "Releasing the lease timed out"),
            }
        }
        publish(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(identity: &str) -> LeaderConfig {
        LeaderConfig {
            namespace: "storekeeper".into(),
            name: "storekeeper-leader".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(2),
        }
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("valid timestamp")
    }

    fn held(by: &str, renewed: i64, duration: i32, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(by.into()),
            lease_duration_seconds: Some(duration),
            acquire_time: Some(MicroTime(t(0))),
            renew_time: Some(MicroTime(t(renewed))),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn expiry_is_renew_time_plus_the_leases_duration() {
        let spec = held("a", 10, 15, 0);
        let d = Duration::from_secs(99);
        assert!(!expired(&spec, t(10), d));
        assert!(!expired(&spec, t(25), d), "exactly at the boundary is still held");
        assert!(expired(&spec, t(26), d));
        // The lease's own duration wins over ours.
        assert!(expired(&held("a", 10, 1, 0), t(12), d));
    }

    #[test]
    fn expiry_falls_back_to_acquire_time_then_free() {
        let mut spec = held("a", 0, 15, 0);
        spec.renew_time = None;
        assert!(!expired(&spec, t(15), Duration::from_secs(15)));
        assert!(expired(&spec, t(16), Duration::from_secs(15)));
        spec.acquire_time = None;
        assert!(expired(&spec, t(0), Duration::from_secs(15)), "no times: free");
        // No duration on the lease: ours applies.
        let mut spec = held("a", 10, 15, 0);
        spec.lease_duration_seconds = None;
        assert!(!expired(&spec, t(13), Duration::from_secs(5)));
        assert!(expired(&spec, t(16), Duration::from_secs(5)));
    }

    #[test]
    fn released_lease_is_free() {
        let mut spec = held("a", 10, 15, 3);
        spec.holder_identity = Some(String::new());
        assert!(expired(&spec, t(10), Duration::from_secs(15)));
        spec.holder_identity = None;
        assert!(expired(&spec, t(10), Duration::from_secs(15)));
    }

    #[test]
    fn absent_lease_is_created_held_by_us() {
        let Decision::Create(spec) = decide(None, &cfg("me"), t(5)) else {
            panic!("expected create")
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.acquire_time, Some(MicroTime(t(5))));
        assert_eq!(spec.renew_time, Some(MicroTime(t(5))));
        assert_eq!(spec.lease_transitions, Some(0));
    }

    #[test]
    fn our_lease_is_renewed_keeping_acquire_time_and_transitions() {
        // Even an expired lease of ours is simply renewed (nobody else took it).
        for now in [12, 100] {
            let Decision::Renew(spec) = decide(Some(&held("me", 10, 15, 4)), &cfg("me"), t(now)) else {
                panic!("expected renew")
            };
            assert_eq!(spec.acquire_time, Some(MicroTime(t(0))));
            assert_eq!(spec.renew_time, Some(MicroTime(t(now))));
            assert_eq!(spec.lease_transitions, Some(4));
        }
    }

    #[test]
    fn a_live_lease_of_another_is_followed() {
        assert_eq!(
            decide(Some(&held("other", 10, 15, 0)), &cfg("me"), t(25)),
            Decision::Follow {
                holder: "other".into()
            }
        );
    }

    #[test]
    fn an_expired_or_released_lease_is_taken_counting_a_transition() {
        let Decision::Take(spec) = decide(Some(&held("other", 10, 15, 2)), &cfg("me"), t(26)) else {
            panic!("expected take")
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.acquire_time, Some(MicroTime(t(26))));
        assert_eq!(spec.renew_time, Some(MicroTime(t(26))));
        assert_eq!(spec.lease_transitions, Some(3));
        let mut released = held("other", 10, 1, 2);
        released.holder_identity = None;
        assert!(matches!(
            decide(Some(&released), &cfg("me"), t(10)),
            Decision::Take(_)
        ));
    }

    #[test]
    fn lease_seconds_round_up() {
        let mut c = cfg("me");
        c.lease_duration = Duration::from_millis(1500);
        assert_eq!(c.lease_seconds(), 2);
        c.lease_duration = Duration::from_millis(10);
        assert_eq!(c.lease_seconds(), 1);
    }

    /// A client for an address where nothing listens: every attempt fails fast.
    fn unreachable() -> kube::Client {
        let url = "http://127.0.0.1:9".parse().expect("uri");
        kube::Client::try_from(kube::Config::new(url)).expect("client")
    }

    #[tokio::test]
    async fn loop_without_api_never_leads_and_stops_when_the_shutdown_sender_drops() {
        let mut c = cfg("me");
        c.renew_every = Duration::from_millis(50);
        let (stop, stop_rx) = watch::channel(false);
        let mut rx = Leader::new(unreachable(), c).spawn(stop_rx);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!*rx.borrow(), "no API, no leadership");
        drop(stop);
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            while rx.changed().await.is_ok() {}
        })
        .await;
        assert!(ended.is_ok(), "the loop ends when the shutdown sender is dropped");
    }

    #[test]
    fn identity_is_unique_per_process_without_pod_name() {
        if std::env::var("POD_NAME").is_err() {
            assert_ne!(default_identity(), default_identity());
        }
    }
}
