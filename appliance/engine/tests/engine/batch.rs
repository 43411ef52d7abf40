//! Continuous batching on the default model: sequences that join at different steps, share
//! decode steps and leave, each produce exactly what they produce alone.

use std::collections::HashMap;

use airlock_engine::{Batch, EngineError, FinishReason, SamplingParams, SeqRequest};

use crate::common::{ids, reference};
use crate::fidelity::engine;

fn request(prompt: Vec<u32>, max_tokens: usize) -> SeqRequest {
    SeqRequest::new(prompt, max_tokens, SamplingParams::greedy())
}

/// Runs one sequence alone to completion.
fn alone(prompt: &[u32], max_tokens: usize) -> Vec<u32> {
    let e = engine();
    let mut b = Batch::new(&e);
    let id = b.add(&e, request(prompt.to_vec(), max_tokens)).unwrap();
    let mut out = Vec::new();
    while !b.is_empty() {
        for t in b.step(&e).unwrap() {
            assert_eq!(t.id, id);
            out.push(t.token);
        }
    }
    out
}

#[test]
fn sequences_joining_and_leaving_match_their_solo_runs() {
    let e = engine();
    let r = reference();
    let prompts: Vec<Vec<u32>> = r["chat"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| ids(&c["prompt_ids"]))
        .collect();
    let max = 12;
    let solo: Vec<Vec<u32>> = prompts.iter().map(|p| alone(p, max)).collect();

    let mut b = Batch::new(&e);
    let mut got: HashMap<u64, Vec<u32>> = HashMap::new();
    let mut which: HashMap<u64, usize> = HashMap::new();
    let first = b.add(&e, request(prompts[0].clone(), max)).unwrap();
    which.insert(first, 0);
    let mut step = 0;
    while !b.is_empty() || which.len() < prompts.len() {
        // The second joins after 3 steps, the third after 5: mixed prompt and decode steps.
        for (at, i) in [(3, 1), (5, 2)] {
            if step == at {
                let id = b.add(&e, request(prompts[i].clone(), max)).unwrap();
                which.insert(id, i);
            }
        }
        for t in b.step(&e).unwrap() {
            got.entry(t.id).or_default().push(t.token);
            if let Some(f) = t.finished {
                assert!(matches!(f, FinishReason::EndOfText | FinishReason::Length));
            }
        }
        step += 1;
    }
    for (id, i) in which {
        assert_eq!(
            got[&id],
            solo[i],
            "sequence {i} (prompt {:?}...)",
            &prompts[i][..4]
        );
    }
}

#[test]
fn removed_sequences_are_gone_and_unknown_ids_are_errors() {
    let e = engine();
    let mut b = Batch::new(&e);
    let id = b.add(&e, request(vec![1, 2, 3], 4)).unwrap();
    b.remove(id).unwrap();
    assert!(b.is_empty());
    assert!(matches!(b.remove(id), Err(EngineError::UnknownSequence { id: x }) if x == id));
    assert!(b.step(&e).unwrap().is_empty());
    assert!(matches!(
        b.add(&e, request(vec![], 4)),
        Err(EngineError::EmptyPrompt)
    ));
    assert!(matches!(
        b.add(&e, request(vec![49152], 4)),
        Err(EngineError::TokenOutOfRange {
            id: 49152,
            vocab: 49152
        })
    ));
}

/// A long prompt joining running streams enters in pieces of at most
/// `PROMPT_CHUNK_WHILE_DECODING` tokens per step (the streams keep producing a token every
/// step), and every sequence still produces exactly its solo tokens.
#[test]
fn a_long_prompt_joining_running_streams_is_fed_in_small_pieces() {
    use airlock_engine::batch::PROMPT_CHUNK_WHILE_DECODING;
    let e = engine();
    let r = reference();
    let chat: Vec<Vec<u32>> = r["chat"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| ids(&c["prompt_ids"]))
        .collect();
    // Several pieces (the chat prompts are ≈ 30 tokens each).
    let long: Vec<u32> = chat.iter().cycle().take(12).flatten().copied().collect();
    assert!(
        long.len() > 2 * PROMPT_CHUNK_WHILE_DECODING,
        "{}",
        long.len()
    );
    let (short_max, long_max) = (30, 4);
    let solo_short = alone(&chat[0], short_max);
    let solo_long = alone(&long, long_max);

    let mut b = Batch::new(&e);
    let short = b.add(&e, request(chat[0].clone(), short_max)).unwrap();
    let mut got: HashMap<u64, Vec<u32>> = HashMap::new();
    let mut long_id = None;
    let mut step = 0;
    while !b.is_empty() {
        if step == 2 {
            long_id = Some(b.add(&e, request(long.clone(), long_max)).unwrap());
        }
        let produced = b.step(&e).unwrap();
        let short_running = got.get(&short).is_some_and(|t| t.len() < short_max);
        if step >= 2 && short_running && !got.contains_key(&long_id.unwrap()) {
            // The stream produced a token in this step, and the prompt took a bounded piece.
            assert!(produced.iter().any(|t| t.id == short), "step {step}");
            assert!(
                b.last_step().tokens <= PROMPT_CHUNK_WHILE_DECODING + 1,
                "step {step}: {} tokens",
                b.last_step().tokens
            );
        }
        for t in produced {
            got.entry(t.id).or_default().push(t.token);
        }
        step += 1;
    }
    assert_eq!(got[&short], solo_short);
    assert_eq!(got[&long_id.unwrap()], solo_long);
}
