"""`botfleet rollout status|promote|pause|resume|abort BOT`: shows and steers a Bot's
canary rollout through the Kubernetes API (the current kubeconfig context, or the
in-cluster service account).

A command is an annotation on the Bot (botfleet.io/rollout-command) that the operator
acts on at its next rollout tick and then removes, as `kubectl argo rollouts promote`
sets a field the controller reads. The CLI refuses a command the rollout's phase does
not take, before setting anything.

Exit codes: 0 done, 1 refused (no rollout, or its phase does not take the command),
2 bad input (usage, no such Bot), 3 the API server could not be reached or refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence, cast

from botfleet_operator.kube import Kube, KubeError, api_client
from botfleet_operator.rollout.canary import COMMAND_ANNOTATION, COMMANDS, Command, RolloutState, allows

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_INFRASTRUCTURE = 0, 1, 2, 3
ACTIONS = ("status", *COMMANDS)


class Refused(Exception):
    pass


class BadInput(Exception):
    pass


def summary(bot: dict[str, Any]) -> dict[str, Any]:
    """What `status` prints: the Bot's rollout as the operator last recorded it."""
    metadata, status = bot["metadata"], bot.get("status") or {}
    rollout = status.get("rollout") or {}
    return {
        "bot": metadata["name"],
        "namespace": metadata.get("namespace"),
        "strategy": ((bot.get("spec") or {}).get("rollout") or {}).get("strategy", "RollingUpdate"),
        "specModelVersion": ((bot.get("spec") or {}).get("model") or {}).get("version"),
        "servedModelVersion": (status.get("stableModel") or {}).get("version") or status.get("currentModelVersion"),
        "pendingCommand": (metadata.get("annotations") or {}).get(COMMAND_ANNOTATION),
        "rollout": rollout or None,
    }


def run_command(kube: Kube, namespace: str, name: str, command: Command) -> dict[str, Any]:
    bot = read_bot(kube, namespace, name)
    state = RolloutState.from_status((bot.get("status") or {}).get("rollout"))
    if state is None:
        raise Refused(f"Bot {namespace}/{name} has no rollout to {command}")
    if not allows(state, command):
        raise Refused(f"the rollout of model {state.canary_version} is {state.phase}{f' ({state.pause_reason})' if state.pause_reason else ''}: {command} does not apply")
    kube.merge_patch("Bot", namespace, name, {"metadata": {"annotations": {COMMAND_ANNOTATION: command}}})
    return {**summary(bot), "command": command, "accepted": True, "pendingCommand": command}


def read_bot(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    bot = kube.get("Bot", namespace, name)
    if bot is None:
        raise BadInput(f"no Bot {name} in namespace {namespace}")
    return bot


def text(result: dict[str, Any]) -> str:
    rollout = result.get("rollout") or {}
    lines = [f"Bot {result['namespace']}/{result['bot']} ({result['strategy']}): serving model {result['servedModelVersion']}"]
    if result.get("command"):
        lines.append(f"{result['command']}: requested; the operator acts on it at its next rollout tick")
    if not rollout:
        lines.append("no rollout recorded")
        return "\n".join(lines)
    lines.append(f"rollout of {rollout.get('canaryVersion')} against {rollout.get('stableVersion')}: {rollout.get('phase')}"
                 f"{' (' + rollout['pauseReason'] + ')' if rollout.get('pauseReason') else ''}, canary weight {rollout.get('canaryWeight', 0)}%,"
                 f" step {rollout.get('currentStep', 0) + 1}, failed checks {rollout.get('failedChecks', 0)}")
    if rollout.get("message"):
        lines.append(rollout["message"])
    for metric, check in sorted((rollout.get("lastAnalysis") or {}).items()):
        lines.append(f"  {metric}: {check.get('status')}  {check.get('reason', '')}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="botfleet rollout", description="Show and steer a Bot's canary rollout.")
    parse.add_argument("action", choices=ACTIONS, help="status; promote (skip the remaining steps); pause; resume; abort (roll back)")
    parse.add_argument("bot", help="the Bot's name")
    parse.add_argument("-n", "--namespace", default=None, help="the Bot's namespace (default: the kubeconfig context's, else default)")
    parse.add_argument("--json", action="store_true", help="print one JSON document")
    return parse


def default_namespace() -> str:
    try:
        import kubernetes

        _, active = kubernetes.config.list_kube_config_contexts()
        return str((active or {}).get("context", {}).get("namespace") or "default")
    except Exception:  # no kubeconfig (in-cluster, or the test API): the default namespace
        return "default"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit:  # argparse: 2 for bad usage, 0 for --help
        return int(exit.code or 0)
    namespace = args.namespace or default_namespace()
    try:
        kube = Kube(api_client())
        if args.action == "status":
            result = summary(read_bot(kube, namespace, args.bot))
        else:
            result = run_command(kube, namespace, args.bot, cast(Command, args.action))
    except BadInput as error:
        print(json.dumps({"error": "bad input", "message": str(error)}) if args.json else f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Refused as error:
        print(json.dumps({"error": "refused", "message": str(error)}) if args.json else f"refused: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except (KubeError, OSError, Exception) as error:  # noqa: BLE001 (config, connection, TLS: all "cannot reach")
        print(json.dumps({"error": "infrastructure", "message": str(error)}) if args.json else f"error: the API server: {error}", file=sys.stderr)
        return EXIT_INFRASTRUCTURE
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else text(result))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
