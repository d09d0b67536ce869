"""deploy/monitoring against the code: every series an alert rule or a dashboard panel reads is
one the services export (or a recording rule of ours, Prometheus's own `up`, or one of the two
kube-state-metrics series of the backup CronJob), with the labels it matches and groups by;
every alert is tiered, routed, documented and covered by a promtool test that makes it fire.
(promtool itself checks syntax and runs those tests: validate.sh.)"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from agritrace_kernel.grpc_kit.interceptors import LoggingInterceptor

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
RULE_FILES = sorted((MONITORING / "rules").glob("*.rules.yml"))
TEST_FILES = sorted((MONITORING / "tests").glob("*.test.yml"))
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))
# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})


def _load_cases() -> Any:
    """deploy/monitoring/tools/cases.py: the dashboards' queries as validate.sh reads them."""
    spec = importlib.util.spec_from_file_location("monitoring_cases",
                                                  MONITORING / "tools" / "cases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cases = _load_cases()


# -- what the code exports ------------------------------------------------------------------

def _metric_modules() -> Iterator[str]:
    """Every `metrics.py` of the shared kernel and the services, as an importable module."""
    for path in [*ROOT.glob("libs/*/**/metrics.py"), *ROOT.glob("services/*/*/**/metrics.py")]:
        parts = path.relative_to(ROOT).with_suffix("").parts
        if "tests" in parts:
            continue
        package = next(i for i, part in enumerate(parts) if part.startswith("agritrace_"))
        yield ".".join(parts[package:])


# kube-state-metrics' series of the chart's backup CronJob (kube-prometheus-stack runs it),
# the only series the rules read that no AgriTrace process exports.
KUBE_STATE_METRICS = {
    name: TARGET_LABELS | {"namespace", "cronjob"}
    for name in ("kube_cronjob_status_last_successful_time", "kube_cronjob_created")
}


def _exported_series() -> dict[str, frozenset[str]]:
    """Each series name the services export (histograms' _bucket, _count and _sum, counters'
    _total) with its labels (le for buckets) and the target labels."""
    series: dict[str, frozenset[str]] = {"up": TARGET_LABELS, **KUBE_STATE_METRICS}
    for module_name in _metric_modules():
        module = importlib.import_module(module_name)
        for metric in vars(module).values():
            if not isinstance(metric, MetricWrapperBase):
                continue
            labels = frozenset(metric._labelnames) | TARGET_LABELS
            name, kind = metric._name, metric._type
            if kind == "counter":
                series[f"{name}_total"] = labels
            elif kind == "histogram":
                series[f"{name}_bucket"] = labels | {"le"}
                series[f"{name}_count"] = series[f"{name}_sum"] = labels
            else:
                series[name] = labels
    return series


EXPORTED = _exported_series()


# -- the rules and the tests ----------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    file: Path
    body: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.body.get("alert") or self.body["record"])

    @property
    def is_alert(self) -> bool:
        return "alert" in self.body


