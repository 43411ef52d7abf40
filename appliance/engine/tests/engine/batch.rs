//! Continuous batching on the default model: sequences that join at different steps, share
//! decode steps and leave, each produce exactly what they produce alone.

use std::collections::HashMap;

use airlock_engine::{Batch, EngineError, FinishReason, SamplingParams, SeqRequest};

use crate::common::{ids, reference};
use crate::fidelity::engine;

fn request(prompt: Vec<u32>, max_tokens: usize) -> SeqRequest {
    SeqRequest {
        prompt,
        max_tokens,
        sampling: SamplingParams::greedy(),
        ignore_eos: false,
        cache_scope: None,
    }
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
