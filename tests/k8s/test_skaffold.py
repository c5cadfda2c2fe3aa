"""skaffold.yaml, without skaffold: its shape against the v4beta11 schema (the fields
used here), every artifact's Dockerfile and build context, every Helm release's chart
and values files, and each profile's releases rendered with the Helm engine the way
`skaffold run -p PROFILE` would install them (skaffold's image templates filled in with
example values), validated for Kubernetes and against the charts' values schemas."""

from __future__ import annotations

import copy
import fnmatch
import re
import shlex
from pathlib import Path

import helm_python
import jsonpatch
import jsonschema
import pytest
import yaml
from k8s_support import (
    ROOT,
    SUPPORTED_KUBERNETES,
    build,
    chart_support,
    of_kind,
    one,
    the_bot,
    validate_objects,
)

from botfleet_operator.crd import validate_bot
from botfleet_operator.main import kopf_arguments

SKAFFOLD = ROOT / "skaffold.yaml"
PROFILES = ("dev", "staging", "prod")
# image -> (build context, Dockerfile within it). The services copy shared code from
# beside their own folder, so they build from the root; model serving is self-contained.
ARTIFACTS = {
    "botfleet/rasa": (".", "services/rasa/Dockerfile"),
    "botfleet/action-server": (".", "services/action-server/Dockerfile"),
    "botfleet/gateway": (".", "services/gateway/Dockerfile"),
    "botfleet/operator": (".", "operator/Dockerfile"),
    "botfleet/model-serving": ("model-serving", "Dockerfile"),
}
RELEASES = {"demo-bot": ("charts/bot", "bots"), "botfleet": ("charts/botfleet", "botfleet-system")}
# Keys of charts/bot that are not part of a Bot's spec.
CHART_ONLY = {"serviceMonitorCRDInstalled", "managedBy"}

# --- the v4beta11 schema, for the parts of it skaffold.yaml uses ------------------------
# Property names as in skaffold's published v4beta11 JSON schema; every object is closed,
# as there, so a misspelt or misplaced key fails here instead of in `skaffold run`.
STRING, BOOLEAN, INTEGER, OBJECT = {"type": "string"}, {"type": "boolean"}, {"type": "integer"}, {"type": "object"}
STRINGS = {"type": "array", "items": STRING}
STRING_MAP = {"type": "object", "additionalProperties": STRING}


def closed(properties, required=()):
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


def array(items):
    return {"type": "array", "items": items}


DOCKER = closed({p: OBJECT for p in ("buildArgs",)} | {p: STRING for p in ("dockerfile", "target", "network", "ssh")}
                | {p: STRINGS for p in ("addHost", "cacheFrom", "cliFlags")} | {p: BOOLEAN for p in ("noCache", "pullParent", "squash")}
                | {"secrets": {"type": "array"}})
ARTIFACT = closed({"image": STRING, "context": STRING, "docker": DOCKER, "sync": OBJECT, "requires": {"type": "array"},
                   "hooks": OBJECT, "platforms": STRINGS, "runtimeType": STRING}, required=["image"])
BUILD = closed({"artifacts": array(ARTIFACT), "insecureRegistries": STRINGS, "tagPolicy": OBJECT, "platforms": STRINGS,
                "local": closed({"push": BOOLEAN, "tryImportMissing": BOOLEAN, "useDockerCLI": BOOLEAN, "useBuildkit": BOOLEAN, "concurrency": INTEGER}),
                "googleCloudBuild": OBJECT, "cluster": OBJECT})
HELM_RELEASE = closed({"name": STRING, "chartPath": STRING, "remoteChart": STRING, "valuesFiles": STRINGS, "namespace": STRING,
                       "version": STRING, "setValues": OBJECT, "setValueTemplates": STRING_MAP, "setFiles": STRING_MAP,
                       "createNamespace": BOOLEAN, "wait": BOOLEAN, "recreatePods": BOOLEAN, "skipBuildDependencies": BOOLEAN,
                       "skipTests": BOOLEAN, "useHelmSecrets": BOOLEAN, "repo": STRING, "upgradeOnChange": BOOLEAN,
                       "overrides": OBJECT, "packaged": OBJECT}, required=["name"])
