#!/usr/bin/env bash
# Validates deploy/monitoring with Prometheus's and Alertmanager's own tools, without servers:
#
#   * `promtool check rules` of rules/*.rules.yml, and of every dashboard query (as recording
#     rules, tools/cases.py dashboard-rules), so Prometheus's own parser reads each of them;
#   * `promtool test rules` of tests/*.test.yml: each alert fires where it should, with its
#     labels and rendered annotations, and stays quiet where it should not;
#   * `amtool check-config` of alertmanager/alertmanager.yml, and every alert of rules/ routed
#     to the receiver its tier and severity call for (tools/cases.py routes), and a provincial
#     page not routed to national ops (the routing check can fail);
#   * live (tools/live_check.py): a real Prometheus with the rules, scraping a real all-in-one
#     platform while consumers scan unknown codes: every rule evaluates without error, the
#     recording rules yield the scans' rate and p99, and the counterfeit alerts fire for the
#     right province and for the network, from the series as the service creates them.
#
# The series the rules and dashboards read are checked against the code by the test suite
# (tests/monitoring). promtool and amtool come from Debian's packages prometheus and
# prometheus-alertmanager (the versions apt offers; apt checks each download against its signed
# index), unpacked - not installed - once per version into $AGRITRACE_MONITORING_CACHE (default
# ${XDG_CACHE_HOME:-~/.cache}/agritrace-monitoring). The Python parts run on the project's venv
# (make install): PYTHON, default .venv/bin/python.
# Exits non-zero when any check fails; ends with "N passed, N failed".

set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
CACHE="${AGRITRACE_MONITORING_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agritrace-monitoring}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

passed=0
failed=0

# check NAME COMMAND...: runs COMMAND, prints its output only when it fails.
check() {
  local name=$1 output
  shift
  if output=$("$@" 2>&1); then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    printf '%s\n' "$output" | sed 's/^/     /'
  fi
}

# must_fail NAME COMMAND...: the opposite, for checks that must refuse.
must_fail() {
  local name=$1
  shift
  if "$@" >/dev/null 2>&1; then
    failed=$((failed + 1))
    echo "FAIL $name (accepted)"
  else
    passed=$((passed + 1))
    echo "ok   $name (refused)"
  fi
}

candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}'; }

# tool PACKAGE BINARY: the path of BINARY from Debian's PACKAGE, downloaded once per version.
tool() {
  local package=$1 binary=$2 version dir
  version=$(candidate "$package")
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    apt-get update -qq >&2
    version=$(candidate "$package")
  fi
  dir="$CACHE/${package}_${version}"
  if [ ! -x "$dir/usr/bin/$binary" ]; then
    echo "downloading $package $version (Debian) into $CACHE" >&2
    mkdir -p "$WORK/$package" "$CACHE" &&
      (cd "$WORK/$package" && apt-get download -qq "$package=$version" 2>/dev/null) &&
      rm -rf "$dir.partial" && dpkg-deb -x "$WORK/$package"/*.deb "$dir.partial" &&
      mv "$dir.partial" "$dir" || return 1
  fi
  echo "$dir/usr/bin/$binary"
}

PROMTOOL=$(tool prometheus promtool) || { echo "could not get promtool" >&2; exit 1; }
PROMETHEUS="$(dirname "$PROMTOOL")/prometheus"
AMTOOL=$(tool prometheus-alertmanager amtool) || { echo "could not get amtool" >&2; exit 1; }
echo "$("$PROMTOOL" --version 2>&1 | head -1); $("$AMTOOL" --version 2>&1 | head -1)"

cd "$HERE"
for rules in rules/*.rules.yml; do
  check "promtool check rules $rules" "$PROMTOOL" check rules "$rules"
done
if "$PYTHON" tools/cases.py dashboard-rules >"$WORK/dashboard-queries.yml"; then
  check "promtool check rules: every dashboard query" \
    "$PROMTOOL" check rules "$WORK/dashboard-queries.yml"
else
  failed=$((failed + 1))
  echo "FAIL reading the dashboards' queries"
fi
for tests in tests/*.test.yml; do
  check "promtool test rules $tests" "$PROMTOOL" test rules "$tests"
done

CONFIG=alertmanager/alertmanager.yml
check "amtool check-config $CONFIG" "$AMTOOL" check-config "$CONFIG"
routes=$("$PYTHON" tools/cases.py routes) || { failed=$((failed + 1)); routes=""; }
while read -r receiver labels; do
  [ -n "$receiver" ] || continue
  # shellcheck disable=SC2086  # labels: one argument per label
  check "route to $receiver: $labels" \
    "$AMTOOL" config routes test --config.file="$CONFIG" --verify.receivers="$receiver" $labels
done <<<"$routes"
must_fail "route of a provincial page to national ops" \
  "$AMTOOL" config routes test --config.file="$CONFIG" --verify.receivers=national-ops-pager \
  alertname=AgriTraceBridgeDown tier=provincial severity=page province=37

echo "live: a real Prometheus scraping a real all-in-one platform"
if output=$("$PYTHON" tools/live_check.py --prometheus "$PROMETHEUS" 2>&1); then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi
printf '%s\n' "$output" | sed 's/^/  /'

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
