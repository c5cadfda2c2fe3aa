"""Alerts, dashboards and log shipping, checked against the real tools and services.

- The alert rules pass `promtool check rules`, their unit tests pass `promtool test
  rules`, and every alert has a unit test in which it fires and one in which it stays
  silent.
- Every PromQL expression of the dashboards parses (promtool again). Every metric that
  the dashboards or alerts read is exported by a service: each service's venv imports
  its metrics module and prints its exposition. Bot panels filter on the dashboards'
  variables.
- The Fluent Bit values are well formed, and a real log line of botfleet_common.jsonlog
  has the fields and time format that the values and the index template rely on.

promtool comes from Debian's `prometheus` package. Without it these tests fail; they do
not skip, because a skipped check of the alerts is no check.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from promql_tokens import Selector, metric_names, selectors  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts/botfleet/files/alerts.rules.yaml"
RULE_TESTS = sorted(Path(__file__).resolve().parent.glob("*_test.yaml"))
DASHBOARD_DIR = ROOT / "charts/botfleet/files/dashboards"
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))
FLUENT_BIT_VALUES = ROOT / "k8s/logging/fluent-bit-values.yaml"
INDEX_TEMPLATE = ROOT / "k8s/logging/elasticsearch-index-template.json"
README = ROOT / "README.md"
RUNBOOKS = "https://github.com/botfleet/botfleet/blob/main/README.md#"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Each service's metrics, printed by its own venv (the services' dependencies are not
# in the dev venv, and each service pins its own prometheus_client).
SERVICES = {
    "rasa": (".venvs/rasa/bin/python", "botfleet_rasa.metrics", ["services/rasa", "services/common"]),
    "actions": (".venvs/actions/bin/python", "botfleet_actions.metrics", ["services/action-server", "services/common"]),
    "operator": (".venvs/operator/bin/python", "botfleet_operator.metrics", ["operator"]),
    "gateway": (".venvs/gateway/bin/python", "botfleet_gateway.metrics", ["services/gateway", "services/common"]),
}
# Where a service keeps its metrics when not in prometheus_client's default registry:
# the gateway gives each app its own (tests run several in one process).
REGISTRIES = {"gateway": "botfleet_gateway.metrics.GatewayMetrics().registry"}
# Metrics that come from Prometheus itself (up) or prometheus_client's process collector.
EXTERNAL_METRIC = re.compile(r"^(up|process_[a-z_]+)$")

# Grafana's variables, replaced by valid PromQL before promtool parses an expression.
GRAFANA_BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}


# ----------------------------------------------------------------------------- helpers


def promtool_path() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed. It comes with Debian's prometheus package: "
            "apt-get update && apt-get install -y prometheus"
        )
    return path


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT, **kwargs)


def load_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in load_rules() if "alert" in rule]


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in DASHBOARDS}


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Top-level panels and those inside collapsed rows."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query")
    return query.get("query", "") if isinstance(query, dict) else str(query or "")


def label_values_selector(query: str) -> str | None:
    """The series selector of a `label_values(SELECTOR, label)` variable query."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*", query, re.S)
    return match.group(1) if match else None


def dashboard_expressions() -> list[tuple[str, str, str]]:
    """(dashboard, where, expr) for every panel query and every variable's selector."""
    found = []
    for name, dashboard in load_dashboards().items():
        for panel in all_panels(dashboard):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((name, f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]))
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                selector = label_values_selector(variable_query(variable))
                assert selector, f"{name}: variable {variable['name']} is not a label_values() query"
                found.append((name, f"variable {variable['name']}", selector))
    return found


def substitute_variables(expr: str) -> str:
    """Grafana variables → values promtool accepts: durations for the builtins, a regex
    for ours (they only ever appear inside =~ matchers)."""

    def replace(match: re.Match[str]) -> str:
        return GRAFANA_BUILTINS.get(match.group(1) or match.group(2), ".*")

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, expr)


def rule_expressions() -> list[tuple[str, str]]:
    return [(rule.get("alert") or rule["record"], rule["expr"]) for rule in load_rules()]


