//! The prefix cache on the default model: a request resumed from a cached prefix produces
//! exactly what a cold run produces (bitwise logits, same greedy tokens), only within its own
//! scope, and retained entries are bounded and evicted least recently used first.

use std::collections::HashMap;

use airlock_engine::{
    Batch, CacheScope, Logits, PrefixCacheConfig, SamplingParams, SeqInput, SeqRequest,
};

use crate::common::{ids, reference};
use crate::fidelity::engine;

fn request(prompt: &[u32], max_tokens: usize, scope: Option<&CacheScope>) -> SeqRequest {
    SeqRequest {
        ignore_eos: true,
        cache_scope: scope.cloned(),
        ..SeqRequest::new(prompt.to_vec(), max_tokens, SamplingParams::greedy())
    }
}

/// Runs one request in `b` to completion; returns its tokens and how many prompt tokens it
/// resumed from the cache.
fn run(b: &mut Batch, req: SeqRequest) -> (Vec<u32>, usize) {
    let e = engine();
    let id = b.add(&e, req).unwrap();
    let cached = b.cached_tokens(id).unwrap();
    let mut out = Vec::new();
    while !b.is_empty() {
        for t in b.step(&e).unwrap() {
            assert_eq!(t.id, id);
            out.push(t.token);
        }
    }
    (out, cached)
}

fn chat_prompts() -> Vec<Vec<u32>> {
    reference()["chat"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| ids(&c["prompt_ids"]))
        .collect()
}

/// Model level, the way the batch resumes: a slot holding an earlier turn (prompt + answer) is
/// truncated to the common prefix with the next turn and fed the rest; the logits of every new
/// position equal, bit for bit, those of the whole next turn fed cold in one chunk.
#[test]
fn resumed_logits_are_bitwise_those_of_a_cold_pass() {
    let e = engine();
    let m = e.model();
    let prompts = chat_prompts();
    let first = &prompts[0];
    let mut b = Batch::new(&e);
    let (answer, _) = run(&mut b, request(first, 8, None));
    // Next turn: the first turn, its answer, then another prompt's tokens as the new user turn.
    let mut turn2 = first.clone();
    turn2.extend(&answer);
    turn2.extend(&prompts[1][..12]);

    let mut cache = m.new_cache();
    let cold_slot = cache.allocate();
    let cold = m
        .forward(
            &[SeqInput {
                slot: cold_slot,
                tokens: &turn2,
            }],
            &mut cache,
            Logits::All,
        )
        .unwrap();

    // The warm slot holds turn 1 and its answer plus two stale tokens past the common prefix.
    let slot = cache.allocate();
    let mut held = first.clone();
    held.extend(&answer);
    held.extend([17, 23]);
    m.forward(
        &[SeqInput {
            slot,
            tokens: &held,
        }],
        &mut cache,
        Logits::Last,
    )
    .unwrap();
    let keep = first.len() + answer.len();
    cache.truncate(slot, keep);
    let warm = m
        .forward(
            &[SeqInput {
                slot,
                tokens: &turn2[keep..],
            }],
            &mut cache,
            Logits::All,
        )
        .unwrap();
    let vocab = m.config().vocab_size;
    let cold_tail = &cold[keep * vocab..];
    assert_eq!(cold_tail.len(), warm.len());
    for (i, (c, w)) in cold_tail.iter().zip(&warm).enumerate() {
        assert!(
            c.to_bits() == w.to_bits(),
            "position {}, logit {}: cold {c}, warm {w}",
            keep + i / vocab,
            i % vocab
        );
    }
}

#[test]
fn the_same_prompt_twice_resumes_all_but_its_last_token_with_identical_output() {
    let e = engine();
    let scope = CacheScope::new(*b"client-a");
    let prompt = &chat_prompts()[0];
    let mut b = Batch::new(&e);
    let (cold, c0) = run(&mut b, request(prompt, 12, Some(&scope)));
    assert_eq!(c0, 0);
    assert_eq!(b.retained_entries(), 1);
    assert!(b.retained_positions() >= prompt.len() + 11);
    let (warm, c1) = run(&mut b, request(prompt, 12, Some(&scope)));
    assert_eq!(c1, prompt.len() - 1);
    assert_eq!(warm, cold);
    assert_eq!(
        b.retained_entries(),
        1,
        "the entry was taken, then retained again"
    );
}

#[test]
fn a_multi_turn_chat_resumes_the_previous_turn_and_matches_a_cold_run() {
    let e = engine();
    let scope = CacheScope::new(*b"client-a");
    let prompts = chat_prompts();
    let mut b = Batch::new(&e);
    let (answer, _) = run(&mut b, request(&prompts[0], 10, Some(&scope)));
    let mut turn2 = prompts[0].clone();
    turn2.extend(&answer);
    turn2.extend(&prompts[2]);
    let (warm, cached) = run(&mut b, request(&turn2, 10, Some(&scope)));
    // Every token of turn 1 whose keys/values were computed: the prompt and all but the last
    // answer token (sampled, never fed).
    assert_eq!(cached, prompts[0].len() + answer.len() - 1);
    let (cold, none) = run(&mut Batch::new(&e), request(&turn2, 10, None));
    assert_eq!(none, 0);
    assert_eq!(warm, cold);
}

