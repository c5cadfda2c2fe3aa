#!/bin/sh
# Imports the model archive named by BOTFLEET_NLU_MODEL_ARCHIVE (if any) into $BENTOML_HOME,
# then runs the command (bentoml serve by default).
set -eu
if [ -n "${BOTFLEET_NLU_MODEL_ARCHIVE:-}" ]; then
  if [ ! -f "$BOTFLEET_NLU_MODEL_ARCHIVE" ]; then
    echo "error: BOTFLEET_NLU_MODEL_ARCHIVE=$BOTFLEET_NLU_MODEL_ARCHIVE does not exist" >&2
    exit 1
  fi
  bentoml models import "$BOTFLEET_NLU_MODEL_ARCHIVE" || echo "model archive already in the store" >&2
fi
if ! bentoml models get "$BOTFLEET_NLU_MODEL_TAG" >/dev/null 2>&1; then
  echo "error: model $BOTFLEET_NLU_MODEL_TAG is not in $BENTOML_HOME (bake it in with MODEL_ARCHIVE, or set BOTFLEET_NLU_MODEL_ARCHIVE)" >&2
  exit 1
fi
exec "$@"
