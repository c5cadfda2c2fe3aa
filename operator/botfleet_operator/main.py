"""botfleet-operator: runs the kopf operator.

  botfleet-operator --all-namespaces
  botfleet-operator --namespace bots --namespace bots-staging
  botfleet-operator --all-namespaces --peering botfleet-operator   # one active of N replicas

With --peering, replicas elect the active one through kopf's peering object of that
name: the highest --priority alive works, the others wait and take over when it goes.
Peers of equal priority would all pause, so each process picks a random priority
unless --priority says otherwise.
"""

from __future__ import annotations

import argparse
import secrets
import sys

PRIORITY_RANGE = 2**31 - 1


def random_priority() -> int:
    return 1 + secrets.randbelow(PRIORITY_RANGE)


def kopf_arguments(argv: list[str] | None = None) -> list[str]:
    """The `kopf run` command line for botfleet-operator's own options."""
    parser = argparse.ArgumentParser(prog="botfleet-operator", description="The botfleet operator.")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch the whole cluster")
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable; globs allowed)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--peering", metavar="NAME", help="elect one active replica through kopf's peering object NAME")
    mode.add_argument("--standalone", action="store_true", help="no peering: the only copy (the default)")
    parser.add_argument("--priority", type=int, help="peering priority (default: random, so no two replicas tie)")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="kopf liveness endpoint (its host is the bind address)")
    parser.add_argument("--log-format", default="json", choices=["json", "plain", "full"])
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.priority is not None and not args.peering:
        parser.error("--priority needs --peering")
    command = ["run"]
    if args.peering:
        priority = args.priority if args.priority is not None else random_priority()
        command += [f"--peering={args.peering}", f"--priority={priority}"]
    else:
        command.append("--standalone")
    command += ["-m", "botfleet_operator.handlers", f"--liveness={args.liveness}", f"--log-format={args.log_format}"]
    command += ["--all-namespaces"] if args.all_namespaces or not args.namespace else [f"--namespace={n}" for n in args.namespace]
    if args.verbose:
        command.append("--verbose")
    return command


def main(argv: list[str] | None = None) -> int:
    from kopf.cli import main as kopf_main

    return kopf_main(args=kopf_arguments(argv), standalone_mode=False) or 0


if __name__ == "__main__":
    sys.exit(main())
