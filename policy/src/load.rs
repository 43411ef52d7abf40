//! Reading a policy file: parse (typed, unknown keys rejected), resolve relative paths,
//! check the semantics serde cannot express, then check that named files exist.
use std::path::{Path, PathBuf};

use crate::config::Policy;
use crate::error::PolicyError;

impl Policy {
    /// Reads, parses and fully validates the policy file at `path`, including that every
    /// certificate, key, CA and CRL file it names exists.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        let policy = Policy::parse(&text, path)?;
        policy.check_files()?;
        Ok(policy)
    }

    /// Parses policy text as if read from `path`: relative paths are resolved against
    /// `path`'s directory. Checks everything except the existence of the named files
    /// (see [`Policy::check_files`]).
    pub fn parse(text: &str, path: &Path) -> Result<Policy, PolicyError> {
        let source = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let de = toml::de::Deserializer::parse(text).map_err(|e| PolicyError::Syntax {
            path: source.clone(),
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
            message: e.message().trim().to_owned(),
        })?;
        let mut policy: Policy =
            serde_path_to_error::deserialize(de).map_err(|e| serde_error(&source, text, e))?;
        policy.source = source;
        policy.resolve_paths();
        policy.check_semantics()?;
        Ok(policy)
    }

    pub(crate) fn invalid(&self, key: impl Into<String>, reason: impl Into<String>) -> PolicyError {
        PolicyError::Invalid {
            path: self.source.clone(),
            line: None,
            key: key.into(),
            reason: reason.into(),
        }
    }

    fn resolve_paths(&mut self) {
        let base = self
            .source
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.state_dir);
        resolve(&mut self.tls.cert);
        resolve(&mut self.tls.key);
        self.tls.client_ca.iter_mut().for_each(resolve);
        self.tls.crl.iter_mut().for_each(resolve);
        if let Some(t) = &mut self.trust {
            t.publishers
                .iter_mut()
                .filter_map(|p| p.key_file.as_mut())
                .for_each(resolve);
        }
    }

    /// Rules serde cannot express.
    fn check_semantics(&self) -> Result<(), PolicyError> {
        if self.server.listen.is_empty() {
            return Err(self.invalid("server.listen", "at least one listen address is required"));
        }
        if self.tls.client_ca.is_empty() {
            return Err(self.invalid(
                "tls.client_ca",
                "at least one client CA bundle is required (client certificates are mandatory)",
            ));
        }
        let l = &self.limits;
        for (key, value) in [
            ("limits.max_body_bytes", l.max_body_bytes),
            ("limits.max_prompt_tokens", u64::from(l.max_prompt_tokens)),
            (
                "limits.max_completion_tokens",
                u64::from(l.max_completion_tokens),
            ),
            ("limits.queue_depth", u64::from(l.queue_depth)),
        ] {
            if value == 0 {
                return Err(self.invalid(key, "must be greater than 0"));
            }
        }
        self.audit
            .check()
            .map_err(|(key, reason)| self.invalid(key, reason))?;
        self.engine
            .check()
            .map_err(|(key, reason)| self.invalid(key, reason))?;
        for (i, rule) in self.identities.iter().enumerate() {
            if !rule.matcher.constrains_certificate() {
                return Err(self.invalid(
                    format!("identity[{i}].match"),
                    "a rule must match at least one certificate attribute \
                     (fingerprint, cn, ou, o, san_uri or san_email)",
                ));
            }
            if rule.roles.is_empty() {
                return Err(self.invalid(
                    format!("identity[{i}].roles"),
                    "a rule must grant at least one role",
                ));
            }
        }
        self.check_trust()
    }

    /// Checks that every file the policy names exists and is a regular file.
    pub fn check_files(&self) -> Result<(), PolicyError> {
        let t = &self.tls;
        let files = [
            ("tls.cert".to_owned(), &t.cert),
            ("tls.key".to_owned(), &t.key),
        ]
        .into_iter()
        .chain(
            t.client_ca
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("tls.client_ca[{i}]"), p)),
        )
        .chain(
            t.crl
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("tls.crl[{i}]"), p)),
        );
        for (key, path) in files {
            match std::fs::metadata(path) {
                Ok(m) if m.is_file() => {}
                Ok(_) => {
                    return Err(self.invalid(key, format!("{} is not a file", path.display())));
                }
                Err(e) => {
                    return Err(self.invalid(key, format!("cannot read {}: {e}", path.display())));
                }
            }
        }
        if self.state_dir.exists() && !self.state_dir.is_dir() {
            return Err(self.invalid(
                "state_dir",
                format!("{} exists and is not a directory", self.state_dir.display()),
            ));
        }
        self.trust_keys()?;
        Ok(())
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map(|s| s.bytes().filter(|b| *b == b'\n').count() + 1)
        .unwrap_or(1)
}