def exported_names(exposition: str) -> set[str]:
    """Every series name an exposition can produce, from its TYPE lines (labelled
    metrics without children have no samples yet) and its samples."""
    names = set()
    suffixes = {"histogram": ("_bucket", "_sum", "_count", "_created"), "summary": ("", "_sum", "_count", "_created"),
                "counter": ("", "_created"), "gauge": ("",), "info": ("",), "untyped": ("",)}
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.update(name + suffix for suffix in suffixes.get(kind, ("",)))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def fluent_bit_sections(config: str) -> list[tuple[str, dict[str, list[str]]]]:
    """A classic-mode Fluent Bit config as [(SECTION, {lowercased key: [values]})]."""
    sections: list[tuple[str, dict[str, list[str]]]] = []
    for raw in config.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = re.fullmatch(r"\[([A-Z]+)\]", line)
        if header:
            sections.append((header.group(1), {}))
            continue
        assert sections, f"a setting outside any section: {line!r}"
        assert raw.startswith((" ", "\t")), f"settings must be indented under their section: {raw!r}"
        key, _, value = line.partition(" ")
        sections[-1][1].setdefault(key.lower(), []).append(value.strip())
    return sections


def one(settings: dict[str, list[str]], key: str) -> str:
    values = settings.get(key.lower(), [])
    assert len(values) == 1, f"expected one {key}, got {values}"
    return values[0]


def fluent_bit_values() -> dict[str, Any]:
    return yaml.safe_load(FLUENT_BIT_VALUES.read_text())


def time_format_to_python(fluent_bit_format: str) -> str:
    # Fluent Bit's %L is the fraction of a second; Python's %f reads 1 to 6 digits.
    return fluent_bit_format.replace("%L", "%f")


@pytest.fixture(scope="session")
def exposition() -> dict[str, set[str]]:
    """{service: the series names it exports}, from each service's own venv."""
    names = {}
    for service, (python, module, paths) in SERVICES.items():
        interpreter = ROOT / python
        assert interpreter.exists(), f"{python} is missing: run `make venvs`"
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        # The working tree's code, even if a venv was installed from elsewhere.
        env["PYTHONPATH"] = os.pathsep.join(str(ROOT / p) for p in paths)
        registry = REGISTRIES.get(service, "prometheus_client.REGISTRY")
        code = f"import {module}, prometheus_client, sys; sys.stdout.write(prometheus_client.generate_latest({registry}).decode())"
        result = run([str(interpreter), "-c", code], env=env)
        assert result.returncode == 0, f"{service}: importing {module} failed:\n{result.stderr}"
        names[service] = exported_names(result.stdout)
        assert any(n.startswith("botfleet_") for n in names[service]), f"{service} exports no botfleet_ metric"
    return names


# ------------------------------------------------------------------------------ alerts


