//! Scenario suite: the real helm 3 and helm 4 binaries against the `testbed` API server, plus a
//! kube-rs client, so the flows the daemon relies on are proven against real clients.
//!
//! Every helm scenario runs once per major version (`helm3_…` / `helm4_…`). A failing test
//! prints the helm output it saw, and `TestApi`'s drop prints the tail of the request log.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testbed::tools::HelmEnv;
use testbed::{NEVER_READY_ANNOTATION, TestApi};

/// The test chart: a ConfigMap from values, a Deployment (never ready when `neverReady` is set)
/// that mounts a PVC, a Service and a Job.
const CHART: &[(&str, &str)] = &[
    ("Chart.yaml", "apiVersion: v2\nname: shop\nversion: 0.1.0\n"),
    ("values.yaml", "message: hello\nneverReady: false\n"),
    (
        "templates/configmap.yaml",
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  message: {{ .Values.message | quote }}
"#,
    ),
    (
        "templates/deployment.yaml",
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
  {{- if .Values.neverReady }}
  annotations:
    NEVER_READY: "true"
  {{- end }}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: {{ .Release.Name }}-web
  template:
    metadata:
      labels:
        app: {{ .Release.Name }}-web
    spec:
      containers:
        - name: web
          image: nginx:1.27
          env:
            - name: MESSAGE
              value: {{ .Values.message | quote }}
          ports:
            - containerPort: 8080
          volumeMounts:
            - name: data
              mountPath: /data
      volumes:
        - name: data
          persistentVolumeClaim:
            claimName: {{ .Release.Name }}-data
"#,
    ),
    (
        "templates/service.yaml",
        r#"apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-web
spec:
  selector:
    app: {{ .Release.Name }}-web
  ports:
    - port: 80
      targetPort: 8080
"#,
    ),
    (
        "templates/pvc.yaml",
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ .Release.Name }}-data
spec:
  accessModes: ["ReadWriteOnce"]
  resources:
    requests:
      storage: 1Gi
"#,
    ),
    (
        "templates/job.yaml",
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-migrate
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: busybox:1.36
          command: ["true"]
"#,
    ),
];

/// One scenario's world: a server, an isolated helm of one major version, the chart on disk.
struct Bed {
    api: TestApi,
    helm: HelmEnv,
    major: u8,
    chart: tempfile::TempDir,
}

impl Bed {
    fn new(major: u8) -> Bed {
        let api = TestApi::start();
        let helm = HelmEnv::new(&api, major);
        let chart = tempfile::tempdir().expect("chart tempdir");
        for (path, text) in CHART {
            let file = chart.path().join(path);
            std::fs::create_dir_all(file.parent().unwrap_or(Path::new("."))).expect("mkdir");
            std::fs::write(file, text.replace("NEVER_READY", NEVER_READY_ANNOTATION))
                .expect("write chart file");
        }
        Bed {
            api,
            helm,
            major,
            chart,
        }
    }

    fn chart(&self) -> &str {
        self.chart.path().to_str().expect("utf-8 tempdir path")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.helm.command().args(args).output().expect("run helm")
    }

    /// Runs helm and returns stdout; panics with helm's output if it failed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "helm{} {args:?} failed\nstdout: {}\nstderr: {}",
            self.major,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs helm expecting failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "helm{} {args:?} unexpectedly succeeded\nstdout: {}",
            self.major,
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("helm{} {args:?}: not JSON ({e}): {out}", self.major))
    }

    /// The flag that rolls a failed upgrade back: renamed in helm 4.
    fn rollback_flag(&self) -> &'static str {
        if self.major == 3 {
            "--atomic"
        } else {
            "--rollback-on-failure"
        }
    }

    fn config_message(&self, ns: &str) -> Value {
        let cm = self
            .api
            .get(&format!("/api/v1/namespaces/{ns}/configmaps/shop-config"))
            .expect("the release ConfigMap exists");
        cm["data"]["message"].clone()
    }
}

