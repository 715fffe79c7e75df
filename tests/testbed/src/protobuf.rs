//! A hand-written decoder for the Kubernetes protobuf wire format, enough for the request bodies
//! helm's release storage sends (Secret; ConfigMap for the configmap driver; Namespace). client-go
//! does not fall back to JSON on a 415, so the server has to read these. Responses stay JSON.
//!
//! Envelope: magic `k8s\0`, then `runtime.Unknown { typeMeta = 1 { apiVersion = 1, kind = 2 },
//! raw = 2, contentEncoding = 3, contentType = 4 }`; `raw` is the object message.

use base64::Engine;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

/// A protobuf field as read off the wire.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Iterates `(field number, value)` over one message.
struct Fields<'a> {
    buf: &'a [u8],
}

fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err("varint too long".into())
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Wire<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        Some(self.read())
    }
}

impl<'a> Fields<'a> {
    fn read(&mut self) -> Result<(u64, Wire<'a>), String> {
        let key = varint(&mut self.buf)?;
        let (field, wire_type) = (key >> 3, key & 7);
        let value = match wire_type {
            0 => Wire::Varint(varint(&mut self.buf)?),
            2 => {
                let len = usize::try_from(varint(&mut self.buf)?).map_err(|e| e.to_string())?;
                if len > self.buf.len() {
                    return Err("length-delimited field past end of message".into());
                }
                let (bytes, rest) = self.buf.split_at(len);
                self.buf = rest;
                Wire::Bytes(bytes)
            }
            1 | 5 => {
                let n = if wire_type == 1 { 8 } else { 4 };
                if n > self.buf.len() {
                    return Err("truncated fixed-width field".into());
                }
                self.buf = &self.buf[n..];
                Wire::Fixed
            }
            t => return Err(format!("unsupported wire type {t}")),
        };
        Ok((field, value))
    }
}

fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf }
}

fn string(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "string field is not UTF-8".to_string())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A `map<string, X>` entry: `{ key = 1; value = 2 }`. `as_bytes` base64-encodes the value.
fn map_entry(buf: &[u8], as_bytes: bool) -> Result<(String, Value), String> {
    let (mut key, mut value) = (String::new(), Value::String(String::new()));
    for f in fields(buf) {
        match f? {
            (1, Wire::Bytes(b)) => key = string(b)?,
            (2, Wire::Bytes(b)) if as_bytes => value = Value::String(b64(b)),
            (2, Wire::Bytes(b)) => value = Value::String(string(b)?),
            _ => {}
        }
    }
    Ok((key, value))
}

fn insert_entry(obj: &mut Map<String, Value>, field: &str, entry: (String, Value)) {
    if let Value::Object(m) = obj.entry(field).or_insert_with(|| Value::Object(Map::new())) {
        m.insert(entry.0, entry.1);
    }
}

fn push(obj: &mut Map<String, Value>, field: &str, v: Value) {
    if let Value::Array(a) = obj.entry(field).or_insert_with(|| json!([])) {
        a.push(v);
    }
}

/// `metav1.OwnerReference`.
fn owner_reference(buf: &[u8]) -> Result<Value, String> {
    let mut o = Map::new();
    for f in fields(buf) {
        match f? {
            (1, Wire::Bytes(b)) => o.insert("kind".into(), string(b)?.into()),
            (3, Wire::Bytes(b)) => o.insert("name".into(), string(b)?.into()),
            (4, Wire::Bytes(b)) => o.insert("uid".into(), string(b)?.into()),
            (5, Wire::Bytes(b)) => o.insert("apiVersion".into(), string(b)?.into()),
            (6, Wire::Varint(v)) => o.insert("controller".into(), (v != 0).into()),
            (7, Wire::Varint(v)) => o.insert("blockOwnerDeletion".into(), (v != 0).into()),
            _ => None,
        };
    }
    Ok(Value::Object(o))
}

