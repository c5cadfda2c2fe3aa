"""The Bot CRD's schema, applied the way the API server applies it.

Defaulting and validation normally happen at admission. The operator applies them
again because it must not trust that they did (an older CRD, an emulated API server),
and the tests use the same code to prove what admission accepts and rejects:
structural defaults, types, enums, bounds and patterns, unknown fields (kubectl's
strict field validation), and the CEL x-kubernetes-validations rules. Every error
names the field, as the API server's do: "spec.rasa.autoscaling: ...".
"""

from __future__ import annotations

import copy
import functools
import os
import re
from pathlib import Path
from typing import Any, Iterator

import celpy
import yaml

GROUP = "botfleet.io"
VERSION = "v1alpha1"
PLURAL = "bots"
KIND = "Bot"
CRD_PATH_ENV = "BOTFLEET_CRD_PATH"
_DEFAULT_CRD_PATH = Path(__file__).resolve().parents[2] / "k8s/crds/bots.botfleet.io.yaml"


def crd_path() -> Path:
    return Path(os.environ.get(CRD_PATH_ENV) or _DEFAULT_CRD_PATH)


@functools.lru_cache(maxsize=4)
def load_crd(path: str | None = None) -> dict[str, Any]:
    return yaml.safe_load(Path(path or crd_path()).read_text())


def bot_schema(path: str | None = None) -> dict[str, Any]:
    crd = load_crd(path)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == VERSION)
    return version["schema"]["openAPIV3Schema"]


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting: a missing property with a `default` gets it, then its own
    properties are defaulted in turn (as the API server does on read and write)."""
    if isinstance(value, dict) and "properties" in schema:
        result = dict(value)
        for name, child in schema["properties"].items():
            if name not in result and "default" in child:
                result[name] = copy.deepcopy(child["default"])
            if name in result:
                result[name] = apply_defaults(child, result[name])
        return result
    if isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def with_defaults(bot: dict[str, Any]) -> dict[str, Any]:
    return apply_defaults(bot_schema(), bot)


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected == "boolean":
        return isinstance(value, bool)
    return True


def _structural_errors(schema: dict[str, Any], value: Any, path: str) -> Iterator[str]:
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            yield f"{path}: must be an integer or a string"
            return
        if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
            yield f"{path}: {value!r} is not a valid quantity"
        return
    expected = schema.get("type")
    if expected and not _type_ok(expected, value):
        yield f"{path}: must be of type {expected}"
        return
    if "enum" in schema and value not in schema["enum"]:
        yield f"{path}: Unsupported value {value!r}: supported values: {', '.join(map(repr, schema['enum']))}"
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            yield f"{path}: {value!r} does not match {schema['pattern']!r}"
        if "minLength" in schema and len(value) < schema["minLength"]:
            yield f"{path}: must be at least {schema['minLength']} characters long"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            yield f"{path}: must be at most {schema['maxLength']} characters long"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            yield f"{path}: must be greater than or equal to {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            yield f"{path}: must be less than or equal to {schema['maximum']}"
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            yield f"{path}: must have at least {schema['minItems']} items"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            yield f"{path}: must have at most {schema['maxItems']} items"
        keys = schema.get("x-kubernetes-list-map-keys")
        if keys:
            seen = set()
            for item in value:
                key = tuple(item.get(k) for k in keys) if isinstance(item, dict) else None
                if key in seen:
                    yield f"{path}: Duplicate value: {dict(zip(keys, key or (), strict=False))}"
                seen.add(key)
        for index, item in enumerate(value):
            yield from _structural_errors(schema.get("items", {}), item, f"{path}[{index}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            yield f"{path}: must have at least {schema['minProperties']} properties"
        for name in schema.get("required", []):
            if name not in value:
                yield f"{path}.{name}: Required value"
        additional = schema.get("additionalProperties")
        for name, item in value.items():
            if name in properties:
                yield from _structural_errors(properties[name], item, f"{path}.{name}")
            elif isinstance(additional, dict):
                yield from _structural_errors(additional, item, f"{path}.{name}")
            elif properties and not schema.get("x-kubernetes-preserve-unknown-fields"):
                yield f'{path}.{name}: unknown field "{name}"'


def _typed_for_cel(schema: dict[str, Any], value: Any) -> Any:
    """The value with the types the API server gives CEL: `number` fields are doubles
    even when written as integers (0 <= 0.5 must compare)."""
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        return {
            key: _typed_for_cel(properties.get(key, additional if isinstance(additional, dict) else {}), item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_typed_for_cel(schema.get("items", {}), item) for item in value]
    return value


@functools.lru_cache(maxsize=256)
def _cel_program(rule: str) -> Any:
    """Compiled once per rule: parsing CEL costs far more than evaluating it."""
    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def _cel_errors(schema: dict[str, Any], value: Any, path: str) -> Iterator[str]:
    for rule in schema.get("x-kubernetes-validations", []):
        program = _cel_program(rule["rule"])
        try:
            result = program.evaluate({"self": celpy.json_to_cel(_typed_for_cel(schema, value))})
        except celpy.CELEvalError as error:  # e.g. a field that defaulting did not add
            yield f"{path}: rule {rule['rule']!r} could not be evaluated: {error}"
            continue
        if not bool(result):
            # Like the API server, report at the rule's fieldPath when it names one.
            yield f"{path}{rule.get('fieldPath', '')}: Invalid value: {rule.get('message') or rule['rule']}"
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name in value:
                yield from _cel_errors(child, value[name], f"{path}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from _cel_errors(schema["items"], item, f"{path}[{index}]")


def _name_errors(schema: dict[str, Any], bot: dict[str, Any]) -> Iterator[str]:
    """metadata.name against the schema's restrictions on it, when it has any (a
    structural schema may restrict name; nothing else of metadata)."""
    name_schema = ((schema.get("properties") or {}).get("metadata") or {}).get("properties", {}).get("name")
    name = (bot.get("metadata") or {}).get("name")
    if name_schema and name is not None:
        yield from _structural_errors(name_schema, name, "metadata.name")


def validate_bot(bot: dict[str, Any]) -> list[str]:
    """Admission errors for a Bot (after defaulting), empty when it is accepted."""
    schema = bot_schema()
    defaulted = apply_defaults(schema, bot)
    # Only the spec: status belongs to the status subresource, which admission of the
    # object itself ignores (and controllers such as kopf may add their own fields).
    errors = list(_name_errors(schema, bot))
    if "spec" in defaulted:
        errors += list(_structural_errors(schema["properties"]["spec"], defaulted["spec"], "spec"))
    if not errors and "spec" in defaulted:
        errors += list(_cel_errors(schema["properties"]["spec"], defaulted["spec"], "spec"))
    elif "spec" not in defaulted:
        errors.append("spec: Required value")
    return errors