fn install_upgrade_uninstall(major: u8) {
    let bed = Bed::new(major);
    let labels = json!({"storekeeper.dev/store": "a", "team": "blue"});
    bed.api.insert(
        "/api/v1/namespaces",
        json!({"metadata": {"name": "store-a", "labels": labels}}),
    );
    let keeps_labels = |when: &str| {
        let ns = bed.api.get("/api/v1/namespaces/store-a").expect("namespace");
        for (k, v) in labels.as_object().into_iter().flatten() {
            assert_eq!(&ns["metadata"]["labels"][k], v, "label {k} lost {when}: {ns}");
        }
    };

    let chart = bed.chart();
    bed.ok(&[
        "install",
        "shop",
        chart,
        "-n",
        "store-a",
        "--create-namespace",
        "--set",
        "message=one",
    ]);
    keeps_labels("on install");
    assert_eq!(bed.config_message("store-a"), "one");

    bed.ok(&["upgrade", "shop", chart, "-n", "store-a", "--set", "message=two"]);
    keeps_labels("on upgrade");
    assert_eq!(bed.config_message("store-a"), "two");

    let list = bed.json(&["list", "-A", "-o", "json"]);
    let releases = list.as_array().expect("a JSON array");
    assert_eq!(releases.len(), 1, "{list}");
    let r = &releases[0];
    assert_eq!((&r["name"], &r["namespace"]), (&json!("shop"), &json!("store-a")));
    assert_eq!((&r["revision"], &r["status"]), (&json!("2"), &json!("deployed")));

    let status = bed.json(&["status", "shop", "-n", "store-a", "-o", "json"]);
    assert_eq!(status["info"]["status"], "deployed");
    assert_eq!(status["version"], 2);

    let values = bed.json(&["get", "values", "shop", "-n", "store-a", "-o", "json"]);
    assert_eq!(values, json!({"message": "two"}));

    bed.ok(&["uninstall", "shop", "-n", "store-a"]);
    for path in [
        "/api/v1/namespaces/store-a/configmaps",
        "/api/v1/namespaces/store-a/services",
        "/api/v1/namespaces/store-a/persistentvolumeclaims",
        "/api/v1/namespaces/store-a/secrets",
        "/apis/apps/v1/namespaces/store-a/deployments",
        "/apis/apps/v1/namespaces/store-a/replicasets",
        "/apis/batch/v1/namespaces/store-a/jobs",
    ] {
        assert_eq!(
            bed.api.list(path),
            Vec::<Value>::new(),
            "{path} not empty after uninstall"
        );
    }
    keeps_labels("after uninstall");
    let list = bed.json(&["list", "-A", "-o", "json"]);
    assert_eq!(list, json!([]));
}

fn wait_succeeds(major: u8) {
    let bed = Bed::new(major);
    let chart = bed.chart();
    bed.ok(&[
        "install",
        "shop",
        chart,
        "-n",
        "fresh",
        "--create-namespace",
        "--wait",
        "--wait-for-jobs",
        "--timeout",
        "30s",
    ]);
    let ns = bed
        .api
        .get("/api/v1/namespaces/fresh")
        .expect("namespace created");
    assert_eq!(ns["metadata"]["labels"]["name"], "fresh", "{ns}");
    assert_eq!(ns["status"]["phase"], "Active");
    let status = bed.json(&["status", "shop", "-n", "fresh", "-o", "json"]);
    assert_eq!(status["info"]["status"], "deployed");
    let deploy = bed
        .api
        .get("/apis/apps/v1/namespaces/fresh/deployments/shop-web")
        .expect("deployment");
    assert_eq!(deploy["status"]["availableReplicas"], 1);
}

fn wait_times_out_on_never_ready(major: u8) {
    let bed = Bed::new(major);
    let chart = bed.chart();
    let started = Instant::now();
    bed.fails(&[
        "install",
        "shop",
        chart,
        "-n",
        "slow",
        "--create-namespace",
        "--wait",
        "--timeout",
        "5s",
        "--set",
        "neverReady=true",
    ]);
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "gave up before its timeout"
    );
    let status = bed.json(&["status", "shop", "-n", "slow", "-o", "json"]);
    assert_eq!(status["info"]["status"], "failed");
}

