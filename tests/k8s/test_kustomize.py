"""The kustomize tree (k8s/base, k8s/overlays/*): every build is valid for the oldest and
newest supported Kubernetes, every Bot is one the API server admits, the operator's
manifests are the chart's (generated, and up to date), and the overlays differ the way
dev, staging and prod must."""

from __future__ import annotations

import base64
import re

import pytest
import yaml
from k8s_support import (
    BOT_NAMESPACE,
    BUILDS,
    OPERATOR_NAMESPACE,
    OVERLAYS,
    ROOT,
    SUPPORTED_KUBERNETES,
    bot_children,
    build,
    chart_support,
    kubectl,
    of_kind,
    one,
    operator_container,
    operator_deployment,
    render_manifests_module,
    the_bot,
    validate_objects,
    without_managed_by,
)

from botfleet_operator.main import kopf_arguments

HOSTS = {"dev": "demo.dev.botfleet.example", "staging": "demo.staging.botfleet.example", "prod": "demo.botfleet.example"}
ISSUERS = {"staging": "letsencrypt-staging", "prod": "letsencrypt-prod"}
IMAGES = ("botfleet/operator", "botfleet/rasa", "botfleet/action-server", "botfleet/model-serving", "botfleet/gateway")
COMPONENTS = {"rasa": "rasa", "actions": "actionServer", "model-serving": "modelServing", "gateway": "gateway"}
PROD_WATCHED = ["bots"]


def images(items):
    """{repository: full reference} of the operator's and the Bot's images."""
    spec = the_bot(items)["spec"]
    found = [operator_container(items)["image"]] + [spec[field]["image"] for field in COMPONENTS.values()]
    return {re.split(r"[:@]", image, maxsplit=1)[0]: image for image in found}


def grants(rules):
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


# --- every build ------------------------------------------------------------------------


def test_kubectl_is_installed():
    assert kubectl()


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES)
@pytest.mark.parametrize("name", BUILDS)
def test_every_built_object_validates(name, version):
    items = build(name)
    assert items
    chart_support.check_names(items)
    validate_objects(items, version)
    keys = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in items]
    assert len(keys) == len(set(keys)), "an object is built twice"


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES)
@pytest.mark.parametrize("name", BUILDS)
def test_what_the_operator_makes_of_each_bot_validates(name, version):
    """The Bot is admitted, and the children the operator renders for it are valid."""
    bot = the_bot(build(name))
    assert bot["metadata"]["namespace"] == BOT_NAMESPACE
    children = bot_children(bot)
    assert {o["kind"] for o in children} >= {"ConfigMap", "Deployment", "Service"}
    validate_objects(children, version)


@pytest.mark.parametrize("name", BUILDS)
def test_namespaces_enforce_the_restricted_pod_security_standard(name):
    items = build(name)
    namespaces = {n["metadata"]["name"]: n["metadata"]["labels"] for n in of_kind(items, "Namespace")}
    assert set(namespaces) == {OPERATOR_NAMESPACE, BOT_NAMESPACE}
    for labels in namespaces.values():
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in items:  # nothing lands in a namespace the build does not create
        assert obj["metadata"].get("namespace") in {None, *namespaces}, obj["metadata"]


# --- one source for each part --------------------------------------------------------


def test_the_base_takes_the_crd_and_the_demo_bot_from_their_files():
    items = build("base")
    crds = {c["metadata"]["name"]: c for c in of_kind(items, "CustomResourceDefinition")}
    assert set(crds) == {"bots.botfleet.io", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    for name, built in crds.items():
        assert built == yaml.safe_load((ROOT / f"k8s/crds/{name}.yaml").read_text()), name
    crd = crds["bots.botfleet.io"]
    example = yaml.safe_load((ROOT / "k8s/examples/demo-bot.yaml").read_text())
    bot = the_bot(items)
    assert bot["metadata"] == {**example["metadata"], "namespace": BOT_NAMESPACE}
    # The one addition: model serving's and the gateway's images, spelt out (they are
    # the CRD's defaults) so the overlays can pin them.
    assert bot["spec"] == {**example["spec"], "modelServing": {"image": "botfleet/model-serving:0.1.0"}, "gateway": {"image": "botfleet/gateway:0.1.0"}}
    for field in ("modelServing", "gateway"):
        crd_default = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][field]
        assert crd_default["properties"]["image"]["default"] == bot["spec"][field]["image"]


