#!/usr/bin/env bash
# The one installer for what the test suite needs from the system, from Debian's packages.
# npm test runs it once before the tests (scripts/run-tests.mjs); a test file run on its own runs it
# for the tools it needs (test/faults/harness.ts ensureTools). It never installs silently: before
# installing anything it prints one line saying what and why.
#
# Output, one line per tool (what the tests print as their skip reason when a tool is missing):
#   ok <tool> <where>                          present
#   installing <tool>: apt-get install <packages> — <why>     (printed before installing)
#   installed <tool> <where>                   installed now
#   missing <tool>: <why>                      not here and not installed; the tests that need it skip
# Exit status: 0 when every requested tool is present afterwards, 1 otherwise.
#
# Usage: scripts/ensure-test-tools.sh [--check] [--list] [tool ...]   (no tool = all of them)
#   --check                 never install; say what is missing
#   --list                  print the table below
#   LONGLINK_NO_INSTALL=1   same as --check: the tests that need a missing tool skip, saying so
#                           (and fail instead under LONGLINK_REQUIRE_FAULTS=1; see test/skip.ts)
#
# Idempotent; one lock for concurrent callers; `apt-get update` only when an install fails without
# fresh package lists. Nothing is started as a service: the tests run nginx, haproxy and redis-server
# in the foreground with their own config, and Debian's policy-rc.d (where present) keeps the package
# scripts from starting them.
set -u

# The tools. One line each: name | Debian packages | presence check (a shell command) | who needs it, why.
TOOLS=$(cat <<'TABLE'
nft      | nftables                        | command -v nft              | test/faults/link-cut: drops every packet in a namespace's INPUT hook, a silent link cut
nginx    | nginx-light libnginx-mod-stream | nginx_stream_ok             | test/faults/middlebox, test/server/proxy-*: a TCP proxy (stream module) with an idle timeout, and PROXY protocol
haproxy  | haproxy                         | command -v haproxy          | test/faults/middlebox, test/server/proxy-*: a TCP proxy with an idle timeout, and PROXY protocol v1/v2
openssl  | openssl                         | command -v openssl          | test/*/tls, test/cli/edge: makes the test PKI (a CA, server and client certificates)
ip       | iproute2                        | command -v ip               | test/faults/link-cut: network namespaces and a veth pair (ip netns, ip link)
promtool | prometheus                      | command -v promtool         | test/cli/observe: `promtool check metrics` lints the /metrics text (the prometheus server itself is never started)
chromium | chromium                        | test -x /usr/bin/chromium   | test/observe/dashboard: the admin dashboard in a real browser, driven by playwright-core
redis    | redis-server                    | command -v redis-server     | test/broker, bench/rooms: the Redis broker adapter (pub/sub, Streams, Lua) against a real redis-server, run in the foreground with its own config (no persistence)
TABLE
)

nginx_stream_ok() {
  command -v nginx >/dev/null 2>&1 || return 1
  # Built in (--with-stream) or as Debian's dynamic module (libnginx-mod-stream).
  nginx -V 2>&1 | grep -Eq -- '--with-stream( |$)' && return 0
  [ -f /usr/lib/nginx/modules/ngx_stream_module.so ]
}

field() { # field <tool> <n>: column n (1-based) of the tool's row
  printf '%s\n' "$TOOLS" | awk -F'|' -v t="$1" -v n="$2" '{ gsub(/^ +| +$/, "", $1) } $1 == t { gsub(/^ +| +$/, "", $n); print $n }'
}
present() { eval "$(field "$1" 3)" >/dev/null 2>&1; }
packages() { field "$1" 2; }
why() { field "$1" 4; }
where() {
  case "$1" in
    chromium) echo /usr/bin/chromium ;;
    redis) command -v redis-server ;;
    nginx) echo "$(command -v nginx) stream=$([ -f /usr/lib/nginx/modules/ngx_stream_module.so ] && echo /usr/lib/nginx/modules/ngx_stream_module.so || echo built-in)" ;;
    *) command -v "$1" ;;
  esac
}

check=0
want=()
for a in "$@"; do
  case "$a" in
    --check) check=1 ;;
    --list) printf '%s\n' "$TOOLS"; exit 0 ;;
    *) want+=("$a") ;;
  esac
done
[ "${LONGLINK_NO_INSTALL:-}" = 1 ] && check=2
if [ ${#want[@]} -eq 0 ]; then
  mapfile -t want < <(printf '%s\n' "$TOOLS" | awk -F'|' '{ gsub(/ /, "", $1); print $1 }')
fi

status=0
todo=()
for t in "${want[@]}"; do
  if [ -z "$(field "$t" 2)" ]; then echo "missing $t: not a tool this script knows (see --list)"; status=1; continue; fi
  if present "$t"; then echo "ok $t $(where "$t")"; else todo+=("$t"); fi
done
[ ${#todo[@]} -eq 0 ] && exit $status

refuse() { # refuse <why>: every tool still to do is missing for that reason
  for t in "${todo[@]}"; do echo "missing $t: $1 (it would be: apt-get install $(packages "$t"))"; done
  exit 1
}
[ $check = 1 ] && refuse "not installed (--check)"
[ $check = 2 ] && refuse "not installed, and LONGLINK_NO_INSTALL=1 forbids installing it"
[ "$(id -u)" -ne 0 ] && refuse "not installed, and installing needs root"
command -v apt-get >/dev/null 2>&1 || refuse "not installed, and there is no apt-get here"

log=$(mktemp /tmp/longlink-ensure-test-tools.XXXXXX)
export DEBIAN_FRONTEND=noninteractive
# One shared lock: two test files may ask at the same time.
exec 9>/tmp/longlink-ensure-test-tools.lock
flock -w 600 9 || true
for t in "${todo[@]}"; do
  # Another caller may have installed it while we waited for the lock.
  if present "$t"; then echo "ok $t $(where "$t")"; continue; fi
  pkgs=$(packages "$t")
  echo "installing $t: apt-get install $pkgs — for $(why "$t")"
  # shellcheck disable=SC2086 # the package list splits on purpose
  if ! apt-get install -y -q --no-install-recommends $pkgs >"$log" 2>&1; then
    if [ -z "${updated:-}" ]; then
      echo "updating the package lists (apt-get update): installing $pkgs failed without fresh ones"
      apt-get update -q >>"$log" 2>&1
      updated=1
    fi
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $pkgs >>"$log" 2>&1
  fi
  if present "$t"; then
    echo "installed $t $(where "$t")"
  else
    echo "missing $t: apt-get install $pkgs failed: $(tail -n 1 "$log")"
    status=1
  fi
done
rm -f "$log"
exit $status
