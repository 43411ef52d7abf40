#!/usr/bin/env bash
# Airlock installer (bootstrap version; the service-shell issue completes it).
set -euo pipefail
cd "$(dirname "$0")"
case "${1:---help}" in
  --test)
    scripts/fetch-default-model.sh >/dev/null
    cargo test --workspace --locked
    ;;
  --help|-h)
    echo "usage: ./install.sh --test" ;;
  *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
esac
