//! Verification of `manifest.json` + `signatures.json`, before any payload byte is
//! written. The steps follow the TUF client workflow where it applies (TUF spec 1.0,
//! §5.3 "Update the root role" / §5.4 "Update the timestamp role") and are quoted in
//! comments; deviations are marked `Off-spec:`.
use time::OffsetDateTime;

use crate::error::BundleError;
use crate::limits::Limits;
use crate::manifest::Manifest;
use crate::signature::{Signed, parse_signatures};
use crate::trust::{ExpiryEnforcement, Signer, TrustRoot};

/// A manifest whose signatures met the threshold and which passed the name, expiry and
/// rollback checks. Only [`verify_manifest`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedManifest {
    signed: Signed<Manifest>,
    signers: Vec<Signer>,
}

impl VerifiedManifest {
    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.signed.signed
    }

    /// The exact signed bytes.
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.signed.bytes
    }

    /// All signatures as found (including ignored ones), for storing beside the model.
    pub fn signed(&self) -> &Signed<Manifest> {
        &self.signed
    }

    /// The distinct trusted keys whose signatures verified.
    pub fn signers(&self) -> &[Signer] {
        &self.signers
    }
}

/// Inputs of a header verification besides the bytes.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Trusted keys, threshold, names, expiry rule.
    pub trust: &'a TrustRoot,
    /// Bounds on what is read.
    pub limits: &'a Limits,
    /// The current time (a parameter so tests can be exact).
    pub now: OffsetDateTime,
}

/// Verifies the manifest and its signatures. `high_water` returns the highest sequence
/// ever installed for a name (`None`: skip the rollback check, for ad-hoc verification
/// of a bundle outside any appliance).
pub fn verify_manifest(
    ctx: Context<'_>,
    manifest_bytes: Vec<u8>,
    signatures_bytes: &[u8],
    high_water: &mut dyn FnMut(&str) -> Result<Option<u64>, BundleError>,
) -> Result<VerifiedManifest, BundleError> {
    let signatures = parse_signatures(signatures_bytes, ctx.limits.max_signatures)?;
    // 5.3.4 / 5.4.2: "Check for an arbitrary software attack ... signed by a threshold of
    // keys". Done on the raw bytes, before the manifest's content is interpreted.
    // Off-spec: the threshold is distinct *trusted* keys of the policy, one role only.
    let unparsed = Signed {
        signed: (),
        bytes: manifest_bytes,
        signatures,
    };
    let signers = ctx.trust.check_signatures(&unparsed)?;
    let manifest = Manifest::parse(&unparsed.bytes, ctx.limits)?;
    // Off-spec (no TUF role names): the policy limits which model names may be installed.
    if !ctx.trust.names().allows(&manifest.name) {
        return Err(BundleError::NameNotAllowed(manifest.name));
    }
    // 5.4.4 / 5.3.10: "Check for a freeze attack. The expiration timestamp ... must be
    // higher than the fixed update start time."
    match (manifest.expires, ctx.trust.expiry()) {
        (Some(expires), _) if expires <= ctx.now => {
            return Err(BundleError::Expired {
                expires: expires
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_else(|_| expires.to_string()),
            });
        }
        (None, ExpiryEnforcement::Required) => return Err(BundleError::NoExpiry),
        _ => {}
    }
    // 5.4.3: "Check for a rollback attack. The version number of the new ... metadata
    // must be higher than the version number of the trusted ... metadata". Here: the
    // sequence must exceed every sequence ever installed for the name.
    if let Some(mark) = high_water(&manifest.name)?
        && manifest.sequence <= mark
    {
        return Err(BundleError::Rollback {
            name: manifest.name,
            sequence: manifest.sequence,
            high_water: mark,
        });
    }
    Ok(VerifiedManifest {
        signed: Signed {
            signed: manifest,
            bytes: unparsed.bytes,
            signatures: unparsed.signatures,
        },
        signers,
    })
}
