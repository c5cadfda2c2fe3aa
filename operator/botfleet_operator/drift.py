"""Whether a child needs a write, decided in the API server's own terms.

The API server normalises what it stores (an env var's `value: ""` disappears, `cpu: 2`
becomes "2", 1024Mi becomes 1Gi), so the rendered manifest and the live object never
compare equal. The operator compares like with like instead: the result of a
server-side dry-run apply (what the object would become) with the live object (what
it is), both in the server's normalised form, ignoring what changes on every write
(resourceVersion, managedFields timestamps, generation) and what others report
(status). A child found in sync is remembered by uid with its desired hash and the
live object's fingerprint, so the next event on it costs no request at all, even
when only its status (and so its resourceVersion) changed.
"""

from __future__ import annotations

import collections
import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Any, Iterable

BOT_LABEL = "botfleet.io/bot"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
SPEC_HASH_ANNOTATION = "botfleet.io/spec-hash"
# Metadata the server sets or bumps on every write: never a difference the operator made.
SERVER_METADATA = frozenset({"resourceVersion", "generation", "creationTimestamp", "uid", "selfLink", "managedFields"})
NEVER_PRUNED = frozenset({"Secret"})  # the API token Secret outlives spec changes
# Field managers the operator wrote children under before server-side apply (the
# kubernetes client's default user agent, with create and merge patch: "Update").
LEGACY_MANAGERS = frozenset({"OpenAPI-Generator"})


def _ownership(entry: dict[str, Any]) -> dict[str, Any] | None:
    """A managedFields entry as drift sees it: no timestamp, no status fields (the
    controllers' status writes change those all the time; the operator owns none)."""
    if entry.get("subresource") == "status":
        return None
    fields = {k: v for k, v in (entry.get("fieldsV1") or {}).items() if k != "f:status"}
    if entry.get("fieldsV1") and not fields:
        return None
    return {**{k: v for k, v in entry.items() if k not in ("time", "fieldsV1")}, "fieldsV1": fields}