DEPLOY = closed({"helm": closed({"releases": array(HELM_RELEASE), "flags": OBJECT, "hooks": OBJECT}), "kubectl": OBJECT,
                 "kpt": OBJECT, "docker": OBJECT, "cloudrun": OBJECT, "kubeContext": STRING, "logs": OBJECT,
                 "statusCheck": BOOLEAN, "statusCheckDeadlineSeconds": INTEGER, "tolerateFailuresUntilDeadline": BOOLEAN,
                 "transformableAllowList": {"type": "array"}, "transformableDenyList": {"type": "array"}})
PORT_FORWARD = closed({"resourceType": {"enum": ["service", "pod", "deployment", "replicaset", "statefulset", "daemonset", "job", "cronjob"]},
                       "resourceName": STRING, "namespace": STRING, "port": {"type": ["integer", "string"]},
                       "address": STRING, "localPort": INTEGER}, required=["resourceType", "resourceName", "port"])
PIPELINE = {"build": BUILD, "test": {"type": "array"}, "manifests": OBJECT, "deploy": DEPLOY, "portForward": array(PORT_FORWARD),
            "resourceSelector": OBJECT, "verify": {"type": "array"}, "customActions": {"type": "array"}}
PROFILE = closed({"name": STRING, "requiresAllActivations": BOOLEAN,
                  "activation": array(closed({"env": STRING, "kubeContext": STRING, "command": STRING})),
                  "patches": array(closed({"op": {"enum": ["add", "remove", "replace", "move", "copy", "test"]}, "path": STRING,
                                           "from": STRING, "value": {}}, required=["path"])),
                  **PIPELINE}, required=["name"])
SKAFFOLD_SCHEMA = closed({"apiVersion": {"const": "skaffold/v4beta11"}, "kind": {"const": "Config"},
                          "metadata": closed({"name": STRING, "labels": STRING_MAP, "annotations": STRING_MAP}),
                          "requires": {"type": "array"}, "profiles": array(PROFILE), **PIPELINE}, required=["apiVersion", "kind"])


def config():
    return yaml.safe_load(SKAFFOLD.read_text())


def with_profile(profile):
    """The config as skaffold sees it with `-p profile` (None: no profile): the
    profile's JSON patches applied to the top-level pipeline."""
    raw = config()
    if profile is None:
        return raw
    (chosen,) = [p for p in raw["profiles"] if p["name"] == profile]
    effective = jsonpatch.JsonPatch(chosen["patches"]).apply(raw)
    assert set(chosen) <= {"name", "activation", "patches"}, "this test applies only a profile's patches"
    return effective


def releases(profile):
    return {r["name"]: r for r in with_profile(profile)["deploy"]["helm"]["releases"]}


# --- skaffold's image template variables ---------------------------------------------


def template_name(image):
    """The <artifact-name> part of skaffold's IMAGE_* variables."""
    return re.sub(r"[/.-]", "_", image)


def example_images():
    """The values skaffold gives its per-artifact variables after a build and push."""
    found = {}
    for index, image in enumerate(ARTIFACTS):
        repo, tag, digest = f"registry.example.com/{image}", f"v0.1.0-{index}-gabc1234", "sha256:" + f"{index:x}" * 64
        name = template_name(image)
        found |= {
            f"IMAGE_REPO_{name}": repo, f"IMAGE_TAG_{name}": tag, f"IMAGE_DIGEST_{name}": digest,
            f"IMAGE_FULLY_QUALIFIED_{name}": f"{repo}:{tag}@{digest}",
            f"IMAGE_DOMAIN_{name}": "registry.example.com", f"IMAGE_REPO_NO_DOMAIN_{name}": image,
        }
    return found


TEMPLATE = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


def fill(template, variables):
    unknown = set(TEMPLATE.findall(template)) - set(variables)
    assert not unknown, f"{template}: skaffold defines no {sorted(unknown)} for the declared artifacts"
    return TEMPLATE.sub(lambda m: variables[m.group(1)], template)


# --- Helm's way with values -------------------------------------------------------------


def merge(into, values):
    """Helm's merge of -f files: maps merge key by key, anything else is replaced."""
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
    return into


def set_path(values, dotted, value):
    """Helm's --set a.b.c=value."""
    *parents, last = dotted.split(".")
    for key in parents:
        values = values.setdefault(key, {})
    values[last] = value


def release_values(release):
    """What `helm install` gets from skaffold: the values files in order, then the
    filled-in setValueTemplates and setValues (--set wins over -f)."""
    values = {}
    for path in release.get("valuesFiles", []):
        merge(values, yaml.safe_load((ROOT / path).read_text()) or {})
    variables = example_images()
    for key, template in release.get("setValueTemplates", {}).items():
        set_path(values, key, fill(template, variables))
    for key, value in release.get("setValues", {}).items():
        set_path(values, key, value)
    return values


