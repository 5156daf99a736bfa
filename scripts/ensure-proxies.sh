#!/usr/bin/env bash
# The project's one installer of test tools: installs what the tests need from Debian's packages,
# when absent. For the fault-injection tests (test/faults/):
#   nft    (nftables)             — drops packets in a namespace's INPUT hook: a silent link cut
#   nginx  + its stream module     — a TCP proxy with an idle timeout (proxy_timeout)
#   haproxy                        — a TCP proxy with an idle timeout (timeout client/server)
# For the observability tests (test/observe/):
#   promtool (prometheus)          — `promtool check metrics` lints the /metrics text
#   chromium                       — the dashboard in a real browser, driven by playwright-core
# iproute2 (`ip netns`) is checked, not installed: it is part of the base system.
#
# Idempotent: installs only what is missing and says what it did, one line per tool:
#   "ok <tool> <path>"            — present
#   "installed <tool> <path>"     — installed now
#   "missing <tool>: <why>"       — could not be had (the tests that need it skip with this line)
# Exit status: 0 when every requested tool is present afterwards, 1 otherwise.
#
# Usage: scripts/ensure-proxies.sh [nft] [nginx] [haproxy] [promtool] [chromium]
#        (no argument = the three fault-test tools)
# The proxies are never started as services: the tests run them in the foreground with their own
# config, and Debian's policy-rc.d (where present) keeps the package scripts from starting them.
set -u

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(nft nginx haproxy)

nginx_stream_ok() {
  command -v nginx >/dev/null 2>&1 || return 1
  # Built in (--with-stream) or as Debian's dynamic module (libnginx-mod-stream).
  nginx -V 2>&1 | grep -Eq -- '--with-stream( |$)' && return 0
  [ -f /usr/lib/nginx/modules/ngx_stream_module.so ]
}

present() {
  case "$1" in
    nft) command -v nft >/dev/null 2>&1 ;;
    haproxy) command -v haproxy >/dev/null 2>&1 ;;
    nginx) nginx_stream_ok ;;
    promtool) command -v promtool >/dev/null 2>&1 ;;
    chromium) [ -x /usr/bin/chromium ] ;;
    *) return 1 ;;
  esac
}

packages() {
  case "$1" in
    nft) echo nftables ;;
    haproxy) echo haproxy ;;
    # promtool ships in Debian's prometheus package (its server is never started by the tests; policy-rc.d, where present, keeps apt from starting it).
    promtool) echo prometheus ;;
    chromium) echo chromium ;;
    # nginx-light pulls in nginx; the stream module is its own package on Debian 12.
    nginx) echo nginx-light libnginx-mod-stream ;;
  esac
}

where() {
  case "$1" in
    chromium) echo /usr/bin/chromium ;;
    nginx) echo "$(command -v nginx) stream=$([ -f /usr/lib/nginx/modules/ngx_stream_module.so ] && echo /usr/lib/nginx/modules/ngx_stream_module.so || echo built-in)" ;;
    *) command -v "$1" ;;
  esac
}

status=0
todo=()
for t in "${want[@]}"; do
  if present "$t"; then echo "ok $t $(where "$t")"; else todo+=("$t"); fi
done
[ ${#todo[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  for t in "${todo[@]}"; do echo "missing $t: not root, cannot apt-get install $(packages "$t")"; done
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  for t in "${todo[@]}"; do echo "missing $t: no apt-get on this system"; done
  exit 1
fi

pkgs=()
for t in "${todo[@]}"; do
  for p in $(packages "$t"); do pkgs+=("$p"); done
done

log=$(mktemp /tmp/longlink-ensure-proxies.XXXXXX)
export DEBIAN_FRONTEND=noninteractive
# One shared lock: two test files may ask at the same time.
exec 9>/tmp/longlink-ensure-proxies.lock
flock -w 600 9 || true
# Another caller may have installed them while we waited for the lock.
pkgs_left=()
for t in "${todo[@]}"; do present "$t" || for p in $(packages "$t"); do pkgs_left+=("$p"); done; done
if [ ${#pkgs_left[@]} -gt 0 ]; then
  if ! apt-get install -y -q --no-install-recommends "${pkgs_left[@]}" >"$log" 2>&1; then
    # The package lists may be missing or stale on a fresh machine: refresh once and retry.
    apt-get update -q >>"$log" 2>&1
    apt-get install -y -q --no-install-recommends "${pkgs_left[@]}" >>"$log" 2>&1
  fi
fi
for t in "${todo[@]}"; do
  if present "$t"; then
    echo "installed $t $(where "$t") (apt-get install $(packages "$t"))"
  else
    echo "missing $t: apt-get install $(packages "$t") failed: $(tail -n 1 "$log")"
    status=1
  fi
done
rm -f "$log"
exit $status