def normalised(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as drift is judged: everything but status and server bookkeeping.
    Field ownership stays (managedFields without timestamps or status fields), so an
    apply that would only take over a field with an unchanged value still counts as a
    change."""
    result = {key: value for key, value in obj.items() if key != "status"}
    metadata = obj.get("metadata") or {}
    result["metadata"] = {key: value for key, value in metadata.items() if key not in SERVER_METADATA}
    managers = [kept for entry in metadata.get("managedFields") or [] if (kept := _ownership(entry)) is not None]
    if managers:
        result["metadata"]["managedFields"] = managers
    return result


def fingerprint(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(normalised(obj), sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


def same_in_server_form(dry_run: dict[str, Any], live: dict[str, Any]) -> bool:
    """True when a dry-run apply leaves the live object as it is: no write needed."""
    return normalised(dry_run) == normalised(live)


def _legacy(entry: dict[str, Any]) -> bool:
    return entry.get("manager") in LEGACY_MANAGERS and entry.get("operation") == "Update" and not entry.get("subresource")


def has_legacy_owner(obj: dict[str, Any]) -> bool:
    """Whether the operator's pre-apply writes still own fields of this child. Their
    fields would survive being dropped from the Bot (the old owner keeps them), so
    they are handed to the operator's apply manager first."""
    return any(_legacy(e) for e in (obj.get("metadata") or {}).get("managedFields") or [])


def merge_fields(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The union of two FieldsV1 sets (tries of "f:", "k:", "v:", "i:" keys, {} leaves)."""
    merged = dict(a)
    for key, value in b.items():
        merged[key] = merge_fields(merged[key], value) if isinstance(merged.get(key), dict) and isinstance(value, dict) else value
    return merged


def upgraded_managed_fields(obj: dict[str, Any], manager: str) -> list[dict[str, Any]]:
    """managedFields with the legacy Update entries folded into `manager`'s Apply entry,
    as kubectl does when it moves an object from client-side to server-side apply:
    the next apply then owns (and may remove) every field the old writes set."""
    entries = list((obj.get("metadata") or {}).get("managedFields") or [])
    legacy = [e for e in entries if _legacy(e)]
    kept = [e for e in entries if not _legacy(e)]
    if not legacy:
        return entries
    applied = next((e for e in kept if e.get("manager") == manager and e.get("operation") == "Apply" and not e.get("subresource")), None)
    fields: dict[str, Any] = dict((applied or {}).get("fieldsV1") or {})
    for entry in legacy:
        fields = merge_fields(fields, entry.get("fieldsV1") or {})
    upgraded = {
        "manager": manager, "operation": "Apply", "apiVersion": (applied or legacy[-1]).get("apiVersion") or obj.get("apiVersion", ""),
        "time": (applied or legacy[-1]).get("time"), "fieldsType": "FieldsV1", "fieldsV1": fields,
    }
    return [upgraded if e is applied else e for e in kept] if applied else [*kept, upgraded]


@dataclass(frozen=True)
class LiveChild:
    """What the operator needs to know of one live child, small enough to keep in
    memory for every child of every Bot (a kopf index holds these)."""

    kind: str
    api_version: str
    name: str
    namespace: str
    uid: str
    resource_version: str
    labels: tuple[tuple[str, str], ...]
    owner_uid: str | None  # the controller ownerReference's uid
    spec_hash: str | None
    fingerprint: str
    legacy_owner: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.name

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


def live_child(obj: dict[str, Any], kind: str | None = None) -> LiveChild:
    metadata = obj.get("metadata") or {}
    owner = next((o.get("uid") for o in metadata.get("ownerReferences") or [] if o.get("controller")), None)
    return LiveChild(
        kind=obj.get("kind") or kind or "",
        api_version=obj.get("apiVersion") or "",
        name=metadata.get("name", ""),
        namespace=metadata.get("namespace", ""),
        uid=metadata.get("uid", ""),
        resource_version=metadata.get("resourceVersion") or "",
        labels=tuple(sorted((metadata.get("labels") or {}).items())),
        owner_uid=owner,
        spec_hash=(metadata.get("annotations") or {}).get(SPEC_HASH_ANNOTATION),
        fingerprint=fingerprint(obj),
        legacy_owner=has_legacy_owner(obj),
    )


def desired_hash(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["annotations"][SPEC_HASH_ANNOTATION])


def write_reason(live: LiveChild | None, desired: dict[str, Any], on_child_event: bool) -> str:
    """Why a write happens, for its Event: a child first made ("Created"), brought to a
    new spec ("Updated"), or put back after someone else changed or deleted it
    ("Restored"). The spec-hash annotation tells the last two apart."""
    if live is None:
        return "Restored" if on_child_event else "Created"
    return "Updated" if live.spec_hash != desired_hash(desired) else "Restored"


def orphans(live: Iterable[LiveChild], desired: Iterable[tuple[str, str]], bot_name: str, bot_uid: str, managed_by: str) -> list[LiveChild]:
    """Live children the Bot no longer wants: labelled as this Bot's, controlled by this
    very Bot (its uid, so never a namesake's or a hand-made object), of a kind the
    operator prunes, and not in the desired set."""
    wanted = set(desired)
    return sorted(
        (
            child for child in live
            if child.kind not in NEVER_PRUNED
            and child.label(BOT_LABEL) == bot_name
            and child.label(MANAGED_BY_LABEL) == managed_by
            and child.owner_uid == bot_uid
            and child.key not in wanted
        ),
        key=lambda c: c.key,
    )


@dataclass(frozen=True)
class Synced:
    desired_hash: str
    resource_version: str
    fingerprint: str


def in_sync(record: Synced | None, desired: str, live: LiveChild) -> bool:
    """Known to be in sync: the same desired state as last checked, and the live object
    unchanged since (the same resourceVersion, or, after a status-only update, the same
    fingerprint). An emulator that assigns no resourceVersion matches on content only."""
    if record is None or record.desired_hash != desired:
        return False
    same_version = bool(record.resource_version) and record.resource_version == live.resource_version
    return same_version or record.fingerprint == live.fingerprint


class SyncCache:
    """child uid -> the state last known to be in sync (bounded, least recently used
    out first); plus the uid last seen under each (kind, namespace, name)."""

    def __init__(self, maxsize: int = 200_000) -> None:
        self.maxsize = maxsize
        self._records: collections.OrderedDict[str, Synced] = collections.OrderedDict()
        self._uids: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()

    def get(self, uid: str) -> Synced | None:
        with self._lock:
            record = self._records.get(uid)
            if record is not None:
                self._records.move_to_end(uid)
            return record

    def known_uid(self, kind: str, namespace: str, name: str) -> str | None:
        return self._uids.get((kind, namespace, name))

    def record(self, desired: str, obj: dict[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        uid = metadata.get("uid")
        if not uid:
            return
        with self._lock:
            self._records[uid] = Synced(desired, metadata.get("resourceVersion") or "", fingerprint(obj))
            self._records.move_to_end(uid)
            self._uids[(obj.get("kind", ""), metadata.get("namespace", ""), metadata.get("name", ""))] = uid
            self._trim()

    def _trim(self) -> None:
        while len(self._records) > self.maxsize:
            self._records.popitem(last=False)
        if len(self._uids) > self.maxsize:
            self._uids.clear()

    def record_live(self, desired: str, live: LiveChild) -> None:
        with self._lock:
            self._records[live.uid] = Synced(desired, live.resource_version, live.fingerprint)
            self._records.move_to_end(live.uid)
            self._uids[(live.kind, live.namespace, live.name)] = live.uid
            self._trim()

    def forget(self, uid: str) -> None:
        with self._lock:
            self._records.pop(uid, None)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._uids.clear()

    def __len__(self) -> int:
        return len(self._records)


CACHE = SyncCache()
