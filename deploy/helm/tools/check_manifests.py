"""Checks manifests rendered by `helm template` from the agritrace chart.

1. Every object is validated against the official Kubernetes JSON schemas shipped by the
   kubernetes-validate package, in strict mode (unknown fields are errors), for each
   --kube-version given. A kind without a schema is an error, except the Prometheus
   Operator's ServiceMonitor and PrometheusRule, validated against deploy/helm/schemas/.
2. The chart's own rules: recommended labels, restrictive security contexts, native gRPC
   probes, Services, PDBs and HPAs that point at something, Secret and ConfigMap references
   that resolve, hook annotations of the migration and bootstrap-admin Jobs, and services
   that authenticate against sso: an AGRITRACE_SSO_ADDRESS that reaches a rendered sso
   Service's gRPC port (or an external host), a service account and its password; clients of
   the registry: an AGRITRACE_REGISTRY_ADDRESS that reaches a rendered registry Service's gRPC
   port (or an external host); the coding and flow services: a registry address and a
   well-formed AGRITRACE_RESOLVER_BASE_URL; flow (and only the modules known to call coding):
   an AGRITRACE_CODING_ADDRESS that reaches a rendered coding Service's gRPC port (or an
   external host); query (and only the modules known to call flow): an AGRITRACE_FLOW_ADDRESS
   that reaches a rendered flow Service's gRPC port (or an external host); no worker Deployment
   for a module without a worker command, and one for a module that needs it (query); the
   query service's AGRITRACE_REDIS_URL from a Secret and its rebuild task; tasks (CronJobs)
   that never run by themselves; and, where NetworkPolicies are rendered, that they let each
   of those addresses through (the client's egress and the target's ingress). Province
   bridges (python -m agritrace_bridge): every process and the migration Job name their
   province (AGRITRACE_BRIDGE_PROVINCE, two digits, the same as the agritrace.io/province
   label) and a known adapter; one server per province, a singleton (replicas 1, Recreate, no
   autoscaler); a rest bridge has a well-formed base URL and its API key from a Secret (never
   in a ConfigMap), a drop-folder bridge's server mounts a PersistentVolumeClaim at its root.
   Monitoring: a PrometheusRule carries rule groups of deploy/monitoring/rules unchanged, a
   dashboard ConfigMap the dashboards of deploy/monitoring/dashboards unchanged. Backups: the
   backup CronJob runs on its schedule, one run at a time, the script of
   files/backup/pg-backup.sh unchanged from a mounted ConfigMap, with the database URL from a
   Secret, into a mounted PersistentVolumeClaim kept on uninstall.
3. --expect KIND=N: how many objects of a kind the scenario must produce; --bridges 11,37: the
   provinces whose bridges the scenario must render (exactly these).

Usage: check_manifests.py RENDERED.yaml --kube-version 1.27.0 [--kube-version ...]
       [--existing-secret NAME ...] [--expect Deployment=2 ...] [--self-test]
--self-test breaks the manifest in known ways and requires each to be reported.
Exits 1 when anything fails, printing one line per problem.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

HERE = Path(__file__).resolve().parent
# The Prometheus Operator's kinds, checked against schemas of their own (no Kubernetes schema).
OPERATOR_SCHEMAS = {
    kind: HERE.parent / "schemas" / f"{kind.lower()}-monitoring.coreos.com-v1.json"
    for kind in ("ServiceMonitor", "PrometheusRule")
}
# deploy/monitoring: the rules and dashboards the chart carries (files/monitoring links there).
MONITORING = HERE.parent.parent / "monitoring"
BACKUP_SCRIPT = HERE.parent / "agritrace" / "files" / "backup" / "pg-backup.sh"
RECOMMENDED_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
)
HOOK_PHASES = {"pre-install", "pre-upgrade"}
# AGRITRACE_RESOLVER_BASE_URL: http(s)://HOST[/PATH], no trailing slash (values.schema.json).
RESOLVER_BASE_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*[^\s/?#])?$")
# Modules that must be given AGRITRACE_REGISTRY_ADDRESS and AGRITRACE_RESOLVER_BASE_URL.
REGISTRY_AND_RESOLVER_MODULES = {"agritrace_coding", "agritrace_flow"}
# The modules that call the coding and the flow service (codingClient.enabled,
# flowClient.enabled): they must be given AGRITRACE_CODING_ADDRESS or AGRITRACE_FLOW_ADDRESS, and
# no other module may be. Add a module when it starts calling one of them.
PEER_CLIENT_MODULES = {
    "coding": {"agritrace_flow", "agritrace_query"},
    "flow": {"agritrace_query", "agritrace_bridge"},
}
# The province bridge: its module, its adapters and their required settings.
BRIDGE_MODULE = "agritrace_bridge"
BRIDGE_ADAPTERS = {"rest", "drop-folder"}
PROVINCE_LABEL = "agritrace.io/province"
# Modules whose `python -m <module>` has no worker command (serve and migrate only).
MODULES_WITHOUT_WORKER = {"agritrace_coding", "agritrace_flow"}
# Modules that do not work without their worker (query: the worker builds the read model).
MODULES_NEEDING_WORKER = {"agritrace_query"}
# Modules that need AGRITRACE_REDIS_URL, from a Secret, in every process (query: the origin-view
# cache its worker invalidates, the counterfeit-scan counters its replicas share).
MODULES_NEEDING_REDIS = {"agritrace_query"}
# On-demand tasks (suspended CronJobs) a module must have, by their args.
MODULES_TASKS = {"agritrace_query": [["rebuild"]]}
# Jobs by app.kubernetes.io/component: expected hook phases and args.
JOBS = {
    "migrate": (HOOK_PHASES, ["migrate"]),
    "bootstrap-admin": ({"post-install", "post-upgrade"}, ["bootstrap-admin"]),
}


def ident(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def pod_template(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod (metadata and spec) an object runs: a Pod itself, a workload's template."""
    kind = obj["kind"]
    if kind == "Pod":
        return obj
    if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return obj["spec"]["template"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return None


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    template = pod_template(obj)
    return template["spec"] if template else None


def pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    template = pod_template(obj)
    return template["metadata"].get("labels", {}) if template else {}


def container_of(workload: dict[str, Any]) -> dict[str, Any]:
    """The (first) container of a workload's pods."""
    return (pod_spec(workload) or {"containers": [{}]})["containers"][0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def label_selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions) against labels."""
    if not selects(selector.get("matchLabels") or {}, labels):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def module_of(workload: dict[str, Any]) -> str:
    """The Python module a workload runs (`python -m <module> ...`)."""
    command = container_of(workload).get("command", [])
    return command[2] if len(command) > 2 else ""


def app_name(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("labels", {}).get("app.kubernetes.io/name", ""))


def component_of(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("labels", {}).get("app.kubernetes.io/component", ""))


@functools.cache
def kubernetes_problem(obj_json: str, version: str) -> str:
    """What the Kubernetes `version` schema says of an object (given as JSON), or "". Cached by
    content: the self-test validates the same unchanged objects once per broken manifest."""
    try:
        kubernetes_validate.validate(json.loads(obj_json), version, strict=True)
    except kubernetes_validate.ValidationError as problem:
        path = ".".join(str(p) for p in problem.path)
        return f"Kubernetes {problem.version} schema: {path}: {problem.message}"
    except kubernetes_validate.SchemaNotFoundError as problem:
        return f"no Kubernetes schema: {problem.message}"
    return ""


class Checker:
    def __init__(self, objects: list[dict[str, Any]], existing_secrets: set[str]) -> None:
        self.objects = objects
        self.existing_secrets = existing_secrets
        self.errors: list[str] = []
        # The provinces whose bridge servers are rendered (set by bridges()).
        self.bridge_provinces: list[str] = []
        self.by_kind: dict[str, dict[str, dict[str, Any]]] = {}
        for obj in objects:
            self.by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj

    def error(self, obj: dict[str, Any] | None, message: str) -> None:
        self.errors.append(f"{ident(obj) if obj else 'manifest'}: {message}")

    # 1. schemas -------------------------------------------------------------------------
    def schemas(self, kube_versions: list[str]) -> int:
        checked = 0
        validators = {}
        for kind, path in OPERATOR_SCHEMAS.items():
            schema = json.loads(path.read_text())
            jsonschema.Draft7Validator.check_schema(schema)
            validators[kind] = jsonschema.Draft7Validator(schema)
        for obj in self.objects:
            if obj["apiVersion"] == "monitoring.coreos.com/v1" and obj["kind"] in validators:
                found = validators[obj["kind"]].iter_errors(obj)
                for problem in sorted(found, key=lambda e: list(e.path)):
                    path = ".".join(str(p) for p in problem.path)
                    self.error(obj, f"{obj['kind']} schema: {path}: {problem.message}")
                checked += 1
                continue
            for version in kube_versions:
                problem = kubernetes_problem(json.dumps(obj, sort_keys=True), version)
                if problem:
                    self.error(obj, problem)
                checked += 1
        return checked

    # 2. the chart's rules ------------------------------------------------------------------
    def monitoring(self) -> None:
        groups, dashboards = _monitoring_sources()
        for rule in self.by_kind.get("PrometheusRule", {}).values():
            for group in rule["spec"].get("groups", []):
                source = groups.get(group["name"])
                name = group["name"]
                if source is None:
                    self.error(rule, f"group {name!r} is not in deploy/monitoring/rules")
                elif group != source:
                    self.error(rule, f"group {name!r} differs from deploy/monitoring/rules")
        for config in self.by_kind.get("ConfigMap", {}).values():
            if component_of(config) != "monitoring":
                continue
            for key, text in config.get("data", {}).items():
                if key not in dashboards:
                    self.error(config, f"{key} is not a dashboard of deploy/monitoring/dashboards")
                elif json.loads(text) != dashboards[key]:
                    self.error(config, f"{key} differs from deploy/monitoring/dashboards")

    def labels(self) -> None:
        for obj in self.objects:
            labels = obj["metadata"].get("labels", {})
            missing = [name for name in RECOMMENDED_LABELS if name not in labels]
            if missing:
                self.error(obj, f"missing labels {missing}")
            if labels.get("app.kubernetes.io/managed-by") not in (None, "Helm"):
                self.error(obj, "app.kubernetes.io/managed-by is not Helm")

    def security(self) -> None:
        for obj in self.objects:
            spec = pod_spec(obj)
            if spec is None:
                continue
            if spec.get("automountServiceAccountToken") is not False:
                self.error(obj, "automountServiceAccountToken is not false")
            psc = spec.get("securityContext", {})
            if psc.get("runAsNonRoot") is not True or psc.get("runAsUser") != 10001:
                self.error(obj, "pod securityContext lacks runAsNonRoot/runAsUser 10001")
            if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                self.error(obj, "pod seccompProfile is not RuntimeDefault")
            for container in spec.get("initContainers", []) + spec["containers"]:
                where = f"container {container['name']}"
                sc = container.get("securityContext", {})
                if sc.get("readOnlyRootFilesystem") is not True:
                    self.error(obj, f"{where}: readOnlyRootFilesystem is not true")
                if sc.get("allowPrivilegeEscalation") is not False:
                    self.error(obj, f"{where}: allowPrivilegeEscalation is not false")
                if sc.get("runAsNonRoot") is not True:
                    self.error(obj, f"{where}: runAsNonRoot is not true")
                if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                    self.error(obj, f"{where}: capabilities do not drop ALL")
                if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                    self.error(obj, f"{where}: seccompProfile is not RuntimeDefault")
                resources = container.get("resources", {})
                if not resources.get("requests", {}).get("memory"):
                    self.error(obj, f"{where}: no memory request")
                if not resources.get("limits", {}).get("memory"):
                    self.error(obj, f"{where}: no memory limit")
                mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
                if "/tmp" not in mounts:
                    self.error(obj, f"{where}: no writable /tmp on the read-only root filesystem")
        for account in self.by_kind.get("ServiceAccount", {}).values():
            if account.get("automountServiceAccountToken") is not False:
                self.error(account, "automountServiceAccountToken is not false")

    def workloads(self) -> None:
        for deployment in self.by_kind.get("Deployment", {}).values():
            selector = deployment["spec"]["selector"]["matchLabels"]
            if not selects(selector, pod_labels(deployment)):
                self.error(deployment, "selector does not match the pod template's labels")
            component = selector.get("app.kubernetes.io/component")
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            if "metrics" not in ports:
                self.error(deployment, "no metrics port")
            if container.get("command", [])[:2] != ["python", "-m"]:
                self.error(deployment, "command is not python -m <module>")
            if component == "server":
                if container.get("args") != ["serve"]:
                    self.error(deployment, "server args are not [serve]")
                if "grpc" not in ports:
                    self.error(deployment, "server has no grpc port")
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    grpc = container.get(probe, {}).get("grpc")
                    if not grpc or grpc.get("port") != ports.get("grpc"):
                        self.error(
                            deployment, f"{probe} is not a native gRPC probe on the grpc port"
                        )
            elif component == "worker":
                if container.get("args") != ["worker"]:
                    self.error(deployment, "worker args are not [worker]")
                if module_of(deployment) in MODULES_WITHOUT_WORKER:
                    self.error(
                        deployment, f"python -m {module_of(deployment)} has no worker command"
                    )
                if "grpc" in ports:
                    self.error(deployment, "worker exposes a grpc port")
            else:
                self.error(deployment, f"unexpected component {component!r}")
            grace = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds")
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            drain = float(env.get("AGRITRACE_SHUTDOWN_GRACE_SECONDS") or 0)
            if grace is None or grace <= drain:
                self.error(
                    deployment, "terminationGracePeriodSeconds does not exceed the drain time"
                )
        for job in self.by_kind.get("Job", {}).values():
            annotations = job["metadata"].get("annotations", {})
            component = job["metadata"].get("labels", {}).get("app.kubernetes.io/component")
            if component not in JOBS:
                self.error(job, f"unexpected Job component {component!r}")
                continue
            expected_phases, expected_args = JOBS[component]
            phases = set(annotations.get("helm.sh/hook", "").split(","))
            if phases != expected_phases:
                self.error(
                    job, f"helm.sh/hook is {sorted(phases)}, expected {sorted(expected_phases)}"
                )
            container = job["spec"]["template"]["spec"]["containers"][0]
            if container.get("args") != expected_args:
                self.error(job, f"args are not {expected_args}")
            if job["spec"]["template"]["spec"].get("restartPolicy") not in ("Never", "OnFailure"):
                self.error(job, "restartPolicy must be Never or OnFailure")
            if component == "bootstrap-admin":
                env = {e["name"]: e for e in container.get("env", [])}
                if "secretKeyRef" not in env.get("AGRITRACE_ADMIN_PASSWORD", {}).get(
                    "valueFrom", {}
                ):
                    self.error(job, "AGRITRACE_ADMIN_PASSWORD does not come from a Secret")
            if not phases & HOOK_PHASES:
                continue
            # pre-* hooks run before the release's ordinary objects exist: such a hook may only
            # use hook objects or objects that exist outside the release.
            for ref_kind, name in self.references(job):
                target = self.by_kind.get(ref_kind, {}).get(name)
                if target is not None and "helm.sh/hook" not in target["metadata"].get(
                    "annotations", {}
                ):
                    self.error(
                        job, f"uses {ref_kind}/{name}, which does not exist yet when the hook runs"
                    )

    def config_of(self, deployment: dict[str, Any]) -> dict[str, str]:
        """The environment a workload's container gets from its ConfigMaps."""
        container = container_of(deployment)
        config: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                found = self.by_kind.get("ConfigMap", {}).get(source["configMapRef"]["name"])
                config.update((found or {}).get("data", {}))
        return config

    def reaches(self, deployment: dict[str, Any], variable: str, address: str, target: str) -> None:
        """`address` (HOST:PORT) is an external host or the gRPC port of the rendered Service
        of `target` (a service name such as sso or registry)."""
        host, _, port = address.rpartition(":")
        if "." in host:
            return  # a service outside the release
        service = self.by_kind.get("Service", {}).get(host)
        if service is None or not service["metadata"]["labels"].get(
            "app.kubernetes.io/name", ""
        ).endswith(f"-{target}"):
            self.error(deployment, f"{variable} {address}: no rendered {target} Service")
            return
        grpc_ports = [p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"]
        if not port.isdigit() or int(port) not in grpc_ports:
            self.error(deployment, f"{variable} {address}: not the gRPC port {grpc_ports}")
            return
        self.network_path(deployment, variable, service)

    # NetworkPolicies: a pod selected by policies of a type is allowed what one of them allows.
    def policies_of(self, labels: dict[str, str], policy_type: str) -> list[dict[str, Any]]:
        def types(spec: dict[str, Any]) -> list[str]:
            return spec.get("policyTypes") or ["Ingress"] + (["Egress"] if "egress" in spec else [])

        return [
            policy
            for policy in self.by_kind.get("NetworkPolicy", {}).values()
            if policy_type in types(policy["spec"])
            and label_selector_matches(policy["spec"].get("podSelector", {}), labels)
        ]

    @staticmethod
    def peer_selects(peers: list[dict[str, Any]] | None, labels: dict[str, str]) -> bool:
        """Whether NetworkPolicyPeers select a pod of the release's own namespace (peers with a
        namespaceSelector or ipBlock are taken not to)."""
        if not peers:
            return True  # no `to`/`from`: every peer
        return any(
            "podSelector" in peer
            and "namespaceSelector" not in peer
            and label_selector_matches(peer["podSelector"], labels)
            for peer in peers
        )

    @staticmethod
    def port_allowed(ports: list[dict[str, Any]] | None, name: str, number: int) -> bool:
        if not ports:
            return True  # no `ports`: every port
        return any(
            p.get("port") in (None, name, number) and p.get("protocol", "TCP") == "TCP"
            for p in ports
        )

    def network_path(
        self, deployment: dict[str, Any], variable: str, service: dict[str, Any]
    ) -> None:
        """The NetworkPolicies let the Deployment's pods reach the gRPC port of the pods behind
        `service`: the client's egress and the target's ingress."""
        target = next(
            (
                d
                for d in self.by_kind.get("Deployment", {}).values()
                if selects(service["spec"].get("selector", {}), pod_labels(d))
            ),
            None,
        )
        if target is None:
            return  # reported by services()
        ports = {
            p["name"]: p["containerPort"]
            for p in target["spec"]["template"]["spec"]["containers"][0].get("ports", [])
        }
        if "grpc" not in ports:
            return  # reported by workloads()
        client_labels, target_labels = pod_labels(deployment), pod_labels(target)
        egress = self.policies_of(client_labels, "Egress")
        if egress and not any(
            self.peer_selects(rule.get("to"), target_labels)
            and self.port_allowed(rule.get("ports"), "grpc", ports["grpc"])
            for policy in egress
            for rule in policy["spec"].get("egress") or []
        ):
            names = ", ".join(ident(p) for p in egress)
            self.error(deployment, f"{variable}: {names} allows no egress to {ident(target)} gRPC")
        ingress = self.policies_of(target_labels, "Ingress")
        if ingress and not any(
            self.peer_selects(rule.get("from"), client_labels)
            and self.port_allowed(rule.get("ports"), "grpc", ports["grpc"])
            for policy in ingress
            for rule in policy["spec"].get("ingress") or []
        ):
            names = ", ".join(ident(p) for p in ingress)
            self.error(deployment, f"{variable}: {names} admits no gRPC from these pods")

    def task_cronjobs(self) -> list[dict[str, Any]]:
        """The CronJobs of services' tasks: every CronJob but the backup's."""
        return [c for c in self.by_kind.get("CronJob", {}).values() if component_of(c) != "backup"]

    def callers(self) -> list[dict[str, Any]]:
        """The workloads whose processes call other services: Deployments and tasks (CronJobs)."""
        return list(self.by_kind.get("Deployment", {}).values()) + self.task_cronjobs()

    def sso(self) -> None:
        """Servers, workers and tasks given AGRITRACE_SSO_ADDRESS (ConfigMap) reach sso's gRPC
        port and sign in with a service account whose password comes from a Secret; sso itself
        verifies with its own keys and gets neither."""
        for deployment in self.callers():
            container = container_of(deployment)
            config = self.config_of(deployment)
            env = {e["name"]: e for e in container.get("env", [])}
            address = config.get("AGRITRACE_SSO_ADDRESS")
            if app_name(deployment).endswith("-sso"):
                if address or "AGRITRACE_SERVICE_PASSWORD" in env:
                    self.error(deployment, "sso is given an sso address or a service account")
                continue
            if not address:
                self.error(deployment, "no AGRITRACE_SSO_ADDRESS: callers cannot be authenticated")
                continue
            if not config.get("AGRITRACE_SERVICE_USERNAME"):
                self.error(deployment, "no AGRITRACE_SERVICE_USERNAME")
            if "secretKeyRef" not in env.get("AGRITRACE_SERVICE_PASSWORD", {}).get("valueFrom", {}):
                self.error(deployment, "AGRITRACE_SERVICE_PASSWORD does not come from a Secret")
            self.reaches(deployment, "AGRITRACE_SSO_ADDRESS", address, "sso")

    def registry(self) -> None:
        """Servers, workers and tasks given AGRITRACE_REGISTRY_ADDRESS (ConfigMap) reach the
        registry's gRPC port; the registry and sso get none. The coding and flow services
        (python -m agritrace_coding, agritrace_flow) must have a registry address and a
        well-formed resolver base URL, and any AGRITRACE_RESOLVER_BASE_URL given must be
        well-formed."""
        for deployment in self.callers():
            config = self.config_of(deployment)
            module = module_of(deployment)
            address = config.get("AGRITRACE_REGISTRY_ADDRESS")
            resolver = config.get("AGRITRACE_RESOLVER_BASE_URL")
            if resolver is not None and not RESOLVER_BASE_URL.match(resolver):
                self.error(deployment, f"AGRITRACE_RESOLVER_BASE_URL {resolver!r} is malformed")
            if module in REGISTRY_AND_RESOLVER_MODULES:
                if not address:
                    self.error(deployment, f"{module} without AGRITRACE_REGISTRY_ADDRESS")
                if not resolver:
                    self.error(deployment, f"{module} without AGRITRACE_RESOLVER_BASE_URL")
            if app_name(deployment).endswith(("-registry", "-sso")):
                if address:
                    self.error(deployment, "the registry or sso is given a registry address")
                continue
            if address:
                self.reaches(deployment, "AGRITRACE_REGISTRY_ADDRESS", address, "registry")

    def peers(self) -> None:
        """The modules that call the coding or the flow service (PEER_CLIENT_MODULES: flow and
        query call coding, query calls flow) are given an AGRITRACE_CODING_ADDRESS or
        AGRITRACE_FLOW_ADDRESS (ConfigMap) that reaches the target's gRPC port; no other module
        is given one."""
        for target, modules in PEER_CLIENT_MODULES.items():
            variable = f"AGRITRACE_{target.upper()}_ADDRESS"
            for deployment in self.callers():
                module = module_of(deployment)
                address = self.config_of(deployment).get(variable)
                if module in modules:
                    if not address:
                        self.error(deployment, f"{module} without {variable}")
                        continue
                    self.reaches(deployment, variable, address, target)
                elif address:
                    self.error(
                        deployment,
                        f"{variable} given to {module or 'a service'}, which does not call the "
                        f"{target} service (only {', '.join(sorted(modules))})",
                    )

    def needs(self) -> None:
        """What some modules cannot run without: their worker (MODULES_NEEDING_WORKER), Redis
        from a Secret in every process (MODULES_NEEDING_REDIS), their tasks (MODULES_TASKS)."""
        deployments = list(self.by_kind.get("Deployment", {}).values())
        tasks = self.task_cronjobs()
        for server in deployments:
            if component_of(server) != "server":
                continue
            module, name = module_of(server), app_name(server)
            if module in MODULES_NEEDING_WORKER and not any(
                app_name(d) == name and component_of(d) == "worker" for d in deployments
            ):
                self.error(server, f"python -m {module} needs its worker, which is not rendered")
            for args in MODULES_TASKS.get(module, []):
                if not any(
                    app_name(t) == name and container_of(t).get("args", [])[: len(args)] == args
                    for t in tasks
                ):
                    self.error(server, f"no task (CronJob) running python -m {module} {args}")
        for workload in deployments + tasks:
            module = module_of(workload)
            if module not in MODULES_NEEDING_REDIS:
                continue
            env = {e["name"]: e for e in container_of(workload).get("env", [])}
            if "secretKeyRef" not in env.get("AGRITRACE_REDIS_URL", {}).get("valueFrom", {}):
                self.error(workload, f"{module}: AGRITRACE_REDIS_URL does not come from a Secret")

    def tasks(self) -> None:
        """Tasks are suspended CronJobs of the component `task` running `python -m <module>`,
        which never run by themselves: an operator creates a Job from them."""
        for task in self.task_cronjobs():
            if task["spec"].get("suspend") is not True:
                self.error(task, "a task must be suspended (it runs only when started by hand)")
            pod_component = pod_labels(task).get("app.kubernetes.io/component")
            if component_of(task) != "task" or pod_component != "task":
                self.error(task, "component is not task")
            container = container_of(task)
            if container.get("command", [])[:2] != ["python", "-m"] or not container.get("args"):
                self.error(task, "command is not python -m <module> <args>")
            if (pod_spec(task) or {}).get("restartPolicy") not in ("Never", "OnFailure"):
                self.error(task, "restartPolicy must be Never or OnFailure")

    def backups(self) -> None:
        """The backup CronJob runs by its schedule, never two at once, the chart's script
        (unchanged) from its ConfigMap, the database URL from a Secret, into a claim that is
        rendered with helm.sh/resource-policy: keep or named as an existing one."""
        for job in self.by_kind.get("CronJob", {}).values():
            if component_of(job) != "backup":
                continue
            if job["spec"].get("suspend") or job["spec"].get("concurrencyPolicy") != "Forbid":
                self.error(job, "a backup must run by its schedule, one run at a time (Forbid)")
            spec = pod_spec(job) or {}
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            container = container_of(job)
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            command = container.get("command", [])
            script = command[1] if command[:1] == ["sh"] and len(command) == 2 else ""
            directory, _, key = script.rpartition("/")
            source = volumes.get(mounts.get(directory, ""), {}).get("configMap", {})
            config = self.by_kind.get("ConfigMap", {}).get(source.get("name", ""), {})
            if config.get("data", {}).get(key) != BACKUP_SCRIPT.read_text().rstrip("\n"):
                self.error(job, "does not run files/backup/pg-backup.sh from a mounted ConfigMap")
            env = {e["name"]: e for e in container.get("env", [])}
            if "secretKeyRef" not in env.get("AGRITRACE_DATABASE_URL", {}).get("valueFrom", {}):
                self.error(job, "AGRITRACE_DATABASE_URL does not come from a Secret")
            if not str(env.get("BACKUP_KEEP", {}).get("value", "")).isdigit():
                self.error(job, "BACKUP_KEEP is not a number")
            target = env.get("BACKUP_DIR", {}).get("value", "")
            claim = volumes.get(mounts.get(target, ""), {}).get("persistentVolumeClaim", {})
            if not claim:
                self.error(job, f"BACKUP_DIR {target!r} is not a mounted PersistentVolumeClaim")
                continue
            rendered = self.by_kind.get("PersistentVolumeClaim", {}).get(claim["claimName"])
            if rendered is not None and rendered["metadata"].get("annotations", {}).get(
                "helm.sh/resource-policy"
            ) != "keep":
                self.error(job, f"its claim {claim['claimName']} is not kept on uninstall")

    def references(self, obj: dict[str, Any]) -> list[tuple[str, str]]:
        spec = pod_spec(obj) or {}
        refs: list[tuple[str, str]] = []
        if spec.get("serviceAccountName") and spec["serviceAccountName"] != "default":
            refs.append(("ServiceAccount", spec["serviceAccountName"]))
        for container in spec.get("containers", []):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    refs.append(("ConfigMap", source["configMapRef"]["name"]))
                if "secretRef" in source:
                    refs.append(("Secret", source["secretRef"]["name"]))
            for env in container.get("env", []):
                value_from = env.get("valueFrom", {})
                if "secretKeyRef" in value_from:
                    refs.append(("Secret", value_from["secretKeyRef"]["name"]))
                if "configMapKeyRef" in value_from:
                    refs.append(("ConfigMap", value_from["configMapKeyRef"]["name"]))
        return refs

    def resolvable(self) -> None:
        for obj in self.objects:
            for ref_kind, name in self.references(obj):
                if name in self.by_kind.get(ref_kind, {}):
                    continue
                if ref_kind == "Secret" and name in self.existing_secrets:
                    continue
                self.error(
                    obj,
                    f"references {ref_kind}/{name}, neither rendered nor declared existing",
                )
            spec = pod_spec(obj) or {}
            for container in spec.get("containers", []):
                for env in container.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    secret = self.by_kind.get("Secret", {}).get(ref["name"]) if ref else None
                    if secret is not None and ref["key"] not in secret.get("data", {}):
                        self.error(
                            obj, f"env {env['name']}: Secret/{ref['name']} has no key {ref['key']}"
                        )

    def services(self) -> None:
        pods = [o for o in self.objects if o["kind"] == "Deployment"]
        for service in self.by_kind.get("Service", {}).values():
            selector = service["spec"].get("selector", {})
            targets = [d for d in pods if selects(selector, pod_labels(d))]
            if len(targets) != 1:
                self.error(service, f"selects {len(targets)} Deployments, expected 1")
                continue
            container_ports = {
                p["name"]
                for c in targets[0]["spec"]["template"]["spec"]["containers"]
                for p in c.get("ports", [])
            }
            for port in service["spec"]["ports"]:
                target_port = port.get("targetPort")
                if target_port not in container_ports:
                    self.error(
                        service, f"port {port['name']} targets {target_port!r}, no container port"
                    )
                if port["name"] == "grpc" and port.get("appProtocol") != "grpc":
                    self.error(service, "grpc port without appProtocol grpc")
        for pdb in self.by_kind.get("PodDisruptionBudget", {}).values():
            selector = pdb["spec"]["selector"]["matchLabels"]
            if sum(selects(selector, pod_labels(d)) for d in pods) != 1:
                self.error(pdb, "does not select exactly one Deployment's pods")
        for hpa in self.by_kind.get("HorizontalPodAutoscaler", {}).values():
            target = hpa["spec"]["scaleTargetRef"]
            deployment = self.by_kind.get(target["kind"], {}).get(target["name"])
            if deployment is None:
                self.error(hpa, f"scales {target['kind']}/{target['name']}, which is not rendered")
            elif "replicas" in deployment["spec"]:
                self.error(hpa, f"{target['name']} also sets spec.replicas, which fights the HPA")
        services = list(self.by_kind.get("Service", {}).values())
        for monitor in self.by_kind.get("ServiceMonitor", {}).values():
            selector = monitor["spec"]["selector"]
            matched = [
                s
                for s in services
                if selects(selector.get("matchLabels", {}), s["metadata"].get("labels", {}))
                and all(
                    s["metadata"]["labels"].get(e["key"]) in e.get("values", [])
                    for e in selector.get("matchExpressions", [])
                    if e["operator"] == "In"
                )
            ]
            if not matched:
                self.error(monitor, "selects no Service")
            for service in matched:
                if not any(p["name"] == "metrics" for p in service["spec"]["ports"]):
                    self.error(
                        monitor, f"Service/{service['metadata']['name']} has no metrics port"
                    )
        for config in self.by_kind.get("ConfigMap", {}).values():
            if component_of(config) in ("monitoring", "backup"):
                continue  # a dashboard or the backup script, not a service's configuration
            name = config["metadata"]["labels"].get("app.kubernetes.io/name", "")
            part_of = config["metadata"]["labels"].get("app.kubernetes.io/part-of", "")
            service = name.removeprefix(f"{part_of}-")
            if config.get("data", {}).get("OTEL_SERVICE_NAME") != f"agritrace-{service}":
                self.error(config, f"OTEL_SERVICE_NAME is not agritrace-{service}")

    def bridges(self) -> None:
        """The province bridges' rules (see the module's docstring); notes the provinces whose
        bridge servers are rendered in bridge_provinces."""
        servers: dict[str, list[dict[str, Any]]] = {}
        jobs = [j for j in self.by_kind.get("Job", {}).values() if component_of(j) == "migrate"]
        for workload in list(self.by_kind.get("Deployment", {}).values()) + jobs:
            if module_of(workload) != BRIDGE_MODULE:
                continue
            container = container_of(workload)
            env = {e["name"]: e for e in container.get("env", [])}
            config = self.config_of(workload) | {
                name: str(e["value"]) for name, e in env.items() if "value" in e
            }
            province = config.get("AGRITRACE_BRIDGE_PROVINCE", "")
            if not re.fullmatch(r"\d{2}", province):
                self.error(workload, f"AGRITRACE_BRIDGE_PROVINCE {province!r} is not two digits")
                continue
            label = workload["metadata"].get("labels", {}).get(PROVINCE_LABEL)
            if label != province or pod_labels(workload).get(PROVINCE_LABEL) != province:
                self.error(workload, f"{PROVINCE_LABEL} label is not the province {province}")
            adapter = config.get("AGRITRACE_BRIDGE_ADAPTER", "")
            if adapter not in BRIDGE_ADAPTERS:
                self.error(
                    workload,
                    f"AGRITRACE_BRIDGE_ADAPTER {adapter!r} is not one of {sorted(BRIDGE_ADAPTERS)}",
                )
            if any(
                k.startswith("AGRITRACE_BRIDGE_ADAPTER_API_KEY") for k in self.config_of(workload)
            ):
                self.error(workload, "the provincial API key is in a ConfigMap")
            if workload["kind"] != "Deployment" or component_of(workload) != "server":
                continue
            servers.setdefault(province, []).append(workload)
            spec = workload["spec"]
            if spec.get("replicas") != 1 or spec.get("strategy", {}).get("type") != "Recreate":
                self.error(workload, "a bridge is a singleton: replicas 1 and strategy Recreate")
            for hpa in self.by_kind.get("HorizontalPodAutoscaler", {}).values():
                if hpa["spec"]["scaleTargetRef"]["name"] == workload["metadata"]["name"]:
                    self.error(workload, f"a bridge is a singleton, but {ident(hpa)} scales it")
            if adapter == "rest":
                base_url = config.get("AGRITRACE_BRIDGE_ADAPTER_BASE_URL", "")
                if not RESOLVER_BASE_URL.match(base_url):
                    self.error(workload, f"rest bridge: base URL {base_url!r} is malformed")
                key = env.get("AGRITRACE_BRIDGE_ADAPTER_API_KEY", {})
                if "secretKeyRef" not in key.get("valueFrom", {}):
                    self.error(
                        workload, "AGRITRACE_BRIDGE_ADAPTER_API_KEY does not come from a Secret"
                    )
            elif adapter == "drop-folder":
                root = config.get("AGRITRACE_BRIDGE_ADAPTER_ROOT", "")
                claims = {
                    v["name"]
                    for v in (pod_spec(workload) or {}).get("volumes", [])
                    if "persistentVolumeClaim" in v
                }
                if not any(
                    m["mountPath"] == root and m["name"] in claims
                    for m in container.get("volumeMounts", [])
                ):
                    self.error(
                        workload,
                        f"drop-folder bridge: its root {root!r} is not a mounted "
                        "PersistentVolumeClaim",
                    )
        for province, found in servers.items():
            if len(found) > 1:
                names = ", ".join(ident(d) for d in found)
                self.error(
                    found[0], f"province {province} has {len(found)} bridge servers: {names}"
                )
        self.bridge_provinces = sorted(servers)


def _monitoring_sources() -> tuple[dict[str, Any], dict[str, Any]]:
    """deploy/monitoring's rule groups by name and dashboards by file name."""
    groups = {
        group["name"]: group
        for path in sorted((MONITORING / "rules").glob("*.rules.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
    }
    dashboards = {
        path.name: json.loads(path.read_text())
        for path in sorted((MONITORING / "dashboards").glob("*.json"))
    }
    return groups, dashboards


def run_checks(
    objects: list[dict[str, Any]], kube_versions: list[str], existing: set[str]
) -> tuple[Checker, int]:
    checker = Checker(objects, existing)
    validated = checker.schemas(kube_versions)
    checker.labels()
    checker.security()
    checker.workloads()
    checker.resolvable()
    checker.services()
    checker.sso()
    checker.registry()
    checker.peers()
    checker.needs()
    checker.tasks()
    checker.backups()
    checker.bridges()
    checker.monitoring()
    return checker, validated


def first(objects: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        if obj["kind"] == kind and component in (None, labels.get("app.kubernetes.io/component")):
            return obj
    raise SystemExit(f"self-test: the manifest has no {kind} {component or ''}")


def self_test(objects: list[dict[str, Any]], kube_versions: list[str], existing: set[str]) -> int:
    """Breaks a good manifest in known ways; each must be reported, or the checks prove nothing."""

    def server(o: list[dict[str, Any]]) -> dict[str, Any]:
        return first(o, "Deployment", "server")["spec"]["template"]["spec"]["containers"][0]

    def typo_field(o: list[dict[str, Any]]) -> None:
        container = server(o)
        container["readinesProbe"] = container.pop("readinessProbe")

    def wrong_type(o: list[dict[str, Any]]) -> None:
        first(o, "Deployment", "server")["spec"]["revisionHistoryLimit"] = "five"

    def servicemonitor_typo(o: list[dict[str, Any]]) -> None:
        first(o, "ServiceMonitor")["spec"]["endpoints"][0]["intervall"] = "30s"

    def prometheusrule_typo(o: list[dict[str, Any]]) -> None:
        first(o, "PrometheusRule")["spec"]["groups"][0]["rules"][0]["exprr"] = "up"

    def alert_rule_changed(o: list[dict[str, Any]]) -> None:
        rules = first(o, "PrometheusRule")["spec"]["groups"][-1]["rules"]
        next(rule for rule in rules if "alert" in rule)["labels"]["severity"] = "info"

    def dashboard_changed(o: list[dict[str, Any]]) -> None:
        data = first(o, "ConfigMap", "monitoring")["data"]
        key = next(iter(data))
        dashboard = json.loads(data[key])
        dashboard["panels"].pop()
        data[key] = json.dumps(dashboard)

    def backup(o: list[dict[str, Any]]) -> dict[str, Any]:
        return first(o, "CronJob", "backup")

    def backup_overlapping(o: list[dict[str, Any]]) -> None:
        backup(o)["spec"]["concurrencyPolicy"] = "Allow"

    def backup_script_changed(o: list[dict[str, Any]]) -> None:
        data = first(o, "ConfigMap", "backup")["data"]
        data["pg-backup.sh"] = data["pg-backup.sh"].replace("BACKUP_KEEP:-7", "BACKUP_KEEP:-70")

    def backup_url_in_clear(o: list[dict[str, Any]]) -> None:
        env = backup(o)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
        env[0] = {"name": "AGRITRACE_DATABASE_URL", "value": "postgresql://u:p@db/agritrace"}

    def backup_to_tmp(o: list[dict[str, Any]]) -> None:
        env = backup(o)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
        next(e for e in env if e["name"] == "BACKUP_DIR")["value"] = "/tmp"

    def backup_claim_not_kept(o: list[dict[str, Any]]) -> None:
        first(o, "PersistentVolumeClaim", "backup")["metadata"].pop("annotations")

    def writable_root(o: list[dict[str, Any]]) -> None:
        server(o)["securityContext"]["readOnlyRootFilesystem"] = False

    def http_probe(o: list[dict[str, Any]]) -> None:
        server(o)["livenessProbe"] = {"tcpSocket": {"port": 50051}}

    def wrong_target(o: list[dict[str, Any]]) -> None:
        first(o, "Service", "server")["spec"]["ports"][0]["targetPort"] = "grcp"

    def unknown_kind(o: list[dict[str, Any]]) -> None:
        o.append(
            {
                "apiVersion": "example.com/v1",
                "kind": "Widget",
                "metadata": {"name": "w", "labels": {}},
            }
        )

    def dangling_secret(o: list[dict[str, Any]]) -> None:
        env = server(o)["env"]
        ref = next(e for e in env if "secretKeyRef" in e.get("valueFrom", {}))
        ref["valueFrom"]["secretKeyRef"]["name"] = "no-such-secret"

    def sso_address_port(o: list[dict[str, Any]]) -> None:
        for config in o:
            if config["kind"] == "ConfigMap" and "AGRITRACE_SSO_ADDRESS" in config["data"]:
                host = config["data"]["AGRITRACE_SSO_ADDRESS"].rpartition(":")[0]
                config["data"]["AGRITRACE_SSO_ADDRESS"] = f"{host}:9464"

    def registry_address_port(o: list[dict[str, Any]]) -> None:
        for config in o:
            if config["kind"] == "ConfigMap" and "AGRITRACE_REGISTRY_ADDRESS" in config["data"]:
                host = config["data"]["AGRITRACE_REGISTRY_ADDRESS"].rpartition(":")[0]
                config["data"]["AGRITRACE_REGISTRY_ADDRESS"] = f"{host}:9464"

    def coding_without_resolver(o: list[dict[str, Any]]) -> None:
        for config in o:
            if config["kind"] == "ConfigMap" and config["metadata"]["name"].endswith("-coding"):
                config["data"].pop("AGRITRACE_RESOLVER_BASE_URL", None)

    def of(o: list[dict[str, Any]], kind: str, service: str) -> dict[str, Any]:
        """The object of a kind shared by a service's components, e.g. its ConfigMap."""
        return next(x for x in o if x["kind"] == kind and x["metadata"]["name"].endswith(service))

    def flow_without_resolver(o: list[dict[str, Any]]) -> None:
        of(o, "ConfigMap", "-flow")["data"].pop("AGRITRACE_RESOLVER_BASE_URL", None)

    def coding_address_port(o: list[dict[str, Any]]) -> None:
        for config in o:
            if config["kind"] == "ConfigMap" and "AGRITRACE_CODING_ADDRESS" in config["data"]:
                host = config["data"]["AGRITRACE_CODING_ADDRESS"].rpartition(":")[0]
                config["data"]["AGRITRACE_CODING_ADDRESS"] = f"{host}:9464"

    def flow_without_coding_address(o: list[dict[str, Any]]) -> None:
        of(o, "ConfigMap", "-flow")["data"].pop("AGRITRACE_CODING_ADDRESS", None)

    def coding_address_on_coding(o: list[dict[str, Any]]) -> None:
        address = of(o, "ConfigMap", "-flow")["data"]["AGRITRACE_CODING_ADDRESS"]
        of(o, "ConfigMap", "-coding")["data"]["AGRITRACE_CODING_ADDRESS"] = address

    def flow_worker(o: list[dict[str, Any]]) -> None:
        worker = first(o, "Deployment", "worker")
        worker["spec"]["template"]["spec"]["containers"][0]["command"][2] = "agritrace_flow"

    def drop_egress(o: list[dict[str, Any]], client: str, target: str) -> None:
        """Removes the egress rules of the client's policy to the target's pods."""

        def to_target(rule: dict[str, Any]) -> bool:
            return any(
                peer.get("podSelector", {})
                .get("matchLabels", {})
                .get("app.kubernetes.io/name", "")
                .endswith(f"-{target}")
                for peer in rule.get("to", [])
            )

        spec = of(o, "NetworkPolicy", f"-{client}")["spec"]
        spec["egress"] = [rule for rule in spec["egress"] if not to_target(rule)]

    def flow_egress_to_coding(o: list[dict[str, Any]]) -> None:
        drop_egress(o, "flow", "coding")

    def coding_ingress_from_flow(o: list[dict[str, Any]]) -> None:
        def from_clients(rule: dict[str, Any]) -> bool:
            return any("matchExpressions" in p.get("podSelector", {}) for p in rule.get("from", []))

        spec = of(o, "NetworkPolicy", "-coding")["spec"]
        spec["ingress"] = [rule for rule in spec["ingress"] if not from_clients(rule)]

    def query(o: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
        """The query service's object of a kind and component (its server, worker, task)."""
        return next(
            x
            for x in o
            if x["kind"] == kind and app_name(x).endswith("-query") and component_of(x) == component
        )

    def env_of(workload: dict[str, Any]) -> list[dict[str, Any]]:
        return container_of(workload)["env"]  # type: ignore[no-any-return]

    def query_without_redis(o: list[dict[str, Any]]) -> None:
        server_env = env_of(query(o, "Deployment", "server"))
        server_env[:] = [e for e in server_env if e["name"] != "AGRITRACE_REDIS_URL"]

    def query_redis_in_clear(o: list[dict[str, Any]]) -> None:
        for entry in env_of(query(o, "Deployment", "worker")):
            if entry["name"] == "AGRITRACE_REDIS_URL":
                entry.pop("valueFrom")
                entry["value"] = "redis://:password@redis:6379/0"

    def query_without_worker(o: list[dict[str, Any]]) -> None:
        # The worker and what exists for it alone (its Service, budget, autoscaler).
        name = query(o, "Deployment", "worker")["metadata"]["name"]
        o[:] = [x for x in o if x["metadata"]["name"] != name]

    def query_without_rebuild(o: list[dict[str, Any]]) -> None:
        o.remove(query(o, "CronJob", "task"))

    def task_scheduled(o: list[dict[str, Any]]) -> None:
        query(o, "CronJob", "task")["spec"]["suspend"] = False

    def rebuild_without_password(o: list[dict[str, Any]]) -> None:
        task_env = env_of(query(o, "CronJob", "task"))
        task_env[:] = [e for e in task_env if e["name"] != "AGRITRACE_SERVICE_PASSWORD"]

    def flow_address_port(o: list[dict[str, Any]]) -> None:
        data = of(o, "ConfigMap", "-query")["data"]
        data["AGRITRACE_FLOW_ADDRESS"] = data["AGRITRACE_FLOW_ADDRESS"].rpartition(":")[0] + ":9464"

    def query_without_flow_address(o: list[dict[str, Any]]) -> None:
        of(o, "ConfigMap", "-query")["data"].pop("AGRITRACE_FLOW_ADDRESS")

    def flow_address_on_coding(o: list[dict[str, Any]]) -> None:
        address = of(o, "ConfigMap", "-query")["data"]["AGRITRACE_FLOW_ADDRESS"]
        of(o, "ConfigMap", "-coding")["data"]["AGRITRACE_FLOW_ADDRESS"] = address

    def query_egress_to_flow(o: list[dict[str, Any]]) -> None:
        drop_egress(o, "query", "flow")

    def drop_admitted(o: list[dict[str, Any]], target: str, key: str, value: str) -> None:
        """Removes a value from the `key In [...]` expressions admitting the target's clients."""
        for rule in of(o, "NetworkPolicy", f"-{target}")["spec"]["ingress"]:
            for peer in rule.get("from", []):
                for expression in peer.get("podSelector", {}).get("matchExpressions", []):
                    if expression["key"] == key:
                        expression["values"] = [v for v in expression["values"] if v != value]

    def flow_ingress_from_query(o: list[dict[str, Any]]) -> None:
        drop_admitted(
            o, "flow", "app.kubernetes.io/name", app_name(query(o, "ConfigMap", "service"))
        )

    def coding_ingress_from_tasks(o: list[dict[str, Any]]) -> None:
        drop_admitted(o, "coding", "app.kubernetes.io/component", "task")

    def bootstrap_phase(o: list[dict[str, Any]]) -> None:
        job = first(o, "Job", "bootstrap-admin")
        job["metadata"]["annotations"]["helm.sh/hook"] = "pre-install,pre-upgrade"

    def bridge(
        o: list[dict[str, Any]], kind: str, component: str, index: int = 0
    ) -> dict[str, Any]:
        """A province bridge's object of a kind and component (the first province's, or another)."""
        found = [
            x
            for x in o
            if x["kind"] == kind
            and PROVINCE_LABEL in x["metadata"].get("labels", {})
            and component_of(x) == component
        ]
        return sorted(found, key=lambda x: x["metadata"]["name"])[index]

    def bridge_of_adapter(o: list[dict[str, Any]], adapter: str) -> dict[str, Any]:
        return next(
            x
            for x in o
            if x["kind"] == "ConfigMap"
            and x.get("data", {}).get("AGRITRACE_BRIDGE_ADAPTER") == adapter
        )

    def bridge_two_replicas(o: list[dict[str, Any]]) -> None:
        bridge(o, "Deployment", "server")["spec"]["replicas"] = 2

    def bridge_rolling_update(o: list[dict[str, Any]]) -> None:
        bridge(o, "Deployment", "server")["spec"]["strategy"] = {"type": "RollingUpdate"}

    def bridge_same_province(o: list[dict[str, Any]]) -> None:
        first_code = bridge(o, "ConfigMap", "service")["data"]["AGRITRACE_BRIDGE_PROVINCE"]
        second = bridge(o, "Deployment", "server", 1)
        for x in o:
            if x["metadata"].get("labels", {}).get("app.kubernetes.io/name") == app_name(second):
                x["metadata"]["labels"][PROVINCE_LABEL] = first_code
                if x["kind"] == "ConfigMap":
                    x["data"]["AGRITRACE_BRIDGE_PROVINCE"] = first_code
                if pod_template(x) is not None and x["kind"] != "Pod":
                    pod_labels(x)[PROVINCE_LABEL] = first_code

    def bridge_without_province(o: list[dict[str, Any]]) -> None:
        bridge(o, "ConfigMap", "service")["data"].pop("AGRITRACE_BRIDGE_PROVINCE")

    def bridge_unknown_adapter(o: list[dict[str, Any]]) -> None:
        bridge(o, "ConfigMap", "service")["data"]["AGRITRACE_BRIDGE_ADAPTER"] = "sftp"

    def bridge_api_key_in_clear(o: list[dict[str, Any]]) -> None:
        name = bridge_of_adapter(o, "rest")["metadata"]["name"]
        for entry in env_of(
            next(x for x in o if x["kind"] == "Deployment" and x["metadata"]["name"] == name)
        ):
            if entry["name"] == "AGRITRACE_BRIDGE_ADAPTER_API_KEY":
                entry.pop("valueFrom")
                entry["value"] = "secret-api-key"

    def bridge_drop_folder_unmounted(o: list[dict[str, Any]]) -> None:
        name = bridge_of_adapter(o, "drop-folder")["metadata"]["name"]
        server_container = container_of(
            next(x for x in o if x["kind"] == "Deployment" and x["metadata"]["name"] == name)
        )
        server_container["volumeMounts"] = [
            m for m in server_container["volumeMounts"] if m["name"] != "drop-folder"
        ]

    def bridge_without_flow_address(o: list[dict[str, Any]]) -> None:
        bridge(o, "ConfigMap", "service")["data"].pop("AGRITRACE_FLOW_ADDRESS")

    mutations = [
        typo_field,
        wrong_type,
        writable_root,
        http_probe,
        wrong_target,
        unknown_kind,
        dangling_secret,
    ]
    if any(o["kind"] == "ServiceMonitor" for o in objects):
        mutations.append(servicemonitor_typo)
    if any(o["kind"] == "PrometheusRule" for o in objects):
        mutations += [prometheusrule_typo, alert_rule_changed]
    if any(o["kind"] == "ConfigMap" and component_of(o) == "monitoring" for o in objects):
        mutations.append(dashboard_changed)
    if any(o["kind"] == "ConfigMap" and "AGRITRACE_SSO_ADDRESS" in o["data"] for o in objects):
        mutations.append(sso_address_port)
    if any(o["kind"] == "ConfigMap" and "AGRITRACE_REGISTRY_ADDRESS" in o["data"] for o in objects):
        mutations.append(registry_address_port)
    if any(o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-coding") for o in objects):
        mutations.append(coding_without_resolver)
    if any(o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-flow") for o in objects):
        mutations += [flow_without_resolver, flow_without_coding_address]
    if any(o["kind"] == "ConfigMap" and "AGRITRACE_CODING_ADDRESS" in o["data"] for o in objects):
        mutations.append(coding_address_port)
    names = {(o["kind"], o["metadata"]["name"].rpartition("-")[2]) for o in objects}
    if {("ConfigMap", "coding"), ("ConfigMap", "flow")} <= names:
        mutations.append(coding_address_on_coding)
    if any(
        o["kind"] == "Deployment"
        and o["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"
        for o in objects
    ):
        mutations.append(flow_worker)
    if {("NetworkPolicy", "coding"), ("NetworkPolicy", "flow")} <= names:
        mutations += [flow_egress_to_coding, coding_ingress_from_flow]
    if any(
        o["kind"] == "Job"
        and o["metadata"]["labels"].get("app.kubernetes.io/component") == "bootstrap-admin"
        for o in objects
    ):
        mutations.append(bootstrap_phase)
    # These must be reported by the rule they break (the text of its message), not merely by
    # some other check that the change happens to upset.
    expected = {
        query_without_redis: "AGRITRACE_REDIS_URL does not come from a Secret",
        query_redis_in_clear: "AGRITRACE_REDIS_URL does not come from a Secret",
        query_without_worker: "needs its worker",
        query_without_rebuild: "no task (CronJob) running python -m agritrace_query ['rebuild']",
        task_scheduled: "must be suspended",
        rebuild_without_password: "AGRITRACE_SERVICE_PASSWORD does not come from a Secret",
        flow_address_port: "AGRITRACE_FLOW_ADDRESS",
        query_without_flow_address: "without AGRITRACE_FLOW_ADDRESS",
        flow_address_on_coding: "does not call the flow service",
        query_egress_to_flow: "allows no egress to Deployment/",
        flow_ingress_from_query: "admits no gRPC from these pods",
        coding_ingress_from_tasks: "admits no gRPC from these pods",
        bridge_two_replicas: "a bridge is a singleton",
        bridge_rolling_update: "a bridge is a singleton",
        bridge_same_province: "bridge servers",
        bridge_without_province: "AGRITRACE_BRIDGE_PROVINCE '' is not two digits",
        bridge_unknown_adapter: "AGRITRACE_BRIDGE_ADAPTER 'sftp' is not one of",
        bridge_api_key_in_clear: "AGRITRACE_BRIDGE_ADAPTER_API_KEY does not come from a Secret",
        bridge_drop_folder_unmounted: "is not a mounted PersistentVolumeClaim",
        bridge_without_flow_address: "agritrace_bridge without AGRITRACE_FLOW_ADDRESS",
        prometheusrule_typo: "PrometheusRule schema",
        alert_rule_changed: "differs from deploy/monitoring/rules",
        dashboard_changed: "differs from deploy/monitoring/dashboards",
        backup_overlapping: "one run at a time",
        backup_script_changed: "does not run files/backup/pg-backup.sh",
        backup_url_in_clear: "AGRITRACE_DATABASE_URL does not come from a Secret",
        backup_to_tmp: "is not a mounted PersistentVolumeClaim",
        backup_claim_not_kept: "is not kept on uninstall",
    }
    if any(o["kind"] == "CronJob" and component_of(o) == "backup" for o in objects):
        mutations += [backup_overlapping, backup_script_changed, backup_url_in_clear,
                      backup_to_tmp, backup_claim_not_kept]
    if {("ConfigMap", "query"), ("CronJob", "rebuild")} <= names:
        mutations += [
            query_without_redis,
            query_redis_in_clear,
            query_without_worker,
            query_without_rebuild,
            task_scheduled,
            rebuild_without_password,
        ]
    if {("ConfigMap", "query"), ("ConfigMap", "flow"), ("ConfigMap", "coding")} <= names:
        mutations += [flow_address_port, query_without_flow_address, flow_address_on_coding]
    if {("NetworkPolicy", "query"), ("NetworkPolicy", "flow"), ("CronJob", "rebuild")} <= names:
        mutations += [query_egress_to_flow, flow_ingress_from_query, coding_ingress_from_tasks]
    adapters = {
        o["data"].get("AGRITRACE_BRIDGE_ADAPTER")
        for o in objects
        if o["kind"] == "ConfigMap" and PROVINCE_LABEL in o["metadata"].get("labels", {})
    }
    if {"rest", "drop-folder"} <= adapters:
        mutations += [
            bridge_two_replicas,
            bridge_rolling_update,
            bridge_same_province,
            bridge_without_province,
            bridge_unknown_adapter,
            bridge_api_key_in_clear,
            bridge_drop_folder_unmounted,
            bridge_without_flow_address,
        ]
    failed = 0
    for mutate in mutations:
        broken = copy.deepcopy(objects)
        mutate(broken)
        checker, _ = run_checks(broken, kube_versions, existing)
        want = expected.get(mutate)
        found = [e for e in checker.errors if want is None or want in e]
        if found:
            print(f"    caught {mutate.__name__}: {found[0]}")
        else:
            print(f"      FAIL self-test: {mutate.__name__} was not reported")
            for problem in checker.errors[:3]:
                print(f"        (only: {problem})")
            failed += 1
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--kube-version", action="append", required=True)
    parser.add_argument("--existing-secret", action="append", default=[])
    parser.add_argument("--expect", action="append", default=[], metavar="KIND=N")
    parser.add_argument(
        "--bridges",
        default=None,
        metavar="CODES",
        help="comma-separated provinces whose bridges must be rendered (exactly these)",
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="break the manifest in known ways and require each to be reported",
    )
    args = parser.parse_args()

    text = args.manifest.read_text()
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    if not objects:
        print(f"FAIL {args.manifest}: no objects rendered")
        return 1
    if args.self_test:
        return self_test(objects, args.kube_version, set(args.existing_secret))
    checker, validated = run_checks(objects, args.kube_version, set(args.existing_secret))

    counts = Counter(obj["kind"] for obj in objects)
    for expectation in args.expect:
        kind, _, number = expectation.partition("=")
        if counts.get(kind, 0) != int(number):
            checker.error(None, f"expected {number} {kind}, rendered {counts.get(kind, 0)}")

    if args.bridges is not None:
        expected = sorted(code for code in args.bridges.split(",") if code)
        rendered = checker.bridge_provinces
        if rendered != expected:
            checker.error(None, f"expected bridges of provinces {expected}, rendered {rendered}")

    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    if checker.errors:
        for problem in checker.errors:
            print(f"      FAIL {problem}")
        return 1
    print(
        f"    {len(objects)} objects ({summary}); {validated} schema validations "
        f"(Kubernetes {', '.join(args.kube_version)}, strict), chart rules and expectations ok"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
