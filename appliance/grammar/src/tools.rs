//! Tool calls: how a model writes them (its [`ToolFormat`]), the grammar that makes it write
//! one when the client requires it, and the parser that finds them in what it wrote.
//!
//! Formats, picked from the chat template's text as llama.cpp's `common/chat.cpp` does:
//! - [`ToolFormat::Hermes`] (Qwen2.5, SmolLM2, Hermes, and the instructions we add for a
//!   template with no tool support): `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`,
//!   one block per call;
//! - [`ToolFormat::Llama3`] (Llama 3.1+ JSON tool calling): one `{"name": …, "parameters":
//!   {…}}` object as the whole answer, optionally after `<|python_tag|>`;
//! - [`ToolFormat::Mistral`]: the `[TOOL_CALLS]` control token, then a JSON array of
//!   `{"name": …, "arguments": {…}}`.

use serde_json::{Map, Value, json};

use crate::Grammar;

/// Most calls one answer may make when parallel calls are allowed: without a bound, a small
/// model sampled at temperature 1 can repeat a call until `max_tokens` cuts the last one.
pub const MAX_PARALLEL_CALLS: usize = 8;

/// One function a client offers (OpenAI `tools[].function`), checked by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// `[A-Za-z0-9_-]{1,64}`.
    pub name: String,
    /// What it does, for the model.
    pub description: Option<String>,
    /// The JSON schema of its arguments (`{"type": "object"}` when absent).
    pub parameters: Value,
}

/// How a model family writes tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    /// `<tool_call>` blocks of `{"name", "arguments"}`.
    Hermes,
    /// A bare `{"name", "parameters"}` object (Llama 3.1 and later).
    Llama3,
    /// `[TOOL_CALLS]` and an array of `{"name", "arguments"}` (Mistral).
    Mistral,
}

/// A call found in the model's output.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCall {
    /// The function's name (one of the offered tools).
    pub name: String,
    /// Its arguments, a JSON object.
    pub arguments: Value,
}

impl ToolFormat {
    /// A call id this format's templates accept for call `index` of request `request_id`:
    /// Mistral's require exactly 9 letters and digits; others take OpenAI's `call_…` form.
    pub fn call_id(self, request_id: &str, index: usize) -> String {
        let hex: String = request_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        match self {
            ToolFormat::Mistral => {
                let mut id: String = hex.chars().take(7).collect();
                while id.len() < 7 {
                    id.push('0');
                }
                format!("{id}{:02}", index % 100)
            }
            ToolFormat::Hermes | ToolFormat::Llama3 => {
                let short: String = hex.chars().take(16).collect();
                format!("call_{short}_{index}")
            }
        }
    }

    /// The format the chat template `source` implies: Mistral's control token, Llama 3's
    /// `ipython` role or `<|python_tag|>`, else Hermes blocks (also what we instruct a model
    /// whose template has no tool support to write).
    pub fn for_template(source: &str) -> ToolFormat {
        if source.contains("[TOOL_CALLS]") {
            ToolFormat::Mistral
        } else if source.contains("<|python_tag|>") || source.contains("ipython") {
            ToolFormat::Llama3
        } else {
            ToolFormat::Hermes
        }
    }

