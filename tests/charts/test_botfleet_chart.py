"""charts/botfleet: the operator's chart. One CRD source, RBAC that follows the watch
mode, a Deployment the operator's own CLI accepts, and the observability objects built
from the shared files (alerts for promtool and the PrometheusRule, Grafana dashboards)."""

from __future__ import annotations

import json
import os

import helm_python
import pytest
import yaml
from chart_support import CHARTS, ROOT, load_values, objects, of_kind, render, values_files

from botfleet_operator.handlers import CHILD_RESOURCES
from botfleet_operator.kube import RESOURCES
from botfleet_operator.main import kopf_arguments

CHART = CHARTS["botfleet"]
CRD = ROOT / "k8s/crds/bots.botfleet.io.yaml"
ALERTS = CHART / "files/alerts.rules.yaml"
DASHBOARDS = sorted((CHART / "files/dashboards").glob("*.json"))
# The operator's least privilege, reviewed rule by rule: what it reads, writes and
# renders (test_rbac_covers_every_kind_the_operator_touches derives the floor from its
# code). The chart is the only copy of the manifests (k8s/ renders its files from it),
# so this table is the reference it is held to: a grant is added here on purpose.
OPERATOR_RULES = [
    ("botfleet.io", ["bots"], ["get", "list", "watch", "patch"]),
    ("botfleet.io", ["bots/status"], ["get", "patch", "update"]),
    ("", ["events"], ["create", "patch"]),
    ("events.k8s.io", ["events"], ["create", "patch"]),
    ("", ["secrets"], ["get", "create"]),
    ("", ["configmaps", "services"], ["get", "list", "watch", "create", "patch", "delete"]),
    ("apps", ["deployments"], ["get", "list", "watch", "create", "patch", "delete"]),
    ("networking.k8s.io", ["ingresses", "networkpolicies"], ["get", "list", "watch", "create", "patch", "delete"]),
    ("autoscaling", ["horizontalpodautoscalers"], ["get", "list", "watch", "create", "patch", "delete"]),
    ("policy", ["poddisruptionbudgets"], ["get", "list", "watch", "create", "patch", "delete"]),
    ("monitoring.coreos.com", ["servicemonitors"], ["get", "list", "watch", "create", "patch", "delete"]),
    ("apiextensions.k8s.io", ["customresourcedefinitions"], ["get", "list", "watch"]),
    ("", ["namespaces"], ["list", "watch"]),
]
# kopf's peering: cluster-wide in "all" mode, in each watched namespace otherwise.
CLUSTER_PEERING_RULE = ("kopf.dev", ["clusterkopfpeerings"], ["get", "list", "watch", "patch"])
NAMESPACED_PEERING_RULE = ("kopf.dev", ["kopfpeerings"], ["get", "list", "watch", "patch"])
NAMESPACED = {"watch": {"mode": "namespaces", "namespaces": ["bots", "bots-staging"]}}
EVERYTHING = {"metrics": {"serviceMonitor": {"enabled": True}}, "prometheusRule": {"enabled": True}, "dashboards": {"enabled": True}}
# Resources in namespaces the operator watches: never granted cluster-wide in namespaces mode.
NAMESPACED_RESOURCES = {
    ("botfleet.io", "bots"), ("botfleet.io", "bots/status"), ("", "secrets"), ("", "configmaps"), ("", "services"),
    ("", "events"), ("events.k8s.io", "events"), ("apps", "deployments"), ("networking.k8s.io", "ingresses"),
    ("networking.k8s.io", "networkpolicies"), ("autoscaling", "horizontalpodautoscalers"),
    ("policy", "poddisruptionbudgets"), ("monitoring.coreos.com", "servicemonitors"), ("kopf.dev", "kopfpeerings"),
}


def grants(rules):
    return {(group, resource, verb) for rule in rules for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}


def reference_grants(peering=CLUSTER_PEERING_RULE):
    rules = OPERATOR_RULES + ([peering] if peering else [])
    return grants([{"apiGroups": [group], "resources": resources, "verbs": verbs} for group, resources, verbs in rules])


def one(items, kind):
    (found,) = of_kind(items, kind)
    return found


def container(items):
    (operator,) = one(items, "Deployment")["spec"]["template"]["spec"]["containers"]
    return operator


