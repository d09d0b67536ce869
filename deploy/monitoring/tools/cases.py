"""What validate.sh feeds promtool and amtool, derived from the rules and dashboards so that
nothing added there escapes the checks:

    python cases.py dashboard-rules   # every dashboard query as a recording rule (YAML), for
                                      # `promtool check rules` to parse with Prometheus's parser
    python cases.py routes            # per alert: the receiver its tier and severity must reach,
                                      # then its labels, one alert per line, for `amtool config
                                      # routes test`

Grafana's variables become a value of their kind first (DASHBOARD_VARIABLES)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

MONITORING = Path(__file__).resolve().parents[1]
DASHBOARD_VARIABLES = {"$__rate_interval": "5m", "$province": "37"}
# A label a provincial alert takes from its series; a value of its kind for routing.
SAMPLE_PROVINCE = "37"


def substitute_variables(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced; fails on one not known here."""
    for variable, value in DASHBOARD_VARIABLES.items():
        expr = expr.replace(variable, value)
    if "$" in expr.replace('"$1"', ""):
        raise ValueError(f"a dashboard variable not in DASHBOARD_VARIABLES: {expr}")
    return expr


def dashboard_queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title, query with variables replaced) for every panel query."""
    for path in sorted((MONITORING / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                yield path.name, panel["title"], substitute_variables(target["expr"])


def alerts() -> Iterator[dict[str, Any]]:
    for path in sorted((MONITORING / "rules").glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from (rule for rule in group["rules"] if "alert" in rule)


def expected_receiver(labels: dict[str, str]) -> str:
    """The routing contract: each tier has its ops team; pages go to its pager."""
    return f"{labels['tier']}-ops" + ("-pager" if labels["severity"] == "page" else "")


def main(command: str) -> None:
    if command == "dashboard-rules":
        rules = [{"record": f"dashboard:query_{number}", "expr": expr}
                 for number, (_, _, expr) in enumerate(dashboard_queries())]
        print(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    elif command == "routes":
        for alert in alerts():
            labels = {"alertname": alert["alert"], **alert["labels"]}
            if labels["tier"] == "provincial":
                labels["province"] = SAMPLE_PROVINCE
            print(expected_receiver(labels), *(f"{key}={value}" for key, value in labels.items()))
    else:
        raise SystemExit(f"unknown command {command!r}: dashboard-rules or routes")


if __name__ == "__main__":
    main(*sys.argv[1:])
