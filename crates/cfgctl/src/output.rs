//! Printing results as JSON, YAML or a table.

use std::io::Write;

use cfgd::diff::{Difference, NamedDiff};
use cfgd::{Entry, Revision};
use serde::Serialize;
use serde_json::Value;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Pretty JSON (values as they are, for jq and scripts)
    Json,
    /// YAML
    Yaml,
    /// Aligned columns for people
    Table,
}

/// The longest value shown in a table cell; the rest is cut with an ellipsis.
const CELL_WIDTH: usize = 60;

#[derive(Serialize)]
struct EntryOut<'a> {
    name: &'a str,
    revision: Revision,
    version: i64,
    value: &'a Value,
}

impl<'a> From<&'a Entry> for EntryOut<'a> {
    fn from(e: &'a Entry) -> Self {
        EntryOut {
            name: &e.name,
            revision: e.revision,
            version: e.version,
            value: &e.value,
        }
    }
}

#[derive(Serialize)]
struct Written<'a> {
    name: &'a str,
    revision: Revision,
    #[serde(skip_serializing_if = "Option::is_none")]
    restored_from: Option<Revision>,
}

pub struct Printer {
    format: Format,
}

impl Printer {
    pub fn new(format: Format) -> Self {
        Printer { format }
    }

    pub fn is_table(&self) -> bool {
        self.format == Format::Table
    }

    pub fn value(&self, value: &Value) -> anyhow::Result<()> {
        match self.format {
            Format::Table => emit(&compact(value)),
            _ => self.structured(value),
        }
    }

    pub fn entry(&self, entry: &Entry) -> anyhow::Result<()> {
        self.entries_or_one(std::slice::from_ref(entry), true)
    }

    pub fn entries(&self, entries: &[Entry]) -> anyhow::Result<()> {
        self.entries_or_one(entries, false)
    }

    fn entries_or_one(&self, entries: &[Entry], one: bool) -> anyhow::Result<()> {
        if self.format == Format::Table {
            let rows = entries
                .iter()
                .map(|e| vec![e.name.clone(), e.revision.to_string(), cell(&e.value)])
                .collect();
            return emit(&table(&["NAME", "REVISION", "VALUE"], rows));
        }
        let out: Vec<EntryOut> = entries.iter().map(EntryOut::from).collect();
        match (one, out.first()) {
            (true, Some(first)) => self.structured(first),
            _ => self.structured(&out),
        }
    }

    pub fn history(&self, entries: &[Entry]) -> anyhow::Result<()> {
        if self.format == Format::Table {
            let rows = entries
                .iter()
                .map(|e| {
                    vec![
                        e.revision.to_string(),
                        e.version.to_string(),
                        cell(&e.value),
                    ]
                })
                .collect();
            return emit(&table(&["REVISION", "VERSION", "VALUE"], rows));
        }
        let out: Vec<EntryOut> = entries.iter().map(EntryOut::from).collect();
        self.structured(&out)
    }

    pub fn written(
        &self,
        name: &str,
        revision: Revision,
        restored_from: Option<Revision>,
    ) -> anyhow::Result<()> {
        if self.format == Format::Table {
            let mut row = vec![name.to_owned(), revision.to_string()];
            let mut headers = vec!["NAME", "REVISION"];
            if let Some(from) = restored_from {
                headers.push("RESTORED FROM");
                row.push(from.to_string());
            }
            return emit(&table(&headers, vec![row]));
        }
        self.structured(&Written {
            name,
            revision,
            restored_from,
        })
    }

    /// `get --explain`: each layer's value, the effective one, and where
    /// each field came from.
    pub fn explained(&self, explained: &cfgd::Explained) -> anyhow::Result<()> {
        if self.format != Format::Table {
            return self.structured(&serde_json::to_value(explained)?);
        }
        let layers = explained
            .layers
            .iter()
            .map(|l| {
                let value = l.value.as_ref().map_or_else(|| "-".to_owned(), cell);
                vec![l.namespace.clone(), l.revision.to_string(), value]
            })
            .collect();
        let effective = explained
            .value
            .as_ref()
            .map_or_else(|| "(unset)".to_owned(), cell);
        let origins = explained
            .origins
            .iter()
            .map(|(field, from)| {
                vec![
                    if field.is_empty() {
                        "/".into()
                    } else {
                        field.clone()
                    },
                    from.clone(),
                ]
            })
            .collect();
        emit(&format!(
            "{}\neffective: {effective}\n\n{}",
            table(&["LAYER", "REVISION", "VALUE"], layers).trim_end(),
            table(&["FIELD", "FROM"], origins).trim_end()
        ))
    }

