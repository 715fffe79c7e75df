//! The operator's policy over store files (`[policy]` in `storekeeper.toml`): which `[values]`
//! keys a store may set, which hosts and plans it may use, and the caps on how many stores exist.
//!
//! This module is the model and the matching, with no I/O: `config` reads the policy from the
//! daemon config, `spec` applies the per-file rules while it reads a store file (a violation makes
//! that store Invalid, never deleted), and the plan applies the counting caps (`max_stores`,
//! `max_stores_per_owner`, `max_creations_per_hour`), which need the whole snapshot.
//!
//! `[values]` keys are dotted paths (`wordpress.resources.limits.memory`). A pattern such as
//! `wordpress.resources.*` allows every path it matches *and everything below it*. Guard-rail keys
//! (quota, network policy, images, security contexts...) are listed once, in [`GUARD_RAILS`]: a
//! pattern allows one only when its literal prefix (the segments before its first glob) reaches
//! the guard-rail key, so `"*"` never lifts a quota but `"networkPolicy.enabled"` does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::num::NonZeroU32;
use std::sync::LazyLock;

use globset::{GlobBuilder, GlobMatcher};

use super::{Owner, Plan};

/// Patterns longer than this cannot match anything: `values` nest at most this deep.
const MAX_SEGMENTS: usize = super::read::MAX_DEPTH;
/// The longest path matched: a values key (≤ 32 deep) plus keys inside an array value.
const MAX_PATH: usize = 2 * super::read::MAX_DEPTH + 2;

/// One segment of a [`PathPattern`].
#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    /// `*`: any one key (the common glob, matched without globset).
    Star,
    /// A glob over one key (`*`, `?`, `[a-z]`, `{a,b}`), matched by globset.
    Glob(GlobMatcher),
    /// `**`: any number of keys, including none.
    AnyDepth,
}

impl Segment {
    fn matches(&self, key: &str) -> bool {
        match self {
            Segment::Literal(l) => l == key,
            Segment::Star => true,
            Segment::Glob(g) => g.is_match(key),
            Segment::AnyDepth => true,
        }
    }
}

/// A dotted path pattern over helm values: `wordpress.resources.*`, `**.resources`,
/// `ingress.annotations."traefik.ingress.kubernetes.io/router.tls"` (a quoted segment is one
/// literal key, dots included).
#[derive(Debug, Clone)]
pub struct PathPattern {
    text: String,
    segments: Vec<Segment>,
    /// Where the operator wrote it (`storekeeper.toml:4:19`), for hints; `None` for built-ins.
    origin: Option<String>,
}

