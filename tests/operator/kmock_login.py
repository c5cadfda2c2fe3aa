"""Test-only kopf login: connect to the kmock emulator named in BOTFLEET_KUBE_API."""

import os
from typing import Any

import kopf


@kopf.on.login()
def login_to_emulator(**_: Any) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(server=os.environ["BOTFLEET_KUBE_API"], insecure=True)