def test_rules_pass_promtool_check():
    promtool = promtool_path()
    result = run([promtool, "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass():
    promtool = promtool_path()
    assert RULE_TESTS, "no *_test.yaml in tests/observability"
    result = run([promtool, "test", "rules", *map(str, RULE_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_unit_tests_load_the_chart_rules_file():
    for path in RULE_TESTS:
        rule_files = [(path.parent / f).resolve() for f in yaml.safe_load(path.read_text())["rule_files"]]
        assert rule_files == [RULES.resolve()], f"{path.name} tests {rule_files}, not {RULES}"


def test_every_alert_has_a_firing_and_a_silent_unit_test():
    firing, silent = set(), set()
    for path in RULE_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names, "no alerts in the rules file"
    assert not names - firing, f"alerts no unit test expects to fire: {sorted(names - firing)}"
    assert not names - silent, f"alerts no unit test expects to stay silent: {sorted(names - silent)}"
    assert not (firing | silent) - names, f"unit tests of unknown alerts: {sorted((firing | silent) - names)}"


def test_alerts_have_for_severity_annotations_and_runbook():
    seen = set()
    for rule in alerts():
        name = rule["alert"]
        assert name not in seen, f"{name} is defined twice"
        seen.add(name)
        assert re.fullmatch(r"Botfleet[A-Z][A-Za-z]+", name), name
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name}: `for:` missing"
        assert rule.get("labels", {}).get("severity") in ("critical", "warning"), f"{name}: severity"
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), f"{name}: summary/description"
        # One README section per alert, its heading the alert's name.
        assert annotations.get("runbook_url") == RUNBOOKS + name.lower(), f"{name}: runbook_url"


def test_recording_rules_follow_the_naming_convention():
    for rule in load_rules():
        if "record" in rule:
            assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]


def github_anchors(markdown: str) -> set[str]:
    anchors = set()
    for line in markdown.splitlines():
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_runbook_anchors_exist_in_readme():
    # The alerts link README.md#<alert name>; a renamed or missing section is a dead link
    # in the middle of an incident.
    anchors = github_anchors(README.read_text())
    assert "runbooks" in anchors, "README.md has no Runbooks section"
    missing = sorted(r["alert"] for r in alerts() if r["annotations"]["runbook_url"].split("#")[1] not in anchors)
    assert not missing, f"README.md has no runbook section (a heading with the alert's name) for {missing}"


# -------------------------------------------------------------------------- dashboards


def test_dashboards_are_provisionable():
    assert {p.name for p in DASHBOARDS} == {"bot.json", "operator.json"}
    uids = set()
    for name, dashboard in load_dashboards().items():
        assert dashboard.get("uid") and dashboard.get("title"), name
        assert dashboard["uid"] not in uids, f"{name}: uid {dashboard['uid']} is used twice"
        uids.add(dashboard["uid"])
        assert "botfleet" in dashboard.get("tags", []), f"{name}: the dashboard links find dashboards by this tag"
        assert dashboard.get("schemaVersion", 0) >= 36, name
        # A dashboard provisioned from a ConfigMap must not carry a database id.
        assert dashboard.get("id") is None, name


def test_template_variables():
    for name, dashboard in load_dashboards().items():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert {"datasource", "namespace", "bot"} <= set(variables), name
        datasource = variables["datasource"]
        assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus"), name
        for variable in variables.values():
            if variable["type"] == "query":
                assert variable["datasource"] == DATASOURCE, f"{name}: variable {variable['name']}"
        assert label_values_selector(variable_query(variables["namespace"])), name
        bot_query = variable_query(variables["bot"])
        assert re.search(r",\s*bot\s*\)\s*$", bot_query), f"{name}: $bot must list the `bot` label"
        # $bot depends on $namespace, so choosing a namespace narrows the Bots.
        assert "$namespace" in bot_query, f"{name}: $bot must be filtered by $namespace"


def test_panel_ids_are_unique_and_panels_do_not_overlap():
    for name, dashboard in load_dashboards().items():
        panels = all_panels(dashboard)
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        cells: dict[tuple[int, int], int] = {}
        for panel in panels:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, f"{name}: panel {panel['id']} is wider than the grid"
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    assert (x, y) not in cells, f"{name}: panels {cells[(x, y)]} and {panel['id']} overlap"
                    cells[(x, y)] = panel["id"]


def test_every_panel_queries_the_datasource_variable():
    for name, dashboard in load_dashboards().items():
        for panel in all_panels(dashboard):
            if panel["type"] == "row":  # rows only group panels; they run no query
                continue
            assert panel.get("datasource") == DATASOURCE, f"{name}: panel {panel['id']} {panel['title']!r}"
            assert panel.get("targets"), f"{name}: panel {panel['id']} has no query"
            for target in panel["targets"]:
                assert target.get("datasource") == DATASOURCE, f"{name}: panel {panel['id']} target {target['refId']}"
                assert target.get("expr"), f"{name}: panel {panel['id']} target {target['refId']} has no expr"


def test_dashboard_queries_parse(tmp_path):
    promtool = promtool_path()
    # promtool parses each expression as a recording rule: the same PromQL parser as
    # the Prometheus that Grafana queries.
    expressions = dashboard_expressions()
    rules = [{"record": f"dashboard:query_{i}:check", "expr": substitute_variables(expr)}
             for i, (_, _, expr) in enumerate(expressions)]
    path = tmp_path / "dashboards.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run([promtool, "check", "rules", str(path)])
    where = "\n".join(f"query_{i}: {d} {w}" for i, (d, w, _) in enumerate(expressions))
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{where}"


def test_variables_used_by_queries_are_defined():
    dashboards = load_dashboards()
    for name, where, expr in dashboard_expressions():
        defined = {v["name"] for v in dashboards[name]["templating"]["list"]}
        used = {a or b for a, b in re.findall(r"\$\{(\w+)\}|\$(\w+)", expr)}
        unknown = {v for v in used if v not in defined and v not in GRAFANA_BUILTINS}
        assert not unknown, f"{name} {where}: undefined variables {unknown}"


def scope_problems(selector: Selector, variables: set[str]) -> list[str]:
    """What a selector lacks to follow the dashboard's variables."""

    def filters(label: str, variable: str) -> bool:
        return selector.matcher(label) == ("=~", f"${variable}")

    metric = selector.metric or ""
    by_bot = filters("namespace", "namespace") and filters("bot", "bot")
    by_operator_bot = filters("bot_namespace", "namespace") and filters("bot", "bot")
    by_job = "job" in variables and filters("job", "job")
    if metric.startswith("botfleet_operator_"):
        return [] if by_job else ['job=~"$job"']
    if metric.startswith(("botfleet_bot_", "botfleet_rollout_")):  # the operator's per-Bot gauges
        return [] if by_operator_bot else ['bot_namespace=~"$namespace"', 'bot=~"$bot"']
    if metric.startswith("botfleet_"):  # exported by the Bot's own pods
        return [] if by_bot else ['namespace=~"$namespace"', 'bot=~"$bot"']
    return [] if (by_bot or by_job) else ['namespace=~"$namespace", bot=~"$bot" or job=~"$job"']


def test_queries_filter_on_the_dashboard_variables():
    dashboards = load_dashboards()
    problems = []
    for name, where, expr in dashboard_expressions():
        if where.startswith("variable"):
            continue
        variables = {v["name"] for v in dashboards[name]["templating"]["list"]}
        for selector in selectors(expr):
            missing = scope_problems(selector, variables)
            if missing:
                problems.append(f"{name} {where}: {selector.metric} lacks {', '.join(missing)}")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------- metric contract


def test_every_metric_read_by_dashboards_and_alerts_is_exported(exposition):
    exported = set().union(*exposition.values())
    recorded = {rule["record"] for rule in load_rules() if "record" in rule}
    used = [(f"{d} {w}", expr) for d, w, expr in dashboard_expressions()]
    used += [(f"rule {name}", expr) for name, expr in rule_expressions()]
    missing = []
    for where, expr in used:
        for name in sorted(metric_names(expr)):
            if name not in exported and name not in recorded and not EXTERNAL_METRIC.match(name):
                missing.append(f"{name} ({where})")
    assert not missing, "metrics no service exports:\n" + "\n".join(missing)


def test_exposition_parser_knows_histogram_series():
    names = exported_names(
        "# HELP t_seconds x\n# TYPE t_seconds histogram\n# HELP c_total y\n# TYPE c_total counter\nc_total 1.0\n"
    )
    assert {"t_seconds_bucket", "t_seconds_count", "t_seconds_sum", "c_total"} <= names
    assert "t_seconds" not in names


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('sum by (namespace, bot) (rate(m_total{direction="in"}[5m]))', {"m_total"}),
        ("histogram_quantile(0.95, sum by (le) (rate(h_bucket[$__rate_interval])))", {"h_bucket"}),
        ('absent(up{job="a"} == 1)', {"up"}),
        ("a / on (x) group_left (y) b offset 5m", {"a", "b"}),
        ("sum(rate(x[5m:1m])) without (pod) > bool 2", {"x"}),
        ('{__name__="named", a="b"}', {"named"}),
        ("x unless x offset 15m", {"x"}),
        ('topk(10, sum by (intent) (increase(i[$__range])))', {"i"}),
        ("max by (a) (m) == 0 and on (a) max by (a) (n) > 0 or Inf", {"m", "n"}),
        ('label_replace(x, "dst", "$1", "src", "(.*)")', {"x"}),
        ("rule:metric:rate5m > 0.25", {"rule:metric:rate5m"}),
    ],
)
def test_metric_name_extraction(expr, expected):
    assert metric_names(expr) == expected