impl PartialEq for PathPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.origin == other.origin
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PathPattern {
    /// Parses a pattern; the error says what is wrong with it, for a config diagnostic.
    pub fn parse(text: &str) -> Result<PathPattern, String> {
        let mut segments = Vec::new();
        for (quoted, seg) in split_segments(text)? {
            segments.push(if quoted {
                Segment::Literal(seg)
            } else if seg == "**" {
                Segment::AnyDepth
            } else if seg == "*" {
                Segment::Star
            } else if seg.contains(['*', '?', '[', ']', '{', '}', '\\']) {
                let glob = GlobBuilder::new(&seg)
                    .literal_separator(false)
                    .build()
                    .map_err(|e| format!("`{seg}` is not a valid glob: {}", e.kind()))?;
                Segment::Glob(glob.compile_matcher())
            } else {
                Segment::Literal(seg)
            });
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(format!(
                "a pattern has at most {MAX_SEGMENTS} segments (values nest no deeper)"
            ));
        }
        Ok(PathPattern {
            text: text.to_string(),
            segments,
            origin: None,
        })
    }

    /// The same pattern, remembering where it was written.
    pub fn with_origin(mut self, origin: String) -> Self {
        self.origin = Some(origin);
        self
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// How many leading segments are literal keys: how far the pattern names a path explicitly.
    pub fn literal_len(&self) -> usize {
        self.literal_prefix().len()
    }

    /// The keys the pattern names before its first glob.
    pub fn literal_prefix(&self) -> Vec<&str> {
        self.segments
            .iter()
            .map_while(|s| match s {
                Segment::Literal(l) => Some(l.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Whether any segment is a glob (or `**`).
    pub fn is_glob(&self) -> bool {
        self.literal_len() < self.segments.len()
    }

    /// Bit `k` is set when the pattern matches `path[..k]` exactly. A bit set instead of a table:
    /// this runs for every values key of every store file, so it must not allocate. Paths are at
    /// most [`MAX_PATH`] keys (values nest 32 deep, arrays within them as deep again).
    fn prefix_matches(&self, path: &[&str]) -> u128 {
        let path = &path[..path.len().min(MAX_PATH)];
        let all = (1u128 << (path.len() + 1)) - 1;
        let mut reach = 1u128;
        for seg in &self.segments {
            reach = match seg {
                // `**`: every length from the shortest reached one on.
                Segment::AnyDepth => all & !(reach & reach.wrapping_neg()).wrapping_sub(1),
                _ => (0..path.len())
                    .filter(|j| reach & (1 << j) != 0 && seg.matches(path[*j]))
                    .fold(0, |next, j| next | 1 << (j + 1)),
            };
            if reach == 0 {
                break;
            }
        }
        reach
    }

    /// Whether the pattern matches exactly this path (the tests' view of `prefix_matches`).
    #[cfg(test)]
    fn matches(&self, path: &[&str]) -> bool {
        self.prefix_matches(path) & (1 << path.len().min(MAX_PATH)) != 0
    }

    /// Whether the pattern matches this path or one of its ancestors (and so allows it).
    pub fn covers(&self, path: &[&str]) -> bool {
        self.prefix_matches(path) & !1 != 0
    }
}

/// Splits `a."b.c".d` into `[(false, a), (true, b.c), (false, d)]`.
fn split_segments(text: &str) -> Result<Vec<(bool, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let (quoted, seg) = if chars.peek() == Some(&'"') {
            chars.next();
            let mut seg = String::new();
            let mut closed = false;
            for c in chars.by_ref() {
                if c == '"' {
                    closed = true;
                    break;
                }
                seg.push(c);
            }
            if !closed {
                return Err(format!("unclosed quote in `{text}`"));
            }
            (true, seg)
        } else {
            let mut seg = String::new();
            while let Some(c) = chars.next_if(|c| *c != '.') {
                seg.push(c);
            }
            (false, seg)
        };
        if seg.is_empty() {
            return Err(
                "a pattern is dotted keys, e.g. \"wordpress.resources.*\"; this one has an empty key".into(),
            );
        }
        if !quoted && seg.contains('"') {
            return Err(format!(
                "unbalanced quote in `{seg}`: quote a whole key, e.g. a.\"b.c\""
            ));
        }
        out.push((quoted, seg));
        match chars.next() {
            None => return Ok(out),
            Some('.') if chars.peek().is_some() => {}
            Some(_) => {
                return Err("a pattern is dotted keys, e.g. \"wordpress.resources.*\"; this one has an empty key or a stray quote".into());
            }
        }
    }
}

/// A values key that keeps stores apart or the platform safe.
#[derive(Debug, PartialEq, Eq)]
pub struct GuardRail {
    /// Where it lives, in the [`PathPattern`] syntax (`**.securityContext`: at any depth).
    pub pattern: &'static str,
    /// What it guards, for messages and the README.
    pub guards: &'static str,
    /// Set by storekeeper from the store file's own fields: never allowed through `values`, since
    /// that would bypass the checks those fields get (host uniqueness and suffixes, credentials).
    pub never: bool,
}

const fn rail(pattern: &'static str, guards: &'static str) -> GuardRail {
    GuardRail {
        pattern,
        guards,
        never: false,
    }
}

/// Every guard-rail key, in one place. Keys the shipped charts do not have yet (security contexts,
/// host namespaces, volumes, service accounts) are listed too, at any depth, so that a chart which
/// gains one is guarded from the start.
pub const GUARD_RAILS: &[GuardRail] = &[
    rail("resources", "the plan's quota, limit range and volume sizes"),
    rail("plans", "the plan presets (quota and limit range)"),
    rail("networkPolicy", "the network policies"),
    rail("**.image", "the images"),
    rail("**.imagePullSecrets", "the image pull secrets"),
    rail("**.securityContext", "a security context"),
    rail("**.podSecurityContext", "a security context"),
    rail("**.containerSecurityContext", "a security context"),
    rail("**.privileged", "privileged containers"),
    rail("**.allowPrivilegeEscalation", "privilege escalation"),
    rail("**.capabilities", "Linux capabilities"),
    rail("**.runAsUser", "the user a container runs as"),
    rail("**.runAsGroup", "the group a container runs as"),
    rail("**.runAsNonRoot", "non-root containers"),
    rail("**.fsGroup", "the volumes' group"),
    rail("**.seccompProfile", "the seccomp profile"),
    rail("**.readOnlyRootFilesystem", "read-only root file systems"),
    rail("**.sysctls", "kernel parameters"),
    rail("**.hostNetwork", "the host's network namespace"),
    rail("**.hostPID", "the host's process namespace"),
    rail("**.hostIPC", "the host's IPC namespace"),
    rail("**.hostPort", "ports on the host"),
    rail("**.hostPath", "host paths"),
    rail("**.volumes", "volumes (host paths)"),
    rail("**.extraVolumes", "volumes (host paths)"),
    rail("**.volumeMounts", "volume mounts (host paths)"),
    rail("**.extraVolumeMounts", "volume mounts (host paths)"),
    rail("**.serviceAccount", "the service account"),
    rail("**.serviceAccountName", "the service account"),
    rail("**.automountServiceAccountToken", "the service account token"),
    rail("**.rbac", "RBAC rules"),
    rail("**.tolerations", "scheduling onto tainted (reserved) nodes"),
    rail("**.priorityClassName", "pod priority (preempting other stores)"),
    rail(
        "**.annotations",
        "annotations read by shared controllers (ingress snippets)",
    ),
    rail("**.podAnnotations", "pod annotations (AppArmor profiles)"),
    GuardRail {
        pattern: "store",
        guards: "the store file's own fields (host, plan, shop)",
        never: true,
    },
    GuardRail {
        pattern: "existingSecret",
        guards: "the credentials Secret storekeeper creates",
        never: true,
    },
    GuardRail {
        pattern: "backup",
        guards: "the backups storekeeper configures (the repository, its Secret, the restore)",
        never: true,
    },
];

static COMPILED_RAILS: LazyLock<Vec<(PathPattern, &'static GuardRail)>> = LazyLock::new(|| {
    GUARD_RAILS
        .iter()
        .filter_map(|r| PathPattern::parse(r.pattern).ok().map(|p| (p, r)))
        .collect()
});

/// How a values path relates to the guard rails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Free,
    /// Under a guard rail whose key is `path[..depth]`.
    Guarded {
        depth: usize,
        rail: &'static GuardRail,
    },
    /// Under a key storekeeper always sets itself.
    Reserved(&'static GuardRail),
}

/// Classifies a values path: the deepest guard rail on it wins, a reserved one always.
pub fn classify(path: &[&str]) -> Class {
    let mut class = Class::Free;
    for (pattern, rail) in COMPILED_RAILS.iter() {
        let reach = pattern.prefix_matches(path) & !1;
        if reach == 0 {
            continue;
        }
        let depth = (127 - reach.leading_zeros()) as usize;
        if rail.never {
            return Class::Reserved(rail);
        }
        match class {
            Class::Guarded { depth: d, .. } if d >= depth => {}
            _ => class = Class::Guarded { depth, rail },
        }
    }
    class
}

/// Who may use a host outside `host_suffixes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CustomHosts {
    #[default]
    Nobody,
    Everyone,
    Owners(BTreeSet<Owner>),
}

/// The default `values_allowed`: every key but the guard rails, plus the Medusa app image.
/// Medusa has no official image: each Medusa shop is its own Node project and ships its own image
/// (`stores.d/city-bikes.toml`); the pod's security context stays fixed by the chart.
pub const DEFAULT_VALUES_ALLOWED: &[&str] = &["*", "image.repository", "image.tag"];

/// A validated policy. [`Policy::default`] is what applies without a `[policy]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub values_allowed: Vec<PathPattern>,
    /// Stores in total; a new store beyond it is Blocked (enforced by the plan).
    pub max_stores: Option<u32>,
    /// Stores per owner; when set, every store file must name its `owner`.
    pub max_stores_per_owner: Option<NonZeroU32>,
    /// First installs per rolling hour.
    pub max_creations_per_hour: Option<NonZeroU32>,
    /// Allowed host suffixes, without a leading dot; empty: any host.
    pub host_suffixes: Vec<String>,
    pub custom_hosts: CustomHosts,
    /// Plans of stores whose owner is not in `plans_allowed_per_owner` (or who have none).
    pub plans_allowed: Vec<Plan>,
    pub plans_allowed_per_owner: BTreeMap<Owner, Vec<Plan>>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            values_allowed: DEFAULT_VALUES_ALLOWED
                .iter()
                .filter_map(|p| PathPattern::parse(p).ok())
                .collect(),
            max_stores: None,
            max_stores_per_owner: None,
            max_creations_per_hour: None,
            host_suffixes: Vec::new(),
            custom_hosts: CustomHosts::Nobody,
            plans_allowed: vec![Plan::Small, Plan::Medium, Plan::Large],
            plans_allowed_per_owner: BTreeMap::new(),
        }
    }
}

