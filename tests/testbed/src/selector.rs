//! Label and field selectors with the full label grammar (`=`, `==`, `!=`, `in`, `notin`, `key`,
//! `!key`), because the daemon and kubectl use more than helm's `owner=helm`.

use serde_json::Value;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector: all requirements must hold. Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(pub Vec<Requirement>);

/// Splits on commas that are not inside `( )`, so `a in (x,y),b` gives two parts.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Parses `(a, b)` into its values.
fn parse_set(s: &str) -> Result<Vec<String>, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set, got {s:?}"))?;
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
    if values.iter().any(|v| !valid_value(v)) {
        return Err(format!("invalid value in set {s:?}"));
    }
    Ok(values)
}

impl LabelSelector {
    /// Parses the `labelSelector` query value (already percent-decoded).
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector(reqs));
        }
        for part in split_top_level(s) {
            let part = part.trim();
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement::NotExists(key.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Equals(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Equals(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                Requirement::NotIn(k.trim().to_string(), parse_set(rest)?)
            } else if let Some((k, rest)) = part.split_once(" in ") {
                Requirement::In(k.trim().to_string(), parse_set(rest)?)
            } else {
                Requirement::Exists(part.to_string())
            };
            let (key, value) = match &req {
                Requirement::Equals(k, v) | Requirement::NotEquals(k, v) => (k, Some(v)),
                Requirement::In(k, _)
                | Requirement::NotIn(k, _)
                | Requirement::Exists(k)
                | Requirement::NotExists(k) => (k, None),
            };
            if !valid_key(key) {
                return Err(format!("invalid label key in {part:?}"));
            }
            if value.is_some_and(|v| !valid_value(v)) {
                return Err(format!("invalid label value in {part:?}"));
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// A field selector: `path=value`, `path==value`, `path!=value`, comma-separated, where `path` is
/// a dotted JSON path such as `metadata.name` or `status.phase`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str) -> Result<FieldSelector, String> {
        let mut reqs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (path, equal, value) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(format!("invalid field selector {part:?}"));
            };
            reqs.push((path.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, equal, value)| {
            let mut cur = obj;
            for seg in path.split('.') {
                cur = &cur[seg];
            }
            let actual = match cur {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "x", "labels": labels}})
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).expect("valid selector")
    }

    #[test]
    fn equality_forms() {
        let o = obj(json!({"owner": "helm", "name": "r"}));
        assert!(sel("owner=helm").matches(&o));
        assert!(sel("owner==helm,name=r").matches(&o));
        assert!(!sel("owner=helm,name=s").matches(&o));
        assert!(sel("owner!=other").matches(&o));
        assert!(!sel("owner!=helm").matches(&o));
        assert!(sel("missing!=x").matches(&o), "!= matches absent keys");
    }

    #[test]
    fn set_forms() {
        let o = obj(json!({"tier": "gold"}));
        assert!(sel("tier in (gold, silver)").matches(&o));
        assert!(!sel("tier in (silver)").matches(&o));
        assert!(sel("tier notin (silver,bronze)").matches(&o));
        assert!(!sel("tier notin (gold)").matches(&o));
        assert!(sel("other notin (gold)").matches(&o), "notin matches absent keys");
        assert!(!sel("other in (gold)").matches(&o));
        assert!(sel("tier in (gold),tier").matches(&o));
    }

    #[test]
    fn existence_forms() {
        let o = obj(json!({"a": ""}));
        assert!(sel("a").matches(&o));
        assert!(!sel("!a").matches(&o));
        assert!(sel("!b").matches(&o));
        assert!(!sel("b").matches(&o));
        assert!(sel("!b").matches(&json!({"metadata": {}})));
    }

    #[test]
    fn empty_matches_all_and_bad_input_is_rejected() {
        assert!(sel("").matches(&obj(json!({}))));
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("a=b c").is_err());
        assert!(LabelSelector::parse("=x").is_err());
    }

    #[test]
    fn qualified_keys() {
        let o = obj(json!({"kubernetes.io/metadata.name": "ns1"}));
        assert!(sel("kubernetes.io/metadata.name=ns1").matches(&o));
    }

    #[test]
    fn field_selectors() {
        let o = json!({"metadata": {"name": "x", "namespace": "n"}, "status": {"phase": "Bound"}});
        let f = |s: &str| FieldSelector::parse(s).expect("valid").matches(&o);
        assert!(f("metadata.name=x"));
        assert!(f("metadata.name==x,metadata.namespace=n"));
        assert!(!f("metadata.name!=x"));
        assert!(f("status.phase=Bound"));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