    /// The key the arguments go under.
    fn arguments_key(self) -> &'static str {
        match self {
            ToolFormat::Llama3 => "parameters",
            ToolFormat::Hermes | ToolFormat::Mistral => "arguments",
        }
    }

    /// A grammar that admits only calls of `tools` (one, or with `parallel` one or more):
    /// what `tool_choice` `required` and a named function enforce. `control` maps a
    /// control token's text to its id (Mistral's `[TOOL_CALLS]`).
    pub fn grammar(
        self,
        tools: &[ToolSpec],
        parallel: bool,
        control: impl Fn(&str) -> Option<u32>,
    ) -> Result<Grammar, String> {
        if tools.is_empty() {
            return Err("no tools to call".into());
        }
        let call = json!({
            "anyOf": tools.iter().map(|t| self.call_schema(t)).collect::<Vec<_>>(),
            "x-guidance": crate::json::layout(),
        });
        let call = serde_json::to_string(&call).map_err(|e| e.to_string())?;
        let lark = match self {
            ToolFormat::Hermes => {
                let more = if parallel {
                    format!(r#" ("\n" call){{0,{}}}"#, MAX_PARALLEL_CALLS - 1)
                } else {
                    String::new()
                };
                format!(
                    "start: call{more}\ncall: \"<tool_call>\\n\" body \"\\n</tool_call>\"\nbody: %json {call}\n"
                )
            }
            ToolFormat::Llama3 => format!("start: body\nbody: %json {call}\n"),
            ToolFormat::Mistral => {
                // The control token where the vocabulary has it (Mistral's own); else the
                // template's text, which is then what the model reads and writes.
                let mark = match control("[TOOL_CALLS]") {
                    Some(id) => format!("<[{id}]>"),
                    None => r#""[TOOL_CALLS]""#.to_owned(),
                };
                let more = if parallel {
                    format!(r#" (", " body){{0,{}}}"#, MAX_PARALLEL_CALLS - 1)
                } else {
                    String::new()
                };
                format!("start: {mark} \" [\" body{more} \"]\"\nbody: %json {call}\n")
            }
        };
        Ok(Grammar::Lark(lark))
    }

    /// `{"name": NAME, "arguments": PARAMETERS}` for one tool, nothing else.
    fn call_schema(self, tool: &ToolSpec) -> Value {
        let mut properties = Map::new();
        properties.insert("name".into(), json!({"const": tool.name}));
        properties.insert(self.arguments_key().into(), tool.parameters.clone());
        json!({
            "type": "object",
            "properties": properties,
            "required": ["name", self.arguments_key()],
            "additionalProperties": false,
        })
    }

    /// Finds the calls in `text` (the model's whole answer) to any of `tools`: the text
    /// outside them (trimmed; `None` if empty) and the calls. Text that looks like a call but
    /// does not parse, or names no offered tool, stays text: the client sees what the model
    /// wrote rather than a call it did not make.
    pub fn parse(self, text: &str, tools: &[ToolSpec]) -> (Option<String>, Vec<ParsedCall>) {
        let known = |v: &Value| -> Option<ParsedCall> {
            let o = v.as_object()?;
            let name = o.get("name")?.as_str()?;
            tools.iter().find(|t| t.name == name)?;
            let arguments = o.get(self.arguments_key())?;
            arguments.is_object().then(|| ParsedCall {
                name: name.to_owned(),
                arguments: arguments.clone(),
            })
        };
        let content = |s: &str| {
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_owned())
        };
        match self {
            ToolFormat::Hermes => {
                let (mut rest, mut calls) = (String::new(), Vec::new());
                let mut tail = text;
                while let Some(start) = tail.find("<tool_call>") {
                    let body_start = start + "<tool_call>".len();
                    let Some(len) = tail[body_start..].find("</tool_call>") else {
                        break;
                    };
                    let body = &tail[body_start..body_start + len];
                    match serde_json::from_str::<Value>(body.trim())
                        .ok()
                        .as_ref()
                        .and_then(known)
                    {
                        Some(call) => {
                            rest.push_str(&tail[..start]);
                            calls.push(call);
                        }
                        None => rest.push_str(&tail[..body_start + len + "</tool_call>".len()]),
                    }
                    tail = &tail[body_start + len + "</tool_call>".len()..];
                }
                rest.push_str(tail);
                (content(&rest), calls)
            }
            ToolFormat::Llama3 => {
                let body = text.trim().trim_start_matches("<|python_tag|>").trim();
                match serde_json::from_str::<Value>(body)
                    .ok()
                    .as_ref()
                    .and_then(known)
                {
                    Some(call) => (None, vec![call]),
                    None => (content(text), Vec::new()),
                }
            }
            ToolFormat::Mistral => {
                // Decoded answers drop control tokens, so the marker may be gone: then the
                // whole answer must be the array.
                let at = text.find("[TOOL_CALLS]");
                let body = match at {
                    Some(at) => text[at + "[TOOL_CALLS]".len()..].trim(),
                    None => text.trim(),
                };
                let at = at.unwrap_or(0);
                let calls: Option<Vec<ParsedCall>> = serde_json::from_str::<Value>(body)
                    .ok()
                    .and_then(|v| v.as_array().map(|a| a.iter().map(known).collect()))
                    .flatten();
                match calls {
                    Some(calls) if !calls.is_empty() => (content(&text[..at]), calls),
                    _ => (content(text), Vec::new()),
                }
            }
        }
    }
}

/// What a model whose template has no tool support is told, as a system message: the
/// Hermes instructions Qwen2.5's template writes, with the tools as JSON.
pub fn hermes_instructions(tools: &[ToolSpec]) -> String {
    let mut text = String::from(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
         You are provided with function signatures within <tools></tools> XML tags:\n<tools>",
    );
    for t in tools {
        text.push('\n');
        text.push_str(&openai_tool(t).to_string());
    }
    text.push_str(
        "\n</tools>\n\nFor each function call, return a json object with function name and \
         arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n\
         {\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>",
    );
    text
}

