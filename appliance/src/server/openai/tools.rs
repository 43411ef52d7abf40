//! Tool calls on the chat endpoint: presenting the tools to the model, enforcing a required
//! or named call, and turning the model's answer back into OpenAI's `tool_calls`.
//!
//! A template that uses the `tools` variable (Qwen2.5, Llama 3.1, Mistral) gets the tools and
//! the conversation's tool calls as Hugging Face templates expect them, and the answer is
//! read in the format the template implies ([`ToolFormat::for_template`]). A template without
//! tool support (the default SmolLM2-135M's) is given the tools the way Qwen2.5's template
//! writes them, as a system message in Hermes form; earlier calls and tool results become
//! `<tool_call>` / `<tool_response>` text. Either way every client string reaches the prompt as
//! plain text (`ChatTemplate::render_delimited_with_tools`).
//!
//! `tool_choice` `required` or a named function compiles a grammar that admits only such
//! calls; `auto` lets the model write freely and finds the calls in its answer; `none` hides
//! the tools.
use airlock_engine::Engine;
use airlock_engine::airlock_tokenizer::ChatMessage;
use airlock_grammar::Grammar;
use airlock_grammar::tools::{ParsedCall, ToolFormat, ToolSpec, hermes_instructions, openai_tool};
use serde_json::{Value, json};

use super::request::{Message, ToolChoice, Tools};

/// How this engine's model writes tool calls.
pub fn format(engine: &Engine) -> ToolFormat {
    match engine.tokenizer().chat_template_source() {
        Some(source) if engine.template_uses_tools() => ToolFormat::for_template(source),
        _ => ToolFormat::Hermes,
    }
}

/// The conversation as the template gets it, and its `tools` variable.
pub fn conversation(
    engine: &Engine,
    messages: Vec<Message>,
    tools: Option<&Tools>,
) -> (Vec<ChatMessage>, Option<Value>) {
    let offered = tools.filter(|t| t.choice != ToolChoice::None);
    if engine.template_uses_tools() {
        let messages = messages.into_iter().map(native).collect();
        let tools = offered.map(|t| Value::Array(t.specs.iter().map(openai_tool).collect()));
        return (messages, tools);
    }
    let mut out: Vec<ChatMessage> = messages.into_iter().map(hermes_text).collect();
    if let Some(t) = offered {
        let instructions = hermes_instructions(&t.specs);
        match out.first_mut() {
            Some(first) if first.role == "system" => {
                first.content = format!("{}\n\n{instructions}", first.content);
            }
            _ => out.insert(0, ChatMessage::new("system", instructions)),
        }
    }
    (out, None)
}

/// A message for a template that knows tool calls: `tool_calls` in OpenAI's shape with
/// the arguments as an object, `tool_call_id` on tool results.
fn native(m: Message) -> ChatMessage {
    let mut c = ChatMessage::new(m.role, m.content);
    if !m.tool_calls.is_empty() {
        c.tool_calls = Some(Value::Array(
            m.tool_calls
                .into_iter()
                .map(|call| {
                    json!({"id": call.id, "type": "function",
                           "function": {"name": call.name, "arguments": call.arguments}})
                })
                .collect(),
        ));
    }
    c.tool_call_id = m.tool_call_id;
    c
}

/// A message for a template that does not: calls and results as Hermes text, tool results
/// from the user (as Qwen2.5's template presents them).
fn hermes_text(m: Message) -> ChatMessage {
    if m.role == "tool" {
        return ChatMessage::new(
            "user",
            format!("<tool_response>\n{}\n</tool_response>", m.content),
        );
    }
    let mut content = m.content;
    for call in m.tool_calls {
        if !content.is_empty() {
            content.push('\n');
        }
        let body = json!({"name": call.name, "arguments": call.arguments});
        content.push_str(&format!("<tool_call>\n{body}\n</tool_call>"));
    }
    ChatMessage::new(m.role, content)
}

/// The grammar `tool_choice` imposes, if any (`required`: any offered tool; named: that one).
pub fn grammar(engine: &Engine, tools: &Tools) -> Option<Result<Grammar, String>> {
    let specs: Vec<ToolSpec> = match &tools.choice {
        ToolChoice::None | ToolChoice::Auto => return None,
        ToolChoice::Required => tools.specs.clone(),
        ToolChoice::Named(name) => tools
            .specs
            .iter()
            .filter(|s| &s.name == name)
            .cloned()
            .collect(),
    };
    let parallel = tools.parallel && tools.choice == ToolChoice::Required;
    let tokenizer = engine.tokenizer();
    Some(format(engine).grammar(&specs, parallel, |text| {
        tokenizer
            .token_id(text)
            .filter(|&id| tokenizer.is_control(id))
    }))
}

/// The answer's content and calls (`None`: tools were not offered, the text is the answer).
pub fn split(
    engine: &Engine,
    tools: Option<&Tools>,
    text: &str,
) -> Option<(Option<String>, Vec<ParsedCall>)> {
    let tools = tools.filter(|t| t.choice != ToolChoice::None)?;
    let (content, mut calls) = format(engine).parse(text, &tools.specs);
    if !tools.parallel {
        calls.truncate(1);
    }
    Some((content, calls))
}

/// OpenAI's `tool_calls` for `calls`; ids come from the request id and the call's index
/// ([`ToolFormat::call_id`]: what the model's template accepts back), traceable to the audit
/// record.
pub fn openai_calls(
    engine: &Engine,
    request_id: &str,
    calls: &[ParsedCall],
    with_index: bool,
) -> Value {
    let format = format(engine);
    Value::Array(
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut v = json!({
                    "id": format.call_id(request_id, i),
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments.to_string()},
                });
                if with_index {
                    v["index"] = json!(i);
                }
                v
            })
            .collect(),
    )
}
