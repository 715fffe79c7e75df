//! The Job controller and the kubelet, as far as tests need them: a Job's status (complete, or
//! failed with the conditions and reason the real controller sets) and its pods, each with
//! the labels and owner reference the Job controller gives them and, once run, container
//! statuses with exit codes and termination messages.
//!
//! A container cannot run here, so what it would do comes from annotations on the Job's pod
//! template (a CronJob's job template carries them into every Job made from it):
//! [`EXIT_CODE_ANNOTATION`] (the main container's exit code; 0 by default) and
//! [`MESSAGE_ANNOTATION`] (what it writes to `/dev/termination-log`). `NEVER_READY_ANNOTATION`
//! keeps a Job running forever, its pod Running.

use serde_json::{Value, json};

use crate::kinds::{Kind, by_plural};
use crate::store::{Store, now};

/// The exit code of a Job's main (last) container: non-zero fails the Job.
pub const EXIT_CODE_ANNOTATION: &str = "testbed.storekeeper.dev/exit-code";
/// The main container's termination message.
pub const MESSAGE_ANNOTATION: &str = "testbed.storekeeper.dev/termination-message";

fn template_annotation<'a>(job: &'a Value, key: &str) -> Option<&'a str> {
    job["spec"]["template"]["metadata"]["annotations"][key].as_str()
}

/// How a Job ends, decided from its template: the main container's name and exit code.
fn verdict(job: &Value) -> (String, i64) {
    let main = job["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|c| c.last())
        .and_then(|c| c["name"].as_str())
        .unwrap_or_default()
        .to_string();
    let code = template_annotation(job, EXIT_CODE_ANNOTATION)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (main, code)
}

/// Whether a `podFailurePolicy` rule fails the Job at once for this container's exit code.
fn fail_job_rule(job: &Value, container: &str, code: i64) -> bool {
    let rules = job["spec"]["podFailurePolicy"]["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    rules.iter().any(|r| {
        let on = &r["onExitCodes"];
        let listed = on["values"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v.as_i64() == Some(code)));
        let matches = match on["operator"].as_str() {
            Some("In") => listed,
            Some("NotIn") => !listed,
            _ => false,
        };
        r["action"] == "FailJob" && on["containerName"].as_str().is_none_or(|c| c == container) && matches
    })
}

fn condition(kind: &str, reason: &str, message: &str, time: &str) -> Value {
    json!({"type": kind, "status": "True", "reason": reason, "message": message,
           "lastProbeTime": time, "lastTransitionTime": time})
}

/// The status of a Job that has run to its end (or runs forever when never ready): how many
/// pods failed, and the conditions the real controller sets (1.31+: `SuccessCriteriaMet` then
/// `Complete`; `FailureTarget` then `Failed`).
pub fn status(job: &Value, old: Option<&Value>, never_ready: bool) -> Value {
    let time = now();
    let kept = |field: &str| {
        old.and_then(|o| o["status"][field].as_str())
            .map_or_else(|| json!(time), |t| json!(t))
    };
    if never_ready {
        return json!({"startTime": kept("startTime"), "active": 1, "ready": 0});
    }
    let (main, code) = verdict(job);
    if code == 0 {
        return json!({"startTime": kept("startTime"), "completionTime": kept("completionTime"),
            "succeeded": job["spec"]["completions"],
            "conditions": [condition("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods", &time),
                           condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods", &time)]});
    }
    let (reason, message, failed) = if fail_job_rule(job, &main, code) {
        let message =
            format!("Container {main} for pod failed with exit code {code} matching FailJob rule at index 0");
        ("PodFailurePolicy", message, 1)
    } else {
        let attempts = job["spec"]["backoffLimit"].as_i64().unwrap_or(6) + 1;
        (
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit".to_string(),
            attempts,
        )
    };
    json!({"startTime": kept("startTime"), "failed": failed, "ready": 0,
        "conditions": [condition("FailureTarget", reason, &message, &time), condition("Failed", reason, &message, &time)]})
}

/// After a Job is first stored: its pods (one per attempt, at most 3 kept here), as the Job
/// controller creates them and the kubelet leaves them.
pub fn create_pods(store: &mut Store, job: &Value, never_ready: bool) {
    let Some(pods) = by_plural("", "v1", "pods") else {
        return;
    };
    let meta = &job["metadata"];
    let (Some(ns), Some(name), Some(uid)) = (
        meta["namespace"].as_str(),
        meta["name"].as_str(),
        meta["uid"].as_str(),
    ) else {
        return;
    };
    let owned = store
        .list(pods, Some(ns), &Default::default(), &Default::default())
        .into_iter()
        .any(|p| p["metadata"]["ownerReferences"][0]["uid"] == uid);
    if owned {
        return;
    }
    let attempts = if never_ready {
        1
    } else {
        job["status"]["failed"].as_i64().unwrap_or(1).clamp(1, 3)
    };
    for _ in 0..attempts {
        let pod = pod_for(job, ns, name, uid, never_ready);
        // Cannot fail: the namespace exists (the Job is in it) and the name is generated.
        let _ = store.create(pods, Some(ns), pod, "kube-controller-manager");
    }
}

fn pod_for(job: &Value, ns: &str, name: &str, uid: &str, never_ready: bool) -> Value {
    let template = &job["spec"]["template"];
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", uid),
        ("batch.kubernetes.io/job-name", name),
        ("controller-uid", uid),
        ("job-name", name),
    ] {
        labels[k] = json!(v);
    }
    let owner = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                        "controller": true, "blockOwnerDeletion": true}]);
    let mut pod = json!({
        "metadata": {"generateName": format!("{name}-"), "namespace": ns, "labels": labels,
                     "annotations": template["metadata"]["annotations"], "ownerReferences": owner},
        "spec": template["spec"],
    });
    if !never_ready {
        pod["status"] = finished_pod_status(job);
    }
    pod
}

