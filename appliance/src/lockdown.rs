//! The pre-runtime lockdown hook point.
//!
//! `main` calls [`before_runtime`] after the policy is loaded and before any listener,
//! TLS file or thread of the async runtime exists, on the main thread alone. The no-egress
//! issue applies Landlock here (DESIGN.md §8): rules applied to the only thread are
//! inherited by every thread created later, which is why nothing in `main` may spawn a
//! thread before this call (logging writes synchronously for that reason).
use policy::Policy;

use crate::error::LockdownError;

/// Applies the process-wide restrictions that must precede the runtime. Today: none; it
/// only says so.
pub fn before_runtime(policy: &Policy) -> Result<(), LockdownError> {
    tracing::info!(
        state_dir = %policy.state_dir.display(),
        "pre-runtime lockdown hook: no lockdown layer is implemented yet (egress issue)"
    );
    Ok(())
}
