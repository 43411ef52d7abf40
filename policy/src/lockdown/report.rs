//! Which lockdown layers are active: the evidence shown by `/readyz` and the start-up log.
use serde::Serialize;

use crate::egress::Lockdown;

/// The state of every in-process lockdown layer. Built up as the layers are applied:
/// start from [`LockdownReport::new`] and fill in each layer with what its `apply`
/// returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockdownReport {
    /// What the policy asked for (`egress.lockdown`).
    pub mode: Lockdown,
    /// Landlock (applied before the runtime).
    pub landlock: LandlockLayer,
    /// seccomp (installed once listening).
    pub seccomp: SeccompLayer,
}

/// The Landlock layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LandlockLayer {
    /// Not applied (lockdown off, or not yet).
    NotApplied,
    /// Rules in force on the thread that applied them and all its descendants.
    Enforced {
        /// The Landlock ABI used (the lower of the kernel's and the landlock crate's).
        abi: String,
        /// Every requested right was enforced (false: the kernel lacked a best-effort
        /// extra such as IPC scoping; TCP and file rules are always required).
        fully: bool,
        /// TCP ports `bind` is allowed on.
        bind_ports: Vec<u16>,
        /// The one directory that stays writable.
        writable: String,
    },
}

/// The seccomp layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SeccompLayer {
    /// Not installed (lockdown off, or not yet).
    NotInstalled,
    /// The filter is installed on every thread (TSYNC) and inherited by new ones.
    AllThreads {
        /// What the filter refuses, with `EPERM`.
        denied: Vec<&'static str>,
    },
}

impl LockdownReport {
    /// A report with no layer applied yet.
    pub fn new(mode: Lockdown) -> LockdownReport {
        LockdownReport {
            mode,
            landlock: LandlockLayer::NotApplied,
            seccomp: SeccompLayer::NotInstalled,
        }
    }

    /// Whether the policy asked for lockdown and every layer is in force.
    pub fn is_complete(&self) -> bool {
        self.mode == Lockdown::Enforce
            && matches!(self.landlock, LandlockLayer::Enforced { .. })
            && matches!(self.seccomp, SeccompLayer::AllThreads { .. })
    }

    /// One line for logs and `/readyz`, e.g.
    /// `lockdown=enforce landlock=enforced(abi=V6,full,bind=[8443]) seccomp=all_threads`.
    pub fn summary(&self) -> String {
        let landlock = match &self.landlock {
            LandlockLayer::NotApplied => "not_applied".to_owned(),
            LandlockLayer::Enforced {
                abi,
                fully,
                bind_ports,
                ..
            } => format!(
                "enforced(abi={abi},{},bind={bind_ports:?})",
                if *fully { "full" } else { "partial" }
            ),
        };
        let seccomp = match &self.seccomp {
            SeccompLayer::NotInstalled => "not_installed",
            SeccompLayer::AllThreads { .. } => "all_threads",
        };
        format!(
            "lockdown={} landlock={landlock} seccomp={seccomp}",
            self.mode.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_only_with_enforce_and_both_layers() {
        let mut r = LockdownReport::new(Lockdown::Enforce);
        assert!(!r.is_complete());
        r.landlock = LandlockLayer::Enforced {
            abi: "V6".into(),
            fully: true,
            bind_ports: vec![8443],
            writable: "/var/lib/airlock".into(),
        };
        assert!(!r.is_complete(), "seccomp still missing");
        r.seccomp = SeccompLayer::AllThreads { denied: vec![] };
        assert!(r.is_complete());
        assert_eq!(
            r.summary(),
            "lockdown=enforce landlock=enforced(abi=V6,full,bind=[8443]) seccomp=all_threads"
        );
        r.mode = Lockdown::Off;
        assert!(!r.is_complete(), "off is never complete");
        assert_eq!(
            LockdownReport::new(Lockdown::Off).summary(),
            "lockdown=off landlock=not_applied seccomp=not_installed"
        );
    }
}
