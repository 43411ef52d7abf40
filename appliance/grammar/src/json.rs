//! OpenAI's `response_format` as grammars: `json_object` and `json_schema`.
//!
//! The JSON is laid out one way: `{"a": 1, "b": [2, 3]}` (a space after `:` and `,`, no
//! newlines). llguidance's default lets whitespace flex anywhere, and a small model given
//! that freedom at temperature 1 can spend its whole budget on newlines; fixed separators
//! cost nothing in what can be expressed.

use serde_json::{Map, Value, json};

use crate::Grammar;

/// Largest schema accepted, in bytes of its JSON text: compiling is proportional to it, and
/// its digest goes to the audit log (the schema itself does not).
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;

/// Why a client's schema was refused before compiling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonGrammarError {
    /// Not a JSON object (a schema is one; `true`/`false` schemas are not useful here).
    #[error("the schema must be a JSON object")]
    NotAnObject,
    /// Larger than [`MAX_SCHEMA_BYTES`].
    #[error("the schema is {0} bytes; at most {MAX_SCHEMA_BYTES} are accepted")]
    TooLarge(usize),
}

/// How every grammar lays out its JSON (see the module docs). Also refuses schema features
/// llguidance cannot enforce rather than ignoring them (`lenient: false`), and has no
/// retriever, so a `$ref` to a URL is an error, never a fetch.
pub(crate) fn layout() -> Value {
    json!({
        "whitespace_flexible": false,
        "item_separator": ", ",
        "key_separator": ": ",
        "lenient": false,
    })
}

/// Any JSON object (OpenAI `{"type": "json_object"}`).
pub fn json_object() -> Grammar {
    Grammar::JsonSchema(json!({"type": "object", "x-guidance": layout()}))
}

/// A client's JSON schema (OpenAI `{"type": "json_schema", "json_schema": {"schema": …}}`),
/// checked for shape and size. Whether its features are supported is known when it is
/// compiled ([`crate::Vocabulary::compile`]).
pub fn json_schema(schema: Value) -> Result<Grammar, JsonGrammarError> {
    let size = serde_json::to_vec(&schema).map_or(usize::MAX, |v| v.len());
    if size > MAX_SCHEMA_BYTES {
        return Err(JsonGrammarError::TooLarge(size));
    }
    let Value::Object(mut fields) = schema else {
        return Err(JsonGrammarError::NotAnObject);
    };
    // Ours, not the client's: the layout is a property of the service.
    fields.insert("x-guidance".into(), layout());
    Ok(Grammar::JsonSchema(Value::Object(fields)))
}

/// The schema without the layout options: what a client sent (for digests and tests).
pub fn client_schema(grammar: &Grammar) -> Option<Value> {
    match grammar {
        Grammar::JsonSchema(Value::Object(fields)) => {
            let mut fields: Map<String, Value> = fields.clone();
            fields.remove("x-guidance");
            Some(Value::Object(fields))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_sizes_are_checked() {
        assert_eq!(json_schema(json!([1])), Err(JsonGrammarError::NotAnObject));
        let big = json!({"description": "x".repeat(MAX_SCHEMA_BYTES)});
        assert!(matches!(
            json_schema(big),
            Err(JsonGrammarError::TooLarge(_))
        ));
        let g = json_schema(json!({"type": "object", "x-guidance": {"whitespace_flexible": true}}))
            .expect("schema");
        let Grammar::JsonSchema(s) = &g else {
            panic!("{g:?}")
        };
        assert_eq!(s["x-guidance"]["whitespace_flexible"], false);
        assert_eq!(client_schema(&g), Some(json!({"type": "object"})));
    }
}
