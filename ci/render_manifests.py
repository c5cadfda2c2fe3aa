"""Renders the operator's plain-manifest installs from charts/botfleet.

charts/botfleet is the only hand-written copy of the operator's manifests; the
kustomize tree (k8s/) takes them from files this script renders, so a change to the
chart reaches `kubectl apply -k` only through here. Run it after changing the chart:

    .venvs/operator/bin/python ci/render_manifests.py          # rewrite the files
    .venvs/operator/bin/python ci/render_manifests.py --check  # exit 1 if any is stale

The output is deterministic (the chart's rendered text, verbatim, in a fixed order),
so tests/k8s compares the committed files with a fresh render.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts/botfleet"
RELEASE = "botfleet"
NAMESPACE = "botfleet-system"
# The namespaces the prod overlay's operator watches (k8s/overlays/prod): its Roles
# are rendered here, and its --namespace args are patched to the same list there.
PROD_WATCHED_NAMESPACES = ["bots"]
# The labels Prometheus (kube-prometheus-stack) selects ServiceMonitors and rules by.
PROMETHEUS_SELECTOR = {"release": "kube-prometheus-stack"}

# Helm stamps its own name into managed-by; these files are applied with kubectl, and
# a label that sends a reader to `helm list` for a release that does not exist misleads.
HELM_MANAGED_BY = "app.kubernetes.io/managed-by: Helm"
KUSTOMIZE_MANAGED_BY = "app.kubernetes.io/managed-by: kustomize"

# Roughly Helm's install order, so a file reads top-down the way it is applied
# (kustomize sorts again when it builds).
KIND_ORDER = [
    "Namespace", "ServiceAccount", "Secret", "ConfigMap", "CustomResourceDefinition",
    "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Deployment",
    "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule", "ClusterKopfPeering", "KopfPeering",
]

# The operator's namespace, labelled for the restricted Pod Security Standard, which its
# pod meets (the chart sets runAsNonRoot, seccomp RuntimeDefault, no capabilities).
# `helm install --create-namespace` makes it unlabelled; kubectl users get it from here.
OPERATOR_NAMESPACE = f"""\
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
  labels:
    app.kubernetes.io/part-of: botfleet
    app.kubernetes.io/managed-by: kustomize
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/audit: restricted
    pod-security.kubernetes.io/warn: restricted
"""


@dataclass(frozen=True)
class Target:
    path: str
    purpose: str
    values: dict[str, Any] = field(default_factory=dict)
    # Template file names to keep (None: all of them).
    templates: frozenset[str] | None = None
    with_namespace: bool = False


TARGETS = [
    Target(
        path="k8s/base/botfleet-operator.yaml",
        purpose="the operator with the chart's default values (watches every namespace)",
        with_namespace=True,
    ),
    Target(
        path="k8s/components/operator-monitoring/botfleet-operator-monitoring.yaml",
        purpose="the operator's ServiceMonitor and alert rules, for clusters with kube-prometheus-stack",
        values={
            "metrics": {"serviceMonitor": {"enabled": True, "labels": PROMETHEUS_SELECTOR}},
            "prometheusRule": {"enabled": True, "additionalLabels": PROMETHEUS_SELECTOR},
        },
        templates=frozenset({"servicemonitor.yaml", "prometheusrule.yaml"}),
    ),
    Target(
        path="k8s/overlays/prod/botfleet-operator-rbac.yaml",
        purpose=(
            f"RBAC and kopf peering for watching only {', '.join(PROD_WATCHED_NAMESPACES)} "
            "(replace the base's cluster-wide ClusterRole and ClusterKopfPeering)"
        ),
        values={"watch": {"mode": "namespaces", "namespaces": PROD_WATCHED_NAMESPACES}},
        templates=frozenset({"rbac.yaml", "peering.yaml"}),
    ),
]


def render_chart(values: dict[str, Any]) -> dict[str, str]:
    """{template file name: rendered text} for the templates that produce objects."""
    import helm_python

    with helm_python.Chart.load(str(CHART)) as chart:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    found = {}
    for path, text in rendered.items():
        if not path.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        if not [d for d in yaml.safe_load_all(text) if d]:
            continue  # a template switched off by the values
        found[path.rsplit("/", 1)[-1]] = text.strip("\n")
    return found


def _rank(text: str) -> int:
    kinds = [d["kind"] for d in yaml.safe_load_all(text) if d]
    return min(KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER) for k in kinds)


def render_target(target: Target) -> str:
    templates = render_chart(target.values)
    if target.templates is not None:
        missing = target.templates - set(templates)
        if missing:
            raise SystemExit(f"{target.path}: the chart rendered nothing for {sorted(missing)}")
        templates = {name: text for name, text in templates.items() if name in target.templates}
    documents = [(KIND_ORDER.index("Namespace"), "", OPERATOR_NAMESPACE.strip("\n"))] if target.with_namespace else []
    documents += [(_rank(text), f"# Source: {CHART.name}/templates/{name}\n", text) for name, text in templates.items()]
    documents.sort(key=lambda d: (d[0], d[1]))
    header = (
        "# generated by ci/render_manifests.py, do not edit: change charts/botfleet and rerun\n"
        "#   .venvs/operator/bin/python ci/render_manifests.py\n"
        f"# Rendered from charts/botfleet (release {RELEASE}, namespace {NAMESPACE}): {target.purpose}.\n"
        f"# Chart values: {json.dumps(target.values, sort_keys=True)}\n"
    )
    body = "\n".join(f"---\n{source}{text}" for _, source, text in documents)
    return header + body.replace(HELM_MANAGED_BY, KUSTOMIZE_MANAGED_BY) + "\n"


def render_all() -> dict[str, str]:
    """{repository-relative path: the file's expected content}."""
    return {target.path: render_target(target) for target in TARGETS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if a file is missing or stale")
    args = parser.parse_args(argv)
    stale = []
    for path, expected in render_all().items():
        target = ROOT / path
        current = target.read_text() if target.exists() else ""
        if current == expected:
            continue
        stale.append(path)
        if args.check:
            diff = difflib.unified_diff(current.splitlines(True), expected.splitlines(True), f"{path} (committed)", f"{path} (rendered)")
            sys.stdout.writelines(list(diff)[:80])
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(expected)
            print(f"wrote {path}")
    if args.check and stale:
        print(f"stale: {', '.join(stale)}; run .venvs/operator/bin/python ci/render_manifests.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
