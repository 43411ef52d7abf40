//! Constrained decoding on the real default model: what the model writes under a grammar
//! parses and validates, at temperature 1, batched, and a bad schema is refused by name.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use airlock_engine::airlock_tokenizer::ChatMessage;
use airlock_engine::{Batch, Engine, FinishReason, SamplingParams, SeqRequest, TokenConstraint};
use airlock_grammar::{Grammar, GrammarError, Vocabulary, json_object, json_schema};
use airlock_testkit::default_model;
use serde_json::{Value, json};

fn engine() -> Arc<Engine> {
    static E: OnceLock<Arc<Engine>> = OnceLock::new();
    Arc::clone(E.get_or_init(|| Arc::new(Engine::load(default_model(), None).unwrap())))
}

fn vocabulary() -> Vocabulary {
    static V: OnceLock<Vocabulary> = OnceLock::new();
    V.get_or_init(|| Vocabulary::new(engine()).unwrap()).clone()
}

fn patient_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 24},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "temperature_c": {"type": "number", "minimum": 34, "maximum": 43},
            "ward": {"enum": ["cardiology", "oncology", "emergency"]},
            "allergies": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 3},
            "contact": {
                "type": "object",
                "properties": {"phone": {"type": "string", "pattern": "^[0-9]{3}-[0-9]{4}$"}},
                "required": ["phone"],
                "additionalProperties": false
            }
        },
        "required": ["name", "age", "temperature_c", "ward", "allergies", "contact"],
        "additionalProperties": false
    })
}