fn failed_upgrade_rolls_back(major: u8) {
    let bed = Bed::new(major);
    let chart = bed.chart();
    bed.ok(&[
        "install",
        "shop",
        chart,
        "-n",
        "shop",
        "--create-namespace",
        "--wait",
        "--timeout",
        "30s",
    ]);
    let flag = bed.rollback_flag();
    bed.fails(&[
        "upgrade",
        "shop",
        chart,
        "-n",
        "shop",
        flag,
        "--timeout",
        "3s",
        "--set",
        "neverReady=true",
        "--set",
        "message=broken",
    ]);
    let history = bed.json(&["history", "shop", "-n", "shop", "-o", "json"]);
    let revisions = history.as_array().expect("a JSON array");
    assert_eq!(revisions.len(), 3, "{history}");
    assert_eq!(revisions[1]["status"], "failed");
    assert_eq!(revisions[2]["status"], "deployed");
    assert_eq!(revisions[2]["description"], "Rollback to 1");
    assert_eq!(bed.config_message("shop"), "hello");
    let deploy = bed
        .api
        .get("/apis/apps/v1/namespaces/shop/deployments/shop-web")
        .expect("deployment");
    assert!(
        deploy["metadata"]["annotations"][NEVER_READY_ANNOTATION].is_null(),
        "rollback left the never-ready annotation: {deploy}"
    );
    assert_eq!(deploy["status"]["availableReplicas"], 1);
}

support::both_helms!(
    install_upgrade_uninstall,
    wait_succeeds,
    wait_times_out_on_never_ready,
    failed_upgrade_rolls_back,
);

mod kube_client {
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
    use kube::config::{KubeConfigOptions, Kubeconfig};
    use kube::runtime::watcher;
    use serde_json::json;
    use std::time::{Duration, Instant};
    use testbed::TestApi;

    async fn client(api: &TestApi) -> kube::Client {
        let kubeconfig = Kubeconfig::read_from(api.kubeconfig()).expect("read the kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig to config");
        kube::Client::try_from(config).expect("build a client")
    }

