//! The per-store runner: after each plan, the steps that change something go into a keyed
//! queue ([`queue`]); the runner starts them, at most `max_concurrent` at once, each store on
//! its own, so a slow or failing store never holds back another and the planning loop never
//! waits on helm.
//!
//! Leadership and shutdown are checked every time work is taken off the queue: a daemon that
//! is not the leader, or is shutting down, starts nothing and lets in-flight operations finish.
//! When an operation ends, the runner asks for a new plan, which decides what the store needs
//! next from fresh observations.

pub mod queue;

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::FutureExt;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{Instrument, error, info, info_span, warn};

use crate::cluster::{ClusterOps, ObservedStore};
use crate::execute::{ChartInputs, Done, ExecError, Executor};
use crate::helm::HelmOps;
use crate::metrics::Metrics;
use crate::plan::{Action, Desired, Step};
use crate::record::{Recorder, Transition};
use crate::spec::StoreName;
use queue::{Offer, Queue};

/// One store's step with everything needed to carry it out.
#[derive(Debug, Clone)]
pub struct Work {
    pub step: Step,
    pub namespace: String,
    /// The source revision the step comes from.
    pub revision: Arc<str>,
    pub desired: Option<Desired>,
    pub observed: Option<ObservedStore>,
    pub chart: Option<Arc<ChartInputs>>,
}

impl Work {
    /// Work with nothing but a step (for tests and for stores without a file).
    pub fn for_step(step: Step, namespace: &str) -> Work {
        Work {
            step,
            namespace: namespace.to_string(),
            revision: Arc::from(""),
            desired: None,
            observed: None,
            chart: None,
        }
    }

    /// What this work would change: the same fingerprint means "the same attempt again".
    pub fn fingerprint(&self) -> String {
        let hash = self.desired.as_ref().map_or("-", |d| d.hash.as_str());
        format!("{}:{hash}", self.step.action.code())
    }
}

/// A plan, ready for the runner: one piece of work per store, in store-name order.
#[derive(Debug, Default)]
pub struct Planned {
    pub revision: Arc<str>,
    pub works: Vec<Work>,
    /// [`Runner::epoch`] when the observations behind this plan began.
    pub epoch: u64,
}

/// What a finished task hands back to the loop.
struct Ended {
    store: StoreName,
    fingerprint: String,
    retry_in: Option<std::time::Duration>,
}

pub struct Runner<C, H> {
    executor: Mutex<Arc<Executor<C, H>>>,
    recorder: Arc<Recorder<C>>,
    metrics: Arc<Metrics>,
    queue: Mutex<Queue>,
    wake: Notify,
    max_concurrent: AtomicUsize,
    /// Asks the planning loop for a new plan (after an operation ends).
    replan: Option<mpsc::Sender<()>>,
}

impl<C: ClusterOps, H: HelmOps> Runner<C, H> {
    pub fn new(
        executor: Executor<C, H>,
        max_concurrent: usize,
        replan: Option<mpsc::Sender<()>>,
    ) -> Runner<C, H> {
        Runner {
            recorder: Arc::clone(&executor.recorder),
            metrics: Arc::clone(&executor.metrics),
            executor: Mutex::new(Arc::new(executor)),
            queue: Mutex::default(),
            wake: Notify::new(),
            max_concurrent: AtomicUsize::new(max_concurrent.max(1)),
            replan,
        }
    }

    pub fn recorder(&self) -> &Arc<Recorder<C>> {
        &self.recorder
    }