/// A pod whose containers ran: init containers exited 0, the main container with the Job's
/// verdict and its termination message, the others 0.
fn finished_pod_status(job: &Value) -> Value {
    let (main, code) = verdict(job);
    let message = template_annotation(job, MESSAGE_ANNOTATION).unwrap_or_default();
    let time = now();
    let terminated = |c: &Value, exit: i64, msg: &str| {
        let reason = if exit == 0 { "Completed" } else { "Error" };
        json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": exit, "reason": reason, "message": msg,
                                        "startedAt": time, "finishedAt": time}}})
    };
    let list = |key: &str, main_too: bool| -> Value {
        job["spec"]["template"]["spec"][key]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| match main_too && c["name"] == main.as_str() {
                        true => terminated(c, code, message),
                        false => terminated(c, 0, ""),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    json!({"phase": if code == 0 { "Succeeded" } else { "Failed" }, "startTime": time,
           "initContainerStatuses": list("initContainers", false), "containerStatuses": list("containers", true)})
}

/// Whether a pod's status is a finished one this module wrote (admission then keeps it).
pub fn is_finished_pod(kind: &Kind, obj: &Value) -> bool {
    kind.kind == "Pod" && matches!(obj["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::LabelSelector;

    fn store() -> Store {
        let mut s = Store::new();
        let ns = by_plural("", "v1", "namespaces").expect("kind");
        s.create(ns, None, json!({"metadata": {"name": "a"}}), "t")
            .expect("namespace");
        s
    }

    fn job(annotations: Value, policy: Value) -> Value {
        json!({"metadata": {"name": "backup"},
               "spec": {"backoffLimit": 1, "podFailurePolicy": policy,
                        "template": {"metadata": {"labels": {"app": "b"}, "annotations": annotations},
                                     "spec": {"restartPolicy": "Never",
                                              "initContainers": [{"name": "dump", "image": "db"}],
                                              "containers": [{"name": "restic", "image": "r"}]}}}})
    }

    fn pods_of(s: &Store, uid: &str) -> Vec<Value> {
        let pods = by_plural("", "v1", "pods").expect("kind");
        let sel =
            LabelSelector::parse(&format!("batch.kubernetes.io/controller-uid={uid}")).expect("selector");
        s.list(pods, Some("a"), &sel, &Default::default())
    }

    #[test]
    fn a_job_completes_and_its_pod_carries_the_termination_message() {
        let mut s = store();
        let jobs = by_plural("batch", "v1", "jobs").expect("kind");
        let j = s
            .create(
                jobs,
                Some("a"),
                job(json!({MESSAGE_ANNOTATION: "result=ok\n"}), json!(null)),
                "t",
            )
            .expect("create");
        assert_eq!(j["status"]["conditions"][1]["type"], "Complete");
        let pods = pods_of(&s, j["metadata"]["uid"].as_str().unwrap_or_default());
        assert_eq!(pods.len(), 1);
        let p = &pods[0];
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Job");
        assert_eq!(p["metadata"]["labels"]["job-name"], "backup");
        assert_eq!(p["status"]["phase"], "Succeeded");
        assert_eq!(
            p["status"]["containerStatuses"][0]["state"]["terminated"]["message"],
            "result=ok\n"
        );
        assert_eq!(
            p["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
            0
        );
    }

    #[test]
    fn a_failing_job_retries_to_its_backoff_limit_or_fails_at_once_on_a_fail_job_rule() {
        let mut s = store();
        let jobs = by_plural("batch", "v1", "jobs").expect("kind");
        let j = s
            .create(
                jobs,
                Some("a"),
                job(json!({EXIT_CODE_ANNOTATION: "5"}), json!(null)),
                "t",
            )
            .expect("create");
        assert_eq!(j["status"]["conditions"][1]["type"], "Failed");
        assert_eq!(j["status"]["conditions"][1]["reason"], "BackoffLimitExceeded");
        assert_eq!(j["status"]["failed"], 2, "backoffLimit 1: two attempts");
        let pods = pods_of(&s, j["metadata"]["uid"].as_str().unwrap_or_default());
        assert_eq!(pods.len(), 2);
        assert_eq!(
            pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            5
        );
        assert!(j["status"].get("completionTime").is_none());
        let rule = json!({"rules": [{"action": "FailJob", "onExitCodes": {"containerName": "restic", "operator": "In", "values": [6]}}]});
        let mut denied = job(json!({EXIT_CODE_ANNOTATION: "6"}), rule);
        denied["metadata"]["name"] = json!("denied");
        let j = s.create(jobs, Some("a"), denied, "t").expect("create");
        assert_eq!(j["status"]["conditions"][1]["reason"], "PodFailurePolicy");
        assert_eq!(j["status"]["failed"], 1);
    }
}