/// Turns a serde error into one naming the key path. serde_path_to_error reports an
/// unknown key at the key's own path but a missing key at its parent's: append the name
/// where it is not already there.
fn serde_error(
    source: &Path,
    text: &str,
    e: serde_path_to_error::Error<toml::de::Error>,
) -> PolicyError {
    let parent = e.path().to_string();
    let inner = e.inner();
    let line = inner.span().map(|s| line_of(text, s.start));
    let message = inner.message().trim().to_owned();
    let join = |name: &str| {
        if parent == "." {
            name.to_owned()
        } else if parent == name || parent.ends_with(&format!(".{name}")) {
            parent.clone()
        } else {
            format!("{parent}.{name}")
        }
    };
    let quoted = |rest: &str| rest.split('`').nth(1).map(str::to_owned);
    let (key, reason) = if let Some(rest) = message.strip_prefix("unknown field ") {
        match quoted(rest) {
            Some(name) => {
                let expected = rest.split_once(", ").map(|(_, e)| e).unwrap_or("");
                (join(&name), format!("unknown key ({expected})"))
            }
            None => (parent, message),
        }
    } else if let Some(rest) = message.strip_prefix("missing field ") {
        match quoted(rest) {
            Some(name) => (join(&name), "missing required key".to_owned()),
            None => (parent, message),
        }
    } else {
        (parent, message)
    };
    PolicyError::Invalid {
        path: source.to_owned(),
        line,
        key,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Role, RoleSet};

    const MINIMAL: &str = r#"
[tls]
cert = "server.crt"
key = "server.key"
client_ca = ["ca.crt"]
"#;

    fn parse(extra: &str) -> Result<Policy, PolicyError> {
        Policy::parse(
            &format!("{MINIMAL}{extra}"),
            Path::new("/etc/airlock/airlock.toml"),
        )
    }

    fn key_and_reason(err: PolicyError) -> (String, String) {
        match err {
            PolicyError::Invalid { key, reason, .. } => (key, reason),
            other => panic!("expected Invalid, got {other}"),
        }
    }

    #[test]
    fn defaults_and_resolved_paths() {
        let p = parse("").expect("minimal policy");
        assert_eq!(p.tls.cert, Path::new("/etc/airlock/server.crt"));
        assert_eq!(p.tls.client_ca, vec![PathBuf::from("/etc/airlock/ca.crt")]);
        assert_eq!(p.state_dir, Path::new(crate::DEFAULT_STATE_DIR));
        assert_eq!(p.server.listen, [crate::DEFAULT_LISTEN]);
        assert_eq!(p.limits, crate::Limits::default());
        assert!(!p.tls.tls12);
        assert!(p.identities.is_empty());
    }

    #[test]
    fn unknown_key_names_its_path() {
        let err = parse("[[identity]]\nroles=[\"user\"]\n[identity.match]\ncnn = \"x\"\n")
            .expect_err("unknown key");
        let (key, reason) = key_and_reason(err);
        assert_eq!(key, "identity[0].match.cnn");
        assert!(reason.starts_with("unknown key"), "{reason}");
    }

    #[test]
    fn unknown_top_level_key_and_section() {
        let top = format!("colour = 1\n{MINIMAL}");
        let err = Policy::parse(&top, Path::new("/p.toml")).expect_err("unknown");
        assert_eq!(key_and_reason(err).0, "colour");
        let (key, _) = key_and_reason(parse("colour = 1\n").expect_err("unknown"));
        assert_eq!(key, "tls.colour", "a key after [tls] belongs to it");
        let (key, _) = key_and_reason(parse("[limits]\nmax_body = 1\n").expect_err("unknown"));
        assert_eq!(key, "limits.max_body");
    }

    #[test]
    fn missing_tls_is_named() {
        let err = Policy::parse("state_dir = \"/x\"\n", Path::new("/p.toml")).expect_err("no tls");
        let (key, reason) = key_and_reason(err);
        assert_eq!(
            (key.as_str(), reason.as_str()),
            ("tls", "missing required key")
        );
    }

    #[test]
    fn bad_glob_cidr_role_fingerprint_are_named() {
        let rule = |m: &str, roles: &str| {
            format!("[[identity]]\nroles = {roles}\n[identity.match]\ncn = \"a\"\n{m}\n")
        };
        let cases = [
            (
                rule("ou = \"[abc\"", "[\"user\"]"),
                "identity[0].match.ou",
                "invalid glob",
            ),
            (
                rule("peer = [\"10.0.0.0/33\"]", "[\"user\"]"),
                "identity[0].match.peer[0]",
                "invalid",
            ),
            (
                rule("", "[\"user\", \"root\"]"),
                "identity[0].roles[1]",
                "unknown variant `root`",
            ),
            (
                rule("fingerprint = \"abc\"", "[\"user\"]"),
                "identity[0].match.fingerprint",
                "64 hex",
            ),
        ];
        for (text, want_key, want_reason) in cases {
            let (key, reason) = key_and_reason(parse(&text).expect_err(want_key));
            assert_eq!(key, want_key, "{reason}");
            assert!(reason.contains(want_reason), "{want_key}: {reason}");
        }
    }

    #[test]
    fn rule_without_certificate_matcher_is_rejected() {
        let text = "[[identity]]\nroles = [\"user\"]\n[identity.match]\npeer = [\"10.0.0.0/8\"]\n";
        let (key, reason) = key_and_reason(parse(text).expect_err("peer only"));
        assert_eq!(key, "identity[0].match");
        assert!(reason.contains("at least one certificate attribute"));
    }

    #[test]
    fn zero_limits_and_empty_ca_are_rejected() {
        let (key, _) = key_and_reason(parse("[limits]\nqueue_depth = 0\n").expect_err("zero"));
        assert_eq!(key, "limits.queue_depth");
        let text = "[tls]\ncert=\"a\"\nkey=\"b\"\nclient_ca=[]\n";
        let (key, _) = key_and_reason(Policy::parse(text, Path::new("/p")).expect_err("no ca"));
        assert_eq!(key, "tls.client_ca");
    }

    #[test]
    fn engine_section_defaults_and_errors_name_their_key() {
        let p = parse("").expect("no [engine]");
        assert_eq!(p.engine, crate::EngineConfig::default());
        let p = parse("[engine]\nthreads = 2\nmax_batch = 4\nkv_cache_mib = 64\n").expect("full");
        assert_eq!(
            (p.engine.threads, p.engine.max_batch, p.engine.kv_cache_mib),
            (2, 4, 64)
        );
        assert_eq!(p.engine.device, crate::Device::Cpu);
        assert!(p.engine.prefix_cache, "the prefix cache is on by default");
        let p = parse("[engine]\nprefix_cache = false\n").expect("off");
        assert!(!p.engine.prefix_cache);
        let p = parse("[engine]\ndevice = \"cuda\"\n").expect("cuda");
        assert_eq!(p.engine.device, crate::Device::Cuda);
        for (text, key) in [
            ("[engine]\nmax_batch = 0\n", "engine.max_batch"),
            ("[engine]\nkv_cache_mib = 0\n", "engine.kv_cache_mib"),
            ("[engine]\nthreads = 5000\n", "engine.threads"),
            ("[engine]\ndevice = \"gpu\"\n", "engine.device"),
            ("[engine]\nspeed = 11\n", "speed"),
            ("[engine]\nprefix_cache = \"yes\"\n", "prefix_cache"),
        ] {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn egress_lockdown_defaults_to_enforce() {
        let p = parse("").expect("minimal policy");
        assert_eq!(p.egress.lockdown, crate::Lockdown::Enforce);
        assert_eq!(crate::DEFAULT_LOCKDOWN, crate::Lockdown::Enforce);
        let off = parse("[egress]\nlockdown = \"off\"\n").expect("off");
        assert_eq!(off.egress.lockdown, crate::Lockdown::Off);
        let rendered = off.render_effective().expect("render");
        assert!(
            rendered.contains("[egress]\nlockdown = \"off\""),
            "{rendered}"
        );
    }

    #[test]
    fn egress_bad_value_and_unknown_key_are_named() {
        let (key, reason) =
            key_and_reason(parse("[egress]\nlockdown = \"loose\"\n").expect_err("bad value"));
        assert_eq!(key, "egress.lockdown");
        assert!(
            reason.contains("unknown variant `loose`") && reason.contains("`enforce`"),
            "{reason}"
        );
        let (key, reason) =
            key_and_reason(parse("[egress]\nallow = [\"10.0.0.1\"]\n").expect_err("unknown"));
        assert_eq!(key, "egress.allow");
        assert!(reason.starts_with("unknown key"), "{reason}");
        let (key, _) = key_and_reason(parse("[egress]\nlockdown = true\n").expect_err("type"));
        assert_eq!(key, "egress.lockdown");
    }

    #[test]
    fn audit_section_defaults_and_errors_name_their_key() {
        let p = parse("").expect("no [audit]");
        assert_eq!(p.audit, crate::AuditConfig::default());
        let p = parse(
            "[audit]\ncontent = \"sealed\"\ncheckpoint_every = 10\n\
             checkpoint_interval_secs = 0\nretention_days = 30\norigin = \"h.example/audit\"\n",
        )
        .expect("full [audit]");
        assert_eq!(p.audit.content, crate::AuditContent::Sealed);
        assert_eq!(p.audit.origin.as_deref(), Some("h.example/audit"));
        let cases = [
            (
                "[audit]\ncontent = \"plain\"\n",
                "audit.content",
                "unknown variant",
            ),
            ("[audit]\norigin = \"a+b\"\n", "audit.origin", "C2SP"),
            ("[audit]\norigin = \"\"\n", "audit.origin", "empty"),
            (
                "[audit]\ncheckpoint_every = 0\ncheckpoint_interval_secs = 0\n",
                "audit.checkpoint_every",
                "only be signed at shutdown",
            ),
            ("[audit]\nretain = 3\n", "audit.retain", "unknown key"),
            ("[audit]\nretention_days = -1\n", "audit.retention_days", ""),
        ];
        for (text, want_key, want_reason) in cases {
            let (key, reason) = key_and_reason(parse(text).expect_err(want_key));
            assert_eq!(key, want_key, "{reason}");
            assert!(reason.contains(want_reason), "{want_key}: {reason}");
        }
    }

    #[test]
    fn syntax_error_has_line() {
        let err = parse("[limits\n").expect_err("syntax");
        assert!(matches!(err, PolicyError::Syntax { line: 6, .. }), "{err}");
    }

    #[test]
    fn roles_are_the_union_of_matching_rules() {
        let text = r#"
[[identity]]
roles = ["user"]
match = { cn = "svc-*" }
[[identity]]
roles = ["operator"]
match = { cn = "svc-monitor", o = "IT" }
"#;
        let p = parse(text).expect("policy");
        let facts = |cn: &str| crate::CertFacts {
            fingerprint: crate::Fingerprint([0; 32]),
            common_names: vec![cn.into()],
            org_units: vec![],
            orgs: vec!["IT".into()],
            san_uris: vec![],
            san_emails: vec![],
        };
        let both: RoleSet = [Role::User, Role::Operator].into_iter().collect();
        assert_eq!(p.roles_for(&facts("svc-monitor"), None), both);
        assert_eq!(
            p.roles_for(&facts("svc-triage"), None),
            [Role::User].into_iter().collect()
        );
        assert_eq!(p.roles_for(&facts("stranger"), None), RoleSet::EMPTY);
    }

    #[test]
    fn missing_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("airlock.toml");
        std::fs::write(&path, MINIMAL).expect("write");
        for f in ["server.crt", "server.key"] {
            std::fs::write(dir.path().join(f), "x").expect("write");
        }
        let (key, reason) = key_and_reason(Policy::load(&path).expect_err("no ca.crt"));
        assert_eq!(key, "tls.client_ca[0]");
        assert!(reason.contains("ca.crt"), "{reason}");
    }

    #[test]
    fn example_policy_parses_and_renders() {
        let p = Policy::parse(
            crate::EXAMPLE_POLICY,
            Path::new("/etc/airlock/airlock.toml"),
        )
        .expect("the shipped example parses");
        assert!(!p.identities.is_empty());
        let rendered = p.render_effective().expect("render");
        let again = Policy::parse(&rendered, Path::new("/elsewhere/airlock.toml"))
            .expect("the rendered policy parses");
        assert_eq!(again.identities, p.identities);
        assert_eq!(
            again.tls, p.tls,
            "absolute paths survive a second resolution"
        );
    }
}