/// `metav1.ObjectMeta`. Server-assigned fields (uid, timestamps, managedFields) are skipped: the
/// store assigns its own.
pub fn object_meta(buf: &[u8]) -> Result<Value, String> {
    let mut m = Map::new();
    for f in fields(buf) {
        // gogo-protobuf writes empty strings too; an empty field means "not set".
        match f? {
            (_, Wire::Bytes([])) => {}
            (1, Wire::Bytes(b)) => {
                m.insert("name".into(), string(b)?.into());
            }
            (2, Wire::Bytes(b)) => {
                m.insert("generateName".into(), string(b)?.into());
            }
            (3, Wire::Bytes(b)) => {
                m.insert("namespace".into(), string(b)?.into());
            }
            (5, Wire::Bytes(b)) => {
                m.insert("uid".into(), string(b)?.into());
            }
            (6, Wire::Bytes(b)) => {
                m.insert("resourceVersion".into(), string(b)?.into());
            }
            (11, Wire::Bytes(b)) => insert_entry(&mut m, "labels", map_entry(b, false)?),
            (12, Wire::Bytes(b)) => insert_entry(&mut m, "annotations", map_entry(b, false)?),
            (13, Wire::Bytes(b)) => push(&mut m, "ownerReferences", owner_reference(b)?),
            (14, Wire::Bytes(b)) => push(&mut m, "finalizers", string(b)?.into()),
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

/// Decodes one object message of the given kind into its JSON form.
fn object(kind: &str, raw: &[u8]) -> Result<Value, String> {
    let mut o = Map::new();
    for f in fields(raw) {
        let (n, w) = f?;
        let Wire::Bytes(b) = w else {
            if let (5, Wire::Varint(v), "Secret") | (4, Wire::Varint(v), "ConfigMap") = (n, &w, kind) {
                o.insert("immutable".into(), (*v != 0).into());
            }
            continue;
        };
        match (kind, n) {
            (_, 1) => {
                o.insert("metadata".into(), object_meta(b)?);
            }
            ("Secret", 2) => insert_entry(&mut o, "data", map_entry(b, true)?),
            ("Secret", 3) => {
                o.insert("type".into(), string(b)?.into());
            }
            ("Secret", 4) => insert_entry(&mut o, "stringData", map_entry(b, false)?),
            ("ConfigMap", 2) => insert_entry(&mut o, "data", map_entry(b, false)?),
            ("ConfigMap", 3) => insert_entry(&mut o, "binaryData", map_entry(b, true)?),
            ("Namespace", 2) => {
                let mut spec = Map::new();
                for f in fields(b) {
                    if let (1, Wire::Bytes(s)) = f? {
                        push(&mut spec, "finalizers", string(s)?.into());
                    }
                }
                o.insert("spec".into(), Value::Object(spec));
            }
            _ => {}
        }
    }
    Ok(Value::Object(o))
}

/// `metav1.DeleteOptions`, the body client-go sends with a protobuf DELETE.
fn delete_options(raw: &[u8]) -> Result<Value, String> {
    let mut o = Map::new();
    for f in fields(raw) {
        match f? {
            (1, Wire::Varint(v)) => {
                o.insert("gracePeriodSeconds".into(), v.into());
            }
            (2, Wire::Bytes(b)) => {
                let mut pre = Map::new();
                for f in fields(b) {
                    match f? {
                        (1, Wire::Bytes(s)) => pre.insert("uid".into(), string(s)?.into()),
                        (2, Wire::Bytes(s)) => pre.insert("resourceVersion".into(), string(s)?.into()),
                        _ => None,
                    };
                }
                o.insert("preconditions".into(), Value::Object(pre));
            }
            (3, Wire::Varint(v)) => {
                o.insert("orphanDependents".into(), (v != 0).into());
            }
            (4, Wire::Bytes(b)) => {
                o.insert("propagationPolicy".into(), string(b)?.into());
            }
            (5, Wire::Bytes(b)) => push(&mut o, "dryRun", string(b)?.into()),
            _ => {}
        }
    }
    o.insert("kind".into(), "DeleteOptions".into());
    Ok(Value::Object(o))
}

/// Decodes a whole request body (`k8s\0` + `runtime.Unknown`) into a JSON object with
/// `apiVersion` and `kind` set. Errors name what was wrong, for a 400/415 message.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("protobuf body lacks the k8s\\0 magic prefix")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    for f in fields(rest) {
        match f? {
            (1, Wire::Bytes(tm)) => {
                for f in fields(tm) {
                    match f? {
                        (1, Wire::Bytes(b)) => api_version = string(b)?,
                        (2, Wire::Bytes(b)) => kind = string(b)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = Some(b),
            (3, Wire::Bytes(enc)) if !enc.is_empty() => {
                return Err("compressed protobuf bodies are not supported".into());
            }
            _ => {}
        }
    }
    if kind == "DeleteOptions" {
        return delete_options(raw.unwrap_or_default());
    }
    if !matches!(kind.as_str(), "Secret" | "ConfigMap" | "Namespace") {
        return Err(format!("protobuf decoding of kind {kind:?} is not supported"));
    }
    let mut obj = object(&kind, raw.unwrap_or_default())?;
    obj["apiVersion"] = api_version.into();
    obj["kind"] = kind.into();
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimal encoder for the tests: a length-delimited field.
    fn ld(field: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, (field << 3) | 2);
        put_varint(&mut out, bytes.len() as u64);
        out.extend_from_slice(bytes);
        out
    }

    fn vi(field: u64, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, field << 3);
        put_varint(&mut out, v);
        out
    }

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn entry(k: &str, v: &[u8]) -> Vec<u8> {
        [ld(1, k.as_bytes()), ld(2, v)].concat()
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let tm = [ld(1, api_version.as_bytes()), ld(2, kind.as_bytes())].concat();
        [MAGIC.to_vec(), ld(1, &tm), ld(2, raw), ld(3, b""), ld(4, b"")].concat()
    }

    #[test]
    fn decodes_a_helm_release_secret() {
        let meta = [
            ld(1, b"sh.helm.release.v1.r.v1"),
            ld(3, b"ns"),
            ld(11, &entry("owner", b"helm")),
            ld(11, &entry("name", b"r")),
            ld(12, &entry("note", b"x")),
            ld(14, b"f1"),
        ]
        .concat();
        let raw = [
            ld(1, &meta),
            ld(2, &entry("release", &[0, 255, 1])),
            ld(3, b"helm.sh/release.v1"),
            vi(5, 1),
        ]
        .concat();
        let obj = decode(&envelope("v1", "Secret", &raw)).expect("decodes");
        assert_eq!(obj["kind"], "Secret");
        assert_eq!(obj["apiVersion"], "v1");
        assert_eq!(obj["metadata"]["name"], "sh.helm.release.v1.r.v1");
        assert_eq!(obj["metadata"]["namespace"], "ns");
        assert_eq!(obj["metadata"]["labels"]["owner"], "helm");
        assert_eq!(obj["metadata"]["labels"]["name"], "r");
        assert_eq!(obj["metadata"]["annotations"]["note"], "x");
        assert_eq!(obj["metadata"]["finalizers"][0], "f1");
        assert_eq!(obj["data"]["release"], b64(&[0, 255, 1]));
        assert_eq!(obj["type"], "helm.sh/release.v1");
        assert_eq!(obj["immutable"], true);
    }

    #[test]
    fn decodes_configmap_and_namespace() {
        let raw = [
            ld(1, &ld(1, b"cm")),
            ld(2, &entry("k", b"v")),
            ld(3, &entry("b", b"\x01")),
        ]
        .concat();
        let cm = decode(&envelope("v1", "ConfigMap", &raw)).expect("decodes");
        assert_eq!(cm["data"]["k"], "v");
        assert_eq!(cm["binaryData"]["b"], "AQ==");

        let raw = [ld(1, &ld(1, b"store-a")), ld(2, &ld(1, b"kubernetes"))].concat();
        let ns = decode(&envelope("v1", "Namespace", &raw)).expect("decodes");
        assert_eq!(ns["metadata"]["name"], "store-a");
        assert_eq!(ns["spec"]["finalizers"][0], "kubernetes");
    }

    #[test]
    fn owner_references() {
        let or = [
            ld(1, b"Deployment"),
            ld(3, b"web"),
            ld(4, b"u-1"),
            ld(5, b"apps/v1"),
            vi(6, 1),
        ]
        .concat();
        let raw = ld(1, &[ld(1, b"cm"), ld(13, &or)].concat());
        let cm = decode(&envelope("v1", "ConfigMap", &raw)).expect("decodes");
        let r = &cm["metadata"]["ownerReferences"][0];
        assert_eq!(r["kind"], "Deployment");
        assert_eq!(r["uid"], "u-1");
        assert_eq!(r["controller"], true);
    }

    #[test]
    fn decodes_delete_options() {
        let pre = [ld(1, b"u-1")].concat();
        let raw = [ld(2, &pre), ld(4, b"Background")].concat();
        let opts = decode(&envelope("meta.k8s.io/v1", "DeleteOptions", &raw)).expect("decodes");
        assert_eq!(opts["propagationPolicy"], "Background");
        assert_eq!(opts["preconditions"]["uid"], "u-1");
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(decode(b"{}").is_err());
        assert!(decode(b"k8s\0\x0a\xff").is_err(), "length past end");
        assert!(decode(b"k8s\0\x80").is_err(), "truncated varint");
        let raw = ld(1, &ld(1, b"p"));
        assert!(decode(&envelope("v1", "Pod", &raw)).is_err());
        assert!(decode(&envelope("v1", "Secret", &ld(1, &ld(1, &[0xff])))).is_err());
    }
}
