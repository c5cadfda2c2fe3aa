"""botfleet-operator: runs the kopf operator.

  botfleet-operator --all-namespaces
  botfleet-operator --namespace bots --namespace bots-staging
"""

from __future__ import annotations

import argparse
import sys


def kopf_arguments(argv: list[str] | None = None) -> list[str]:
    """The `kopf run` command line for botfleet-operator's own options."""
    parser = argparse.ArgumentParser(prog="botfleet-operator", description="The botfleet operator.")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch the whole cluster")
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable; globs allowed)")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="kopf liveness endpoint")
    parser.add_argument("--log-format", default="json", choices=["json", "plain", "full"])
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    command = ["run", "--standalone", "-m", "botfleet_operator.handlers", f"--liveness={args.liveness}", f"--log-format={args.log_format}"]
    command += ["--all-namespaces"] if args.all_namespaces or not args.namespace else [f"--namespace={n}" for n in args.namespace]
    if args.verbose:
        command.append("--verbose")
    return command


def main(argv: list[str] | None = None) -> int:
    from kopf.cli import main as kopf_main

    return kopf_main(args=kopf_arguments(argv), standalone_mode=False) or 0


if __name__ == "__main__":
    sys.exit(main())