def test_selector_matchers_are_read():
    (selector,) = selectors('rate(m{namespace=~"$namespace", bot=~"$bot", direction="in"}[5m])')
    assert selector.matcher("bot") == ("=~", "$bot")
    assert selector.matcher("direction") == ("=", "in")
    assert scope_problems(selector, {"namespace", "bot"}) == []
    (unscoped,) = selectors('rate(botfleet_x_total{direction="in"}[5m])')
    assert scope_problems(unscoped, {"namespace", "bot"})


def test_bot_metrics_carry_the_labels_the_alerts_and_dashboards_use():
    # Alerts and dashboards group by `bot` and `component`: the bot chart's
    # ServiceMonitor must put them on every series it scrapes.
    code = (
        "import json, sys, yaml\n"
        "from botfleet_operator import builders\n"
        "bot = yaml.safe_load(open(sys.argv[1]))\n"
        "bot['metadata'].setdefault('namespace', 'bots'); bot['metadata'].setdefault('uid', 'u')\n"
        "json.dump(builders.desired_objects(bot, service_monitor_crd=True), sys.stdout)\n"
    )
    objects = rendered_bot_objects(code, str(ROOT / "k8s/examples/demo-bot.yaml"))
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    for endpoint in monitor["spec"]["endpoints"]:
        targets = {r.get("targetLabel") for r in endpoint.get("relabelings", [])}
        assert {"bot", "component"} <= targets, f"ServiceMonitor endpoint {endpoint.get('port')} sets {targets}"