/// The tool as OpenAI's API (and Hugging Face templates' `tools` variable) spell it.
pub fn openai_tool(t: &ToolSpec) -> Value {
    let mut function = Map::new();
    function.insert("name".into(), Value::String(t.name.clone()));
    if let Some(d) = &t.description {
        function.insert("description".into(), Value::String(d.clone()));
    }
    function.insert("parameters".into(), t.parameters.clone());
    json!({"type": "function", "function": function})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Vec<ToolSpec> {
        vec![
            ToolSpec {
                name: "get_weather".into(),
                description: Some("Weather in a city".into()),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
            },
            ToolSpec {
                name: "lookup_patient".into(),
                description: None,
                parameters: json!({"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}),
            },
        ]
    }

    #[test]
    fn formats_follow_the_template() {
        assert_eq!(
            ToolFormat::for_template("{% if tools %}<tool_call>{% endif %}"),
            ToolFormat::Hermes
        );
        assert_eq!(
            ToolFormat::for_template("<|start_header_id|>ipython<|end_header_id|>"),
            ToolFormat::Llama3
        );
        assert_eq!(
            ToolFormat::for_template("{{ '[TOOL_CALLS]' }}"),
            ToolFormat::Mistral
        );
        assert_eq!(
            ToolFormat::for_template("{{ messages }}"),
            ToolFormat::Hermes
        );
    }

    #[test]
    fn hermes_blocks_are_parsed_and_unknown_ones_stay_text() {
        let t = tools();
        let text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"lookup_patient\", \"arguments\": {\"id\": 7}}\n</tool_call>";
        let (content, calls) = ToolFormat::Hermes.parse(text, &t);
        assert_eq!(content.as_deref(), Some("Let me check."));
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].name, "get_weather");
        assert_eq!(calls[1].arguments, json!({"id": 7}));
        let bogus = "<tool_call>\n{\"name\": \"rm_rf\", \"arguments\": {}}\n</tool_call>";
        let (content, calls) = ToolFormat::Hermes.parse(bogus, &t);
        assert!(calls.is_empty());
        assert_eq!(content.as_deref(), Some(bogus));
        let (content, calls) = ToolFormat::Hermes.parse("Just text.", &t);
        assert_eq!((content.as_deref(), calls.len()), (Some("Just text."), 0));
    }

    #[test]
    fn llama3_and_mistral_calls_are_parsed() {
        let t = tools();
        let (c, calls) = ToolFormat::Llama3.parse(
            "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}",
            &t,
        );
        assert_eq!(
            (c, calls[0].arguments.clone()),
            (None, json!({"city": "Oslo"}))
        );
        let (c, calls) = ToolFormat::Mistral.parse(
            "[TOOL_CALLS][{\"name\": \"lookup_patient\", \"arguments\": {\"id\": 1}}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}]",
            &t,
        );
        assert_eq!(c, None);
        assert_eq!(calls.len(), 2);
        let (c, calls) = ToolFormat::Mistral.parse("No call here.", &t);
        assert_eq!((c.as_deref(), calls.len()), (Some("No call here."), 0));
        // The control token dropped in decoding: the array alone.
        let (c, calls) = ToolFormat::Mistral.parse(
            " [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}]",
            &t,
        );
        assert_eq!((c, calls.len()), (None, 1));
    }

    #[test]
    fn grammars_name_each_tool() {
        let t = tools();
        let Grammar::Lark(g) = ToolFormat::Hermes.grammar(&t, true, |_| None).unwrap() else {
            panic!()
        };
        assert!(
            g.contains("<tool_call>") && g.contains("get_weather") && g.contains("lookup_patient")
        );
        let Grammar::Lark(g) = ToolFormat::Mistral.grammar(&t, false, |_| None).unwrap() else {
            panic!()
        };
        assert!(g.starts_with("start: \"[TOOL_CALLS]\""), "{g}");
        let Grammar::Lark(g) = ToolFormat::Mistral.grammar(&t, false, |_| Some(5)).unwrap() else {
            panic!()
        };
        assert!(g.starts_with("start: <[5]>"), "{g}");
        assert!(ToolFormat::Hermes.grammar(&[], false, |_| None).is_err());
    }
}