def test_the_base_operator_is_exactly_the_charts_default_render():
    """`helm install botfleet charts/botfleet -n botfleet-system` and `kubectl apply -k
    k8s/base` install the same operator (only the managed-by label says who applied it)."""
    built = [o for o in build("base") if o["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "botfleet-operator"]
    chart = chart_support.objects("botfleet")

    def key(o):
        return (o["kind"], o["metadata"]["name"])

    assert sorted(map(key, built)) == sorted(map(key, chart))
    for obj in built:
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kustomize", key(obj)
        (rendered,) = [o for o in chart if key(o) == key(obj)]
        assert without_managed_by(obj) == without_managed_by(rendered), key(obj)


def test_the_generated_manifests_are_up_to_date():
    module = render_manifests_module()
    expected = module.render_all()
    assert set(expected) == {"k8s/base/botfleet-operator.yaml", "k8s/components/operator-monitoring/botfleet-operator-monitoring.yaml", "k8s/overlays/prod/botfleet-operator-rbac.yaml"}
    for path, text in expected.items():
        assert text.startswith("# generated by ci/render_manifests.py, do not edit"), path
        assert (ROOT / path).read_text() == text, f"{path} is stale: run .venvs/operator/bin/python ci/render_manifests.py"
    assert module.render_all() == expected, "the render is not deterministic"
    assert module.main(["--check"]) == 0


def test_the_check_notices_a_stale_file(monkeypatch, capsys):
    module = render_manifests_module()
    fresh = module.render_all()
    path = "k8s/base/botfleet-operator.yaml"
    monkeypatch.setattr(module, "render_all", lambda: {**fresh, path: fresh[path].replace("replicas: 2", "replicas: 3")})
    assert module.main(["--check"]) == 1
    assert path in capsys.readouterr().err


# --- how the overlays differ ---------------------------------------------------------


def test_replicas_and_autoscaling():
    dev, staging, prod = (the_bot(build(o))["spec"] for o in OVERLAYS)
    for field in COMPONENTS.values():
        assert dev[field]["replicas"] == 1 and not dev[field].get("autoscaling", {}).get("enabled")
    assert staging["rasa"]["replicas"] == 2 and staging["rasa"]["autoscaling"]["enabled"]
    assert staging["actionServer"]["autoscaling"]["enabled"]
    assert prod["rasa"]["replicas"] >= 3
    assert {k: prod["rasa"]["autoscaling"][k] for k in ("enabled", "minReplicas", "maxReplicas")} == {"enabled": True, "minReplicas": 3, "maxReplicas": 10}
    # What the operator renders from them.
    hpas = {name: {h["metadata"]["name"]: h["spec"] for h in of_kind(bot_children(the_bot(build(name))), "HorizontalPodAutoscaler")} for name in OVERLAYS}
    assert hpas["dev"] == {}
    assert (hpas["staging"]["demo-support-rasa"]["minReplicas"], hpas["staging"]["demo-support-rasa"]["maxReplicas"]) == (2, 4)
    assert (hpas["prod"]["demo-support-rasa"]["minReplicas"], hpas["prod"]["demo-support-rasa"]["maxReplicas"]) == (3, 10)


def test_resources_grow_from_dev_to_prod():
    def memory_mi(quantity):
        number, unit = re.fullmatch(r"([0-9]+)(Mi|Gi)", quantity).groups()
        return int(number) * (1024 if unit == "Gi" else 1)

    requests = {o: the_bot(build(o))["spec"]["rasa"]["resources"]["requests"]["memory"] for o in OVERLAYS}
    assert memory_mi(requests["dev"]) < memory_mi(requests["staging"]) < memory_mi(requests["prod"])


def test_prod_keeps_every_component_available_and_spread_over_zones():
    children = bot_children(the_bot(build("prod")))
    budgets = {b["metadata"]["name"]: b["spec"] for b in of_kind(children, "PodDisruptionBudget")}
    assert set(budgets) == {f"demo-support-{c}" for c in COMPONENTS}
    assert all(b["maxUnavailable"] == 1 for b in budgets.values())
    deployments = of_kind(children, "Deployment")
    assert len(deployments) == len(COMPONENTS)
    for deployment in deployments:
        pod = deployment["spec"]["template"]
        constraints = {c["topologyKey"]: c for c in pod["spec"]["topologySpreadConstraints"]}
        zone = constraints["topology.kubernetes.io/zone"]
        assert zone["whenUnsatisfiable"] == "DoNotSchedule" and zone["maxSkew"] == 1
        # The constraint counts this Bot's pods only (one component each, by matchLabelKeys).
        assert zone["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        assert "app.kubernetes.io/component" in zone["matchLabelKeys"]
    assert not of_kind(bot_children(the_bot(build("dev"))), "PodDisruptionBudget")


def test_hosts_and_tls():
    for name in OVERLAYS:
        ingress = the_bot(build(name))["spec"]["ingress"]
        assert ingress["enabled"] and ingress["host"] == HOSTS[name]
        (rendered,) = of_kind(bot_children(the_bot(build(name))), "Ingress")
        assert [r["host"] for r in rendered["spec"]["rules"]] == [HOSTS[name]]
        if name == "dev":
            assert "tls" not in ingress and "tls" not in rendered["spec"]
            assert "cert-manager.io/cluster-issuer" not in ingress.get("annotations", {})
        else:
            assert ingress["annotations"]["cert-manager.io/cluster-issuer"] == ISSUERS[name]
            assert rendered["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == ISSUERS[name]
            assert rendered["spec"]["tls"] == [{"hosts": [HOSTS[name]], "secretName": ingress["tls"]["secretName"]}]


def referenced_secrets(spec):
    """{Secret name: keys the Bot reads from it (None: every key)}."""
    found = {}
    for ref in (spec.get("secrets", {}).get("apiTokenFrom"), spec["stores"].get("analytics", {}).get("databaseUrlFrom")):
        if ref:
            found.setdefault(ref["name"], set()).add(ref["key"])
    credentials = [c.get("credentialsFrom", {}) for c in spec["channels"]] + [spec["stores"]["eventBroker"].get("credentialsFrom", {})]
    for source in credentials:
        if "secretName" in source:
            found[source["secretName"]] = None
    return found


def test_dev_secrets_are_generated_placeholders_for_every_secret_the_bot_reads():
    items = build("dev")
    spec = the_bot(items)["spec"]
    assert spec.get("secrets", {}).get("provider", "kubernetes") == "kubernetes"
    secrets = {s["metadata"]["name"]: s for s in of_kind(items, "Secret")}
    wanted = referenced_secrets(spec)
    assert set(wanted) == set(secrets), "every referenced Secret is generated, and nothing else"
    for name, keys in wanted.items():
        secret = secrets[name]
        assert secret["metadata"]["namespace"] == BOT_NAMESPACE
        assert keys is None or keys <= set(secret["data"]), name
        for key, value in secret["data"].items():
            assert "dev" in base64.b64decode(value).decode() or key == "USERNAME", f"{name}.{key} must look like a dev placeholder"
    # The event broker's credentials arrive as EVENTBROKER_<key>: the config reads these two.
    assert set(secrets[spec["stores"]["eventBroker"]["credentialsFrom"]["secretName"]]["data"]) == {"USERNAME", "PASSWORD"}


@pytest.mark.parametrize("name", ["staging", "prod"])
def test_staging_and_prod_take_credentials_from_vault(name):
    items = build(name)
    spec = the_bot(items)["spec"]
    assert spec["secrets"]["provider"] == "vault"
    vault = spec["secrets"]["vault"]
    assert vault["role"] and vault["authPath"] == f"auth/kubernetes-{name}"
    assert spec["stores"]["eventBroker"]["credentialsFrom"] == {"vaultPath": f"secret/data/botfleet/{name}/demo-support/rabbitmq"}
    assert not of_kind(items, "Secret"), "no Secret is committed outside dev"
    rasa = one(bot_children(the_bot(items)), "Deployment", "demo-support-rasa")["spec"]["template"]["metadata"]["annotations"]
    assert rasa["vault.hashicorp.com/role"] == vault["role"]
    assert rasa["vault.hashicorp.com/agent-inject-secret-eventbroker"] == spec["stores"]["eventBroker"]["credentialsFrom"]["vaultPath"]


def test_service_monitors_only_where_prometheus_runs():
    for name in OVERLAYS:
        items = build(name)
        monitoring = {o["kind"] for o in items} & {"ServiceMonitor", "PrometheusRule"}
        bot_monitor = the_bot(items)["spec"]["observability"]["serviceMonitor"]
        if name == "dev":
            assert not monitoring and bot_monitor["enabled"] is False
            assert not of_kind(bot_children(the_bot(items)), "ServiceMonitor")
        else:
            assert monitoring == {"ServiceMonitor", "PrometheusRule"}
            assert one(items, "ServiceMonitor")["metadata"]["labels"]["release"] == "kube-prometheus-stack"
            assert bot_monitor["enabled"] is True and bot_monitor["labels"] == {"release": "kube-prometheus-stack"}
            assert one(bot_children(the_bot(items)), "ServiceMonitor")["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_images_dev_tags_staging_versions_prod_digests():
    for name, pattern in [("dev", r":dev"), ("staging", r":[0-9]+\.[0-9]+\.[0-9]+"), ("prod", r":[0-9]+\.[0-9]+\.[0-9]+@sha256:[0-9a-f]{64}")]:
        found = images(build(name))
        assert set(found) == set(IMAGES), name
        for repository, image in found.items():
            assert re.fullmatch(re.escape(repository) + pattern, image), f"{name}: {image}"
    assert operator_container(build("dev"))["imagePullPolicy"] == "Always", "dev is a moving tag"


def test_environment_label_on_every_object_but_never_in_a_selector():
    for name in OVERLAYS:
        for obj in build(name):
            assert obj["metadata"]["labels"]["botfleet.io/environment"] == name, obj["metadata"]["name"]
        assert "botfleet.io/environment" not in operator_deployment(build(name))["spec"]["selector"]["matchLabels"]


def test_operator_verbosity_and_scope():
    scope = {}
    for name in OVERLAYS:
        args = operator_container(build(name))["args"]
        command = kopf_arguments(args)  # the operator's own parser accepts them
        scope[name] = [a for a in command if a.startswith(("--all-namespaces", "--namespace"))]
        assert ("--verbose" in args) == (name == "dev"), name
    assert scope["dev"] == scope["staging"] == ["--all-namespaces"]
    assert scope["prod"] == [f"--namespace={n}" for n in PROD_WATCHED]


def test_prod_operator_rbac_is_the_charts_namespaced_mode():
    """Roles only where the operator watches; cluster-wide, only the reads kopf needs.
    The same objects `helm install` renders with watch.mode=namespaces."""
    items = build("prod")
    rbac_kinds = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    built = [o for o in items if o["kind"] in rbac_kinds]
    chart = [o for o in chart_support.objects("botfleet", {"watch": {"mode": "namespaces", "namespaces": PROD_WATCHED}}) if o["kind"] in rbac_kinds]
    for obj in built:
        obj["metadata"]["labels"].pop("botfleet.io/environment")
    assert sorted(map(without_managed_by, built), key=repr) == sorted(map(without_managed_by, chart), key=repr)
    assert sorted(r["metadata"]["namespace"] for r in of_kind(items, "Role")) == PROD_WATCHED
    cluster = grants(one(items, "ClusterRole")["rules"])
    assert {resource for _, resource, _ in cluster} == {"customresourcedefinitions", "namespaces"}
    assert render_manifests_module().PROD_WATCHED_NAMESPACES == PROD_WATCHED


def test_prod_operator_priority_and_resources():
    pod = operator_deployment(build("prod"))["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert "priorityClassName" not in operator_deployment(build("staging"))["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["memory"] == "768Mi"


def test_overlays_differ_only_where_intended():
    """The overlays keep the base's objects (prod swaps the cluster-wide RBAC for the
    namespaced one; dev adds its Secrets; staging and prod add monitoring)."""
    def keys(items):
        return {(o["kind"], o["metadata"]["name"]) for o in items}

    base = keys(build("base"))
    monitoring = {("ServiceMonitor", "botfleet-operator"), ("PrometheusRule", "botfleet-operator")}
    assert keys(build("dev")) == base | {("Secret", n) for n in ("demo-support-api", "demo-support-db", "rabbitmq-credentials")}
    assert keys(build("staging")) == base | monitoring
    namespaced_rbac = {("ClusterRole", "botfleet-operator-cluster"), ("ClusterRoleBinding", "botfleet-operator-cluster"), ("Role", "botfleet-operator"), ("RoleBinding", "botfleet-operator")}
    cluster_rbac = {("ClusterRole", "botfleet-operator"), ("ClusterRoleBinding", "botfleet-operator")}
    # A namespaced operator elects its active replica in a KopfPeering per namespace.
    cluster_peering, namespaced_peering = {("ClusterKopfPeering", "botfleet-operator")}, {("KopfPeering", "botfleet-operator")}
    assert cluster_peering <= base
    assert keys(build("prod")) == (base - cluster_rbac - cluster_peering) | monitoring | namespaced_rbac | namespaced_peering