/// Whether a store may set one values key, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict<'p> {
    Allowed,
    /// No pattern covers the key.
    NotListed,
    /// A guard-rail key that no pattern names: `path[..root]` is the guard-rail key (e.g.
    /// `networkPolicy`); `near` is a pattern that covers the path but whose literal prefix stops
    /// short of it (a glob such as `*`, or a name above a deeper guard rail).
    GuardRail {
        rail: &'static GuardRail,
        root: usize,
        near: Option<&'p PathPattern>,
    },
    Reserved(&'static GuardRail),
}

impl Policy {
    /// Whether `values_allowed` is the built-in default (for hints: who decided the list).
    pub fn values_allowed_is_default(&self) -> bool {
        self.values_allowed.len() == DEFAULT_VALUES_ALLOWED.len()
            && self
                .values_allowed
                .iter()
                .zip(DEFAULT_VALUES_ALLOWED)
                .all(|(p, d)| p.origin().is_none() && p.as_str() == *d)
    }

    /// A store file must name its owner when stores are counted per owner.
    pub fn requires_owner(&self) -> bool {
        self.max_stores_per_owner.is_some()
    }

    /// The plans a store of this owner may use.
    pub fn plans_for(&self, owner: Option<&Owner>) -> &[Plan] {
        owner
            .and_then(|o| self.plans_allowed_per_owner.get(o))
            .unwrap_or(&self.plans_allowed)
    }

