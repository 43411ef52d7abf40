#!/usr/bin/env bash
# Airlock installer: one-command demo, the test suite, and the production install.
#
#   ./install.sh --dev [--state DIR] [--listen ADDR]   build (release) and run `airlock dev`
#   ./install.sh --test                                 install test prerequisites, run all tests
#   sudo ./install.sh [--enable] [--firewall]           production install under systemd
#   sudo ./install.sh --uninstall [--purge]             remove it (state kept unless --purge)
#   ./install.sh --kit --sign KEY [--out DIR]           build a signed offline install kit
#   sudo ./install.sh --from-kit DIR --trust-key K.pub  install from a kit, verified first
#   sudo ./install.sh --rollback                        back to the previously installed binary
#
# Every step is idempotent: running a mode twice gives the same result as running it once.
# Errors are one line on stderr (`install.sh: ...`) with a non-zero exit: 2 for a bad
# command line, 1 for anything else. See docs/deployment.md.
set -euo pipefail
# Also stop on errors inside $(...), where bash would otherwise clear -e.
shopt -s inherit_errexit

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly REPO

# Production layout. DESTDIR (empty by default) stages the file tree under another root,
# for packaging and for the deploy tests; users, ownership and systemctl are then skipped.
readonly DESTDIR="${DESTDIR:-}"
readonly BIN_DIR="$DESTDIR/usr/local/bin"
readonly CONF_DIR="$DESTDIR/etc/airlock"
readonly STATE_DIR="$DESTDIR/var/lib/airlock"
readonly UNIT_DIR="$DESTDIR/etc/systemd/system"
readonly DOC_DIR="$DESTDIR/usr/local/share/doc/airlock"
readonly LIB_DIR="$DESTDIR/usr/local/lib/airlock"
readonly SHARE_DIR="$DESTDIR/usr/local/share/airlock"
readonly SERVICE_USER="airlock"
readonly UNITS=(airlock.socket airlock.service)

# Test prerequisites: sslyze version pinned for reproducible TLS findings.
readonly SSLYZE_REQ="sslyze==6.3.1"
# The official OpenAI client, for the API tests (clients use it as the README shows).
readonly OPENAI_REQ="openai==3.57.0"
# llama.cpp (quantizes the synthetic models of the K-quant fidelity tests; its build takes about
# 10 minutes on 2 cores, 50 on a busy one; once: pip keeps the wheel) and the GGUF writer, versions
# of the references.
readonly LLAMA_CPP_REQ="llama-cpp-python==0.3.36"
readonly GGUF_REQ="gguf==0.17.1"
readonly NUMPY_REQ="numpy==2.4.6"
readonly SYNTH_TYPES=(q4_0 q8_0 q4_k_m q5_k_m q6_k)
readonly VENV="$REPO/.venv-test"
# The SBOM generator of the offline kit (CycloneDX JSON of the shipped binary).
readonly CYCLONEDX_VERSION="0.5.9"
readonly KIT_FORMAT="airlock-kit-manifest-v1"
# The default model as the kit's bundle.
readonly KIT_MODEL_NAME="smollm2-135m-instruct.q4_1"
readonly KIT_MODEL_VERSION="1.0.0"

usage() {
  cat <<'EOF'
Airlock installer.

Usage:
  ./install.sh --dev [--state DIR] [--listen ADDR]
      Check prerequisites (cargo, a C compiler), build the release binary and run
      `airlock dev` in the foreground: dev PKI + policy in DIR (default ./airlock-dev),
      served on ADDR (default 127.0.0.1:8443). It prints a curl command that works.
      Ctrl-C stops it; running it again reuses DIR.
  ./install.sh --test
      Install what the tests need (Debian packages if missing, a Python venv with sslyze
      and llama-cpp-python in .venv-test/), fetch and check the default model, write the
      tiny synthetic models of the K-quant fidelity tests, run the whole test suite.
  sudo ./install.sh [--enable] [--firewall]
      Production install: /usr/local/bin/airlock, system user `airlock`, /etc/airlock
      (0750, policy template airlock.toml), /var/lib/airlock (0700), systemd units in
      /etc/systemd/system. Nothing starts unless --enable (which first checks the policy).
      --firewall also loads the host egress firewall (scripts/firewall.sh) now and at
      every boot (airlock-firewall.service).
  sudo ./install.sh --uninstall [--purge]
      Stop and remove the units, the binary and the firewall. /var/lib/airlock (audit
      log, models) and /etc/airlock are kept unless --purge, which also removes the user.
  ./install.sh --kit --sign KEY [--out DIR] [--no-source]
      On a connected build station: build the release binary (--locked) and write an
      offline install kit to DIR (default ./airlock-kit-VERSION) and DIR.tar: the binary,
      units, policy template, docs, the default model as a bundle signed with KEY, an SBOM
      (CycloneDX JSON) and licence inventory, the sources with every dependency vendored
      (rebuild offline with cargo build --offline --locked; --no-source leaves them out),
      and MANIFEST (every file's size and SHA-256) signed with KEY (airlock keys generate).
  sudo ./install.sh --from-kit DIR --trust-key K.pub [--enable] [--firewall]
      On the air-gapped host: check MANIFEST's signature against K.pub (openssl) and every
      file's size and SHA-256 (sha256sum), refuse any missing, extra or changed file, and
      only then install as the production install does. The model bundle goes to the
      service's import folder, where the service verifies and activates it; a new policy
      template trusts K.pub for it. Needs no network, cargo, pip or apt. On a host that
      runs Airlock this is an upgrade: /etc/airlock and /var/lib/airlock are kept, the new
      binary is installed beside the old one and switched to atomically, the service is
      restarted (the socket keeps the port) and, if it does not become ready, switched back
      automatically. Run the installed copy to upgrade:
      sudo /usr/local/lib/airlock/install.sh --from-kit NEW-KIT --trust-key K.pub
  sudo ./install.sh --rollback
      Switch back to the previously installed binary and restart the service (again:
      forward again). Installs, upgrades and rollbacks are audit records (software.install).
  ./install.sh --help

Environment:
  AIRLOCK_BIN   use this airlock binary instead of building one (--dev, production)
  AIRLOCK_GPU   build with these GPU features (cuda, wgpu or cuda,wgpu) through
                scripts/build-gpu.sh, offline in a network namespace; for cuda, run
                scripts/provision-llvm.sh and cargo fetch first (README "GPU")
  DESTDIR       production install/uninstall into this root instead of / (staging)

Examples:
  ./install.sh --dev --state /tmp/airlock-demo --listen 127.0.0.1:9443
  sudo ./install.sh --enable
  ./install.sh --kit --sign keys/site.key --out /media/usb/airlock-kit
  sudo /media/usb/airlock-kit/install.sh --from-kit /media/usb/airlock-kit --trust-key site.pub
EOF
}

die() { echo "install.sh: $*" >&2; exit 1; }
usage_error() { echo "install.sh: $* (see ./install.sh --help)" >&2; exit 2; }
note() { echo "install.sh: $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

# --- Command line ----------------------------------------------------------------------

mode="install"
state=""
listen=""
enable=0
firewall=0
purge=0
kit_out=""
sign_key=""
kit_dir=""
trust_key=""
with_source=1

set_mode() {
  [[ $mode == install ]] || usage_error "$1 cannot be combined with --$mode"
  mode="${1#--}"
}

while (($#)); do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --dev | --test | --uninstall | --kit | --rollback) set_mode "$1" ;;
    --state | --listen | --out | --sign | --trust-key | --from-kit)
      if (($# < 2)) || [[ -z $2 ]]; then usage_error "$1 needs a value"; fi
      case "$1" in
        --state) state="$2" ;;
        --listen) listen="$2" ;;
        --out) kit_out="$2" ;;
        --sign) sign_key="$2" ;;
        --trust-key) trust_key="$2" ;;
        --from-kit) set_mode --from-kit; kit_dir="$2" ;;
      esac
      shift
      ;;
    --no-source) with_source=0 ;;
    --state=* ) state="${1#*=}" ;;
    --listen=*) listen="${1#*=}" ;;
    --enable) enable=1 ;;
    --firewall) firewall=1 ;;
    --purge) purge=1 ;;
    *) usage_error "unknown option '$1'" ;;
  esac
  shift
