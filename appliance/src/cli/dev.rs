//! `airlock dev`: the one-command demo.
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use policy::{Policy, Role};
use ring::digest;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Run a demo service with a dev PKI and policy kept in a state directory.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  airlock dev --state ./airlock-dev --listen 127.0.0.1:8443\n\n\
Creates (or reuses) STATE/pki/ (the files of `airlock pki dev`) and STATE/airlock.toml (a\n\
policy mapping each role's certificate to its role), then serves and prints a curl\n\
command that works. Running it again reuses both. STATE also holds the service's state\n\
(logs/, later the audit log and models), so offline commands accept --state STATE."
)]
pub struct Args {
    /// State directory (relative to the current directory).
    #[arg(long, default_value = "airlock-dev")]
    state: PathBuf,
    /// Listen address (default: the policy's, 127.0.0.1:8443).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Model to pack, sign with the dev key and install (default: the cache path of
    /// scripts/fetch-default-model.sh).
    #[arg(long, env = "AIRLOCK_DEFAULT_MODEL")]
    model: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.state)
        .with_context(|| format!("cannot create {}", args.state.display()))?;
    let state = std::path::absolute(&args.state)?;
    let pki = state.join("pki");
    ensure_pki(&pki)?;
    let policy_path = state.join("airlock.toml");
    super::dev_model::ensure_dev_key(&state)?;
    if !policy_path.exists() {
        std::fs::write(&policy_path, dev_policy(&pki)?)
            .with_context(|| format!("cannot write {}", policy_path.display()))?;
    }
    super::dev_model::ensure_trust_section(&policy_path)?;
    let policy = Policy::load(&policy_path)?;
    super::dev_model::install_model(&policy, args.model)?;
    let model = airlock_bundle::ModelStore::new(&policy.state_dir)
        .active_all()
        .ok()
        .and_then(|active| active.into_iter().next())
        .map(|m| m.name);
    super::serve::serve(policy, args.listen, |bound| {
        print!(
            "{}",
            instructions(&pki, &policy_path, bound, model.as_deref())
        );
        // stdout is block-buffered when piped (install.sh, tests): show it now.
        let _ = std::io::stdout().flush();
    })
}

/// Creates the dev PKI, or checks that an existing one is complete.
fn ensure_pki(pki: &Path) -> anyhow::Result<()> {
    if !pki.join("ca.crt").exists() {
        crate::pki::generate(pki, false)?;
        return Ok(());
    }
    if let Some(missing) = crate::pki::file_names()
        .into_iter()
        .map(|n| pki.join(n))
        .find(|p| !p.exists())
    {
        bail!(
            "incomplete dev PKI: {} is missing (recreate it with `airlock pki dev --out {} --force`)",
            missing.display(),
            pki.display()
        );
    }
    Ok(())
}

fn fingerprint(path: &Path) -> anyhow::Result<String> {
    let der = CertificateDer::from_pem_file(path)
        .map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))?;
    let hash = digest::digest(&digest::SHA256, der.as_ref());
    Ok(hash.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// The dev policy: state in the state directory, each role's dev certificate pinned by
/// fingerprint to its role.
fn dev_policy(pki: &Path) -> anyhow::Result<String> {
    let mut text = String::from(
        "# Airlock development policy, written by `airlock dev`. Edit freely: it is reused.\n\
         # Paths are relative to this file. Check with: airlock policy check --config THIS_FILE\n\
         state_dir = \".\"\n\n\
         [server]\nlisten = [\"127.0.0.1:8443\"]\nshutdown_grace_secs = 5\n\n\
         [tls]\ncert = \"pki/server.crt\"\nkey = \"pki/server.key\"\nclient_ca = [\"pki/ca.crt\"]\n\n\
         # No egress: Landlock + seccomp (docs/no-egress.md). \"off\" only to debug.\n\
         [egress]\nlockdown = \"enforce\"\n",
    );
    for role in Role::ALL {
        let fp = fingerprint(&pki.join(format!("{role}.crt")))?;
        write!(
            text,
            "\n[[identity]]\nname = \"dev {role}\"\nroles = [\"{role}\"]\n\
             match = {{ fingerprint = \"{fp}\", cn = \"{role}\" }}\n"
        )?;
    }
    Ok(text)
}

/// What `airlock dev` prints once listening.
fn instructions(pki: &Path, policy: &Path, bound: &[SocketAddr], model: Option<&str>) -> String {
    let Some(addr) = bound.first() else {
        return String::new();
    };
    let host = if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        "localhost".to_owned()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    let url = format!("https://{host}:{}", addr.port());
    let curl = |role: &str, path: &str| {
        format!(
            "curl --cert {0}/{role}.crt --key {0}/{role}.key --cacert {0}/ca.crt {url}{path}",
            pki.display()
        )
    };
    let mut text = format!(
        "Airlock dev service on {url} (policy {}).\nTry:\n  {}\n  {}\n",
        policy.display(),
        curl("user", "/healthz"),
        curl("operator", "/metrics"),
    );
    if let Some(model) = model {
        let body = format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"Write a haiku about privacy."}}]}}"#
        );
        text.push_str(&format!(
            "Chat with the model (OpenAI API over mTLS):\n  {} -H 'Content-Type: application/json' -d '{body}'\n",
            curl("user", "/v1/chat/completions"),
        ));
        text.push_str(&format!(
            "From Python (pip install openai):\n\
             \x20 import ssl, openai\n\
             \x20 tls = ssl.create_default_context(cafile=\"{0}/ca.crt\"); tls.load_cert_chain(\"{0}/user.crt\", \"{0}/user.key\")\n\
             \x20 client = openai.OpenAI(base_url=\"{url}/v1\", api_key=\"unused\", http_client=openai.DefaultHttpxClient(verify=tls))\n\
             \x20 for chunk in client.chat.completions.create(model=\"{model}\", messages=[{{\"role\": \"user\", \"content\": \"Hello\"}}], stream=True):\n\
             \x20     print(chunk.choices[0].delta.content or \"\", end=\"\", flush=True)\n\
             \x20 print()\n",
            pki.display()
        ));
    }
    text.push_str("Stop with Ctrl-C.\n");
    text
}