    /// Operations started after this use the new executor and limit (SIGHUP).
    pub fn reconfigure(&self, executor: Executor<C, H>, max_concurrent: usize) {
        if let Ok(mut e) = self.executor.lock() {
            *e = Arc::new(executor);
        }
        self.max_concurrent.store(max_concurrent.max(1), Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// See [`Queue::epoch`]: read it before observing the cluster for a plan.
    pub fn epoch(&self) -> u64 {
        self.lock().epoch()
    }

    /// Stores with an operation in flight (a plan need not read their release state).
    pub fn running(&self) -> BTreeSet<StoreName> {
        self.lock().running().clone()
    }

    /// Puts a plan's changes into the queue and records every store's planned state. Stores in
    /// flight are held; stores whose operation ended after the plan's observations are skipped
    /// (the plan that follows that operation decides for them).
    pub async fn submit(&self, planned: Planned) {
        let now = Instant::now();
        let mut repairs = Vec::new();
        {
            let mut q = self.lock();
            for work in planned.works {
                let store = &work.step.store;
                if q.is_running(store) || q.is_stale(store, planned.epoch) {
                    continue;
                }
                let repair = if work.step.action.is_change() {
                    match q.offer(work.clone(), now) {
                        Offer::Queued { due, retry } => {
                            self.recorder
                                .planned(&work, true, retry.then(|| wall_clock(due, now)))
                        }
                        Offer::Held => None,
                    }
                } else {
                    q.withdraw(store, work.step.action == Action::Noop);
                    self.recorder.planned(&work, false, None)
                };
                repairs.extend(repair.map(|(ns, status)| (work.step.store.clone(), ns, status)));
            }
        }
        self.publish_depth();
        self.wake.notify_one();
        for (store, namespace, status) in &repairs {
            self.recorder.repair(store, namespace, status).await;
        }
    }

    /// `storekeeper reconcile`: these stores (all, when empty) lose their backoff, so their
    /// queued work starts at once and the next plan's work is due now.
    pub fn retry_now(&self, stores: &[StoreName]) {
        self.lock().retry_now(stores, Instant::now());
        self.wake.notify_one();
    }

    /// Forgets stores that are neither desired nor observed any more.
    pub async fn forget(&self, stores: &[StoreName]) {
        {
            let mut q = self.lock();
            for s in stores {
                q.forget(s);
            }
        }
        for s in stores {
            let _ = self.recorder.record(s, Transition::Forgotten).await;
        }
    }

    /// Starts due work while leading and not stopping, until `stop` turns true and in-flight
    /// operations have finished (or, with `until_idle`, until nothing is queued or running).
    /// A closed `leading` channel means the election task died: nothing more is started, and
    /// the caller (which watches the same channel) stops the daemon.
    pub async fn run(
        self: Arc<Self>,
        mut stop: watch::Receiver<bool>,
        mut leading: watch::Receiver<bool>,
        until_idle: bool,
    ) {
        let mut tasks: JoinSet<Ended> = JoinSet::new();
        let mut stopping = *stop.borrow();
        let mut election_alive = true;
        loop {
            let leader = election_alive && *leading.borrow();
            if !stopping && leader {
                self.start_due(&mut tasks, &leading);
            }
            if tasks.is_empty() && (stopping || (until_idle && self.lock().depth() == 0)) {
                break;
            }
            // Wait for the next due entry only when it could start: with every slot busy, the
            // end of an operation (or a wake-up) is what can change anything.
            let has_room = tasks.len() < self.max_concurrent.load(Ordering::SeqCst);
            let next_due = self.lock().next_due().filter(|_| leader && !stopping && has_room);
            tokio::select! {
                Some(joined) = tasks.join_next() => self.ended(joined),
                () = self.wake.notified() => {}
                () = sleep_until(next_due) => {}
                r = stop.changed(), if !stopping => {
                    stopping = r.is_err() || *stop.borrow();
                    if stopping && !tasks.is_empty() {
                        info!(in_flight = tasks.len(), "Shutting down: letting in-flight operations finish");
                    }
                }
                r = leading.changed(), if election_alive => match r {
                    Err(_) => {
                        election_alive = false;
                        error!("leader election stopped; starting no more operations");
                        self.lock().clear_waiting();
                    }
                    Ok(()) if !*leading.borrow() => {
                        warn!(in_flight = tasks.len(), "Not the leader: starting nothing; in-flight operations finish");
                        self.lock().clear_waiting();
                    }
                    Ok(()) => {}
                },
            }
            self.publish_depth();
        }
    }

    fn start_due(self: &Arc<Self>, tasks: &mut JoinSet<Ended>, leading: &watch::Receiver<bool>) {
        let cap = self.max_concurrent.load(Ordering::SeqCst);
        while tasks.len() < cap && *leading.borrow() {
            let Some(work) = self.lock().pop_due(Instant::now()) else {
                break;
            };
            let me = Arc::clone(self);
            tasks.spawn(async move { me.operate(work).await });
        }
        self.publish_depth();
    }

    /// One operation, start to recorded outcome. A panic becomes a recorded internal error.
    async fn operate(self: Arc<Self>, work: Work) -> Ended {
        let executor = self.executor.lock().map(|e| Arc::clone(&e)).ok();
        let store = work.step.store.clone();
        let span =
            info_span!("store", store = %store, action = work.step.action.code(), revision = %work.revision);
        let started = jiff::Timestamp::now();
        let run = async {
            let exec = executor.ok_or_else(|| ExecError::Internal("executor lock poisoned".into()))?;
            self.recorder
                .record(&store, Transition::Started(&work))
                .await
                .map_err(|source| ExecError::Cluster {
                    stage: crate::execute::Stage::Annotate,
                    source,
                })?;
            exec.run(&work).await
        };
        let result: Result<Done, ExecError> = AssertUnwindSafe(run.instrument(span))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(ExecError::Internal("the operation panicked".into())));
        let fingerprint = work.fingerprint();
        let retry_in = result
            .is_err()
            .then(|| self.lock().retry_delay(&store, &fingerprint));
        let retry_at = retry_in.map(|d| wall_clock(Instant::now() + d, Instant::now()));
        let t = Transition::Finished {
            work: &work,
            result: &result,
            started,
            retry_at,
        };
        let _ = self.recorder.record(&store, t).await;
        Ended {
            store,
            fingerprint,
            retry_in,
        }
    }

    fn ended(&self, joined: Result<Ended, tokio::task::JoinError>) {
        let Ok(ended) = joined else {
            // Tasks are never aborted and panics are caught inside; nothing to account for.
            return;
        };
        self.lock()
            .finish(&ended.store, ended.fingerprint, ended.retry_in, Instant::now());
        if let Some(tx) = &self.replan {
            let _ = tx.try_send(());
        }
    }

    fn publish_depth(&self) {
        let (depth, in_flight) = {
            let q = self.lock();
            (q.depth(), q.in_flight())
        };
        self.metrics.queue_depth.set(depth as i64);
        self.metrics.operations_in_flight.set(in_flight as i64);
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue holds plain data and no code panics while holding it; a poisoned lock's
        // data is still consistent, so keep going rather than stop every store.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The wall-clock time of a monotonic instant (for `next_attempt` in `/stores`).
fn wall_clock(at: Instant, now: Instant) -> jiff::Timestamp {
    let ahead = at.saturating_duration_since(now);
    jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::try_from(ahead).unwrap_or_default())
        .unwrap_or_else(|_| jiff::Timestamp::now())
}

#[cfg(test)]
mod tests;