# --- the CRD: one source, loaded through the symlink ---------------------------------


CRD_FILES = ["bots.botfleet.io.yaml", "clusterkopfpeerings.kopf.dev.yaml", "kopfpeerings.kopf.dev.yaml"]


@pytest.mark.parametrize("name", CRD_FILES)
def test_the_chart_holds_no_copy_of_a_crd(name):
    link = CHART / "crds" / name
    assert link.is_symlink()
    assert os.readlink(link) == f"../../../k8s/crds/{name}"  # relative: works in any checkout
    assert link.resolve() == (ROOT / "k8s/crds" / name).resolve()


def test_helm_installs_the_crds_byte_identical_to_k8s_crds(tmp_path):
    expected = [(f"crds/{name}", (ROOT / "k8s/crds" / name).read_text()) for name in CRD_FILES]
    with helm_python.Chart.load(str(CHART)) as chart:
        assert sorted((c["name"], c["data"]) for c in chart.crds) == expected
        # `helm package` follows the links too: the archive carries the content.
        archive = chart.save(str(tmp_path))
    with helm_python.Chart.load(archive) as packaged:
        assert sorted(c["data"] for c in packaged.crds) == sorted(data for _, data in expected)


def test_kopfs_peering_crds_are_kopfs_own():
    for name, scope, kind in [("clusterkopfpeerings", "Cluster", "ClusterKopfPeering"), ("kopfpeerings", "Namespaced", "KopfPeering")]:
        crd = yaml.safe_load((ROOT / f"k8s/crds/{name}.kopf.dev.yaml").read_text())
        assert crd["metadata"]["name"] == f"{name}.kopf.dev" and crd["spec"]["group"] == "kopf.dev"
        assert crd["spec"]["scope"] == scope and crd["spec"]["names"]["kind"] == kind
        (version,) = crd["spec"]["versions"]
        assert version["name"] == "v1" and version["served"] and version["storage"]
        # kopf writes its peers into status with a plain merge patch: no subresource.
        assert "subresources" not in version
        assert version["schema"]["openAPIV3Schema"]["properties"]["status"]["x-kubernetes-preserve-unknown-fields"] is True


# --- RBAC follows the watch mode ------------------------------------------------------


def test_all_mode_grants_exactly_the_reference_rbac_cluster_wide():
    items = objects("botfleet")
    role = one(items, "ClusterRole")
    assert not of_kind(items, "Role") and not of_kind(items, "RoleBinding")
    assert grants(role["rules"]) == reference_grants()
    binding = one(items, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]}
    account = one(items, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "botfleet-system"}]


def test_rbac_covers_every_kind_the_operator_touches():
    granted = grants(one(objects("botfleet"), "ClusterRole")["rules"])
    for kind, resource in RESOURCES.items():
        if kind == "KopfPeering":  # namespaces mode only (below)
            continue
        # Events are only ever posted (about a Bot), never read back.
        verb = "create" if kind == "Event" else "get"
        assert (resource.group, resource.plural, verb) in granted, kind
    for group, _, plural in CHILD_RESOURCES:
        # Watched, listed and deleted (pruning), patched (server-side apply and its dry runs).
        assert {(group, plural, verb) for verb in ("get", "list", "watch", "create", "patch", "delete")} <= granted, plural
    # Existence checks, and the API token Secret created once; never read by listing.
    assert {g for g in granted if g[1] == "secrets"} == {("", "secrets", "get"), ("", "secrets", "create")}
    assert {("botfleet.io", "bots", "patch"), ("botfleet.io", "bots/status", "patch"), ("", "events", "create")} <= granted
    assert {("kopf.dev", "clusterkopfpeerings", verb) for verb in ("get", "list", "watch", "patch")} <= granted
    namespaced = grants(of_kind(objects("botfleet", NAMESPACED), "Role")[0]["rules"])
    assert {("kopf.dev", "kopfpeerings", verb) for verb in ("get", "list", "watch", "patch")} <= namespaced


def test_no_peering_grants_without_peering():
    standalone = {"operator": {"peering": False, "replicas": 1}}
    for values in (standalone, {**NAMESPACED, **standalone}):
        for role in of_kind(objects("botfleet", values), "ClusterRole") + of_kind(objects("botfleet", values), "Role"):
            assert not [g for g in grants(role["rules"]) if g[0] == "kopf.dev"]