/// Checks `v` against [`patient_schema`] by hand (the test must not trust the engine's
/// reading of the schema to judge the engine).
fn check_patient(v: &Value) -> Result<(), String> {
    let o = v.as_object().ok_or("not an object")?;
    let keys: Vec<&str> = o.keys().map(String::as_str).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    if sorted
        != [
            "age",
            "allergies",
            "contact",
            "name",
            "temperature_c",
            "ward",
        ]
    {
        return Err(format!("keys {keys:?}"));
    }
    let name = o["name"].as_str().ok_or("name")?;
    if name.chars().count() > 24 {
        return Err(format!("name {name:?}"));
    }
    let age = o["age"].as_i64().ok_or("age not an integer")?;
    if !(0..=120).contains(&age) {
        return Err(format!("age {age}"));
    }
    let t = o["temperature_c"].as_f64().ok_or("temperature")?;
    if !(34.0..=43.0).contains(&t) {
        return Err(format!("temperature {t}"));
    }
    if !["cardiology", "oncology", "emergency"].contains(&o["ward"].as_str().ok_or("ward")?) {
        return Err(format!("ward {}", o["ward"]));
    }
    let allergies = o["allergies"].as_array().ok_or("allergies")?;
    if allergies.len() > 3
        || allergies
            .iter()
            .any(|a| a.as_str().is_none_or(|s| s.chars().count() > 16))
    {
        return Err(format!("allergies {allergies:?}"));
    }
    let contact = o["contact"].as_object().ok_or("contact")?;
    let phone = contact
        .get("phone")
        .and_then(Value::as_str)
        .ok_or("phone")?;
    let ok = contact.len() == 1
        && phone.len() == 8
        && phone.bytes().enumerate().all(|(i, b)| {
            if i == 3 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !ok {
        return Err(format!("contact {contact:?}"));
    }
    Ok(())
}

struct Run {
    texts: Vec<String>,
    finishes: Vec<FinishReason>,
    tokens: usize,
    elapsed: Duration,
}

/// Runs `n` sequences of the chat `prompt` together, each under its own compile of `grammar`
/// (or none), sampled at temperature 1 with distinct seeds.
fn run(grammar: Option<&Grammar>, prompt: &str, n: usize, max_tokens: usize) -> Run {
    let e = engine();
    let prompt = e
        .chat_prompt(&[ChatMessage::new("user", prompt)])
        .unwrap()
        .ids;
    let mut batch = Batch::new(&e);
    let mut ids = Vec::new();
    for seed in 0..n as u64 {
        let constraint =
            grammar.map(|g| Box::new(vocabulary().compile(g).unwrap()) as Box<dyn TokenConstraint>);
        let sampling = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: Some(seed),
            ..SamplingParams::default()
        };
        let req = SeqRequest {
            constraint,
            ..SeqRequest::new(prompt.clone(), max_tokens, sampling)
        };
        ids.push(batch.add(&e, req).unwrap());
    }
    let mut tokens: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut finishes = vec![FinishReason::Length; n];
    let mut count = 0;
    let t0 = Instant::now();
    while !batch.is_empty() {
        for t in batch.step(&e).unwrap() {
            let i = ids.iter().position(|&id| id == t.id).unwrap();
            count += 1;
            if let Some(f) = t.finished {
                finishes[i] = f;
            }
            if !e.tokenizer().is_eog(t.token) {
                tokens[i].push(t.token);
            }
        }
    }
    Run {
        texts: tokens.iter().map(|t| e.tokenizer().decode(t)).collect(),
        finishes,
        tokens: count,
        elapsed: t0.elapsed(),
    }
}

#[test]
fn sampled_answers_under_a_schema_all_parse_and_validate() {
    let grammar = json_schema(patient_schema()).unwrap();
    let r = run(Some(&grammar), "Make up a patient record as JSON.", 16, 160);
    for (text, finish) in r.texts.iter().zip(&r.finishes) {
        assert!(
            matches!(finish, FinishReason::EndOfText | FinishReason::Complete),
            "{finish:?}: {text}"
        );
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        check_patient(&v).unwrap_or_else(|e| panic!("{e}: {text}"));
        // One layout: a space after separators, no newlines.
        assert!(!text.contains('\n') && text.starts_with("{\""), "{text}");
    }
    eprintln!(
        "constrained: {} tokens in {:.2?} ({:.1} tok/s)",
        r.tokens,
        r.elapsed,
        r.tokens as f64 / r.elapsed.as_secs_f64()
    );
}

#[test]
fn json_object_mode_gives_an_object() {
    let r = run(Some(&json_object()), "List three fruits as JSON.", 4, 200);
    for (text, finish) in r.texts.iter().zip(&r.finishes) {
        if matches!(finish, FinishReason::EndOfText | FinishReason::Complete) {
            let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert!(v.is_object(), "{text}");
        } else {
            assert_eq!(*finish, FinishReason::Length, "{text}");
        }
    }
}

#[test]
fn unsupported_and_invalid_schemas_are_refused_with_the_reason() {
    let v = vocabulary();
    for (schema, says) in [
        (
            json!({"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}}),
            "example.com",
        ),
        (json!({"type": "strnig"}), "strnig"),
        (
            json!({"type": "string", "format": "no-such-format"}),
            "no-such-format",
        ),
    ] {
        match v.compile(&json_schema(schema.clone()).unwrap()) {
            Err(GrammarError::Unsupported(m)) => assert!(m.contains(says), "{schema}: {m}"),
            other => panic!("{schema}: {other:?}"),
        }
    }
}

#[test]
fn a_required_tool_call_is_always_a_valid_call_of_an_offered_tool() {
    use airlock_grammar::tools::{ToolFormat, ToolSpec};
    let tools = vec![
        ToolSpec {
            name: "get_weather".into(),
            description: Some("Current weather in a city".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"], "additionalProperties": false}),
        },
        ToolSpec {
            name: "book_room".into(),
            description: None,
            parameters: json!({"type": "object", "properties": {"ward": {"enum": ["a", "b"]}, "nights": {"type": "integer", "minimum": 1, "maximum": 14}}, "required": ["ward", "nights"], "additionalProperties": false}),
        },
    ];
    for (format, parallel) in [
        (ToolFormat::Hermes, false),
        (ToolFormat::Hermes, true),
        (ToolFormat::Llama3, false),
    ] {
        let grammar = format.grammar(&tools, parallel, |_| None).unwrap();
        let r = run(Some(&grammar), "What is the weather in Paris?", 6, 120);
        for (text, finish) in r.texts.iter().zip(&r.finishes) {
            assert!(
                matches!(finish, FinishReason::EndOfText | FinishReason::Complete),
                "{format:?} {finish:?}: {text}"
            );
            let (content, calls) = format.parse(text, &tools);
            assert!(content.is_none(), "{format:?}: {text}");
            assert!(!calls.is_empty(), "{format:?}: {text}");
            assert!(parallel || calls.len() == 1, "{text}");
        }
    }
}

/// Prints what the mask costs per token on the default model's 49k-token vocabulary (the
/// benchmark, bench/api.sh --features, reports it from a running service).
#[test]
fn mask_cost_per_token_is_printed() {
    #[derive(Debug)]
    struct Timed(
        airlock_grammar::Constraint,
        std::sync::Arc<std::sync::Mutex<(Duration, usize)>>,
    );
    impl TokenConstraint for Timed {
        fn allowed(&mut self, mask: &mut airlock_engine::TokenMask) -> Result<(), String> {
            let t0 = Instant::now();
            let r = self.0.allowed(mask);
            let mut s = self.1.lock().unwrap();
            s.0 += t0.elapsed();
            s.1 += 1;
            r
        }
        fn accept(&mut self, token: u32) -> Result<(), String> {
            self.0.accept(token)
        }
        fn is_complete(&mut self) -> bool {
            self.0.is_complete()
        }
    }
    let e = engine();
    let stats = std::sync::Arc::new(std::sync::Mutex::new((Duration::ZERO, 0usize)));
    let prompt = e
        .chat_prompt(&[ChatMessage::new(
            "user",
            "Make up a patient record as JSON.",
        )])
        .unwrap()
        .ids;
    let mut batch = Batch::new(&e);
    let c = vocabulary()
        .compile(&json_schema(patient_schema()).unwrap())
        .unwrap();
    let req = SeqRequest {
        constraint: Some(Box::new(Timed(c, stats.clone()))),
        ..SeqRequest::new(prompt, 160, SamplingParams::greedy())
    };
    batch.add(&e, req).unwrap();
    let t0 = Instant::now();
    let mut n = 0;
    while !batch.is_empty() {
        n += batch.step(&e).unwrap().len();
    }
    let (mask, masks) = *stats.lock().unwrap();
    eprintln!(
        "{n} tokens in {:.2?}; {masks} masks took {:.2?} ({:.3} ms each)",
        t0.elapsed(),
        mask,
        mask.as_secs_f64() * 1000.0 / masks.max(1) as f64
    );
    assert!(masks > 0);
}
