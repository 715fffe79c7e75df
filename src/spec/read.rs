//! A strict, span-keeping reader over a parsed TOML table.
//!
//! serde's `deny_unknown_fields` stops at the first problem; users want every problem of a file at
//! once, each with its line and column. So store files are parsed into toml's spanned document
//! model and read field by field here, collecting diagnostics instead of returning early.

use std::ops::Range;
use std::path::Path;

use serde_json::Value as Json;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostic::{Diagnostic, did_you_mean};

/// Deeper `values` tables than this are rejected (hostile input must not exhaust the stack).
pub const MAX_DEPTH: usize = 32;

/// Collects diagnostics for one file.
pub struct Ctx<'s> {
    pub file: &'s Path,
    pub src: &'s str,
    pub diags: Vec<Diagnostic>,
}

impl<'s> Ctx<'s> {
    pub fn new(file: &'s Path, src: &'s str) -> Self {
        Ctx {
            file,
            src,
            diags: Vec::new(),
        }
    }

    pub fn error(&mut self, span: Range<usize>, field: &str, message: String, hint: Option<String>) {
        let mut d = Diagnostic::at(self.file, self.src, span, field, message);
        d.hint = hint;
        self.diags.push(d);
    }
}

/// A table being read: remembers its dotted path so errors can name the field.
pub struct Table<'a, 'i> {
    pub inner: &'a DeTable<'i>,
    pub path: String,
    /// Span of the whole table, for "missing field" errors.
    pub span: Range<usize>,
}

impl<'a, 'i> Table<'a, 'i> {
    pub fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn get(&self, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.inner
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| v)
    }

    /// Reports every key not in `allowed`, with a suggestion when one is close.
    pub fn deny_unknown(&self, ctx: &mut Ctx<'_>, allowed: &[&str]) {
        for (key, _) in self.inner.iter() {
            let name = key.get_ref().as_ref();
            if allowed.contains(&name) {
                continue;
            }
            let hint = match did_you_mean(name, allowed) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("allowed here: {}", allowed.join(", ")),
            };
            ctx.error(
                key.span(),
                &self.field(name),
                format!("unknown field `{name}`"),
                Some(hint),
            );
        }
    }

    fn type_error(&self, ctx: &mut Ctx<'_>, key: &str, v: &Spanned<DeValue<'_>>, want: &str) {
        ctx.error(
            v.span(),
            &self.field(key),
            format!(
                "`{}` must be {want}, found {}",
                self.field(key),
                v.get_ref().type_str()
            ),
            None,
        );
    }

    /// A string field: `Some((value, span))`, or `None` when absent or of the wrong type (reported).
    pub fn string(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<(String, Range<usize>)> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some((s.to_string(), v.span())),
            _ => {
                self.type_error(ctx, key, v, "a string");
                None
            }
        }
    }

    pub fn boolean(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<(bool, Range<usize>)> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some((*b, v.span())),
            _ => {
                self.type_error(ctx, key, v, "true or false");
                None
            }
        }
    }

    /// An integer or float field, as f64.
    pub fn number(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<(f64, Range<usize>)> {
        let v = self.get(key)?;
        let n = match v.get_ref() {
            DeValue::Integer(i) => integer(i).map(|i| i as f64),
            DeValue::Float(f) => float(f),
            _ => None,
        };
        if n.is_none() {
            self.type_error(ctx, key, v, "a number");
        }
        n.map(|n| (n, v.span()))
    }

    /// A table field, without reporting anything when it is absent or not a table.
    pub fn peek_table(&self, key: &str) -> Option<Table<'a, 'i>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some(Table {
                inner: t,
                path: self.field(key),
                span: v.span(),
            }),
            _ => None,
        }
    }

    pub fn table(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<Table<'a, 'i>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some(Table {
                inner: t,
                path: self.field(key),
                span: v.span(),
            }),
            _ => {
                self.type_error(ctx, key, v, "a table");
                None
            }
        }
    }

    /// An array of tables (`[[key]]` or an inline array of inline tables).
    pub fn tables(&self, ctx: &mut Ctx<'_>, key: &str) -> Vec<Table<'a, 'i>> {
        let Some(v) = self.get(key) else { return Vec::new() };
        let DeValue::Array(items) = v.get_ref() else {
            self.type_error(ctx, key, v, "an array of tables");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::Table(t) => out.push(Table {
                    inner: t,
                    path: format!("{}[{i}]", self.field(key)),
                    span: item.span(),
                }),
                _ => self.type_error(ctx, &format!("{key}[{i}]"), item, "a table"),
            }
        }
        out
    }

    /// A table of string values, e.g. labels. Keys come back with their spans.
    pub fn string_map(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
    ) -> Vec<(String, Range<usize>, String, Range<usize>)> {
        let Some(t) = self.table(ctx, key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in t.inner.iter() {
            match v.get_ref() {
                DeValue::String(s) => out.push((k.get_ref().to_string(), k.span(), s.to_string(), v.span())),
                _ => t.type_error(ctx, k.get_ref(), v, "a string"),
            }
        }
        out
    }

    /// An arbitrary table converted to JSON (for raw helm values), bounded in depth.
    pub fn json(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<serde_json::Map<String, Json>> {
        let t = self.table(ctx, key)?;
        let mut map = serde_json::Map::new();
        for (k, v) in t.inner.iter() {
            if let Some(j) = to_json(ctx, &t.field(k.get_ref()), v, 1) {
                map.insert(k.get_ref().to_string(), j);
            }
        }
        Some(map)
    }
}

/// Converts a TOML value to JSON; datetimes become strings (helm values have no datetime type).
fn to_json(ctx: &mut Ctx<'_>, field: &str, v: &Spanned<DeValue<'_>>, depth: usize) -> Option<Json> {
    if depth > MAX_DEPTH {
        ctx.error(
            v.span(),
            field,
            format!("values nest deeper than {MAX_DEPTH} levels"),
            Some("flatten the table; no chart needs this depth".into()),
        );
        return None;
    }
    Some(match v.get_ref() {
        DeValue::String(s) => Json::String(s.to_string()),
        DeValue::Boolean(b) => Json::Bool(*b),
        DeValue::Datetime(d) => Json::String(d.to_string()),
        DeValue::Integer(i) => match integer(i) {
            Some(n) => Json::from(n),
            None => {
                ctx.error(v.span(), field, "integer out of range".into(), None);
                return None;
            }
        },
        DeValue::Float(f) => match float(f).and_then(serde_json::Number::from_f64) {
            Some(n) => Json::Number(n),
            None => {
                ctx.error(v.span(), field, "nan and inf cannot be helm values".into(), None);
                return None;
            }
        },
        DeValue::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(to_json(ctx, &format!("{field}[{i}]"), item, depth + 1)?);
            }
            Json::Array(out)
        }
        DeValue::Table(t) => {
            let mut map = serde_json::Map::new();
            for (k, item) in t.iter() {
                let j = to_json(ctx, &format!("{field}.{}", k.get_ref()), item, depth + 1)?;
                map.insert(k.get_ref().to_string(), j);
            }
            Json::Object(map)
        }
    })
}

fn integer(i: &toml::de::DeInteger<'_>) -> Option<i64> {
    let digits: String = i.as_str().chars().filter(|c| *c != '_').collect();
    i64::from_str_radix(&digits, i.radix()).ok()
}

fn float(f: &toml::de::DeFloat<'_>) -> Option<f64> {
    let text: String = f.as_str().chars().filter(|c| *c != '_').collect();
    text.parse::<f64>().ok().filter(|n| n.is_finite())
}