#[test]
fn other_scopes_and_unscoped_requests_never_reuse() {
    let e = engine();
    let (a, b_scope) = (CacheScope::new(*b"client-a"), CacheScope::new(*b"client-b"));
    let prompt = &chat_prompts()[1];
    let mut b = Batch::new(&e);
    let (out_a, _) = run(&mut b, request(prompt, 6, Some(&a)));
    let (out_b, cached_b) = run(&mut b, request(prompt, 6, Some(&b_scope)));
    assert_eq!(cached_b, 0, "another scope's prefix was reused");
    assert_eq!(out_b, out_a);
    let (_, cached_none) = run(&mut b, request(prompt, 6, None));
    assert_eq!(cached_none, 0, "an unscoped request reused a prefix");
    assert_eq!(b.retained_entries(), 2, "an unscoped request left an entry");
    // Disabled: nothing is reused and every entry is freed.
    b.set_prefix_cache(PrefixCacheConfig {
        enabled: false,
        ..PrefixCacheConfig::default()
    });
    assert_eq!(b.retained_entries(), 0);
    let (_, cached_off) = run(&mut b, request(prompt, 6, Some(&a)));
    assert_eq!(cached_off, 0);
    assert_eq!(b.retained_entries(), 0);
}

#[test]
fn retained_entries_are_bounded_and_evicted_least_recently_used_first() {
    let e = engine();
    let s = CacheScope::new(*b"client-a");
    // Prompts that share no prefix (the chat prompts share their system turn).
    let prompts: Vec<Vec<u32>> = chat_prompts()
        .into_iter()
        .enumerate()
        .map(|(i, p)| [&[100 + i as u32][..], &p].concat())
        .collect();
    let mut b = Batch::new(&e);
    b.set_prefix_cache(PrefixCacheConfig {
        enabled: true,
        max_entries: 2,
    });
    for p in &prompts[..3] {
        run(&mut b, request(p, 2, Some(&s)));
    }
    assert_eq!(b.retained_entries(), 2, "the entry limit holds");
    // prompts[0] was the least recently used: evicted, a cold start again.
    let (_, c0) = run(&mut b, request(&prompts[0], 2, Some(&s)));
    assert_eq!(c0, 0);
    // Now [2, 0] are held (1 evicted when 0 was retained). A budget of one entry's positions
    // evicts the older (2) and keeps 0.
    let one = b.retained_positions() / 2;
    assert_eq!(b.evict_retained(one), 1);
    assert_eq!(b.retained_entries(), 1);
    assert!(b.retained_positions() <= one);
    let (_, c2) = run(&mut b, request(&prompts[2], 2, Some(&s)));
    assert_eq!(c2, 0, "the evicted entry was reused");
    let (_, c0) = run(&mut b, request(&prompts[0], 2, Some(&s)));
    assert_eq!(c0, prompts[0].len() - 1);
    b.clear_retained();
    assert_eq!((b.retained_entries(), b.retained_positions()), (0, 0));
    let (_, c0) = run(&mut b, request(&prompts[0], 2, Some(&s)));
    assert_eq!(c0, 0);
}

/// Batched equals solo with reuse: sequences resumed from cached prefixes, joining a running
/// batch at different steps, produce exactly their cold solo tokens.
#[test]
fn resumed_sequences_batched_together_match_their_cold_solo_runs() {
    let e = engine();
    let s = CacheScope::new(*b"client-a");
    let prompts = chat_prompts();
    let max = 12;
    let solo: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| run(&mut Batch::new(&e), request(p, max, None)).0)
        .collect();
    let mut b = Batch::new(&e);
    // Warm the cache with the first 5 tokens of each answer, the three run together: run one
    // after the other, each would take the previous one's entry (they share the system turn)
    // and leave a single entry.
    for p in &prompts {
        b.add(&e, request(p, 5, Some(&s))).unwrap();
    }
    while !b.is_empty() {
        b.step(&e).unwrap();
    }
    assert_eq!(b.retained_entries(), prompts.len());
    let mut got: HashMap<u64, Vec<u32>> = HashMap::new();
    let mut which: HashMap<u64, usize> = HashMap::new();
    let mut step = 0;
    while !b.is_empty() || which.len() < prompts.len() {
        for (at, i) in [(0, 0), (2, 1), (3, 2)] {
            if step == at {
                let id = b.add(&e, request(&prompts[i], max, Some(&s))).unwrap();
                assert_eq!(b.cached_tokens(id), Some(prompts[i].len() - 1));
                which.insert(id, i);
            }
        }
        for t in b.step(&e).unwrap() {
            got.entry(t.id).or_default().push(t.token);
        }
        step += 1;
    }
    for (id, i) in which {
        assert_eq!(got[&id], solo[i], "sequence {i}");
    }
}