def render(profile, name):
    release = releases(profile)[name]
    chart, namespace = RELEASES[name]
    values = release_values(release)
    # Helm validates against values.schema.json before rendering; jsonschema agrees.
    chart_key = Path(chart).name
    jsonschema.Draft7Validator(chart_support.schema(chart_key)).validate(chart_support.merged_values(chart_key, values))
    with helm_python.Chart.load(str(ROOT / chart)) as loaded:
        # `helm install` sees the cluster's CRDs; the engine here cannot, so say so.
        rendered = loaded.render({**values, "serviceMonitorCRDInstalled": True} if name == "demo-bot" else values,
                                 name=release["name"], namespace=release["namespace"])
    return values, [d for path, text in sorted(rendered.items()) if path.endswith(".yaml") for d in yaml.safe_load_all(text) if d]


ALL_PROFILES = [None, *PROFILES]
PROFILE_IDS = ["no-profile", *PROFILES]
# The shared values name no database, so `skaffold run` without a profile is refused at
# render time, as any release without one is; every profile says where data goes.


# --- the tests ------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ALL_PROFILES, ids=PROFILE_IDS)
def test_config_matches_the_v4beta11_schema(profile):
    jsonschema.Draft7Validator.check_schema(SKAFFOLD_SCHEMA)
    jsonschema.Draft7Validator(SKAFFOLD_SCHEMA).validate(with_profile(profile))


def test_the_schema_check_notices_a_misplaced_key():
    broken = config()
    broken["deploy"]["helm"]["releases"][0]["values"] = {"rasa": {"replicas": 2}}  # valuesFiles, or setValues
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SKAFFOLD_SCHEMA).validate(broken)


def test_every_image_is_built_from_its_dockerfile_and_context():
    artifacts = {a["image"]: a for a in config()["build"]["artifacts"]}
    assert {image: (a["context"], a["docker"]["dockerfile"]) for image, a in artifacts.items()} == ARTIFACTS
    for image, artifact in artifacts.items():
        dockerfile = ROOT / artifact["context"] / artifact["docker"]["dockerfile"]
        assert dockerfile.is_file(), f"{image}: {dockerfile.relative_to(ROOT)} does not exist"


def copy_sources(dockerfile):
    """The build-context paths a Dockerfile's COPY/ADD lines read (not --from=stage)."""
    for line in dockerfile.read_text().replace("\\\n", " ").splitlines():
        words = shlex.split(line.split("#", 1)[0]) if line.strip().startswith(("COPY", "ADD")) else []
        if not words or any(w.startswith("--from") for w in words):
            continue
        # A build argument with a default (${ARG:-file}) reads the default unless set.
        yield from (re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", w) for w in words[1:-1] if not w.startswith("--"))


def ignored(source, context):
    """Whether the context's .dockerignore keeps `source` out of the build context."""
    ignore = context / ".dockerignore"
    patterns = [p.strip().lstrip("/") for p in ignore.read_text().splitlines() if p.strip() and not p.startswith("#")] if ignore.exists() else []
    parts = Path(source.rstrip("/")).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(prefix, pattern) for pattern in patterns for prefix in prefixes)


def test_every_dockerfile_copies_only_what_its_context_has():
    """A wrong context (or a .dockerignore that drops a needed path) fails `docker
    build` only at that COPY; catch it here."""
    checked = 0
    for artifact in config()["build"]["artifacts"]:
        context = ROOT / artifact["context"]
        dockerfile = context / artifact["docker"]["dockerfile"]
        if not dockerfile.is_file():
            continue  # reported by the test above, with the file's name
        for source in copy_sources(dockerfile):
            assert (context / source).exists(), f"{dockerfile.relative_to(ROOT)} copies {source}, missing from its context"
            assert not ignored(source, context), f"{dockerfile.relative_to(ROOT)} copies {source}, which .dockerignore excludes"
            checked += 1
    assert checked >= 3
    assert ignored("bots/demo/models", ROOT) and ignored(".venvs/operator", ROOT) and not ignored("bots/demo", ROOT)