def rendered_bot_objects(code: str, *args: str) -> list[dict[str, Any]]:
    """Runs `code` in the operator's venv, which renders charts/bot the way the operator
    does; the code prints the objects as JSON."""
    interpreter = ROOT / SERVICES["operator"][0]
    assert interpreter.exists(), "the operator venv is missing: run `make venvs`"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    result = run([str(interpreter), "-c", code, *args], env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ---------------------------------------------------------------------- log shipping


def test_fluent_bit_values_configure_the_chart():
    values = fluent_bit_values()
    config = values["config"]
    for key in ("service", "inputs", "filters", "outputs", "customParsers"):
        assert isinstance(config.get(key), str) and config[key].strip(), f"config.{key} must be a config string"
    assert [s for s, _ in fluent_bit_sections(config["service"])] == ["SERVICE"]
    assert {s for s, _ in fluent_bit_sections(config["inputs"])} == {"INPUT"}
    assert {s for s, _ in fluent_bit_sections(config["filters"])} == {"FILTER"}
    assert {s for s, _ in fluent_bit_sections(config["outputs"])} == {"OUTPUT"}
    assert {s for s, _ in fluent_bit_sections(config["customParsers"])} == {"PARSER"}
    # The chart renders these strings with `tpl`: only its own values may be templated.
    for key in ("inputs", "filters", "outputs", "customParsers"):
        assert "{{" not in config[key], f"config.{key}"


def test_fluent_bit_pipeline_tails_merges_filters_and_ships():
    config = fluent_bit_values()["config"]
    (_, tail), = fluent_bit_sections(config["inputs"])
    assert one(tail, "Name") == "tail" and one(tail, "Path") == "/var/log/containers/*.log"
    assert one(tail, "Tag") == "kube.*"
    filters = fluent_bit_sections(config["filters"])
    assert [one(f, "Name") for _, f in filters] == ["kubernetes", "grep", "modify"], "filter order matters"
    kubernetes, grep, modify = (f for _, f in filters)
    assert one(kubernetes, "Merge_Log") == "On" and one(kubernetes, "Keep_Log") == "Off"
    assert one(kubernetes, "Labels") == "On", "the grep below needs the pod labels"
    parsers = {one(p, "Name"): p for _, p in fluent_bit_sections(config["customParsers"])}
    assert one(kubernetes, "Merge_Parser") in parsers
    for _, f in filters:
        assert one(f, "Match") == "kube.*"
    assert one(modify, "Rename") == "log message"


def test_fluent_bit_keeps_exactly_botfleet_pods():
    config = fluent_bit_values()["config"]
    _, grep, _ = (f for _, f in fluent_bit_sections(config["filters"]))
    key, pattern = one(grep, "Regex").split(" ", 1)
    assert key == "$kubernetes['labels']['app.kubernetes.io/part-of']"
    assert re.search(pattern, "botfleet") and not re.search(pattern, "botfleet-other")
    assert not re.search(pattern, "kube-system")

    # Every pod botfleet runs carries the label: the operator, and each Bot's Deployments.
    operator = [d for d in yaml.safe_load_all((ROOT / "k8s/base/botfleet-operator.yaml").read_text())
                if d and d["kind"] == "Deployment"]
    code = (
        "import json, sys, yaml\n"
        "from botfleet_operator import builders\n"
        "out = []\n"
        "for path in sys.argv[1:]:\n"
        "    bot = yaml.safe_load(open(path))\n"
        "    bot['metadata'].setdefault('namespace', 'bots'); bot['metadata'].setdefault('uid', 'u')\n"
        "    out += builders.desired_objects(bot)\n"
        "json.dump(out, sys.stdout)\n"
    )
    examples = sorted(str(p) for p in (ROOT / "k8s/examples").glob("*.yaml"))
    bots = [o for o in rendered_bot_objects(code, *examples) if o["kind"] == "Deployment"]
    # At least Rasa and the action server per Bot (model serving can be disabled).
    assert len(bots) >= 2 * len(examples), "expected the Bots' Deployments"
    for deployment in operator + bots:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert re.search(pattern, labels.get("app.kubernetes.io/part-of", "")), deployment["metadata"]["name"]


def test_fluent_bit_output_reads_credentials_from_the_environment():
    values = fluent_bit_values()
    config = values["config"]
    (_, es), = fluent_bit_sections(config["outputs"])
    assert one(es, "Name") == "es" and one(es, "Match") == "kube.*"
    assert one(es, "Logstash_Format") == "On" and one(es, "Logstash_Prefix") == "botfleet"
    assert one(es, "tls") == "On" and one(es, "tls.verify") == "On"
    assert one(es, "Suppress_Type_Name") == "On", "Elasticsearch 8 has no mapping types"
    assert one(es, "Replace_Dots") == "Off", "ECS names (log.level) must stay dotted"
    env = {e["name"]: e for e in values["env"]}
    for key in ("Host", "Port", "HTTP_User", "HTTP_Passwd"):
        assert re.fullmatch(r"\$\{\w+\}", one(es, key)), f"{key} must come from the environment"
    for key in ("HTTP_User", "HTTP_Passwd"):
        variable = one(es, key)[2:-1]
        assert "secretKeyRef" in env[variable].get("valueFrom", {}), f"{variable} must come from a Secret"
    # Every ${VAR} in the whole configuration is set on the container.
    used = set(re.findall(r"\$\{(\w+)\}", "\n".join(config[k] for k in ("service", "inputs", "filters", "outputs"))))
    assert used <= set(env), f"undefined: {sorted(used - set(env))}"
    # The CA file is mounted.
    mounts = {m["mountPath"] for m in values["extraVolumeMounts"]}
    assert any(one(es, "tls.ca_file").startswith(m.rstrip("/") + "/") for m in mounts)
    volumes = {v["name"] for v in values["extraVolumes"]}
    assert {m["name"] for m in values["extraVolumeMounts"]} <= volumes


JSONLOG_SCRIPT = """
import logging
from botfleet_common import jsonlog
jsonlog.configure("action-server")
log = logging.getLogger("botfleet_actions.actions")
log.warning("catalog unavailable for %s", "jane@example.com", extra={"action": "action_search_products"})
try:
    raise ConnectionError("database is down\\nsecond line")
except ConnectionError:
    log.exception("action failed")
"""


@pytest.fixture(scope="session")
def log_lines() -> list[str]:
    """Real output of botfleet_common.jsonlog, written by the action server's venv."""
    interpreter = ROOT / SERVICES["actions"][0]
    assert interpreter.exists(), "the actions venv is missing: run `make venvs`"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in SERVICES["actions"][2])}
    result = run([str(interpreter), "-c", JSONLOG_SCRIPT], env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_log_lines_are_single_line_ecs_json(log_lines):
    # One record per line even with a multi-line traceback: the tail input reads lines.
    assert len(log_lines) == 2
    documents = [json.loads(line) for line in log_lines]
    for document in documents:
        for field in ("@timestamp", "log.level", "log.logger", "message", "service.name", "ecs.version", "process.pid"):
            assert field in document, field
        assert document["service.name"] == "action-server"
    warning, error = documents
    assert warning["log.level"] == "warning" and warning["labels"] == {"action": "action_search_products"}
    assert "jane@example.com" not in log_lines[0], "PII must be redacted before it leaves the pod"
    assert error["error.type"] == "ConnectionError" and "Traceback" in error["error.stack_trace"]


def test_log_timestamps_match_the_fluent_bit_parser(log_lines):
    config = fluent_bit_values()["config"]
    parsers = {one(p, "Name"): p for _, p in fluent_bit_sections(config["customParsers"])}
    (_, kubernetes), _, _ = fluent_bit_sections(config["filters"])
    parser = parsers[one(kubernetes, "Merge_Parser")]
    assert one(parser, "Format") == "json"
    assert one(parser, "Time_Key") == "@timestamp"
    # The es output writes its own @timestamp: the parser must drop ours, or Elasticsearch
    # rejects the document for a duplicate key.
    (_, es), = fluent_bit_sections(config["outputs"])
    assert one(es, "Time_Key") == one(parser, "Time_Key") and one(parser, "Time_Keep") == "Off"
    python_format = time_format_to_python(one(parser, "Time_Format"))
    for line in log_lines:
        stamp = json.loads(line)["@timestamp"]
        parsed = datetime.strptime(stamp, python_format)
        assert parsed.utcoffset() is not None, stamp


def shipped_document(line: str) -> dict[str, Any]:
    """What Elasticsearch receives for a log line, following the pipeline's steps: the CRI
    record, the kubernetes merge with botfleet_ecs (Time_Keep Off), modify."""
    record: dict[str, Any] = {"time": "2025-01-31T12:00:00.123456789Z", "stream": "stdout", "_p": "F", "log": line}
    try:
        merged = json.loads(line)
    except ValueError:
        merged = None
    if isinstance(merged, dict):
        del record["log"]
        merged.pop("@timestamp", None)
        record.update(merged)
    record["kubernetes"] = {"namespace_name": "bots", "pod_name": "demo-actions-0", "container_name": "actions",
                            "host": "node-1", "labels": {"app.kubernetes.io/part-of": "botfleet", "app": "x"}}
    if "log" in record and "message" not in record:
        record["message"] = record.pop("log")
    for key in ("_p", "time"):
        record.pop(key, None)
    record["@timestamp"] = "2025-01-31T12:00:00.123Z"  # written by the es output
    return record


def mapped(template: dict[str, Any], field_path: list[str]) -> bool:
    """Whether the index template maps a field (dotted names expand into objects, and a
    flattened field covers everything under it)."""
    properties = template["template"]["mappings"]["properties"]
    parts = [p for part in field_path for p in part.split(".")]
    for i, part in enumerate(parts):
        if part not in properties:
            return False
        mapping = properties[part]
        if mapping.get("type") == "flattened":
            return True
        if i == len(parts) - 1:
            return "type" in mapping
        properties = mapping.get("properties", {})
    return False


def leaf_paths(document: dict[str, Any], prefix: list[str] | None = None) -> list[list[str]]:
    paths = []
    for key, value in document.items():
        path = [*(prefix or []), key]
        paths.extend(leaf_paths(value, path) if isinstance(value, dict) else [path])
    return paths


def test_index_template_maps_every_shipped_field(log_lines):
    template = json.loads(INDEX_TEMPLATE.read_text())
    (_, es), = fluent_bit_sections(fluent_bit_values()["config"]["outputs"])
    index = f"{one(es, 'Logstash_Prefix')}-2025.01.31"
    assert any(fnmatch.fnmatch(index, pattern) for pattern in template["index_patterns"]), index
    not_json = "DeprecationWarning: something printed before logging was configured"
    for line in [*log_lines, not_json]:
        document = shipped_document(line)
        assert "log" not in document or isinstance(document["log"], dict)
        unmapped = [".".join(p) for p in leaf_paths(document) if not mapped(template, p)]
        assert not unmapped, f"fields left to dynamic mapping: {unmapped}"