    pub fn document(&self, document: &Value) -> anyhow::Result<()> {
        match self.format {
            Format::Table => {
                let rows = document
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, value)| vec![name.clone(), cell(value)])
                    .collect();
                emit(&table(&["NAME", "VALUE"], rows))
            }
            _ => self.structured(document),
        }
    }

    /// Audit records, as they come (newest first).
    pub fn audit(&self, records: &[cfgd::audit::AuditRecord]) -> anyhow::Result<()> {
        if self.format == Format::Table {
            let rows = records
                .iter()
                .map(|r| {
                    let names: Vec<&str> = r
                        .names
                        .iter()
                        .map(|n| match n.kind.as_str() {
                            "policy" => "policy",
                            _ => n.name.as_str(),
                        })
                        .collect();
                    vec![
                        r.revision.to_string(),
                        r.actor.clone(),
                        r.via.clone(),
                        r.action.clone(),
                        names.join(","),
                        r.message.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            return emit(&table(
                &["REVISION", "ACTOR", "VIA", "ACTION", "NAMES", "MESSAGE"],
                rows,
            ));
        }
        self.structured(&records)
    }

    /// Change requests, as they come (newest first).
    pub fn requests(&self, requests: &[cfgd::ChangeRequest]) -> anyhow::Result<()> {
        if self.format == Format::Table {
            let rows = requests
                .iter()
                .map(|r| {
                    let names: Vec<&str> = r.base.keys().map(String::as_str).collect();
                    let approvals: Vec<&str> =
                        r.approvals.iter().map(|a| a.actor.as_str()).collect();
                    vec![
                        r.id.clone(),
                        r.state.as_str().to_owned(),
                        r.author.clone(),
                        approvals.join(","),
                        names.join(","),
                        r.message.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            return emit(&table(
                &["ID", "STATE", "AUTHOR", "APPROVED BY", "NAMES", "MESSAGE"],
                rows,
            ));
        }
        self.structured(requests)
    }

    pub fn import(&self, report: &cfgd::ImportReport, dry_run: bool) -> anyhow::Result<()> {
        if self.format == Format::Table {
            let rows = [
                ("created", &report.created),
                ("updated", &report.updated),
                ("unchanged", &report.unchanged),
            ]
            .into_iter()
            .flat_map(|(what, names)| names.iter().map(move |n| vec![what.to_owned(), n.clone()]))
            .collect();
            return emit(&table(&["CHANGE", "NAME"], rows));
        }
        self.structured(&serde_json::json!({
            "dry_run": dry_run,
            "created": report.created,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "revision": report.revision,
        }))
    }

    fn structured<T: Serialize + ?Sized>(&self, value: &T) -> anyhow::Result<()> {
        let text = match self.format {
            Format::Yaml => serde_norway::to_string(value)?,
            _ => serde_json::to_string_pretty(value)? + "\n",
        };
        emit(&text)
    }
}

fn compact(value: &Value) -> String {
    value.to_string() + "\n"
}

fn cell(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(CELL_WIDTH) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let headers = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(headers).chain(rows) {
        let last = row.len() - 1;
        for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
            out.push_str(c);
            if i < last {
                out.extend(std::iter::repeat_n(' ', w - c.chars().count() + 2));
            }
        }
        out.push('\n');
    }
    out
}

/// Writes one line and flushes it; `false` once stdout is closed.
/// Prints diffs: as text lines for people, colored when stdout is a
/// terminal (and `NO_COLOR` is unset), or as data.
pub enum DiffPrinter {
    Text { color: bool },
    Data(Printer),
}

#[derive(Serialize)]
struct RevisionDiff<'a> {
    revision: Revision,
    version: i64,
    differences: &'a [Difference],
}

impl DiffPrinter {
    pub fn text() -> Self {
        use std::io::IsTerminal;
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        DiffPrinter::Text { color }
    }

    pub fn data(printer: Printer) -> Self {
        DiffPrinter::Data(printer)
    }

    /// Name by name; nothing at all when nothing differs.
    pub fn named(&self, diffs: &[NamedDiff]) -> anyhow::Result<()> {
        let color = match self {
            DiffPrinter::Data(printer) => return printer.structured(&diffs),
            DiffPrinter::Text { color } => *color,
        };
        let mut text = String::new();
        for named in diffs {
            match named.differences.as_slice() {
                // A whole name added or removed: one line.
                [Difference::Added { path, value }] if path.is_empty() => {
                    text += &paint(color, "+", &format!("+ {}: {value}", named.name));
                }
                [Difference::Removed { path, value }] if path.is_empty() => {
                    text += &paint(color, "-", &format!("- {}: {value}", named.name));
                }
                differences => {
                    text += &paint(color, "~", &format!("~ {}", named.name));
                    for difference in differences {
                        text += &indent(color, difference);
                    }
                }
            }
        }
        emit(&text)
    }

    /// Each revision (newest first) and what it changed from the one before.
    pub fn history(&self, revisions: &[(Entry, Vec<Difference>)]) -> anyhow::Result<()> {
        let color = match self {
            DiffPrinter::Data(printer) => {
                let out: Vec<RevisionDiff> = revisions
                    .iter()
                    .map(|(e, d)| RevisionDiff {
                        revision: e.revision,
                        version: e.version,
                        differences: d,
                    })
                    .collect();
                return printer.structured(&out);
            }
            DiffPrinter::Text { color } => *color,
        };
        let mut text = String::new();
        for (entry, differences) in revisions {
            let head = format!("revision {} (version {})", entry.revision, entry.version);
            text += &if color {
                format!("\x1b[1m{head}\x1b[0m\n")
            } else {
                format!("{head}\n")
            };
            if differences.is_empty() {
                text += "    (same value as the revision before)\n";
            }
            for difference in differences {
                text += &indent(color, difference);
            }
        }
        emit(&text)
    }
}

fn indent(color: bool, difference: &Difference) -> String {
    let line = difference.to_string();
    let sign = &line[..1];
    paint(color, sign, &format!("    {line}"))
}

/// One line, green for `+`, red for `-`, yellow for `~` when colored.
fn paint(color: bool, sign: &str, line: &str) -> String {
    let code = match sign {
        "+" => "32",
        "-" => "31",
        _ => "33",
    };
    if color {
        format!("\x1b[{code}m{line}\x1b[0m\n")
    } else {
        format!("{line}\n")
    }
}

pub fn line(text: &str) -> anyhow::Result<bool> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Writes to stdout; a closed pipe (`cfgctl list | head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Diffs print as text for people (the default, and `-o table`) unless
/// `-o json` or `-o yaml` asks for data.
pub(crate) fn diff_output(format: Option<Format>) -> DiffPrinter {
    match format {
        None | Some(Format::Table) => DiffPrinter::text(),
        Some(format) => DiffPrinter::data(Printer::new(format)),
    }
}

/// Prints `err` on stderr as one line (a schema violation as one line per
/// failure), with the flags that fix a missing setting.
pub(crate) fn error(err: &anyhow::Error) {
    if let Some(cfgd::Error::SchemaViolation {
        key,
        pattern,
        failures,
    }) = err.downcast_ref::<cfgd::Error>()
    {
        eprintln!("cfgctl: {key}: does not match schema {pattern:?}:");
        for failure in failures {
            eprintln!("  {failure}");
        }
        return;
    }
    // The context chain on the one line scripts grep, down to the library's
    // error, whose own line already holds its causes.
    let mut parts = Vec::new();
    for cause in err.chain() {
        parts.push(cause.to_string());
        if cause.downcast_ref::<cfgd::Error>().is_some() {
            break;
        }
    }
    eprintln!("cfgctl: {}{}", parts.join(": "), hint(err));
}

/// The flags that supply a setting the library says is missing.
fn hint(err: &anyhow::Error) -> &'static str {
    match err.downcast_ref::<cfgd::Error>() {
        Some(cfgd::Error::Tls {
            needs: Some(cfgd::TlsSetting::CaFile),
            ..
        }) => " (--cacert)",
        Some(cfgd::Error::Tls {
            needs: Some(cfgd::TlsSetting::ClientCert),
            ..
        }) => " (--cert and --key)",
        Some(cfgd::Error::Protected { .. }) => " (cfgctl request create FILE, or --force)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["NAME", "REVISION"],
            vec![
                vec!["a".into(), "7".into()],
                vec!["longer.name".into(), "12".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME         REVISION\na            7\nlonger.name  12\n"
        );
    }

    #[test]
    fn long_cells_are_cut() {
        let v = Value::String("x".repeat(100));
        let c = cell(&v);
        assert_eq!(c.chars().count(), CELL_WIDTH + 1);
        assert!(c.ends_with('…'));
    }
}