    /// Whether a host is under one of the suffixes (on a label boundary), or no suffix is set.
    pub fn host_under_suffix(&self, host: &str) -> bool {
        self.host_suffixes.is_empty()
            || self.host_suffixes.iter().any(|s| {
                host.strip_suffix(s.as_str())
                    .is_some_and(|h| h.len() > 1 && h.ends_with('.'))
            })
    }

    /// Whether this owner's stores may use hosts outside the suffixes.
    pub fn custom_hosts_for(&self, owner: Option<&Owner>) -> bool {
        match &self.custom_hosts {
            CustomHosts::Nobody => false,
            CustomHosts::Everyone => true,
            CustomHosts::Owners(set) => owner.is_some_and(|o| set.contains(o)),
        }
    }

    /// Judges one values path. `contents` is the guard rail found inside the value itself (keys
    /// within an array of tables), which only a pattern naming the whole path can allow.
    pub fn judge(&self, path: &[&str], contents: Option<&'static GuardRail>) -> Verdict<'_> {
        let (required, rail) = match (classify(path), contents) {
            (Class::Reserved(rail), _) => return Verdict::Reserved(rail),
            (_, Some(rail)) => (path.len(), Some(rail)),
            (Class::Guarded { depth, rail }, None) => (depth, Some(rail)),
            (Class::Free, None) => (0, None),
        };
        let mut near = None;
        for pattern in self.values_allowed.iter().filter(|p| p.covers(path)) {
            if pattern.literal_len() >= required {
                return Verdict::Allowed;
            }
            near = near.or(Some(pattern));
        }
        match rail {
            Some(rail) => Verdict::GuardRail {
                rail,
                root: required,
                near,
            },
            None => Verdict::NotListed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> PathPattern {
        PathPattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn path(s: &str) -> Vec<&str> {
        s.split('.').collect()
    }

    #[test]
    fn star_is_one_key_and_double_star_any_number() {
        let p = pat("wordpress.*.limits");
        assert!(p.matches(&path("wordpress.resources.limits")));
        assert!(!p.matches(&path("wordpress.limits")));
        assert!(!p.matches(&path("wordpress.a.b.limits")));
        let p = pat("**.resources");
        assert!(p.matches(&path("resources")));
        assert!(p.matches(&path("a.b.resources")));
        assert!(!p.matches(&path("a.resources.x")));
        assert!(pat("*").matches(&["keys/with.dots"]), "a key is matched whole");
        assert!(pat("{wordpress,mariadb}.res?urces").matches(&path("mariadb.resources")));
        assert!(!pat("{wordpress,mariadb}.resources").matches(&path("setup.resources")));
    }

    #[test]
    fn a_pattern_covers_the_subtree_below_what_it_matches() {
        let p = pat("wordpress.resources.*");
        assert!(p.covers(&path("wordpress.resources.limits.memory")));
        assert!(
            !p.covers(&path("wordpress.resources")),
            "the table itself is not matched"
        );
        assert!(!p.covers(&path("wordpress.extraEnv")));
        assert!(pat("wordpress.extraEnv").covers(&path("wordpress.extraEnv")));
    }

    #[test]
    fn quoted_segments_are_literal_keys() {
        let p = pat("ingress.annotations.\"traefik.ingress.kubernetes.io/router.tls\"");
        assert_eq!(p.literal_len(), 3);
        assert!(p.matches(&[
            "ingress",
            "annotations",
            "traefik.ingress.kubernetes.io/router.tls"
        ]));
        assert!(pat("\"*\"").matches(&["*"]) && !pat("\"*\"").matches(&["x"]));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in ["", ".", "a.", ".a", "a..b", "a.\"b", "a\"b", "a.[b", "{a", "\"\""] {
            assert!(PathPattern::parse(bad).is_err(), "{bad:?}");
        }
        let deep = vec!["a"; MAX_SEGMENTS + 1].join(".");
        assert!(PathPattern::parse(&deep).is_err());
    }

    #[test]
    fn literal_prefix_stops_at_the_first_glob() {
        assert_eq!(pat("*").literal_len(), 0);
        assert_eq!(pat("networkPolicy.*").literal_len(), 1);
        assert_eq!(pat("a.b.**.c").literal_len(), 2);
        assert!(!pat("a.b").is_glob() && pat("a.*").is_glob());
    }

    #[test]
    fn every_guard_rail_pattern_parses() {
        assert_eq!(COMPILED_RAILS.len(), GUARD_RAILS.len());
        for p in DEFAULT_VALUES_ALLOWED {
            assert!(PathPattern::parse(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn guard_rails_are_classified_at_the_right_depth() {
        let guarded = |p: &str| match classify(&path(p)) {
            Class::Guarded { depth, rail } => Some((depth, rail.pattern)),
            _ => None,
        };
        assert_eq!(guarded("networkPolicy.enabled"), Some((1, "networkPolicy")));
        assert_eq!(guarded("resources.quota.limitsCpu"), Some((1, "resources")));
        assert_eq!(guarded("image.wordpress.repository"), Some((1, "**.image")));
        assert_eq!(guarded("postgres.image.tag"), Some((2, "**.image")));
        assert_eq!(
            guarded("wordpress.securityContext.privileged"),
            Some((3, "**.privileged"))
        );
        assert_eq!(guarded("a.b.hostNetwork"), Some((3, "**.hostNetwork")));
        assert_eq!(guarded("wordpress.tolerations"), Some((2, "**.tolerations")));
        assert_eq!(guarded("ingress.annotations.x"), Some((2, "**.annotations")));
        for free in [
            "wordpress.resources.limits.memory",
            "wordpress.extraEnv",
            "neverReady",
            "mariadb.resources",
        ] {
            assert_eq!(classify(&path(free)), Class::Free, "{free}");
        }
        assert!(matches!(classify(&path("store.host")), Class::Reserved(_)));
        assert!(matches!(classify(&path("existingSecret")), Class::Reserved(_)));
    }

    fn rail_at(pattern: &str) -> &'static GuardRail {
        GUARD_RAILS
            .iter()
            .find(|r| r.pattern == pattern)
            .unwrap_or_else(|| panic!("no guard rail {pattern}"))
    }

    fn policy(allowed: &[&str]) -> Policy {
        Policy {
            values_allowed: allowed.iter().map(|p| pat(p)).collect(),
            ..Policy::default()
        }
    }

    #[test]
    fn a_glob_never_reaches_a_guard_rail_but_a_named_key_does() {
        let star = policy(&["*"]);
        assert_eq!(
            star.judge(&path("wordpress.resources.limits.cpu"), None),
            Verdict::Allowed
        );
        let Verdict::GuardRail { rail, root, near } = star.judge(&path("networkPolicy.enabled"), None) else {
            panic!("`*` must not reach networkPolicy")
        };
        assert_eq!(
            (rail.pattern, root, near.map(PathPattern::as_str)),
            ("networkPolicy", 1, Some("*"))
        );
        assert!(matches!(
            star.judge(&path("wordpress.securityContext.privileged"), None),
            Verdict::GuardRail { .. }
        ));
        let wp = policy(&["wordpress.*"]);
        assert!(matches!(
            wp.judge(&path("wordpress.tolerations"), None),
            Verdict::GuardRail { .. }
        ));
        assert_eq!(wp.judge(&path("wordpress.port"), None), Verdict::Allowed);

        let named = policy(&["networkPolicy.enabled", "image.*", "wordpress.securityContext"]);
        assert_eq!(
            named.judge(&path("networkPolicy.enabled"), None),
            Verdict::Allowed
        );
        assert!(matches!(
            named.judge(&path("networkPolicy.dns"), None),
            Verdict::GuardRail { near: None, .. }
        ));
        assert_eq!(named.judge(&path("image.wordpress.tag"), None), Verdict::Allowed);
        assert_eq!(
            named.judge(&path("wordpress.securityContext.runAsUser"), None),
            Verdict::GuardRail {
                rail: rail_at("**.runAsUser"),
                root: 3,
                near: named.values_allowed.get(2),
            },
            "a deeper guard rail needs its own name"
        );
        assert_eq!(named.judge(&path("neverReady"), None), Verdict::NotListed);
    }

    #[test]
    fn reserved_keys_cannot_be_allowed_at_all() {
        let p = policy(&["store.host", "existingSecret", "*"]);
        assert!(matches!(p.judge(&path("store.host"), None), Verdict::Reserved(_)));
        assert!(matches!(
            p.judge(&path("existingSecret"), None),
            Verdict::Reserved(_)
        ));
    }

    #[test]
    fn guard_rails_inside_an_array_need_the_array_named() {
        let rail = rail_at("**.securityContext");
        let glob = policy(&["wordpress.*"]);
        assert!(matches!(
            glob.judge(&path("wordpress.sidecars"), Some(rail)),
            Verdict::GuardRail { root: 2, .. }
        ));
        let named = policy(&["wordpress.sidecars"]);
        assert_eq!(
            named.judge(&path("wordpress.sidecars"), Some(rail)),
            Verdict::Allowed
        );
    }

    #[test]
    fn the_default_blocks_guard_rails_and_allows_the_medusa_image() {
        let d = Policy::default();
        assert_eq!(d.judge(&path("neverReady"), None), Verdict::Allowed);
        assert_eq!(d.judge(&path("wordpress.extraEnv"), None), Verdict::Allowed);
        assert_eq!(d.judge(&path("image.repository"), None), Verdict::Allowed);
        for blocked in [
            "networkPolicy.enabled",
            "resources.quota.limitsCpu",
            "resources.limitRange.defaultCpu",
            "plans.small.quota.pods",
            "image.wordpress.repository",
            "image.uid",
            "postgres.image.tag",
            "imagePullSecrets",
            "wordpress.tolerations",
        ] {
            assert!(
                matches!(d.judge(&path(blocked), None), Verdict::GuardRail { .. }),
                "{blocked}"
            );
        }
    }

    #[test]
    fn hosts_end_with_a_suffix_on_a_label_boundary() {
        let p = Policy {
            host_suffixes: vec!["shops.example.com".into()],
            ..Policy::default()
        };
        assert!(p.host_under_suffix("a.shops.example.com"));
        assert!(p.host_under_suffix("a.b.shops.example.com"));
        assert!(!p.host_under_suffix("evilshops.example.com"), "label boundary");
        assert!(
            !p.host_under_suffix("shops.example.com"),
            "the suffix itself is not a store host"
        );
        assert!(!p.host_under_suffix("shops.example.com.evil.net"));
        assert!(Policy::default().host_under_suffix("anything.example.net"));
    }

    #[test]
    fn plans_and_custom_hosts_per_owner() {
        let acme = Owner::new("acme").unwrap_or_else(|e| panic!("{e}"));
        let bob = Owner::new("bob").unwrap_or_else(|e| panic!("{e}"));
        let p = Policy {
            plans_allowed: vec![Plan::Small],
            plans_allowed_per_owner: [(acme.clone(), vec![Plan::Small, Plan::Large])].into(),
            custom_hosts: CustomHosts::Owners([acme.clone()].into()),
            ..Policy::default()
        };
        assert_eq!(p.plans_for(Some(&acme)), [Plan::Small, Plan::Large]);
        assert_eq!(p.plans_for(Some(&bob)), [Plan::Small]);
        assert_eq!(p.plans_for(None), [Plan::Small]);
        assert!(
            p.custom_hosts_for(Some(&acme)) && !p.custom_hosts_for(Some(&bob)) && !p.custom_hosts_for(None)
        );
    }
}