@pytest.mark.parametrize("values", [NAMESPACED, load_values(CHART / "ci/all-features-values.yaml")], ids=["namespaces", "all-features"])
def test_namespaces_mode_grants_only_inside_the_watched_namespaces(values):
    watched = values["watch"]["namespaces"]
    items = objects("botfleet", values)
    roles, bindings = of_kind(items, "Role"), of_kind(items, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(watched)
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(watched)
    account = one(items, "ServiceAccount")["metadata"]
    for role, binding in zip(roles, bindings, strict=True):
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}]
    cluster_role = one(items, "ClusterRole")
    cluster_grants = grants(cluster_role["rules"])
    assert not {(g, r) for g, r, _ in cluster_grants} & NAMESPACED_RESOURCES
    assert cluster_grants == {
        ("apiextensions.k8s.io", "customresourcedefinitions", "get"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
    }
    assert one(items, "ClusterRoleBinding")["roleRef"]["name"] == cluster_role["metadata"]["name"]
    # Together they grant what the operator needs, no more (peering in the namespaces).
    for role in roles:
        assert grants(role["rules"]) | cluster_grants == reference_grants(peering=NAMESPACED_PEERING_RULE)


def test_no_rbac_when_disabled():
    items = objects("botfleet", {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "existing"}})
    assert not {o["kind"] for o in items} & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "ServiceAccount"}
    assert one(items, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "existing"


# --- the Deployment -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "scope"),
    [({}, ["--all-namespaces"]), (NAMESPACED, ["--namespace=bots", "--namespace=bots-staging"])],
    ids=["all", "namespaces"],
)
def test_the_operator_cli_accepts_the_args_and_watches_what_rbac_allows(values, scope):
    args = container(objects("botfleet", values))["args"]
    command = kopf_arguments(args)  # the operator's own parser: unknown args exit
    assert [a for a in command if a.startswith(("--all-namespaces", "--namespace"))] == scope
    assert "--peering=botfleet-operator" in command and "--log-format=json" in command
    # Each replica draws its own priority (kopf pauses every peer of a tied priority).
    priorities = {next(a for a in kopf_arguments(args) if a.startswith("--priority=")) for _ in range(5)}
    assert len(priorities) > 1


