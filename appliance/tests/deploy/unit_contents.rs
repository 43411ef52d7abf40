use crate::support::repo_file;

/// `(key, value)` pairs of a unit file's section (keys may repeat).
fn directives(unit: &str, section: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_file(unit)).expect("unit file");
    let mut current = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            current = line.trim_matches(['[', ']']).to_owned();
        } else if current == section && !line.is_empty() && !line.starts_with('#') {
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{unit}: not a directive: {line:?}"));
            out.push((k.to_owned(), v.to_owned()));
        }
    }
    out
}

fn values<'a>(d: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    d.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The hardening of ARCHITECTURE.md section 8 (the systemd layer), directive by directive: the
/// exposure score alone would not notice a missing `~connect` or an AF_INET family.
#[test]
fn service_has_the_required_hardening() {
    let d = directives("systemd/airlock.service", "Service");
    let exact = [
        ("Type", "notify"),
        (
            "ExecStart",
            "/usr/local/bin/airlock serve --config /etc/airlock/airlock.toml",
        ),
        ("User", "airlock"),
        ("PrivateNetwork", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ReadWritePaths", "/var/lib/airlock"),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("UMask", "0077"),
    ];
    for (key, value) in exact {
        assert_eq!(values(&d, key), vec![value], "airlock.service {key}=");
    }
    let filters = values(&d, "SystemCallFilter");
    for needed in [
        "@system-service",
        // The service's own Landlock and seccomp layers (systemd 252 groups them nowhere).
        "landlock_create_ruleset landlock_add_rule landlock_restrict_self seccomp",
        "~@privileged @resources",
        "~connect",
        "~io_uring_setup io_uring_enter io_uring_register",
    ] {
        assert!(
            filters.contains(&needed),
            "SystemCallFilter={needed} missing: {filters:?}"
        );
    }
    let socket = directives("systemd/airlock.socket", "Socket");
    assert!(
        !values(&socket, "ListenStream").is_empty(),
        "airlock.socket has no ListenStream="
    );
    assert_eq!(values(&socket, "Service"), vec!["airlock.service"]);
}

/// Every directive sits in a block of lines that has a comment saying why.
#[test]
fn every_directive_is_commented() {
    for unit in [
        "systemd/airlock.service",
        "systemd/airlock.socket",
        "systemd/airlock-firewall.service",
    ] {
        let text = std::fs::read_to_string(repo_file(unit)).expect("unit file");
        for block in text.split("\n\n") {
            let lines: Vec<&str> = block.lines().map(str::trim).collect();
            let has_comment = lines.iter().any(|l| l.starts_with('#'));
            for line in &lines {
                let directive =
                    !line.is_empty() && !line.starts_with('#') && !line.starts_with('[');
                assert!(
                    !directive || has_comment,
                    "{unit}: {line:?} has no comment saying why"
                );
            }
        }
    }
}