done

[[ -z $state && -z $listen ]] || [[ $mode == dev ]] || usage_error "--state and --listen go with --dev"
((enable == 0 && firewall == 0)) || [[ $mode == install || $mode == from-kit ]] || usage_error "--enable and --firewall go with the production install"
[[ -z $kit_out && -z $sign_key && $with_source == 1 ]] || [[ $mode == kit ]] || usage_error "--out, --sign and --no-source go with --kit"
[[ -z $trust_key ]] || [[ $mode == from-kit ]] || usage_error "--trust-key goes with --from-kit"
[[ $mode != kit || -n $sign_key ]] || usage_error "--kit needs --sign KEY (the site's publisher key, from airlock keys generate)"
[[ $mode != from-kit || -n $trust_key ]] || usage_error "--from-kit needs --trust-key K.pub (the publisher key you were given out of band)"
((purge == 0)) || [[ $mode == uninstall ]] || usage_error "--purge goes with --uninstall"

# --- Building ----------------------------------------------------------------------------

# cargo of the invoking user: under sudo, root's PATH usually lacks ~/.cargo/bin.
find_cargo() {
  if have cargo; then
    command -v cargo
  elif [[ -n ${SUDO_USER:-} ]]; then
    local home
    home="$(getent passwd "$SUDO_USER" | cut -d: -f6)"
    [[ -x $home/.cargo/bin/cargo ]] && echo "$home/.cargo/bin/cargo"
  elif [[ -x $HOME/.cargo/bin/cargo ]]; then
    echo "$HOME/.cargo/bin/cargo"
  fi
}

check_build_prerequisites() {
  local cargo
  cargo="$(find_cargo)" || true
  [[ -n $cargo ]] || die "cargo not found: install the Rust toolchain (rustup; Rust >= 1.95) and retry"
  have cc || have gcc || have clang || die "no C compiler found (ring needs one): apt-get install build-essential"
  echo "$cargo"
}

# Prints the path of a release `airlock` binary: $AIRLOCK_BIN, or one built now.
release_binary() {
  if [[ -n ${AIRLOCK_BIN:-} ]]; then
    [[ -x $AIRLOCK_BIN ]] || die "AIRLOCK_BIN=$AIRLOCK_BIN is not an executable file"
    echo "$AIRLOCK_BIN"
    return
  fi
  local cargo target
  cargo="$(check_build_prerequisites)"
  target="${CARGO_TARGET_DIR:-$REPO/target}"
  local build=("$cargo" build --release --locked -p appliance --bin airlock)
  if [[ -n ${AIRLOCK_GPU:-} ]]; then
    # The GPU build runs offline with the network cut (scripts/build-gpu.sh says why).
    [[ $AIRLOCK_GPU =~ ^(cuda|wgpu)(,(cuda|wgpu))?$ ]] \
      || die "AIRLOCK_GPU=$AIRLOCK_GPU: expected cuda, wgpu or cuda,wgpu"
    build=(env PATH="$(dirname "$cargo"):$PATH" "$REPO/scripts/build-gpu.sh" --features "$AIRLOCK_GPU")
  fi
  note "building the release binary (${build[*]}: the first build takes minutes)"
  if [[ $(id -u) == 0 && -n ${SUDO_USER:-} ]]; then
    # Build as the user who owns the checkout, not as root.
    (cd "$REPO" && sudo -u "$SUDO_USER" -H -- "${build[@]}") >&2 || die "cargo build failed"
  else
    (cd "$REPO" && "${build[@]}") >&2 || die "cargo build failed"
  fi
  [[ -x $target/release/airlock ]] || die "build produced no $target/release/airlock"
  echo "$target/release/airlock"
}

# --- --dev ---------------------------------------------------------------------------------

run_dev() {
  local bin
  bin="$(release_binary)"
  local args=(dev --state "${state:-airlock-dev}")
  [[ -z $listen ]] || args+=(--listen "$listen")
  # A relative --state is relative to where the user ran install.sh (nothing above cd's).
  exec "$bin" "${args[@]}"
}