    fn names(list: Vec<Namespace>) -> Vec<String> {
        let mut names: Vec<String> = list.into_iter().filter_map(|n| n.metadata.name).collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn lists_namespaces_by_label_selector() {
        let api = TestApi::start();
        for (name, labels) in [
            ("a", json!({"tier": "gold", "team": "x"})),
            ("b", json!({"tier": "silver"})),
            ("c", json!({})),
        ] {
            api.insert(
                "/api/v1/namespaces",
                json!({"metadata": {"name": name, "labels": labels}}),
            );
        }
        let namespaces: Api<Namespace> = Api::all(client(&api).await);
        for (selector, want) in [
            ("tier=gold", vec!["a"]),
            ("tier==gold,team=x", vec!["a"]),
            ("tier!=gold", vec!["b", "c"]),
            ("tier in (gold,silver)", vec!["a", "b"]),
            ("tier notin (gold)", vec!["b", "c"]),
            ("!tier", vec!["c"]),
            ("team", vec!["a"]),
        ] {
            let list = namespaces
                .list(&ListParams::default().labels(selector))
                .await
                .unwrap_or_else(|e| panic!("list {selector}: {e}"));
            // The API server's own namespaces (default, kube-system, ...) match some selectors too.
            let ours: Vec<String> = names(list.items)
                .into_iter()
                .filter(|n| ["a", "b", "c"].contains(&n.as_str()))
                .collect();
            assert_eq!(ours, want, "selector {selector}");
        }
    }

    #[tokio::test]
    async fn watches_namespaces() {
        let api = TestApi::start();
        let namespaces: Api<Namespace> = Api::all(client(&api).await);
        let list = namespaces
            .list(&ListParams::default())
            .await
            .expect("list namespaces");
        let rv = list.metadata.resource_version.expect("list resourceVersion");
        let mut events = namespaces
            .watch(&WatchParams::default().labels("watched=yes"), &rv)
            .await
            .expect("watch")
            .boxed();

        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "w", "labels": {"watched": "yes"}}}))
                .expect("namespace");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("create");
        let patch = Patch::Merge(json!({"metadata": {"labels": {"extra": "1"}}}));
        namespaces
            .patch("w", &PatchParams::default(), &patch)
            .await
            .expect("merge patch");
        namespaces
            .delete("w", &DeleteParams::default())
            .await
            .expect("delete");

        let mut seen = Vec::new();
        while seen.len() < 3 {
            let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
                .await
                .expect("a watch event within 10s")
                .expect("the watch stays open")
                .expect("a decodable event");
            seen.push(match ev {
                WatchEvent::Added(n) => ("ADDED", n.metadata.labels),
                WatchEvent::Modified(n) => ("MODIFIED", n.metadata.labels),
                WatchEvent::Deleted(n) => ("DELETED", n.metadata.labels),
                other => panic!("unexpected event {other:?}"),
            });
        }
        let kinds: Vec<&str> = seen.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);
        let labels = seen[1].1.clone().unwrap_or_default();
        assert_eq!(labels.get("extra").map(String::as_str), Some("1"));
    }

    /// The fault knobs later tests rely on: injected 500s, delays, refused connections.
    #[tokio::test]
    async fn fault_knobs() {
        let api = TestApi::start();
        let namespaces: Api<Namespace> = Api::all(client(&api).await);
        let lp = ListParams::default();
        let list = || namespaces.list(&lp);

        api.fail_next(1, "GET", "/api/v1/namespaces");
        let err = list().await.expect_err("the injected 500");
        assert!(matches!(err, kube::Error::Api(_)), "{err:?}");
        list().await.expect("only one request fails");

        api.set_delay(Duration::from_millis(300));
        let started = Instant::now();
        list().await.expect("a delayed list");
        assert!(started.elapsed() >= Duration::from_millis(300));
        api.set_delay(Duration::ZERO);

        api.reset_counters();
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "n"}})).expect("ns");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("create");
        assert_eq!(api.write_count(), 1, "{:?}", api.requests());

        api.refuse_for(Duration::from_millis(800));
        list().await.expect_err("connections are refused");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        list().await.expect("the server listens again on the same port");
    }

    /// The runtime watcher with streaming lists exercises `sendInitialEvents` and the bookmark.
    #[tokio::test]
    async fn runtime_watcher_streaming_list() {
        let api = TestApi::start();
        api.insert(
            "/api/v1/namespaces",
            json!({"metadata": {"name": "s1", "labels": {"app": "x"}}}),
        );
        let namespaces: Api<Namespace> = Api::all(client(&api).await);
        let cfg = watcher::Config::default().labels("app=x").streaming_lists();
        let mut stream = watcher(namespaces, cfg).boxed();
        let mut init_apply = Vec::new();
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
                .await
                .expect("a watcher event within 10s")
                .expect("no watcher error")
                .expect("the stream stays open");
            match ev {
                watcher::Event::Init => {}
                watcher::Event::InitApply(n) => init_apply.push(n.metadata.name.unwrap_or_default()),
                watcher::Event::InitDone => break,
                other => panic!("unexpected event before InitDone: {other:?}"),
            }
        }
        assert_eq!(init_apply, ["s1"]);
        api.insert(
            "/api/v1/namespaces",
            json!({"metadata": {"name": "s2", "labels": {"app": "x"}}}),
        );
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .expect("a watcher event within 10s")
            .expect("no watcher error")
            .expect("the stream stays open");
        assert!(
            matches!(ev, watcher::Event::Apply(ref n) if n.metadata.name.as_deref() == Some("s2")),
            "{ev:?}"
        );
        assert!(api.remove("/api/v1/namespaces/s2"));
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .expect("a watcher event within 10s")
            .expect("no watcher error")
            .expect("the stream stays open");
        assert!(matches!(ev, watcher::Event::Delete(_)), "{ev:?}");
    }
}
