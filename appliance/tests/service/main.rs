//! Integration tests of the `airlock` binary: the real executable, real certificates
//! (from `airlock pki dev` plus rcgen for the expired/revoked/unknown ones), real TLS
//! handshakes from a rustls client, on loopback only.
mod common;

/// The OpenAI-compatible API on the real default model: answers, streaming, refusals, audit.
mod api;
/// The official `openai` Python client, and each answer found in the exported, verified log.
mod api_audited;
/// Structured outputs, logprobs and embeddings with the official client, against llama.cpp.
mod api_features;
/// Disconnects and their record, metrics by role, 429 backpressure with bounded memory.
mod api_load;
/// Bad input (4xx in OpenAI's shape) and an unwritable audit log (503, no tokens).
mod api_refusals;
/// Signed model bundles: keys, create, sign, verify, install, activate, rollback, dev.
mod bundle;

/// The audit log through the service and the `airlock audit` commands, as an auditor.
mod audit;
/// `airlock audit report` and `airlock audit subject` on a scripted run of the service.
mod audit_report;
/// `docs/compliance.md`: every control's named test exists.
mod compliance_doc;
/// `airlock dev`: one command, twice on the same state dir.
mod dev;
/// `airlock generate` and `airlock models inspect` on the default model.
mod generate;
/// Handshakes the server must refuse, each with its specific alert.
mod handshake;
/// Regressions of the adversarial test (hardening issue): one test per finding.
mod hardening;
/// Role guard, error shapes, limits and request ids over real mTLS.
mod http;
/// JSON log file, and that request bodies never reach it.
mod logs;
/// `airlock pki dev` files, modes and overwrite refusal.
mod pki;
/// `airlock policy check` on good and broken policies.
mod policy_check;
/// The prompt-prefix cache: reuse per client certificate, same answers, gauges.
mod prefix_cache;
/// SIGTERM drains an in-flight request.
mod shutdown;
/// systemd socket activation (`LISTEN_FDS`).
mod socket_activation;
/// Start-up failures on bad TLS material.
mod startup;
