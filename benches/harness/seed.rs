//! Seeds N converged stores into the test API server the way a real apply leaves them, so the
//! harness can measure a daemon at 10,000 stores without 10,000 installs. Two stores (one per
//! engine) are installed for real by `storekeeper apply` with the real helm; every object they
//! left is then copied for each other store with the store's name and title put in: the
//! namespace with storekeeper's labels and annotations (the spec hash computed by storekeeper's
//! own code for that store's file), the credentials Secret, helm's release Secret (decoded,
//! edited and gzipped again, as helm writes it) and the chart's objects. The daemon then reads,
//! plans and observes all of it for real.

use std::io::{Read, Write};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use super::bed::{Bed, Res, store_body};

/// The collections a store's objects live in (the controllers of the test API server make the
/// ReplicaSets from the Deployments again).
const COLLECTIONS: &[&str] = &[
    "/api/v1/namespaces/{ns}/secrets",
    "/api/v1/namespaces/{ns}/configmaps",
    "/api/v1/namespaces/{ns}/services",
    "/apis/apps/v1/namespaces/{ns}/deployments",
];

/// Stores `s0000`..`s{n-1}` in `stores` (files written by the caller) become converged in the
/// cluster. `config` is a storekeeper.toml for `stores` (its charts and defaults give the hashes).
pub fn converged(bed: &Bed, bin: &Path, stores: &Path, config: &Path, n: usize) -> Res<()> {
    let templates = install_templates(bed, bin, config)?;
    let text = std::fs::read_to_string(config).map_err(|e| e.to_string())?;
    let settings = storekeeper::config::Settings::parse(config, &text).map_err(|e| format!("{e:?}"))?;
    let defaults = settings.spec_defaults();
    let mut inputs = std::collections::BTreeMap::new();
    for i in 2..n {
        let t = i % 2;
        let name = format!("s{i:04}");
        let path = stores.join(format!("{name}.toml"));
        let spec = storekeeper::spec::parse_bytes(&path, store_body(i).as_bytes(), &defaults)
            .map_err(|e| format!("{name}: {e:?}"))?;
        if let std::collections::btree_map::Entry::Vacant(slot) = inputs.entry(spec.engine) {
            let c =
                storekeeper::reconcile::chart_inputs(&settings, spec.engine).map_err(|e| e.to_string())?;
            slot.insert(c.hash);
        }
        let hash = storekeeper::values::spec_hash(
            &spec,
            &storekeeper::values::values_for(&spec),
            &inputs[&spec.engine],
        );
        let swap = |v: &Value| -> Res<Value> {
            let s = v
                .to_string()
                .replace(&format!("s000{t}"), &name)
                .replace(&format!("Bench Store {t}"), &format!("Bench Store {i}"));
            serde_json::from_str(&s).map_err(|e| e.to_string())
        };
        let (ns, objects) = &templates[t];
        let mut ns = swap(ns)?;
        ns["metadata"]["annotations"][storekeeper::cluster::ANN_HASH] = Value::String(hash);
        bed.api.insert("/api/v1/namespaces", ns);
        for (collection, template) in objects {
            let mut obj = swap(template)?;
            if template["type"] == "helm.sh/release.v1" {
                obj["data"]["release"] = Value::String(release(&template["data"]["release"], t, i)?);
            }
            bed.api
                .insert(&collection.replace("{ns}", &format!("store-{name}")), obj);
        }
    }
    Ok(())
}

/// A template store per engine, installed for real: its namespace and the objects in it, with
/// what the server assigns (uid, resourceVersion, timestamps, status) removed.
type Template = (Value, Vec<(&'static str, Value)>);

fn install_templates(bed: &Bed, bin: &Path, config: &Path) -> Res<[Template; 2]> {
    let text = std::fs::read_to_string(config).map_err(|e| e.to_string())?;
    let dir = bed.stores_dir("templates.d", 0..2, "s")?;
    let stores_line = text
        .lines()
        .find(|l| l.starts_with("directory = "))
        .ok_or("the config has no directory source")?;
    let template_config = bed.dir.path().join("templates.toml");
    std::fs::write(
        &template_config,
        text.replace(stores_line, &format!("directory = '{}'", dir.display())),
    )
    .map_err(|e| e.to_string())?;
    let out = bed
        .storekeeper(bin, &template_config, &["apply"])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "installing the template stores failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let template = |t: usize| -> Res<Template> {
        let ns_name = format!("store-s000{t}");
        let ns = bed
            .api
            .get(&format!("/api/v1/namespaces/{ns_name}"))
            .ok_or("template namespace missing")?;
        let mut objects = Vec::new();
        for c in COLLECTIONS {
            for obj in bed.api.list(&c.replace("{ns}", &ns_name)) {
                objects.push((*c, clean(obj)));
            }
        }
        Ok((clean(ns), objects))
    };
    Ok([template(0)?, template(1)?])
}

fn clean(mut obj: Value) -> Value {
    if let Some(m) = obj["metadata"].as_object_mut() {
        for k in ["uid", "resourceVersion", "creationTimestamp", "generation"] {
            m.remove(k);
        }
    }
    if let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
    obj
}

/// helm's release record (`data.release`: base64 of base64 of gzipped JSON) with the template
/// store's name and title replaced.
fn release(data: &Value, t: usize, i: usize) -> Res<String> {
    let outer = B64
        .decode(data.as_str().ok_or("release data is not a string")?)
        .map_err(|e| e.to_string())?;
    let gz = B64.decode(&outer).map_err(|e| e.to_string())?;
    let mut json = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut json)
        .map_err(|e| e.to_string())?;
    let json = json
        .replace(&format!("s000{t}"), &format!("s{i:04}"))
        .replace(&format!("Bench Store {t}"), &format!("Bench Store {i}"));
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(json.as_bytes()).map_err(|e| e.to_string())?;
    let gz = enc.finish().map_err(|e| e.to_string())?;
    Ok(B64.encode(B64.encode(gz)))
}
