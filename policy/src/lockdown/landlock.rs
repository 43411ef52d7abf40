//! Landlock: no TCP connect, TCP bind only on the configured ports, files read-only except
//! the state directory.
//!
//! Landlock binds the calling thread and the threads it creates afterwards, never those
//! that already exist (ABI 7 has no all-threads flag): call [`apply`] while the process
//! has a single thread, before any runtime or thread pool starts.
use std::path::Path;

use ::landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, LandlockStatus, NetPort,
    PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetError, RulesetStatus,
    Scope,
};

use super::LandlockLayer;
use crate::error::LockdownError;

/// Oldest ABI accepted: 4 (Linux 6.7) is the first with TCP bind/connect rules. Its file
/// and network rights are a hard requirement.
const REQUIRED_ABI: ABI = ABI::V4;
/// Newest ABI whose rights are asked for, best effort: device ioctls (V5), abstract UNIX
/// socket and signal scoping (V6). Raising it is a deliberate, tested change.
const WANTED_ABI: ABI = ABI::V6;

/// Applies the ruleset to the calling thread (and its future threads): `connect()` on TCP
/// refused with `EACCES` on every port; `bind()` on TCP only on `bind_ports`; files and
/// directories read-only (read, list, execute) everywhere except beneath `state_dir`,
/// which must exist.
///
/// Errors when the kernel lacks Landlock ABI 4: the caller only calls this when the policy
/// says `enforce`, where that must stop the service.
pub fn apply(state_dir: &Path, bind_ports: &[u16]) -> Result<LandlockLayer, LockdownError> {
    let state_fd = PathFd::new(state_dir).map_err(|e| {
        LockdownError::Landlock(format!(
            "cannot open the state directory {}: {e}",
            state_dir.display()
        ))
    })?;
    let root =
        PathFd::new("/").map_err(|e| LockdownError::Landlock(format!("cannot open /: {e}")))?;
    let mut ports: Vec<u16> = bind_ports.to_vec();
    ports.sort_unstable();
    ports.dedup();

    let status = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(REQUIRED_ABI))
        .and_then(|r| r.handle_access(AccessNet::from_all(REQUIRED_ABI)))
        .map_err(|e| {
            // The crate's message goes on to list every access right: keep its gist.
            let text = e.to_string();
            let gist = text.split(": BitFlags").next().unwrap_or(&text);
            unsupported(format!(
                "no Landlock ABI {REQUIRED_ABI:?} in this kernel ({gist})"
            ))
        })?
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(WANTED_ABI))
        .and_then(|r| r.scope(Scope::from_all(WANTED_ABI)))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rule(PathBeneath::new(root, AccessFs::from_read(WANTED_ABI))))
        .and_then(|r| r.add_rule(PathBeneath::new(state_fd, AccessFs::from_all(WANTED_ABI))))
        .and_then(|r| {
            r.add_rules(
                ports
                    .iter()
                    .map(|&p| Ok::<_, RulesetError>(NetPort::new(p, AccessNet::BindTcp))),
            )
        })
        .and_then(|r| r.restrict_self())
        .map_err(|e| LockdownError::Landlock(e.to_string()))?;

    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => format!("{effective_abi:?}"),
        other => return Err(unsupported(format!("{other:?}"))),
    };
    let fully = match status.ruleset {
        RulesetStatus::FullyEnforced => true,
        RulesetStatus::PartiallyEnforced => false,
        RulesetStatus::NotEnforced => {
            return Err(unsupported("the kernel enforced no rule".to_owned()));
        }
    };
    Ok(LandlockLayer::Enforced {
        abi,
        fully,
        bind_ports: ports,
        writable: state_dir.display().to_string(),
    })
}

fn unsupported(e: impl ToString) -> LockdownError {
    LockdownError::LandlockUnsupported {
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    //! Landlock binds only the calling thread, and libtest runs each test on its own
    //! thread: each test here restricts its own thread (and the threads it spawns), never
    //! the rest of the test process.
    use std::io::ErrorKind;
    use std::net::{TcpListener, TcpStream};

    use super::*;

    fn run_restricted<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().expect("restricted thread")
    }

    #[test]
    fn tcp_connect_denied_bind_only_on_allowed_port_files_read_only() {
        let state = tempfile::tempdir().expect("state dir");
        let outside = tempfile::tempdir().expect("outside dir");
        // A peer that a connect would reach, made before the restriction.
        let peer = TcpListener::bind("127.0.0.1:0").expect("peer listener");
        let peer_addr = peer.local_addr().expect("addr");
        let allowed = TcpListener::bind("127.0.0.1:0").expect("probe port");
        let allowed_port = allowed.local_addr().expect("addr").port();
        drop(allowed);
        let denied_port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("probe port");
            l.local_addr().expect("addr").port()
        };
        let state_path = state.path().to_owned();
        let outside_path = outside.path().to_owned();

        let results = run_restricted(move || {
            let layer = apply(&state_path, &[allowed_port]).expect("Landlock ABI >= 4 here");
            let connect = TcpStream::connect(peer_addr).map(|_| ());
            let bind_ok = TcpListener::bind(("127.0.0.1", allowed_port)).map(|_| ());
            let bind_denied = TcpListener::bind(("127.0.0.1", denied_port)).map(|_| ());
            let write_state = std::fs::write(state_path.join("ok"), b"x");
            let write_outside = std::fs::write(outside_path.join("no"), b"x");
            let read_outside = std::fs::read_dir(&outside_path).map(|_| ());
            // A thread spawned after the restriction inherits it.
            let child_connect = std::thread::spawn(move || TcpStream::connect(peer_addr))
                .join()
                .expect("child thread")
                .map(|_| ());
            (
                layer,
                connect,
                bind_ok,
                bind_denied,
                write_state,
                write_outside,
                read_outside,
                child_connect,
            )
        });
        let (layer, connect, bind_ok, bind_denied, write_state, write_outside, read_outside, child) =
            results;
        assert!(
            matches!(layer, LandlockLayer::Enforced { ref bind_ports, .. } if bind_ports == &[allowed_port])
        );
        let denied = |r: &std::io::Result<()>| {
            r.as_ref().err().map(std::io::Error::kind) == Some(ErrorKind::PermissionDenied)
        };
        assert!(denied(&connect), "TCP connect must be refused: {connect:?}");
        assert!(denied(&child), "a later thread inherits: {child:?}");
        assert!(bind_ok.is_ok(), "bind on the allowed port: {bind_ok:?}");
        assert!(denied(&bind_denied), "bind elsewhere: {bind_denied:?}");
        assert!(write_state.is_ok(), "state dir writable: {write_state:?}");
        assert!(
            denied(&write_outside),
            "outside read-only: {write_outside:?}"
        );
        assert!(
            read_outside.is_ok(),
            "reading stays allowed: {read_outside:?}"
        );

        // This thread was never restricted: the same connect works (so the test can fail).
        TcpStream::connect(peer_addr).expect("unrestricted thread connects");
    }

    #[test]
    fn missing_state_dir_is_an_error_not_a_silent_rule() {
        let err = run_restricted(|| apply(Path::new("/nonexistent/airlock-state"), &[]))
            .expect_err("no state dir");
        assert!(
            matches!(&err, LockdownError::Landlock(m) if m.contains("/nonexistent/airlock-state")),
            "{err}"
        );
    }
}