def test_peering_elects_one_of_the_replicas_through_the_charts_peering_object():
    for values, kind, namespaces in [({}, "ClusterKopfPeering", [None]), (NAMESPACED, "KopfPeering", ["bots", "bots-staging"])]:
        items = objects("botfleet", values)
        peerings = of_kind(items, kind)
        assert [p["metadata"].get("namespace") for p in peerings] == namespaces
        name = one(items, "Deployment")["metadata"]["name"]
        assert {p["metadata"]["name"] for p in peerings} == {name}
        assert f"--peering={name}" in container(items)["args"]
        # kopf's identity among the peers is the pod's name.
        (pod_id,) = [e for e in container(items)["env"] if e["name"] == "POD_ID"]
        assert pod_id["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_standalone_is_one_replica_recreated():
    items = objects("botfleet", {"operator": {"peering": False, "replicas": 1}})
    deployment = one(items, "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "--standalone" in container(items)["args"]
    assert not [o for o in items if o["kind"].endswith("KopfPeering")]
    with pytest.raises(helm_python.HelmRenderError, match="operator.replicas above 1 needs operator.peering"):
        render("botfleet", {"operator": {"peering": False}})


def test_settings_reach_the_operator_and_extra_env_wins():
    values = {"operator": {"resyncSeconds": 30, "retryBaseSeconds": 2, "peeringLifetimeSeconds": 90}, "bindAddress": {"metrics": "127.0.0.1", "health": "::"}}
    operator = container(objects("botfleet", values))
    env = {e["name"]: e.get("value") for e in operator["env"]}
    assert (env["BOTFLEET_RESYNC_SECONDS"], env["BOTFLEET_RETRY_BASE_SECONDS"], env["BOTFLEET_PEERING_LIFETIME"]) == ("30", "2", "90")
    assert env["BOTFLEET_METRICS_ADDRESS"] == "127.0.0.1"
    assert "--liveness=http://[::]:8080/healthz" in operator["args"]
    # A variable in extraEnv replaces the chart's own rather than duplicating it.
    overridden = container(objects("botfleet", {"extraEnv": [{"name": "BOTFLEET_RESYNC_SECONDS", "value": "15"}]}))
    assert [e for e in overridden["env"] if e["name"] == "BOTFLEET_RESYNC_SECONDS"] == [{"name": "BOTFLEET_RESYNC_SECONDS", "value": "15"}]


@pytest.mark.parametrize("path", values_files("botfleet"), ids=lambda p: p.stem)
def test_deployment_is_restricted_replicated_and_rolls_without_a_gap(path):
    values = load_values(path)
    items = objects("botfleet", values)
    deployment = one(items, "Deployment")
    assert deployment["spec"]["replicas"] == values.get("operator", {}).get("replicas", 2) >= 2
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = deployment["spec"]["template"]["spec"]
    if not values.get("affinity"):  # the standby replica prefers another node
        (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    operator = container(items)
    assert operator["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert operator["resources"]["requests"] and operator["resources"]["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert operator["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    # kopf serves liveness where --liveness says; the operator serves /readyz and /metrics on BOTFLEET_METRICS_PORT.
    addresses = {"health": "0.0.0.0", "metrics": "0.0.0.0", **values.get("bindAddress", {})}
    host = f"[{addresses['health']}]" if ":" in addresses["health"] else addresses["health"]
    assert f"--liveness=http://{host}:{ports['health']}/healthz" in operator["args"]
    env = {e["name"]: e.get("value") for e in operator["env"]}
    assert env["BOTFLEET_METRICS_PORT"] == str(ports["metrics"]) and env["BOTFLEET_METRICS_ADDRESS"] == addresses["metrics"]
    for name in ("BOTFLEET_RETRY_BASE_SECONDS", "BOTFLEET_RESYNC_SECONDS", "BOTFLEET_PEERING_LIFETIME"):
        float(env[name])  # the operator parses them as numbers
    service = one(items, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": ports["metrics"], "targetPort": "metrics", "protocol": "TCP"}]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_all_features_reach_the_pod():
    values = load_values(CHART / "ci/all-features-values.yaml")
    items = objects("botfleet", values)
    deployment = one(items, "Deployment")
    pod = deployment["spec"]["template"]
    operator = container(items)
    assert operator["image"] == f"{values['image']['repository']}@{values['image']['digest']}"
    assert operator["imagePullPolicy"] == "Always"
    assert pod["spec"]["imagePullSecrets"] == values["imagePullSecrets"]
    assert pod["spec"]["nodeSelector"] == values["nodeSelector"] and pod["spec"]["tolerations"] == values["tolerations"]
    assert pod["spec"]["affinity"] == values["affinity"] and pod["spec"]["priorityClassName"] == values["priorityClassName"]
    assert pod["metadata"]["annotations"] == values["podAnnotations"]
    assert values["podLabels"].items() <= pod["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert all(e in operator["env"] for e in values["extraEnv"])
    assert {"--log-format=plain", "--verbose"} <= set(operator["args"])
    assert operator["livenessProbe"]["periodSeconds"] == 30 and operator["readinessProbe"]["timeoutSeconds"] == 2
    account = one(items, "ServiceAccount")
    assert account["metadata"]["name"] == pod["spec"]["serviceAccountName"] == "fleet-operator"
    assert account["metadata"]["annotations"] == values["serviceAccount"]["annotations"]
    assert all(o["metadata"]["name"].startswith("fleet") for o in items)


def test_default_image_is_the_app_version():
    with helm_python.Chart.load(str(CHART)) as chart:
        version = chart.metadata["appVersion"]
    assert version == "0.1.0"
    assert container(objects("botfleet"))["image"] == f"botfleet/operator:{version}"


def test_disruption_budget_never_blocks_a_drain():
    for path in values_files("botfleet"):
        items = objects("botfleet", load_values(path))
        budget = one(items, "PodDisruptionBudget")["spec"]
        replicas = one(items, "Deployment")["spec"]["replicas"]
        assert ("minAvailable" in budget) != ("maxUnavailable" in budget)
        if "minAvailable" in budget:
            assert budget["minAvailable"] < replicas  # a drain can always evict one
        else:
            assert budget["maxUnavailable"] == 1 or budget["maxUnavailable"].endswith("%")
        assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert one(objects("botfleet"), "PodDisruptionBudget")["spec"]["minAvailable"] == 1  # two replicas
    single = one(objects("botfleet", {"operator": {"replicas": 1}}), "PodDisruptionBudget")["spec"]
    assert single["maxUnavailable"] == 1 and "minAvailable" not in single
    with pytest.raises(helm_python.HelmRenderError, match="podDisruptionBudget.minAvailable"):
        render("botfleet", {"podDisruptionBudget": {"minAvailable": 2}})
    assert not of_kind(objects("botfleet", {"podDisruptionBudget": {"enabled": False}}), "PodDisruptionBudget")


# --- metrics, alerts, dashboards ------------------------------------------------------


def test_prometheus_operator_objects_are_opt_in():
    kinds = {o["kind"] for o in objects("botfleet")}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}
    assert not [o for o in of_kind(objects("botfleet"), "ConfigMap") if "grafana_dashboard" in o["metadata"]["labels"]]


def test_service_monitor_scrapes_the_operator_as_the_alerts_expect():
    values = {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}, "interval": "15s"}}}
    items = objects("botfleet", values, name="acme")  # a release name unlike k8s/base's (botfleet)
    monitor = one(items, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["interval"] == "15s"
    (job,) = [r["replacement"] for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
    assert f'job="{job}"' in ALERTS.read_text()


def test_prometheus_rule_groups_are_the_alerts_file_groups():
    values = {"prometheusRule": {"enabled": True, "additionalLabels": {"release": "prom"}}}
    rule = one(objects("botfleet", values), "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    assert rule["metadata"]["labels"]["release"] == "prom"


def dashboard_maps(values):
    return [o for o in of_kind(objects("botfleet", values), "ConfigMap") if all(k.endswith(".json") for k in o["data"])]


def test_one_dashboard_config_map_per_dashboard_file():
    assert DASHBOARDS, "charts/botfleet/files/dashboards/*.json is empty"
    maps = dashboard_maps({"dashboards": {"enabled": True}})
    assert len(maps) == len(DASHBOARDS) == len({m["metadata"]["name"] for m in maps})
    by_file = {key: m for m in maps for key in m["data"]}
    assert sorted(by_file) == [p.name for p in DASHBOARDS]
    for path in DASHBOARDS:
        config_map = by_file[path.name]
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["namespace"] == "botfleet-system"
        assert "annotations" not in config_map["metadata"]
        dashboard = json.loads(config_map["data"][path.name])
        assert dashboard == json.loads(path.read_text())
        assert dashboard.get("panels") or dashboard.get("rows"), path.name


def test_dashboard_label_folder_and_namespace_are_configurable():
    values = load_values(CHART / "ci/all-features-values.yaml")
    settings = values["dashboards"]
    maps = dashboard_maps(values)
    assert len(maps) == len(DASHBOARDS)
    for config_map in maps:
        metadata = config_map["metadata"]
        assert metadata["labels"][settings["label"]] == settings["labelValue"]
        assert settings["additionalLabels"].items() <= metadata["labels"].items()
        assert metadata["annotations"] == {settings["folderAnnotation"]: settings["folder"]}
        assert metadata["namespace"] == settings["namespace"]


def test_everything_on_renders_each_kind_once_per_purpose():
    kinds = sorted(o["kind"] for o in objects("botfleet", EVERYTHING) if o["kind"] != "ConfigMap")
    assert kinds == sorted(["ClusterKopfPeering", "ClusterRole", "ClusterRoleBinding", "Deployment", "PodDisruptionBudget", "PrometheusRule", "Service", "ServiceAccount", "ServiceMonitor"])


def test_notes_follow_the_watch_mode():
    notes = render("botfleet", NAMESPACED)["botfleet/templates/NOTES.txt"]
    assert "only in: bots, bots-staging" in notes and "kubectl apply -n bots " in notes
    assert "every namespace" in render("botfleet")["botfleet/templates/NOTES.txt"]