@pytest.mark.parametrize("profile", ALL_PROFILES, ids=PROFILE_IDS)
def test_charts_and_values_files_exist(profile):
    found = releases(profile)
    assert set(found) == set(RELEASES)
    for name, release in found.items():
        chart, namespace = RELEASES[name]
        assert release["chartPath"] == chart and (ROOT / chart / "Chart.yaml").is_file(), name
        assert release["namespace"] == namespace and release["createNamespace"] is True, name
        for path in release.get("valuesFiles", []):
            assert (ROOT / path).is_file(), f"{name}: {path} does not exist"


def test_each_profile_adds_its_own_values_file_to_each_release():
    base = releases(None)
    for profile in PROFILES:
        for name, release in releases(profile).items():
            added = release["valuesFiles"][len(base[name]["valuesFiles"]):]
            assert release["valuesFiles"][: len(base[name]["valuesFiles"])] == base[name]["valuesFiles"]
            assert added == [f"k8s/skaffold/{profile}-{name}-values.yaml"], (profile, name)
    # Every values file under k8s/skaffold is used by some profile.
    used = {path for profile in ALL_PROFILES for r in releases(profile).values() for path in r.get("valuesFiles", [])}
    assert {str(p.relative_to(ROOT)) for p in (ROOT / "k8s/skaffold").glob("*.yaml")} == used


def test_profiles_pick_their_cluster():
    profiles = {p["name"]: p for p in config()["profiles"]}
    assert set(profiles) == set(PROFILES)
    assert profiles["dev"]["activation"] == [{"command": "dev"}]
    assert "kubeContext" not in with_profile("dev")["deploy"], "dev runs on whatever local cluster is current"
    assert with_profile("staging")["deploy"]["kubeContext"] == "botfleet-staging"
    assert with_profile("prod")["deploy"]["kubeContext"] == "botfleet-prod"


def test_every_built_image_is_deployed_through_a_template():
    """Each artifact's IMAGE_* variables appear in some release, so skaffold deploys
    exactly what it built (a fixed image would silently run an old build)."""
    templates = " ".join(t for r in releases(None).values() for t in r.get("setValueTemplates", {}).values())
    for image in ARTIFACTS:
        assert re.search(r"\.IMAGE_[A-Z_]+?_" + template_name(image) + r"\b", templates), image
    for template in TEMPLATE.findall(templates):
        assert template in example_images(), template


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES)
@pytest.mark.parametrize("profile", PROFILES)
def test_each_profile_renders_valid_objects(profile, version):
    for name in RELEASES:
        _, items = render(profile, name)
        assert items, name
        chart_support.check_names(items)
        validate_objects(items, version)


