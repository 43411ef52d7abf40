#!/usr/bin/env bash
# Airlock installer: one-command demo, the test suite, and the production install.
#
#   ./install.sh --dev [--state DIR] [--listen ADDR]   build (release) and run `airlock dev`
#   ./install.sh --test                                 install test prerequisites, run all tests
#   sudo ./install.sh [--enable] [--firewall]           production install under systemd
#   sudo ./install.sh --uninstall [--purge]             remove it (state kept unless --purge)
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

set_mode() {
  [[ $mode == install ]] || usage_error "$1 cannot be combined with --$mode"
  mode="${1#--}"
}

while (($#)); do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --dev | --test | --uninstall) set_mode "$1" ;;
    --state | --listen)
      if (($# < 2)) || [[ -z $2 ]]; then usage_error "$1 needs a value"; fi
      if [[ $1 == --state ]]; then state="$2"; else listen="$2"; fi
      shift
      ;;
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
((enable == 0 && firewall == 0)) || [[ $mode == install ]] || usage_error "--enable and --firewall go with the production install"
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
firewall_script() { echo "$REPO/scripts/firewall.sh"; }

check_firewall() {
  [[ -x $(firewall_script) ]] || die "--firewall: scripts/firewall.sh is not in this checkout (the no-egress issue adds it)"
  [[ -f $REPO/systemd/airlock-firewall.service ]] || die "--firewall: systemd/airlock-firewall.service is missing"
}

install_firewall() {
  mkdirp 0755 root:root "$LIB_DIR"
  put 0755 root:root "$(firewall_script)" "$LIB_DIR/firewall.sh"
  put 0644 root:root "$REPO/systemd/airlock-firewall.service" "$UNIT_DIR/airlock-firewall.service"
  [[ -z $DESTDIR ]] || return 0
  "$LIB_DIR/firewall.sh" apply "$SERVICE_USER" >&2 || die "firewall.sh apply $SERVICE_USER failed"
}

install_production() {
  require_root install
  if ((firewall)); then check_firewall; fi
  if ((enable)) && ! systemd_running; then
    die "--enable: systemd is not running here (install without --enable, start the units where it runs)"
  fi
  local bin
  bin="$(release_binary)"
  ensure_user
  mkdirp 0755 root:root "$BIN_DIR"
  put 0755 root:root "$bin" "$BIN_DIR/airlock"

  mkdirp 0750 "root:$SERVICE_USER" "$CONF_DIR"
  mkdirp 0750 "root:$SERVICE_USER" "$CONF_DIR/pki"
  # The example is refreshed on every install; the live policy is never overwritten.
  put 0640 "root:$SERVICE_USER" "$REPO/policy/airlock.example.toml" "$CONF_DIR/airlock.toml.example"
  if [[ ! -e $CONF_DIR/airlock.toml ]]; then
    put 0640 "root:$SERVICE_USER" "$REPO/policy/airlock.example.toml" "$CONF_DIR/airlock.toml"
    note "wrote the policy template $CONF_DIR/airlock.toml: edit it, put TLS files in $CONF_DIR/pki/"
  fi
  mkdirp 0700 "$SERVICE_USER:$SERVICE_USER" "$STATE_DIR"

  mkdirp 0755 root:root "$UNIT_DIR"
  local unit
  for unit in "${UNITS[@]}"; do
    put 0644 root:root "$REPO/systemd/$unit" "$UNIT_DIR/$unit"
  done
  mkdirp 0755 root:root "$DOC_DIR"
  put 0644 root:root "$REPO/docs/deployment.md" "$DOC_DIR/deployment.md"

  if ((firewall)); then install_firewall; fi

  if systemd_running; then
    systemctl daemon-reload
    if ((firewall)); then systemctl enable airlock-firewall.service; fi
    # An upgrade of a running service takes effect now (no-op when it is not running).
    systemctl try-restart airlock.service
  fi
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
  rm -rf "$LIB_DIR"
  rm -f "$BIN_DIR/airlock"
  rm -rf "$DOC_DIR"
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

case "$mode" in
  dev) run_dev ;;
  test) run_tests ;;
  install) install_production ;;
  uninstall) uninstall_production ;;
esac