# --- --test --------------------------------------------------------------------------------

# command-or-check -> Debian package providing it.
test_packages() {
  local missing=()
  have systemd-analyze || missing+=(systemd)
  have ip || missing+=(iproute2)
  have nft || missing+=(nftables)
  have curl || missing+=(curl)
  have shellcheck || missing+=(shellcheck)
  have strace || missing+=(strace)
  # The egress tests probe every thread of the running service through gdb.
  have gdb || missing+=(gdb)
  have setpriv || missing+=(util-linux)
  have systemd-nspawn || missing+=(systemd-container)
  have cc || missing+=(build-essential)
  have python3 || missing+=(python3)
  # The audit report's HTML is rendered and screenshotted in a real headless browser.
  have chromium || missing+=(chromium)
  # The offline kit's tests check MANIFEST signatures as an air-gapped host does.
  have openssl || missing+=(openssl)
  # Debian splits venv/ensurepip out of python3.
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
  echo "${missing[@]}"
}

install_test_packages() {
  local missing
  read -r -a missing <<<"$(test_packages)"
  ((${#missing[@]})) || return 0
  [[ $(id -u) == 0 ]] || die "missing packages (${missing[*]}): run as root or apt-get install ${missing[*]}"
  have apt-get || die "missing packages (${missing[*]}) and no apt-get to install them"
  note "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
}

install_sslyze() {
  if [[ -x $VENV/bin/sslyze ]] && "$VENV/bin/pip" show sslyze 2>/dev/null | grep -qx "Version: ${SSLYZE_REQ#*==}" \
    && "$VENV/bin/pip" show openai 2>/dev/null | grep -qx "Version: ${OPENAI_REQ#*==}"; then
    return 0
  fi
  note "creating $VENV with $SSLYZE_REQ $OPENAI_REQ"
  python3 -m venv "$VENV" || die "python3 -m venv $VENV failed (apt-get install python3-venv)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$SSLYZE_REQ" "$OPENAI_REQ" >&2 \
    || die "pip install $SSLYZE_REQ $OPENAI_REQ failed"
  "$VENV/bin/sslyze" --help >/dev/null || die "$VENV/bin/sslyze does not run"
}

# The tiny synthetic models of each quantization type that the engine's K-quant fidelity tests
# compare with llama.cpp (appliance/testdata/synthetic-tiny-llamacpp.json): regenerated, not
# shipped; bench/synthetic.py gives the same bytes for the same seed and the tests check the
# SHA-256 the references were made from. Kept when present.
# True if python $1 has the pinned llama-cpp-python and gguf.
has_synth_deps() {
  "$1" -c 'import llama_cpp, gguf, numpy' 2>/dev/null \
    && "$1" -m pip show llama-cpp-python 2>/dev/null | grep -qx "Version: ${LLAMA_CPP_REQ#*==}" \
    && "$1" -m pip show gguf 2>/dev/null | grep -qx "Version: ${GGUF_REQ#*==}"
}

write_synthetic_models() {
  local dir="$1" py="$VENV/bin/python"
  # A machine that already has the pinned versions (a bench machine) is not made to build
  # llama.cpp a second time.
  if ! has_synth_deps "$py" && command -v python3 >/dev/null && has_synth_deps python3; then
    py=python3
  fi
  if ! has_synth_deps "$py"; then
    note "installing $LLAMA_CPP_REQ $GGUF_REQ $NUMPY_REQ into $VENV (builds llama.cpp from source: 10+ min on 2 cores, once; pip keeps the wheel)"
    # LLAVA_BUILD=OFF: the multimodal library (mtmd, a third of the build) is not needed to
    # quantize or evaluate text models; llama_cpp loads it only for vision chat handlers.
    CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" \
      "$VENV/bin/pip" install --quiet --disable-pip-version-check "$LLAMA_CPP_REQ" "$GGUF_REQ" "$NUMPY_REQ" >&2 \
      || die "pip install $LLAMA_CPP_REQ $GGUF_REQ $NUMPY_REQ failed (needs cmake-capable build tools)"
  fi
  "$py" "$REPO/bench/synthetic.py" tiny --type "${SYNTH_TYPES[@]}" --out-dir "$dir" \
    --tokenizer-from "$AIRLOCK_TEST_MODEL" >/dev/null || die "bench/synthetic.py tiny failed"
}

run_tests() {
  install_test_packages
  install_sslyze
  export AIRLOCK_SSLYZE="$VENV/bin/sslyze"
  AIRLOCK_TEST_MODEL="$("$REPO/scripts/fetch-default-model.sh")" || die "cannot fetch the default model"
  export AIRLOCK_TEST_MODEL
  AIRLOCK_SYNTH_DIR="$(dirname "$AIRLOCK_TEST_MODEL")/synthetic"
  write_synthetic_models "$AIRLOCK_SYNTH_DIR"
  export AIRLOCK_SYNTH_DIR
  local cargo
  cargo="$(check_build_prerequisites)"
  # The kit tests build a kit, whose SBOM needs cargo-cyclonedx.
  ensure_cyclonedx >/dev/null
  cd "$REPO"
  if "$cargo" nextest --version >/dev/null 2>&1; then
    "$cargo" nextest run --workspace --locked --no-fail-fast
    # nextest does not run doc tests.
    "$cargo" test --doc --workspace --locked
  else
    "$cargo" test --workspace --locked
  fi
}

# --- Production install --------------------------------------------------------------------

# Where the installed files come from: this checkout, or a verified kit's staged copy.
SRC="$REPO"
# Set by install_production when it wrote a fresh policy template.
wrote_policy=0

systemd_running() { [[ -z $DESTDIR && -d /run/systemd/system ]] && have systemctl; }

require_root() {
  [[ -n $DESTDIR || $(id -u) == 0 ]] || die "the production $1 needs root: sudo ./install.sh${2:+ $2}"
}

# install(1) with owner/group only when installing for real.
put() {
  local mode="$1" owner="$2" src="$3" dst="$4"
  if [[ -n $DESTDIR ]]; then
    install -m "$mode" "$src" "$dst"
  else
    install -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$src" "$dst"
  fi
}
mkdirp() {
  local mode="$1" owner="$2" dir="$3"
  if [[ -n $DESTDIR ]]; then
    install -d -m "$mode" "$dir"
  else
    install -d -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$dir"
  fi
}

ensure_user() {
  [[ -z $DESTDIR ]] || return 0
  getent passwd "$SERVICE_USER" >/dev/null && return 0
  note "creating system user $SERVICE_USER"
  useradd --system --user-group --home-dir /var/lib/airlock --no-create-home \
    --shell /usr/sbin/nologin --comment "Airlock LLM appliance" "$SERVICE_USER" ||
    die "useradd $SERVICE_USER failed"
}

# FIREWALL: the host egress firewall (ARCHITECTURE.md section 8) lives in
# scripts/firewall.sh, with the interface `firewall.sh apply USER` / `firewall.sh remove`.
# It is installed as $LIB_DIR/firewall.sh and loaded at every boot by
# airlock-firewall.service (nftables rules do not survive a reboot).
firewall_script() { echo "$SRC/scripts/firewall.sh"; }

check_firewall() {
  [[ -x $(firewall_script) ]] || die "--firewall: scripts/firewall.sh is not in this checkout (the no-egress issue adds it)"
  [[ -f $SRC/systemd/airlock-firewall.service ]] || die "--firewall: systemd/airlock-firewall.service is missing"
}

install_firewall() {
  mkdirp 0755 root:root "$LIB_DIR"
  put 0755 root:root "$(firewall_script)" "$LIB_DIR/firewall.sh"
  put 0644 root:root "$SRC/systemd/airlock-firewall.service" "$UNIT_DIR/airlock-firewall.service"
  [[ -z $DESTDIR ]] || return 0
  "$LIB_DIR/firewall.sh" apply "$SERVICE_USER" >&2 || die "firewall.sh apply $SERVICE_USER failed"
}

install_production() {
  require_root install
  if ((firewall)); then check_firewall; fi
  if ((enable)) && ! systemd_running; then
    die "--enable: systemd is not running here (install without --enable, start the units where it runs)"
  fi
  local bin action
  bin="$(release_binary)"
  ensure_user
  action="$(install_release "$bin")"

  mkdirp 0750 "root:$SERVICE_USER" "$CONF_DIR"
  mkdirp 0750 "root:$SERVICE_USER" "$CONF_DIR/pki"
  # The example is refreshed on every install; the live policy is never overwritten.
  put 0640 "root:$SERVICE_USER" "$SRC/policy/airlock.example.toml" "$CONF_DIR/airlock.toml.example"
  if [[ ! -e $CONF_DIR/airlock.toml ]]; then
    put 0640 "root:$SERVICE_USER" "$SRC/policy/airlock.example.toml" "$CONF_DIR/airlock.toml"
    wrote_policy=1
    note "wrote the policy template $CONF_DIR/airlock.toml: edit it, put TLS files in $CONF_DIR/pki/"
  fi
  mkdirp 0700 "$SERVICE_USER:$SERVICE_USER" "$STATE_DIR"
  case "$action" in
    install) write_receipt install "$(current_release)" "" ;;
    upgrade) write_receipt upgrade "$(current_release)" "$(previous_release)" ;;
  esac

  mkdirp 0755 root:root "$UNIT_DIR"
  local unit
  for unit in "${UNITS[@]}"; do
    put 0644 root:root "$SRC/systemd/$unit" "$UNIT_DIR/$unit"
  done
  mkdirp 0755 root:root "$DOC_DIR"
  put 0644 root:root "$SRC/docs/deployment.md" "$DOC_DIR/deployment.md"

  if ((firewall)); then install_firewall; fi
  # What a kit adds (install_from_kit), before anything is (re)started.
  install_kit_extras

  if systemd_running; then
    systemctl daemon-reload
    if ((firewall)); then systemctl enable airlock-firewall.service; fi
  fi
  # An upgrade of a running service takes effect now, or is rolled back.
  if [[ $action == upgrade ]]; then restart_or_roll_back; fi
  if ((enable)); then
    # Fail before enabling: a policy that does not load would only crash-loop.
    "$BIN_DIR/airlock" policy check --config "$CONF_DIR/airlock.toml" >/dev/null ||
      die "--enable: $CONF_DIR/airlock.toml does not pass \`airlock policy check\`; fix it and rerun"
    systemctl enable --now airlock.socket airlock.service
    note "enabled: airlock.socket listens, airlock.service serves (journalctl -u airlock)"
  else
    note "installed; start with: sudo systemctl enable --now airlock.socket airlock.service"
  fi
}

uninstall_production() {
  require_root uninstall --uninstall
  if systemd_running; then
    systemctl disable --now "${UNITS[@]}" airlock-firewall.service >/dev/null 2>&1 || true
  fi
  local unit
  for unit in "${UNITS[@]}" airlock-firewall.service; do
    rm -f "$UNIT_DIR/$unit"
  done
  if systemd_running; then
    systemctl daemon-reload
  fi
  # The firewall table, if loaded (idempotent): the installed script, else the checkout's.
  local script="$LIB_DIR/firewall.sh"
  [[ -x $script ]] || script="$(firewall_script)"
  if [[ -z $DESTDIR && -x $script ]] && have nft; then
    "$script" remove >&2 || die "$script remove failed"
  fi
  rm -f "$BIN_DIR/airlock"
  rm -rf "$LIB_DIR"
  rm -rf "$DOC_DIR" "$SHARE_DIR"
  if ((purge)); then
    rm -rf "$CONF_DIR" "$STATE_DIR"
    if [[ -z $DESTDIR ]] && getent passwd "$SERVICE_USER" >/dev/null; then
      userdel "$SERVICE_USER" || die "userdel $SERVICE_USER failed"
    fi
    note "removed Airlock, its configuration, state and user"
  else
    note "removed Airlock; kept $CONF_DIR and $STATE_DIR (--purge removes them)"
  fi
}


# --- Releases, upgrade and rollback --------------------------------------------------------
# Every installed binary stays in $RELEASES_DIR/SHA256/airlock; $BIN_DIR/airlock is a
# relative symlink to the current one and $LIB_DIR/previous names the one before, so a
# switch is one rename (atomic) and a rollback needs nothing from the kit. Each install,
# upgrade and rollback leaves a receipt in $STATE_DIR/install/pending/, which the service
# records as a `software.install` audit record at its next start (it holds the log).

readonly RELEASES_DIR="$LIB_DIR/releases"

sha256_of() { sha256sum "$1" | cut -c1-64; }

# The SHA-256 the current $BIN_DIR/airlock link names (empty when none).
current_release() {
  local target
  target="$(readlink "$BIN_DIR/airlock" 2>/dev/null)" || return 0
  [[ $target =~ releases/([0-9a-f]{64})/airlock$ ]] && echo "${BASH_REMATCH[1]}"
  return 0
}

previous_release() {
  local target
  target="$(readlink "$LIB_DIR/previous" 2>/dev/null)" || return 0
  [[ $target =~ releases/([0-9a-f]{64})$ ]] && echo "${BASH_REMATCH[1]}"
  return 0
}

# Points $BIN_DIR/airlock at release $1 with one rename.
switch_to() {
  ln -sfn "../lib/airlock/releases/$1/airlock" "$BIN_DIR/.airlock.switch"
  mv -T "$BIN_DIR/.airlock.switch" "$BIN_DIR/airlock"
}

set_previous() {
  ln -sfn "releases/$1" "$LIB_DIR/.previous.switch"
  mv -T "$LIB_DIR/.previous.switch" "$LIB_DIR/previous"
}

# Installs binary $1 as a release and makes it current; prints the action (install, upgrade,
# reinstall).
install_release() {
  local bin="$1" sha current
  mkdirp 0755 root:root "$BIN_DIR"
  mkdirp 0755 root:root "$LIB_DIR"
  mkdirp 0755 root:root "$RELEASES_DIR"
  # A binary from before releases (a plain file) becomes a release, so it can be rolled back to.
  if [[ -f $BIN_DIR/airlock && ! -L $BIN_DIR/airlock ]]; then
    local old
    old="$(sha256_of "$BIN_DIR/airlock")"
    mkdirp 0755 root:root "$RELEASES_DIR/$old"
    put 0755 root:root "$BIN_DIR/airlock" "$RELEASES_DIR/$old/airlock"
    switch_to "$old"
  fi
  sha="$(sha256_of "$bin")"
  mkdirp 0755 root:root "$RELEASES_DIR/$sha"
  if [[ ! -f $RELEASES_DIR/$sha/airlock ]]; then
    put 0755 root:root "$bin" "$RELEASES_DIR/$sha/.airlock.new"
    mv -f "$RELEASES_DIR/$sha/.airlock.new" "$RELEASES_DIR/$sha/airlock"
  fi
  current="$(current_release)"
  if [[ -z $current ]]; then
    switch_to "$sha"
    echo install
  elif [[ $current == "$sha" ]]; then
    echo reinstall
  else
    set_previous "$current"
    switch_to "$sha"
    echo upgrade
  fi
}

# A receipt of what was installed, for the service to record (software.install). $1 action,
# $2 the release now current, $3 the one before (may be empty).
write_receipt() {
  local action="$1" sha="$2" previous="$3" version dir
  version="$("$RELEASES_DIR/$sha/airlock" --version 2>/dev/null)" || version=""
  version="${version#airlock }"
  dir="$STATE_DIR/install/pending"
  mkdirp 0700 "$SERVICE_USER:$SERVICE_USER" "$STATE_DIR/install"
  mkdirp 0700 "$SERVICE_USER:$SERVICE_USER" "$dir"
  local tmp
  tmp="$(mktemp)"
  {
    printf '{"action":"%s","binary_sha256":"%s"' "$action" "$sha"
    [[ -z $previous ]] || printf ',"previous_sha256":"%s"' "$previous"
    [[ ! $version =~ ^[0-9A-Za-z.+-]{1,64}$ ]] || printf ',"version":"%s"' "$version"
    # A rollback installs nothing from the kit at hand (an automatic one undoes it).
    if [[ $action != rollback ]]; then
      [[ -z ${KIT_MANIFEST_SHA256:-} ]] || printf ',"kit_manifest_sha256":"%s"' "$KIT_MANIFEST_SHA256"
      [[ -z ${KIT_SIGNER:-} ]] || printf ',"kit_signer":"%s"' "$KIT_SIGNER"
    fi
    printf ',"time":"%s"}\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } >"$tmp"
  local name
  name="$(date -u +%Y%m%dT%H%M%S)-$$-$RANDOM-$action.json"
  put 0600 "$SERVICE_USER:$SERVICE_USER" "$tmp" "$dir/.$name"
  mv -f "$dir/.$name" "$dir/$name"
  rm -f "$tmp"
}

# After a switch: restart a running service on the current binary and check it became
# ready (Type=notify: `systemctl restart` returns once READY=1 was sent or the start failed),
# and is still running a moment later; otherwise switch back to the previous release and
# restart that. The socket keeps the port throughout: connections wait in its backlog.
restart_or_roll_back() {
  systemd_running || return 0
  if ! systemctl is-active --quiet airlock.service; then
    return 0
  fi
  local now previous
  now="$(current_release)"
  note "restarting airlock.service on release ${now:0:12} (the socket keeps the port: clients wait)"
  if systemctl restart airlock.service && sleep "${AIRLOCK_SETTLE_SECS:-3}" \
    && systemctl is-active --quiet airlock.service; then
    note "airlock.service is ready on release ${now:0:12}"
    return 0
  fi
  previous="$(previous_release)"
  [[ -n $previous ]] || die "the new binary did not become ready and there is no previous release to roll back to (journalctl -u airlock.service)"
  note "the new binary did not become ready: rolling back to release ${previous:0:12}"
  set_previous "$now"
  switch_to "$previous"
  write_receipt rollback "$previous" "$now"
  systemctl reset-failed airlock.service >/dev/null 2>&1 || true
  systemctl restart airlock.service \
    || die "rolled back to release ${previous:0:12}, but it did not start either (journalctl -u airlock.service)"
  die "the new binary (release ${now:0:12}) did not become ready (journalctl -u airlock.service); rolled back to release ${previous:0:12}, which serves again"
}

# ./install.sh --rollback: back to the previous release (and, run again, forward again).
roll_back() {
  require_root rollback --rollback
  local now previous
  now="$(current_release)"
  previous="$(previous_release)"
  [[ -n $now && -n $previous && -x $RELEASES_DIR/$previous/airlock ]] \
    || die "--rollback: no previous release in $RELEASES_DIR (nothing was upgraded yet)"
  set_previous "$now"
  switch_to "$previous"
  write_receipt rollback "$previous" "$now"
  note "switched $BIN_DIR/airlock back to release ${previous:0:12} (from ${now:0:12})"
  if systemd_running && systemctl is-active --quiet airlock.service; then
    systemctl restart airlock.service || die "release ${previous:0:12} did not start (journalctl -u airlock.service); ./install.sh --rollback again returns to ${now:0:12}"
    note "airlock.service is ready on release ${previous:0:12}"
  fi
}

# --- Offline kit ---------------------------------------------------------------------------
# The kit and its MANIFEST: docs/offline-kit.md. MANIFEST lines are `SHA256 SIZE PATH`
# after four header lines (format, version, commit, signer); MANIFEST.sig is the base64
# ed25519 signature of MANIFEST's bytes (`airlock kit sign`).

# cargo-cyclonedx, installed for the invoking user when missing (the build station is
# connected); prints the cargo that has it.
ensure_cyclonedx() {
  local cargo
  cargo="$(check_build_prerequisites)"
  if ! "$cargo" cyclonedx --version 2>/dev/null | grep -q " $CYCLONEDX_VERSION\$"; then
    note "installing cargo-cyclonedx $CYCLONEDX_VERSION (the SBOM generator; once)"
    "$cargo" install --quiet --locked --version "$CYCLONEDX_VERSION" cargo-cyclonedx >&2 \
      || die "cargo install cargo-cyclonedx@$CYCLONEDX_VERSION failed"
  fi
  echo "$cargo"
}

# The SBOM of the airlock binary (CycloneDX JSON: every crate compiled into it, with versions
# and licences) and a licence inventory from it, into DIR.
write_sbom() {
  local dir="$1" cargo stamp bom
  cargo="$(ensure_cyclonedx)"
  stamp="$(mktemp)"
  # cargo-cyclonedx writes its files beside the package's Cargo.toml.
  (cd "$REPO" && "$cargo" cyclonedx --manifest-path appliance/Cargo.toml --format json \
    --describe binaries --target "$(rustc -vV | sed -n 's/^host: //p')" -q) >&2 \
    || die "cargo cyclonedx failed"
  bom="$(find "$REPO/appliance" -maxdepth 1 -name 'airlock*.cdx.json' -newer "$stamp" -print -quit)"
  rm -f "$stamp"
  [[ -n $bom ]] || die "cargo cyclonedx wrote no airlock*.cdx.json in appliance/"
  mv "$bom" "$dir/sbom.cdx.json"
  python3 - "$dir/sbom.cdx.json" >"$dir/licenses.tsv" <<'PY' || die "cannot write the licence inventory"
import json, sys
bom = json.load(open(sys.argv[1]))
def licences(c):
    out = []
    for entry in c.get("licenses", []):
        lic = entry.get("license", {})
        out.append(entry.get("expression") or lic.get("id") or lic.get("name") or "?")
    return " OR ".join(out) or "unknown"
def walk(cs):
    for c in cs:
        yield c
        yield from walk(c.get("components", []))
rows = sorted({(c["name"], c.get("version", ""), licences(c)) for c in walk(bom.get("components", []))})
print("crate\tversion\tlicence")
for r in rows:
    print("\t".join(r))
PY
}

# The checkout's tracked files (as they are now) with every dependency vendored and cargo
# pointed at them, into DIR: `cargo build --offline --locked` rebuilds the binary there.
write_sources() {
  local dir="$1" commit="$2" epoch="$3" cargo
  cargo="$(check_build_prerequisites)"
  mkdir -p "$dir/.cargo"
  (cd "$REPO" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$dir" \
    || die "cannot copy the tracked sources"
  note "vendoring every dependency (cargo vendor --locked: minutes)"
  # cargo vendor prints the source replacement on stdout (not with --quiet).
  (cd "$dir" && "$cargo" vendor --locked vendor 2>/dev/null) >"$dir/.cargo/config.toml" \
    || die "cargo vendor failed"
  grep -q '^replace-with = "vendored-sources"' "$dir/.cargo/config.toml" \
    || die "cargo vendor printed no source replacement for $dir/.cargo/config.toml"
  # The commit and source time, which the vendored tree cannot ask git (appliance/build.rs).
  printf '\n[env]\nAIRLOCK_GIT_COMMIT = "%s"\nSOURCE_DATE_EPOCH = "%s"\n' "$commit" "$epoch" \
    >>"$dir/.cargo/config.toml"
}

build_kit() {
  [[ -f $sign_key ]] || die "--sign $sign_key: no such key file (airlock keys generate --out DIR --name NAME)"
  have python3 || die "--kit needs python3 (the licence inventory)"
  local bin version commit epoch out work
  bin="$(release_binary)"
  version="$("$bin" --version)" || die "$bin --version failed"
  version="${version#airlock }"
  [[ $version =~ ^[0-9A-Za-z.+-]+$ ]] || die "$bin --version printed no version"
  commit="$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)"
  if [[ $commit != unknown ]] && ! git -C "$REPO" diff --quiet HEAD 2>/dev/null; then
    commit="$commit-dirty"
  fi
  epoch="$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)"
  out="${kit_out:-$PWD/airlock-kit-$version}"
  [[ ! -e $out && ! -e $out.tar ]] || die "--out $out (or $out.tar) exists: choose another directory"
  mkdir -p "$(dirname "$out")"
  # Built beside its destination and renamed once complete: no half kit under that name.
  work="$(mktemp -d "$out.partial.XXXXXX")"
  # shellcheck disable=SC2064 # the path is fixed now
  trap "rm -rf '$work'" EXIT
  note "writing the kit in $work"
  install -d "$work/bin" "$work/systemd" "$work/scripts" "$work/policy" "$work/docs" \
    "$work/models" "$work/share/airlock"
  install -m 0755 "$bin" "$work/bin/airlock"
  install -m 0755 "$REPO/install.sh" "$work/install.sh"
  install -m 0644 "$REPO/systemd/airlock.socket" "$REPO/systemd/airlock.service" \
    "$REPO/systemd/airlock-firewall.service" "$work/systemd/"
  install -m 0755 "$REPO/scripts/firewall.sh" "$work/scripts/firewall.sh"
  install -m 0644 "$REPO/policy/airlock.example.toml" "$work/policy/"
  install -m 0644 "$REPO/README.md" "$REPO/ARCHITECTURE.md" "$work/"
  install -m 0644 "$REPO"/docs/*.md "$REPO/audit/FORMAT.md" "$REPO/audit/THREAT_MODEL.md" "$work/docs/"

  local model bundle
  model="$("$REPO/scripts/fetch-default-model.sh")" || die "cannot fetch the default model"
  bundle="$work/models/$KIT_MODEL_NAME-$KIT_MODEL_VERSION.airlock"
  "$bin" bundle create --model "$model" --name "$KIT_MODEL_NAME" --version "$KIT_MODEL_VERSION" \
    --sequence 1 --expires "$(date -u -d '+2 years' +%Y-%m-%d)" --out "$bundle" >&2 \
    || die "airlock bundle create failed"
  "$bin" bundle sign "$bundle" --key "$sign_key" >&2 || die "airlock bundle sign failed"

  write_sbom "$work/share/airlock"
  if ((with_source)); then write_sources "$work/source" "$commit" "$epoch"; fi
  "$bin" kit sign --dir "$work" --key "$sign_key" --commit "$commit" >&2 || die "airlock kit sign failed"
  chmod 0755 "$work"
  mv -T "$work" "$out"
  trap - EXIT
  tar -cf "$out.tar" -C "$(dirname "$out")" "$(basename "$out")" || die "cannot write $out.tar"
  note "kit ready: $out and $out.tar ($(du -sh "$out" | cut -f1)); the key that verifies it: $(tr -d '\n' <"$out/keys/publisher.pub")"
  echo "$out"
}

# Checks the kit in $1 against the trusted key $2 without running anything from it, then
# copies what the install needs into a private directory and checks the copies again (the
# medium may change under us). Sets KIT_STAGE, KIT_TMP and KIT_MANIFEST_SHA256. Dies naming
# the first problem; nothing is installed before it returns.
verify_kit() {
  local dir="$1" key="$2"
  have openssl || die "--from-kit needs openssl to check the kit's signature (Debian package openssl); or check it on another machine as docs/offline-kit.md shows"
  have sha256sum || die "--from-kit needs sha256sum (coreutils)"
  [[ -d $dir ]] || die "--from-kit $dir: not a directory"
  [[ -f $key ]] || die "--trust-key $key: no such file"
  [[ -f $dir/MANIFEST && ! -L $dir/MANIFEST ]] || die "$dir has no MANIFEST: not a signed Airlock kit; nothing installed"
  [[ -f $dir/MANIFEST.sig && ! -L $dir/MANIFEST.sig ]] || die "$dir/MANIFEST is not signed (no MANIFEST.sig); nothing installed"
  KIT_TMP="$(mktemp -d)"
  local tmp="$KIT_TMP"
  # shellcheck disable=SC2064 # the path is fixed now
  trap "rm -rf '$tmp'" EXIT
  # Everything below reads this private copy, never the medium's MANIFEST twice.
  cp "$dir/MANIFEST" "$tmp/MANIFEST"
  local raw sig
  raw="$(tr -d ' \r\n' <"$key")"
  [[ $raw =~ ^[A-Za-z0-9+/]{43}=$ ]] || die "--trust-key $key: not an Airlock public key (base64 of 32 bytes, from airlock keys generate)"
  sig="$(tr -d ' \r\n' <"$dir/MANIFEST.sig")"
  [[ $sig =~ ^[A-Za-z0-9+/]{86}==$ ]] || die "$dir/MANIFEST.sig: not an ed25519 signature; nothing installed"
  # The raw key as a DER SubjectPublicKeyInfo (RFC 8410) for openssl.
  { printf '\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00'; base64 -d <<<"$raw"; } >"$tmp/key.der"
  base64 -d <<<"$sig" >"$tmp/sig"
  openssl pkeyutl -verify -pubin -inkey "$tmp/key.der" -keyform DER -rawin \
    -in "$tmp/MANIFEST" -sigfile "$tmp/sig" >/dev/null 2>&1 \
    || die "$dir/MANIFEST: the signature does not verify with $key (signed by another key, or MANIFEST was changed); nothing installed"
  local -a lines
  mapfile -t lines <"$tmp/MANIFEST"
  [[ ${lines[0]:-} == "$KIT_FORMAT" ]] || die "$dir/MANIFEST: not an $KIT_FORMAT manifest"
  [[ ${lines[3]:-} == "signer $raw" ]] || die "$dir/MANIFEST: names another signer than $key"
  # Every regular file's size in one pass (a kit has tens of thousands with its sources: one
  # stat per file took minutes). Links and special files are refused below.
  local -A size_of=()
  local size rel
  while IFS=' ' read -r -d '' size rel; do
    size_of[$rel]=$size
  done < <(find "$dir" -mindepth 1 -type f -printf '%s %P\0')
  local -A listed=()
  local line path
  : >"$tmp/sums"
  for line in "${lines[@]:4}"; do
    [[ $line =~ ^([0-9a-f]{64})\ ([0-9]+)\ ([A-Za-z0-9._+/@\(\)-]+)$ ]] || die "$dir/MANIFEST: malformed line '$line'"
    path="${BASH_REMATCH[3]}"
    if [[ /$path/ == */../* || /$path/ == */./* || $path == /* || $path == *//* || $path == */ ]]; then
      die "$dir/MANIFEST: path '$path' leaves the kit"
    fi
    [[ -n ${size_of[$path]+x} ]] || die "$path: listed in MANIFEST but missing from the kit; nothing installed"
    [[ ${size_of[$path]} == "${BASH_REMATCH[2]}" ]] \
      || die "$path: size differs from MANIFEST (changed after signing); nothing installed"
    listed[$path]="${BASH_REMATCH[1]}"
    printf '%s  %s\n' "${BASH_REMATCH[1]}" "$path" >>"$tmp/sums"
  done
  local bad
  bad="$(find "$dir" -mindepth 1 ! -type f ! -type d -print -quit)"
  [[ -z $bad ]] || die "${bad#"$dir"/}: not a regular file (a link or device in the kit); nothing installed"
  for rel in "${!size_of[@]}"; do
    [[ $rel == MANIFEST || $rel == MANIFEST.sig ]] && continue
    [[ -n ${listed[$rel]+x} ]] || die "$rel: in the kit but not in MANIFEST (added after signing); nothing installed"
  done
  check_sums "$dir" "$tmp/sums" || die "$CHECK_FAILED: SHA-256 differs from MANIFEST (changed after signing); nothing installed"

  # Stage what the install uses (not the sources), then check the copies.
  local stage="$tmp/stage"
  mkdir -m 0700 "$stage"
  : >"$tmp/staged"
  for path in "${!listed[@]}"; do
    [[ $path != source/* ]] || continue
    mkdir -p "$stage/$(dirname "$path")"
    cp "$dir/$path" "$stage/$path"
    printf '%s  %s\n' "${listed[$path]}" "$path" >>"$tmp/staged"
  done
  check_sums "$stage" "$tmp/staged" || die "$CHECK_FAILED: changed while it was being copied; nothing installed"
  for path in bin/airlock install.sh policy/airlock.example.toml share/airlock/sbom.cdx.json; do
    [[ -f $stage/$path ]] || die "the kit has no $path; nothing installed"
  done
  chmod 0755 "$stage/bin/airlock" "$stage/install.sh"
  cp "$tmp/MANIFEST" "$stage/MANIFEST.installed"
  KIT_STAGE="$stage"
  KIT_MANIFEST_SHA256="$(sha256sum "$tmp/MANIFEST" | cut -d' ' -f1)"
  KIT_SIGNER="$raw"
  note "kit verified: ${#listed[@]} files signed by $key (MANIFEST sha256 $KIT_MANIFEST_SHA256)"
}

# sha256sum --check of SUMS in DIR; on failure sets CHECK_FAILED to the first bad path.
check_sums() {
  local out
  if out="$(cd "$1" && sha256sum --check --strict --quiet "$2" 2>&1)"; then
    return 0
  fi
  CHECK_FAILED="$(sed -n 's/: FAILED.*$//p' <<<"$out" | head -n1)"
  [[ -n $CHECK_FAILED ]] || CHECK_FAILED="$out"
  return 1
}

# What a kit installs beyond the production install (called by install_production before
# anything is restarted).
install_kit_extras() {
  [[ -n ${KIT_STAGE:-} ]] || return 0
  mkdirp 0755 root:root "$SHARE_DIR"
  put 0644 root:root "$KIT_STAGE/share/airlock/sbom.cdx.json" "$SHARE_DIR/sbom.cdx.json"
  put 0644 root:root "$KIT_STAGE/share/airlock/licenses.tsv" "$SHARE_DIR/licenses.tsv"
  put 0644 root:root "$KIT_STAGE/MANIFEST.installed" "$SHARE_DIR/kit-MANIFEST"
  # The release keeps the SBOM of its binary (airlock version finds it beside itself).
  put 0644 root:root "$KIT_STAGE/share/airlock/sbom.cdx.json" "$RELEASES_DIR/$(current_release)/sbom.cdx.json"
  mkdirp 0755 root:root "$LIB_DIR"
  # The installed copy verifies the next kit (sudo /usr/local/lib/airlock/install.sh
  # --from-kit NEW --trust-key K.pub), so an upgrade runs nothing of the new kit first.
  put 0755 root:root "$KIT_STAGE/install.sh" "$LIB_DIR/install.sh"
  mkdirp 0750 "root:$SERVICE_USER" "$CONF_DIR/keys"
  put 0640 "root:$SERVICE_USER" "$trust_key" "$CONF_DIR/keys/kit-publisher.pub"
  if ((wrote_policy)); then
    cat >>"$CONF_DIR/airlock.toml" <<TRUST

# Added by install.sh --from-kit: trust the kit's publisher key for the model bundle it
# brought (verified and activated by the service from ${STATE_DIR#"$DESTDIR"}/import/ once
# it runs).
[trust]
threshold = 1
allowed_names = ["smollm2-*"]

[[trust.publisher]]
name = "kit publisher"
key_file = "keys/kit-publisher.pub"
TRUST
  fi
  local bundle name
  mkdirp 0700 "$SERVICE_USER:$SERVICE_USER" "$STATE_DIR/import"
  for bundle in "$KIT_STAGE"/models/*.airlock; do
    [[ -f $bundle ]] || continue
    name="$(basename "$bundle")"
    # Written as .part and renamed: the service's import takes only complete files.
    put 0600 "$SERVICE_USER:$SERVICE_USER" "$bundle" "$STATE_DIR/import/$name.part"
    mv -f "$STATE_DIR/import/$name.part" "$STATE_DIR/import/$name"
    note "model bundle $name queued in $STATE_DIR/import/ (the service verifies and activates it)"
  done
}

install_from_kit() {
  require_root install "--from-kit $kit_dir --trust-key $trust_key"
  verify_kit "$kit_dir" "$trust_key"
  SRC="$KIT_STAGE"
  AIRLOCK_BIN="$KIT_STAGE/bin/airlock"
  install_production
}

case "$mode" in
  dev) run_dev ;;
  kit) build_kit ;;
  from-kit) install_from_kit ;;
  rollback) roll_back ;;
  test) run_tests ;;
  install) install_production ;;
  uninstall) uninstall_production ;;
esac