@pytest.mark.parametrize("profile", PROFILES)
def test_the_built_images_reach_the_pods(profile):
    variables = example_images()
    _, operator = render(profile, "botfleet")
    (container,) = one(operator, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{variables['IMAGE_REPO_botfleet_operator']}:{variables['IMAGE_TAG_botfleet_operator']}"
    _, bot = render(profile, "demo-bot")
    images = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"] for d in of_kind(bot, "Deployment")}
    assert images == {
        "demo-bot-rasa": variables["IMAGE_FULLY_QUALIFIED_botfleet_rasa"],
        "demo-bot-actions": variables["IMAGE_FULLY_QUALIFIED_botfleet_action_server"],
        "demo-bot-model-serving": variables["IMAGE_FULLY_QUALIFIED_botfleet_model_serving"],
        "demo-bot-gateway": variables["IMAGE_FULLY_QUALIFIED_botfleet_gateway"],
    }


@pytest.mark.parametrize("profile", PROFILES)
def test_the_demo_bots_values_are_a_bot_the_api_server_admits(profile):
    """So the skaffold path runs a bot the operator path could run too."""
    values, _ = render(profile, "demo-bot")
    spec = {k: v for k, v in values.items() if k not in CHART_ONLY}
    assert validate_bot({"apiVersion": "botfleet.io/v1alpha1", "kind": "Bot", "metadata": {"name": "demo-bot"}, "spec": spec}) == []


def test_without_a_profile_the_demo_bot_is_refused_for_want_of_a_database():
    with pytest.raises(helm_python.errors.HelmRenderError, match="stores.analytics"):
        render(None, "demo-bot")


def test_shared_demo_bot_values_are_the_examples():
    shared = yaml.safe_load((ROOT / "k8s/skaffold/demo-bot-values.yaml").read_text())
    example = yaml.safe_load((ROOT / "k8s/examples/demo-bot.yaml").read_text())["spec"]
    assert shared["model"] == example["model"] and shared["channels"] == example["channels"]
    assert shared["actionServer"]["env"] == example["actionServer"]["env"]


@pytest.mark.parametrize("profile", PROFILES)
def test_port_forwards_reach_rendered_services(profile):
    services = {}
    for name in RELEASES:
        _, items = render(profile, name)
        for service in of_kind(items, "Service"):
            services[(releases(profile)[name]["namespace"], service["metadata"]["name"])] = {p["port"] for p in service["spec"]["ports"]}
    forwards = with_profile(profile)["portForward"]
    assert {f["port"] for f in forwards} == {8080, 5005, 5055, 8000}
    for forward in forwards:
        assert forward["resourceType"] == "service"
        key = (forward["namespace"], forward["resourceName"])
        assert key in services, f"no Service {key} in the rendered releases"
        assert forward["port"] in services[key], forward


# --- the profiles are the same environments as the kustomize overlays ------------------


@pytest.mark.parametrize("profile", ["staging", "prod"])
def test_staging_and_prod_profiles_match_their_overlays(profile):
    values, items = render(profile, "demo-bot")
    overlay = the_bot(build(profile))["spec"]
    for field in ("rasa", "actionServer", "modelServing"):
        assert values[field]["replicas"] == overlay[field]["replicas"], field
        assert values[field].get("autoscaling") == overlay[field].get("autoscaling"), field
    assert {k: values["ingress"][k] for k in ("host", "annotations", "tls")} == {k: overlay["ingress"][k] for k in ("host", "annotations", "tls")}
    assert values["secrets"]["provider"] == overlay["secrets"]["provider"] == "vault"
    assert values["secrets"]["vault"] == overlay["secrets"]["vault"]
    assert values["stores"]["eventBroker"]["credentialsFrom"] == overlay["stores"]["eventBroker"]["credentialsFrom"]
    assert values["observability"]["serviceMonitor"]["enabled"] is True
    assert one(items, "ServiceMonitor")["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (ingress,) = of_kind(items, "Ingress")
    assert ingress["spec"]["tls"][0]["hosts"] == [overlay["ingress"]["host"]]


def test_dev_profile_runs_on_a_bare_cluster():
    values, items = render("dev", "demo-bot")
    assert values["stores"]["tracker"]["type"] == values["stores"]["lockStore"]["type"] == "memory"
    assert values["stores"]["eventBroker"]["type"] == "none"
    env = [e for d in of_kind(items, "Deployment") for c in d["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])]
    # The only Secret is the API token, which the chart itself generates.
    needed = {e["valueFrom"]["secretKeyRef"]["name"] for e in env if "secretKeyRef" in e.get("valueFrom", {})}
    assert needed == {"demo-bot-api-token"}, "dev must not need any Secret it does not bring"
    assert [s["metadata"]["name"] for s in of_kind(items, "Secret")] == ["demo-bot-api-token"]
    assert not of_kind(items, "Ingress") and not of_kind(items, "ServiceMonitor")
    assert all(d["spec"]["replicas"] == 1 for d in of_kind(items, "Deployment"))


@pytest.mark.parametrize("profile", PROFILES)
def test_the_operator_matches_its_overlay(profile):
    """Same watch scope, verbosity, priority and monitoring as k8s/overlays/<profile>."""
    _, items = render(profile, "botfleet")
    (container,) = one(items, "Deployment")["spec"]["template"]["spec"]["containers"]
    overlay = build(profile)
    overlay_deployment = one(overlay, "Deployment", "botfleet-operator")
    (overlay_container,) = overlay_deployment["spec"]["template"]["spec"]["containers"]

    def scope(args):
        return [a for a in kopf_arguments(args) if a.startswith(("--all-namespaces", "--namespace", "--verbose"))]

    assert scope(container["args"]) == scope(overlay_container["args"])
    assert container["resources"] == overlay_container["resources"]
    pod, overlay_pod = one(items, "Deployment")["spec"]["template"]["spec"], overlay_deployment["spec"]["template"]["spec"]
    assert pod.get("priorityClassName") == overlay_pod.get("priorityClassName")
    kinds = {o["kind"] for o in items} & {"ServiceMonitor", "PrometheusRule", "Role"}
    assert kinds == {o["kind"] for o in overlay} & {"ServiceMonitor", "PrometheusRule", "Role"}
