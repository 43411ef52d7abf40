#!/usr/bin/env bash
# Airlock host firewall: the outermost no-egress layer (ARCHITECTURE.md §8, docs/no-egress.md).
#
# One nftables table, `inet airlock_egress`, with an output-hook chain: packets sent by
# sockets of the service user are accepted only when they belong to a connection someone
# else opened (ct state established,related: answers to clients); everything else the
# user sends -- new TCP connections, UDP (DNS), ICMP -- is counted and rejected. It
# knows direction, unlike an address allow-list, and does not depend on the service's
# own code or sandbox.
#
#   scripts/firewall.sh [--user NAME|UID]      install or replace (idempotent, atomic)
#   scripts/firewall.sh --remove               remove the table (idempotent)
#   scripts/firewall.sh --print [--user ...]   print the ruleset, change nothing
#   scripts/firewall.sh --status               the table and its counter
#   scripts/firewall.sh apply [USER] | remove  the same, as install.sh calls it
#
# The default user is `airlock`. The rules are runtime state, lost at reboot and by
# `nft flush ruleset` (firewalld/ufw reloads): re-run this at boot, after them.
set -euo pipefail

TABLE=airlock_egress
user=airlock
action=install

die() { echo "firewall.sh: $*" >&2; exit 1; }
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --user) [ $# -ge 2 ] || die "--user needs a name or uid"; user=$2; shift 2 ;;
    --remove|--uninstall) action=remove; shift ;;
    --print) action=print; shift ;;
    --status) action=status; shift ;;
    apply) action=install; shift; if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then user=$1; shift; fi ;;
    remove) action=remove; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "firewall.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

resolve_uid() {
  if [[ "$user" =~ ^[0-9]+$ ]]; then
    uid=$user
  else
    uid=$(id -u -- "$user" 2>/dev/null) || die "no user '$user' (create it first, or pass --user UID)"
  fi
}

ruleset() {
  cat <<RULES
table inet $TABLE {
  counter refused {
    comment "new outbound packets of uid $uid, rejected"
  }
  chain output {
    type filter hook output priority filter; policy accept;
    meta skuid $uid ct state established,related accept
    meta skuid $uid meta l4proto tcp counter name "refused" reject with tcp reset
    meta skuid $uid counter name "refused" reject with icmpx type admin-prohibited
  }
}
RULES
}

case "$action" in
  print) resolve_uid; ruleset; exit 0 ;;
esac

command -v nft >/dev/null 2>&1 || die "nft not found: install nftables"
[ "$(id -u)" = 0 ] || die "must run as root"

case "$action" in
  install)
    resolve_uid
    # One transaction: create-if-missing, delete, re-create. Never a moment without rules.
    { echo "table inet $TABLE"; echo "delete table inet $TABLE"; ruleset; } | nft -f -
    echo "firewall.sh: table inet $TABLE installed: uid $uid may not open outbound connections"
    ;;
  remove)
    if nft list table inet "$TABLE" >/dev/null 2>&1; then
      nft delete table inet "$TABLE"
      echo "firewall.sh: table inet $TABLE removed"
    else
      echo "firewall.sh: table inet $TABLE not present"
    fi
    ;;
  status)
    nft list table inet "$TABLE"
    ;;
esac
