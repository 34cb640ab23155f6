//! `schema`: the JSON Schemas that govern names.

use serde_json::Value;

use crate::cli::SchemaCommand;
use crate::exit::Invalid;
use crate::input::read_value;
use crate::output::Printer;

/// `schema set|get|list|delete`.
pub(super) async fn exec(
    client: &cfgd::Client,
    command: SchemaCommand,
    force: bool,
    out: &Printer,
) -> anyhow::Result<()> {
    let not_found = |pattern: &str| cfgd::Error::NotFound {
        key: client
            .schema_etcd_key(pattern)
            .unwrap_or_else(|_| pattern.to_owned()),
        revision: None,
    };
    match command {
        SchemaCommand::Set { pattern, file } => {
            let text = read_value(None, Some(file))?;
            let schema: Value = serde_json::from_str(&text)
                .map_err(|e| Invalid(format!("schema {pattern:?}: not valid JSON: {e}")))?;
            let revision = client.set_schema(&pattern, &schema, force).await?;
            out.written(&pattern, revision, None)
        }
        SchemaCommand::Get { pattern } => {
            let entry = client
                .get_schema(&pattern)
                .await?
                .ok_or_else(|| not_found(&pattern))?;
            out.value(&entry.value)
        }
        SchemaCommand::List => {
            let schemas: serde_json::Map<String, Value> = client
                .list_schemas()
                .await?
                .into_iter()
                .map(|e| (e.name, e.value))
                .collect();
            out.document(&Value::Object(schemas))
        }
        SchemaCommand::Delete { pattern } => {
            let revision = client
                .delete_schema(&pattern)
                .await?
                .ok_or_else(|| not_found(&pattern))?;
            out.written(&pattern, revision, None)
        }
    }
}
