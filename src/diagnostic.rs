//! Compiler-style diagnostics for store files and the daemon config.
//!
//! Every problem with user input is a [`Diagnostic`]: the file, a 1-based line and column, the
//! dotted field it concerns, a message, and a hint. They are collected (never thrown one at a
//! time) so that a user sees every problem of a file in one run, and they render either as text
//! for people or as JSON for CI bots (the shape is documented in the README).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Whether a problem stops the input from being used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Severity {
    #[default]
    Error,
    /// The input is used as written; the diagnostic says what it does not do.
    Warning,
}

/// One problem found in an input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line of the offending text.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// Dotted path of the field, e.g. `shop.currency`; empty when it concerns the whole file.
    pub field: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The offending source line, for the caret display; not part of the JSON shape.
    #[serde(skip)]
    pub source_line: Option<String>,
    /// Width of the caret underline in characters.
    #[serde(skip)]
    pub width: usize,
    /// Not in the JSON shape: warnings are reported in their own list.
    #[serde(skip)]
    pub severity: Severity,
}

impl Diagnostic {
    /// A diagnostic that points at a byte span of `src`.
    pub fn at(file: &Path, src: &str, span: Range<usize>, field: &str, message: String) -> Self {
        let (line, column, source_line) = locate(src, span.start);
        let end = span.end.min(src.len()).max(span.start);
        let text = src.get(span.start..end).unwrap_or("");
        let width = text.lines().next().map_or(1, |l| l.chars().count().max(1));
        Diagnostic {
            file: file.to_path_buf(),
            line,
            column,
            field: field.to_string(),
            message,
            hint: None,
            source_line: Some(source_line),
            width,
            severity: Severity::Error,
        }
    }

    /// A diagnostic about the file as a whole (line 1, column 1, no source line).
    pub fn whole_file(file: &Path, message: String) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            line: 1,
            column: 1,
            field: String::new(),
            message,
            hint: None,
            source_line: None,
            width: 1,
            severity: Severity::Error,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The same diagnostic as a warning.
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }
}

/// Line (1-based), column (1-based, in chars) and the text of the line holding byte `offset`.
fn locate(src: &str, offset: usize) -> (usize, usize, String) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = src[line_start..offset].chars().count() + 1;
    let line_end = src[offset..].find('\n').map_or(src.len(), |i| offset + i);
    let text = src[line_start..line_end].trim_end_matches('\r').to_string();
    (line, column, text)
}

impl fmt::Display for Diagnostic {
    /// Renders like rustc: `error: msg`, ` --> file:line:col`, the line, a caret, the hint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(f, "{label}: {}", self.message)?;
        writeln!(f, "  --> {}:{}:{}", self.file.display(), self.line, self.column)?;
        if let Some(text) = &self.source_line {
            let gutter = self.line.to_string().len();
            writeln!(f, "{:gutter$} |", "")?;
            writeln!(f, "{} | {}", self.line, text)?;
            let pad: String = text
                .chars()
                .take(self.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            writeln!(f, "{:gutter$} | {}{}", "", pad, "^".repeat(self.width))?;
        }
        if !self.field.is_empty() {
            writeln!(f, "  = field: {}", self.field)?;
        }
        if let Some(hint) = &self.hint {
            writeln!(f, "  = hint: {hint}")?;
        }
        Ok(())
    }
}

/// The closest candidate to `word` by edit distance, if it is plausibly a typo of it.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    // A truncated key (`max_deletions` for `max_deletions_per_cycle`) is a near miss too.
    if word.len() >= 4
        && let Some(c) = candidates.iter().find(|c| c.starts_with(word))
    {
        return Some(c);
    }
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .iter()
        .map(|c| (levenshtein(&word.to_lowercase(), c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_columns_in_chars() {
        let src = "a = 1\nbé = \"x\"\n";
        let offset = src.find('=').map(|_| src.rfind('=').unwrap_or(0)).unwrap_or(0);
        let (line, col, text) = locate(src, offset);
        assert_eq!((line, col, text.as_str()), (2, 4, "bé = \"x\""));
        assert_eq!(locate(src, 0).0, 1);
        assert_eq!(locate(src, 10_000).0, 3);
    }

    #[test]
    fn renders_caret_under_the_span() {
        let src = "engine = \"wordpress\"\n";
        let d = Diagnostic::at(Path::new("s.toml"), src, 9..20, "engine", "bad".into())
            .with_hint("use woocommerce");
        let text = d.to_string();
        assert!(text.contains("--> s.toml:1:10"), "{text}");
        assert!(text.contains("  |          ^^^^^^^^^^^"), "{text}");
        assert!(text.contains("hint: use woocommerce"), "{text}");
    }

    #[test]
    fn suggests_only_near_misses() {
        let keys = ["engine", "host", "plan", "shop"];
        assert_eq!(did_you_mean("engien", &keys), Some("engine"));
        assert_eq!(did_you_mean("hots", &keys), Some("host"));
        assert_eq!(did_you_mean("zzzzzzzz", &keys), None);
        assert_eq!(
            did_you_mean("max_del", &["prune", "max_deletions_per_cycle"]),
            Some("max_deletions_per_cycle")
        );
    }
}
