#!/usr/bin/env bash
# The whole test suite: `make test` and CI run exactly this.
#   ci/test.sh        lint, bot data validation, unit tests per service, end-to-end tests
#   ci/test.sh lint   lint only
# Each service's tests run in that service's venv; the closing line sums all of them.
set -uo pipefail
cd "$(dirname "$0")/.."
RASA=.venvs/rasa/bin ACTIONS=.venvs/actions/bin DEV=.venvs/dev/bin OPERATOR=.venvs/operator/bin SERVING=.venvs/serving/bin GATEWAY=.venvs/gateway/bin
REPORTS=.run/test-reports
rm -rf "$REPORTS" && mkdir -p "$REPORTS"
failed=0
step() { echo; echo "==> $*"; }

step "ruff"
$DEV/ruff check services operator model-serving ci tests || failed=1
step "mypy (rasa services)"
(cd services && ../$RASA/mypy --config-file ../pyproject.toml common/botfleet_common rasa/botfleet_rasa) || failed=1
step "mypy (action server)"
(cd services && ../$ACTIONS/mypy --config-file ../pyproject.toml action-server/botfleet_actions) || failed=1
step "mypy (operator)"
(cd operator && ../$OPERATOR/mypy --config-file ../pyproject.toml botfleet_operator) || failed=1
step "mypy (model serving)"
(cd model-serving && ../$SERVING/mypy --config-file ../pyproject.toml botfleet_serving) || failed=1
# From the package's own folder: the venv's editable install is an import hook mypy
# cannot follow, so botfleet_gateway's modules would otherwise be typed as Any.
step "mypy (gateway)"
(cd services/gateway && MYPYPATH=../common ../../$GATEWAY/mypy --config-file ../../pyproject.toml botfleet_gateway) || failed=1
[ "${1:-}" = lint ] && exit $failed

step "rasa data validate"
(cd bots/demo && ../../$RASA/rasa data validate --fail-on-warnings --config config.yml --domain domain.yml --data data) || failed=1

step "unit tests: common + action server"
$ACTIONS/pytest -q tests/common tests/actions --junitxml=$REPORTS/actions.xml || failed=1
step "unit tests: rasa components and stores"
$RASA/pytest -q tests/rasa --junitxml=$REPORTS/rasa.xml || failed=1
step "gateway: adapters (against Rasa's connectors), routing, stickiness on Redis, forwarding, socket.io"
$GATEWAY/pytest -q tests/gateway --junitxml=$REPORTS/gateway.xml || failed=1
step "operator: CRD, builders, kopf against kmock"
$OPERATOR/pytest -q -p kmock -o asyncio_mode=auto tests/operator --junitxml=$REPORTS/operator.xml || failed=1
step "k8s: kustomize overlays, generated manifests, skaffold"
$OPERATOR/pytest -q tests/k8s --junitxml=$REPORTS/k8s.xml || failed=1
step "charts: lint, render every values file, validate, values schemas"
$OPERATOR/pytest -q tests/charts --junitxml=$REPORTS/charts.xml || failed=1
step "observability: promtool rules and unit tests, dashboards, log shipping"
$DEV/pytest -q tests/observability --junitxml=$REPORTS/observability.xml || failed=1
step "model serving: NLU data, training, the BentoML service"
$SERVING/pytest -q tests/serving --junitxml=$REPORTS/serving.xml || failed=1
step "botfleet CLI: NLU metrics, gates and exit codes"
$DEV/pytest -q tests/cli --junitxml=$REPORTS/cli.xml || failed=1
step "train the demo bot (skipped when unchanged)"
python3 ci/train.py bots/demo >/dev/null || failed=1
step "end-to-end tests against the running stack"
$DEV/pytest -q tests/e2e --junitxml=$REPORTS/e2e.xml || failed=1
# ci/images.py builds them (about 25 minutes cold, cached by their inputs after).
step "images: built from the Dockerfiles with podman, run as the charts run them"
$DEV/pytest -q tests/images --junitxml=$REPORTS/images.xml || failed=1
# A real single-node Kubernetes 1.20 (ci/cluster.py builds it from Debian's packages,
# about 10 minutes the first time, cached after) and the images built from the
# Dockerfiles with podman (ci/images.py, cached by their inputs).
step "real cluster: Kubernetes from Debian's packages, images from the Dockerfiles, the operator and Bots"
$OPERATOR/pytest -q tests/cluster --junitxml=$REPORTS/cluster.xml || failed=1

$DEV/python ci/junit_summary.py $REPORTS/*.xml
exit $failed