def _rules() -> list[Rule]:
    return [Rule(path, rule) for path in RULE_FILES
            for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


RULES = _rules()
ALERTS = [rule for rule in RULES if rule.is_alert]


def _fired_alerts() -> dict[str, list[dict[str, str]]]:
    """Each alert's expected labels in the promtool tests' cases where it fires."""
    fired: dict[str, list[dict[str, str]]] = {}
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                for alert in check.get("exp_alerts") or []:
                    fired.setdefault(check["alertname"], []).append(alert["exp_labels"])
    return fired


# -- reading PromQL -------------------------------------------------------------------------

def _children(node: Any) -> Iterator[Any]:
    for attribute in ("lhs", "rhs", "expr", "param", "vector_selector"):
        child = getattr(node, attribute, None)
        if child is not None and type(child).__module__ == "promql_parser":
            yield child
    yield from getattr(node, "args", None) or []


def selectors(node: Any) -> Iterator[Any]:
    """Every vector selector in an expression."""
    if isinstance(node, promql_parser.VectorSelector):
        yield node
    for child in _children(node):
        yield from selectors(child)


class LabelError(AssertionError):
    pass


def output_labels(node: Any, known: dict[str, frozenset[str]]) -> frozenset[str] | None:
    """The labels an expression's series can carry (None: cannot tell), checking on the way
    that every aggregation groups by labels its input has."""
    if isinstance(node, promql_parser.VectorSelector):
        return known.get(node.name or "")
    if isinstance(node, promql_parser.AggregateExpr):
        inner = output_labels(node.expr, known)
        modifier = node.modifier
        if modifier is None:
            return frozenset()
        grouping = frozenset(modifier.labels)
        if modifier.type != promql_parser.AggModifierType.By:
            return None if inner is None else inner - grouping
        if inner is not None and not grouping <= inner:
            raise LabelError(f"groups by {sorted(grouping - inner)}, which its input lacks")
        return grouping
    if isinstance(node, promql_parser.Call):
        name = node.func.name
        args = list(node.args)
        if name == "histogram_quantile":
            inner = output_labels(args[1], known)
            if inner is not None and "le" not in inner:
                raise LabelError("histogram_quantile over series without le")
            return None if inner is None else inner - {"le"}
        if name == "label_replace":
            inner = output_labels(args[0], known)
            source = args[3].val
            if inner is not None and source not in inner:
                raise LabelError(f"label_replace reads {source!r}, which its input lacks")
            return None if inner is None else inner | {args[1].val}
        literals = promql_parser.NumberLiteral | promql_parser.StringLiteral
        vectors = [output_labels(arg, known) for arg in args if not isinstance(arg, literals)]
        return vectors[0] if vectors else frozenset()
    if isinstance(node, promql_parser.BinaryExpr):
        left, right = output_labels(node.lhs, known), output_labels(node.rhs, known)
        matching = node.modifier.matching if node.modifier is not None else None
        if matching is not None and matching.type == promql_parser.LabelModifierType.Include:
            for side in (left, right):
                if side is not None and not frozenset(matching.labels) <= side:
                    raise LabelError(f"matches on {sorted(matching.labels)}, missing on a side")
        if _is_scalar(node.lhs):
            return right
        return left
    children = list(_children(node))
    return output_labels(children[0], known) if children else frozenset()


def _is_scalar(node: Any) -> bool:
    return isinstance(node, promql_parser.NumberLiteral) or (
        isinstance(node, promql_parser.Call) and node.func.name in {"time", "scalar", "pi"})


def _recorded_labels() -> dict[str, frozenset[str]]:
    known = dict(EXPORTED)
    for rule in RULES:
        if not rule.is_alert:
            labels = output_labels(promql_parser.parse(rule.body["expr"]), known)
            if labels is not None:
                known[rule.name] = labels
    return known


KNOWN = _recorded_labels()


def check_expression(expr: str) -> None:
    """Fails unless every series the expression reads is known, with the labels it matches on,
    and its aggregations group by labels their inputs have."""
    tree = promql_parser.parse(expr)
    for selector in selectors(tree):
        assert selector.name in KNOWN, f"{selector.name!r} is neither exported nor recorded"
        for matcher in selector.matchers.matchers:
            assert matcher.name in KNOWN[selector.name], (
                f"{selector.name} has no label {matcher.name!r}")
    output_labels(tree, KNOWN)


# -- the tests ------------------------------------------------------------------------------

def test_the_code_exports_the_metrics_the_rules_are_written_against() -> None:
    # The scan of metrics modules itself: if it found nothing, every check below would pass.
    for name in ("grpc_server_handled_total", "agritrace_query_read_model_lag_seconds_bucket",
                 "agritrace_bridge_sync_lag_seconds", "agritrace_outbox_pending"):
        assert name in EXPORTED
    assert "province" in EXPORTED["agritrace_bridge_dead_letters"]


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_every_rule_reads_exported_series_with_their_labels(rule: Rule) -> None:
    check_expression(rule.body["expr"])


@pytest.mark.parametrize(("dashboard", "panel", "expr"), list(cases.dashboard_queries()),
                         ids=lambda value: value if len(value) < 40 else None)
def test_every_dashboard_query_reads_exported_series_with_their_labels(
        dashboard: str, panel: str, expr: str) -> None:
    check_expression(expr)


def test_an_unknown_series_a_missing_label_or_a_wrong_grouping_is_caught() -> None:
    for broken in ('rate(agritrace_no_such_metric_total[5m])',
                   'agritrace_bridge_queue_depth{provnce="37"}',
                   'sum by (provnce) (agritrace_bridge_queue_depth)',
                   'histogram_quantile(0.99, sum by (source) '
                   '(rate(agritrace_query_read_model_lag_seconds_bucket[5m])))',
                   'agritrace:grpc_server_faults:ratio_rate5m{grpc_code="INTERNAL"}'):
        with pytest.raises(AssertionError):
            check_expression(broken)


@pytest.mark.parametrize("alert", ALERTS, ids=lambda rule: rule.name)
def test_every_alert_is_tiered_documented_and_tested(alert: Rule) -> None:
    tier = alert.file.name.removesuffix(".rules.yml")
    labels, annotations = alert.body["labels"], alert.body["annotations"]
    assert labels["tier"] == tier, "an alert's tier is its file's"
    assert labels["severity"] in {"page", "ticket"}
    assert {"summary", "description", "runbook"} <= set(annotations)
    path, _, anchor = annotations["runbook"].partition("#")
    assert path == "deploy/monitoring/README.md"
    assert anchor in _readme_anchors(), f"no section #{anchor} in {path}"
    fired = _fired_alerts().get(alert.name)
    assert fired, f"no promtool test makes {alert.name} fire"
    if tier == "provincial":
        # Alertmanager routes provincial alerts by province: each must carry it.
        assert all(re.fullmatch(r"\d{2}", str(case.get("province"))) for case in fired)


def test_every_alert_has_a_unique_name() -> None:
    names = [alert.name for alert in ALERTS]
    assert len(names) == len(set(names))


def test_server_faults_are_the_codes_the_services_log_as_faults() -> None:
    recorded = next(rule for rule in RULES
                    if rule.name == "agritrace:grpc_server_faults:ratio_rate5m")
    codes = re.search(r'grpc_code=~"([^"]+)"', recorded.body["expr"])
    assert codes is not None
    assert set(codes.group(1).split("|")) == {
        code.name for code in LoggingInterceptor._SERVER_FAULTS}


def _readme_anchors() -> set[str]:
    """GitHub's anchors of README.md's headings: lower case, punctuation dropped."""
    headings = re.findall(r"^#+ (.+)$", (MONITORING / "README.md").read_text(), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in headings}


def test_dashboards_are_complete_grafana_dashboards() -> None:
    assert DASHBOARDS, "no dashboards in deploy/monitoring/dashboards"
    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] not in uids
        uids.add(dashboard["uid"])
        assert dashboard["schemaVersion"] >= 36
        panel_titles = [panel["title"] for panel in dashboard["panels"]]
        # Named as the platform's, and not after one of its own panels.
        assert dashboard["title"].startswith("AgriTrace / ")
        assert dashboard["title"] not in panel_titles
        assert len(panel_titles) == len(set(panel_titles)), f"{path.name}: panel titles repeat"
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        defined = {variable["name"] for variable in dashboard.get("templating", {}).get("list", [])}
        text = path.read_text()
        used = set(re.findall(r"\$\{?(?!__)(\w+)", text)) - {"1"}
        assert used <= defined, f"{path.name}: undefined variables {used - defined}"
        for variable in dashboard.get("templating", {}).get("list", []):
            found = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable.get("definition", ""))
            if variable["type"] == "query":
                assert found, f"{path.name}: variable {variable['name']} is not a label_values()"
                metric, label = found.groups()
                assert label in EXPORTED.get(metric, ()), f"{path.name}: no {metric} {{{label}}}"
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel.get("targets"), f"{path.name}: panel {panel['title']!r} has no query"
