#!/usr/bin/env python3
"""A real single-node Kubernetes 1.20.2 cluster for the test suite, built from Debian's own packages.

There is no registry, no systemd and no kubeadm here, so this script does by hand what kubeadm would:
it builds the Kubernetes binaries from Debian's source package, writes a PKI and static tokens with openssl,
and starts etcd, the control plane, containerd, kubelet and kube-proxy as plain processes on loopback and
on a private bridge. See /work/shared/reference/real-control-plane.md and real-node.md for why each flag is there.

    python3 ci/cluster.py build         # binaries + pause image, cached in /var/cache/botfleet (fast when warm)
    python3 ci/cluster.py up            # start (or check) the cluster; idempotent
    python3 ci/cluster.py status        # JSON; exit 0 when healthy
    python3 ci/cluster.py env           # shell exports: eval "$(python3 ci/cluster.py env)"
    python3 ci/cluster.py import-image IMAGE...   # podman image -> containerd (skipped when already there)
    python3 ci/cluster.py down          # thorough teardown; keeps the image store and the binary cache

Internal, started detached by `up`: `dns-sync` (Services -> dnsmasq hosts file) and `forward` (TCP forwarder
from the bridge IP to host services on 127.0.0.1).

Stdlib only: it shells out to openssl, apt-get, podman, ctr, iptables and ip.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import fcntl
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# Caches live outside the repository and survive `down`: compiling Kubernetes costs 10-30 minutes cold.
CACHE_ROOT = Path(os.environ.get("BOTFLEET_CACHE_DIR", "/var/cache/botfleet"))
K8S_CACHE = CACHE_ROOT / "kubernetes"
# containerd's image store is persistent so an image imported once stays imported.
CONTAINERD_ROOT = Path(os.environ.get("BOTFLEET_CONTAINERD_ROOT", "/var/lib/botfleet/containerd"))

# Networking. The node is named by its bridge IP: the apiserver dials the node name for logs/exec, and the
# machine's hostname maps to 127.0.0.1 in /etc/hosts. Loopback is refused as a node IP.
BRIDGE = "botfleet0"
NODE_IP = "10.244.77.1"
POD_CIDR = "10.244.77.0/24"
SERVICE_CIDR = "10.0.0.0/24"
API_SERVICE_IP = "10.0.0.1"
DNS_SERVICE_IP = "10.0.0.10"
CLUSTER_DOMAIN = "cluster.local"

# Ports on 127.0.0.1. etcd and the apiserver sit away from their defaults so a stray one cannot collide.
ETCD_PORT = 12379
ETCD_PEER_PORT = 12380
API_PORT = 16443
CONTROLLER_MANAGER_PORT = 10257
SCHEDULER_PORT = 10259
KUBELET_PORT = 10250  # on the node IP: the apiserver must reach it
KUBELET_HEALTHZ_PORT = 10248
PROXY_METRICS_PORT = 10249
PROXY_HEALTHZ_PORT = 10256

# Host services pods reach as NODE_IP:<port> through `forward` (they listen on 127.0.0.1 only).
DEFAULT_FORWARD_PORTS = "6379,5432,5672"

PAUSE_VERSION = "3.4.1"
PAUSE_IMAGE = f"localhost/botfleet/pause:{PAUSE_VERSION}"
DEBIAN_BASE_IMAGE = "localhost/debian:bookworm-slim"
DEBIAN_MIRROR = "http://deb.debian.org/debian"

BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")

BUILD_PACKAGES = (
    "etcd-server", "containerd", "conntrack", "runc", "golang-go", "make", "dpkg-dev", "openssl", "jq",
    "rsync", "xz-utils", "golang-github-modern-go-reflect2-dev", "dnsmasq-base", "iptables", "gcc",
    "podman", "catatonit", "containernetworking-plugins",
)

# The order `up` starts things in; `down` stops them in reverse.
COMPONENTS = (
    "containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
    "kube-proxy", "dnsmasq", "dns-sync", "forward",
)
# Without these the cluster is not worth repairing: `up` starts over instead.
CORE = ("containerd", "etcd", "kube-apiserver", "kubelet")

CONTROLLERS = "*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service,-route,-persistentvolume-binder,-attachdetach,-ttl"

T0 = time.monotonic()


def log(msg: str) -> None:
    """Progress goes to stderr so `env` and `status` keep stdout machine-readable."""
    print(f"[cluster {time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


class ClusterError(RuntimeError):
    pass


def run(cmd: list[str], *, check: bool = True, input: str | None = None, env: dict[str, str] | None = None,
        cwd: Path | None = None, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; on failure raise with its stderr so the cause is visible."""
    proc = subprocess.run(cmd, input=input, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    if check and proc.returncode != 0:
        raise ClusterError(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise builds and up/down: ci/images.py and several test sessions may run at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, interval: float = 0.5,
             on_timeout: Callable[[], str] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            detail = on_timeout() if on_timeout else ""
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}\n{detail}".rstrip())
        time.sleep(interval)


# --------------------------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class Paths:
    """Everything `up` writes, under one state dir (default <repo>/.run/cluster, gitignored)."""

    root: Path

    @classmethod
    def from_env(cls) -> Paths:
        return cls(Path(os.environ.get("BOTFLEET_CLUSTER_DIR", REPO / ".run" / "cluster")).resolve())

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd" / "config.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def dns_dir(self) -> Path:
        return self.root / "dns"

    @property
    def dns_hosts(self) -> Path:
        return self.dns_dir / "hosts"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.log"

    @property
    def config(self) -> Path:
        return self.root / "config"

    def kubeconfig_for(self, user: str) -> Path:
        return self.kubeconfig if user == "admin" else self.config / f"{user}.kubeconfig"


# --------------------------------------------------------------------------------------------- build


def missing_packages(packages: tuple[str, ...] | list[str]) -> list[str]:
    proc = run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *packages], check=False)
    installed = {line.split()[0] for line in proc.stdout.splitlines() if line.endswith(" installed")}
    return [p for p in packages if p not in installed]


def apt_env() -> dict[str, str]:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def apt_update() -> None:
    run(["apt-get", "-o", "DPkg::Lock::Timeout=900", "update"], env=apt_env(), timeout=900)


def ensure_packages(packages: tuple[str, ...] | list[str]) -> None:
    missing = missing_packages(packages)
    if not missing:
        return
    log(f"apt-get install {' '.join(missing)}")
    apt_update()
    # The lock timeout matters: other engineers' scripts install packages on this machine too.
    run(["apt-get", "-o", "DPkg::Lock::Timeout=900", "install", "-y", "--no-install-recommends", *missing],
        env=apt_env(), timeout=1800)


def ensure_deb_src() -> None:
    """Add a deb-src twin of Debian's main source (same URIs, suites, components, key), so `apt-get source` works."""
    target = Path("/etc/apt/sources.list.d/botfleet-deb-src.sources")
    if target.exists():
        return
    main = Path("/etc/apt/sources.list.d/debian.sources")
    stanza = {"URIs": DEBIAN_MIRROR, "Suites": "bookworm bookworm-updates", "Components": "main",
              "Signed-By": "/usr/share/keyrings/debian-archive-keyring.gpg"}
    if main.exists():
        for block in main.read_text().split("\n\n"):
            fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line and not line.startswith("#"))
            fields = {k.strip(): v.strip() for k, v in fields.items()}
            if fields.get("Types") == "deb" and fields.get("URIs", "").rstrip("/").endswith("/debian"):
                stanza.update({k: fields[k] for k in ("URIs", "Suites", "Components", "Signed-By") if k in fields})
                break
    text = "Types: deb-src\n" + "".join(f"{k}: {v}\n" for k, v in stanza.items())
    target.write_text(text)
    log(f"added {target}; apt-get update")
    apt_update()


def source_version() -> str:
    """The Debian version `apt-get source kubernetes` would fetch, e.g. 1.20.5+really1.20.2-1.1+deb12u1."""
    proc = run(["apt-get", "source", "--print-uris", "kubernetes"])
    match = re.search(r"kubernetes_([^\s']+)\.dsc", proc.stdout)
    if not match:
        raise ClusterError(f"cannot find the kubernetes .dsc in:\n{proc.stdout}")
    # --print-uris URL-quotes the name (`+` becomes %2b); the cache dir uses the real version.
    return urllib.parse.unquote(match.group(1))


def current_version() -> str | None:
    """The version the last successful build recorded; lets a warm `build` skip apt entirely."""
    stamp = K8S_CACHE / "current"
    return stamp.read_text().strip() if stamp.exists() else None


def bin_dir(version: str | None = None) -> Path:
    version = version or current_version()
    if not version:
        raise ClusterError("no Kubernetes build yet: run `python3 ci/cluster.py build`")
    return K8S_CACHE / version / "bin"


def have_binaries(version: str | None) -> bool:
    return bool(version) and all((K8S_CACHE / str(version) / "bin" / b).is_file() for b in BINARIES)


def extract_source(vdir: Path) -> Path:
    src = vdir / "src"
    if (src / "Makefile").exists():
        return src
    dl = vdir / "dl"
    dl.mkdir(parents=True, exist_ok=True)
    log(f"apt-get source --download-only kubernetes into {dl}")
    run(["apt-get", "source", "--download-only", "kubernetes"], cwd=dl, timeout=900)
    dsc = next(dl.glob("kubernetes_*.dsc"))
    shutil.rmtree(src, ignore_errors=True)
    run(["dpkg-source", "-x", str(dsc), str(src)], timeout=900)
    for copy in vdir.glob("kubernetes_*.orig.tar.*"):  # dpkg-source leaves a second copy beside the tree
        copy.unlink()
    return src


def patch_reflect2(src: Path) -> None:
    """Vendored reflect2 1.0.1 segfaults under Go >= 1.18 on the first custom-resource write; use Debian's 1.0.2."""
    stamp = src / ".botfleet-reflect2-patched"
    if stamp.exists():
        return
    vendored = src / "vendor/github.com/modern-go/reflect2"
    debian = Path("/usr/share/gocode/src/github.com/modern-go/reflect2")
    for old in vendored.glob("*.go"):
        old.unlink()
    for new in debian.iterdir():
        if (new.suffix == ".go" and not new.name.endswith("_test.go")) or new.suffix == ".s":
            shutil.copy2(new, vendored / new.name)
    stamp.write_text("reflect2 replaced with Debian's 1.0.2\n")
    log("patched vendored reflect2 with Debian's 1.0.2")


def compile_binaries(vdir: Path, src: Path) -> None:
    home = vdir / "home"
    home.mkdir(exist_ok=True)
    # Kubernetes' scripts force GOCACHE to _output/local/go/cache inside the tree; keeping the tree keeps it warm.
    env = {**os.environ, "CGO_ENABLED": "0", "GOPROXY": "off", "GOFLAGS": "-mod=vendor", "HOME": str(home),
           "GOCACHE": str(src / "_output/local/go/cache"), "GOPATH": str(home / "go")}
    what = " ".join(f"cmd/{b}" for b in BINARIES)
    build_log = vdir / "build.log"
    log(f"make WHAT='{what}' (cold: 10-30 min on 2 cores; log: {build_log})")
    with open(build_log, "w") as out:
        rc = subprocess.call(["make", f"WHAT={what}"], cwd=src, env=env, stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        tail = "\n".join(build_log.read_text(errors="replace").splitlines()[-30:])
        raise ClusterError(f"make failed ({rc}); last lines of {build_log}:\n{tail}")
    staging = vdir / "bin.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for b in BINARIES:
        shutil.copy2((src / "_output/bin" / b).resolve(), staging / b)
    shutil.rmtree(vdir / "bin", ignore_errors=True)
    staging.rename(vdir / "bin")  # a half-copied bin dir never looks complete


def build_kubernetes(refresh: bool = False) -> str:
    """Build (or find cached) binaries; returns the Debian package version they were built from."""
    version = current_version()
    if have_binaries(version) and not refresh:
        return str(version)
    with file_lock(K8S_CACHE / ".lock"):
        ensure_deb_src()
        version = source_version()
        vdir = K8S_CACHE / version
        if not have_binaries(version):
            started = time.monotonic()
            src = extract_source(vdir)
            patch_reflect2(src)
            compile_binaries(vdir, src)
            log(f"built Kubernetes {version} in {time.monotonic() - started:.0f}s -> {vdir / 'bin'}")
        (K8S_CACHE / "current").write_text(version + "\n")
    return version


def podman_has(image: str) -> bool:
    return run(["podman", "image", "exists", image], check=False).returncode == 0


def build_pause_image(version: str) -> None:
    """The sandbox image, built from Kubernetes' own pause.c: there is no registry to pull it from."""
    if podman_has(PAUSE_IMAGE):
        return
    with file_lock(K8S_CACHE / ".pause.lock"):
        if podman_has(PAUSE_IMAGE):
            return
        ctx = K8S_CACHE / version / "pause"
        ctx.mkdir(parents=True, exist_ok=True)
        source = K8S_CACHE / version / "src/build/pause/linux/pause.c"
        run(["gcc", "-Os", "-Wall", "-Werror", "-static", f"-DVERSION={PAUSE_VERSION}", "-o", str(ctx / "pause"),
             str(source)])
        run(["strip", str(ctx / "pause")], check=False)
        (ctx / "Containerfile").write_text(
            'FROM scratch\nADD pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n')
        run(["podman", "build", "--network", "none", "-t", PAUSE_IMAGE, "-f", str(ctx / "Containerfile"), str(ctx)],
            timeout=300)
        log(f"built {PAUSE_IMAGE}")


def ensure_debian_base(tag: str = DEBIAN_BASE_IMAGE) -> str:
    """Make the `localhost/debian:bookworm-slim` base in podman (debootstrap minbase), reusing it when present.

    Shared with ci/images.py: the project's Dockerfiles build FROM this exact tag. The rootfs tarball is cached
    in /var/cache/botfleet/debian so a wiped podman store costs an import, not a debootstrap.
    """
    if podman_has(tag):
        return tag
    with file_lock(CACHE_ROOT / "debian.lock"):
        if podman_has(tag):
            return tag
        tarball = CACHE_ROOT / "debian" / "bookworm-minbase.tar"
        if not tarball.exists():
            ensure_packages(["debootstrap", "podman"])
            tarball.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=tarball.parent) as tmp:
                rootfs = Path(tmp) / "rootfs"
                log(f"debootstrap --variant=minbase bookworm (~30 s) for {tag}")
                run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR], timeout=1800)
                # Like the real slim image: no apt lists or caches inside.
                for junk in ("var/lib/apt/lists", "var/cache/apt/archives"):
                    for f in (rootfs / junk).glob("*"):
                        if f.is_file():
                            f.unlink()
                run(["tar", "-C", str(rootfs), "-cf", str(tarball) + ".tmp", "."])
            os.replace(str(tarball) + ".tmp", tarball)
        run(["podman", "import",
             "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "--change", 'CMD ["bash"]', str(tarball), tag], timeout=600)
        log(f"imported {tag} into podman")
    return tag


def cmd_build(args: argparse.Namespace) -> int:
    started = time.monotonic()
    ensure_packages(BUILD_PACKAGES)
    version = build_kubernetes(refresh=args.refresh)
    build_pause_image(version)
    log(f"build: Kubernetes {version} ready in {bin_dir(version)} ({time.monotonic() - started:.1f}s)")
    return 0


# --------------------------------------------------------------------------------------------- PKI and identities


# Static tokens: user, uid, groups. The apiserver reads the token file only at start.
IDENTITIES: dict[str, tuple[str, str]] = {
    "admin": ("admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", ""),
    "scheduler": ("system:kube-scheduler", ""),
    "kube-proxy": ("system:kube-proxy", ""),
    "node": (f"system:node:{NODE_IP}", "system:nodes"),
}


def openssl(*args: str) -> None:
    run(["openssl", *args])


def issue_cert(pki: Path, name: str, subject: str, usage: str, sans: list[str] | None = None) -> None:
    """A leaf certificate signed by the cluster CA."""
    ext = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
           f"extendedKeyUsage={usage}"]
    if sans:
        ext.append("subjectAltName=" + ",".join(sans))
    (pki / f"{name}.ext").write_text("\n".join(ext) + "\n")
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(pki / f"{name}.key"),
            "-out", str(pki / f"{name}.csr"), "-subj", subject)
    openssl("x509", "-req", "-in", str(pki / f"{name}.csr"), "-CA", str(pki / "ca.crt"), "-CAkey",
            str(pki / "ca.key"), "-set_serial", str(secrets.randbits(63)), "-days", "3650",
            "-extfile", str(pki / f"{name}.ext"), "-out", str(pki / f"{name}.crt"))


def ensure_pki(p: Paths) -> None:
    """CA, apiserver serving cert, apiserver->kubelet client cert, service-account keys, static tokens.

    Kept across `down`/`up` (only etcd's data is fresh per `up`), which saves a few seconds of openssl.
    """
    pki = p.pki
    if (pki / "tokens.csv").exists() and (pki / "apiserver-kubelet-client.crt").exists():
        return
    shutil.rmtree(pki, ignore_errors=True)
    pki.mkdir(parents=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(pki / "ca.key"), "-out",
            str(pki / "ca.crt"), "-days", "3650", "-subj", "/CN=botfleet-cluster-ca")
    sans = ["IP:127.0.0.1", f"IP:{NODE_IP}", f"IP:{API_SERVICE_IP}", "DNS:localhost", "DNS:kubernetes",
            "DNS:kubernetes.default", "DNS:kubernetes.default.svc", f"DNS:kubernetes.default.svc.{CLUSTER_DOMAIN}"]
    issue_cert(pki, "apiserver", "/CN=kube-apiserver", "serverAuth", sans)
    # kubectl logs/exec: the apiserver authenticates to the kubelet with this (system:masters passes its webhook).
    issue_cert(pki, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", "clientAuth")
    openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
    openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
    lines = []
    for name, (user, groups) in IDENTITIES.items():
        token = secrets.token_hex(24)
        (pki / f"{name}.token").write_text(token)
        lines.append(f'{token},{user},{user},"{groups}"' if groups else f"{token},{user},{user}")
    (pki / "tokens.csv").write_text("\n".join(lines) + "\n")
    for f in pki.iterdir():
        f.chmod(0o600)


def write_kubeconfigs(p: Paths) -> None:
    """One kubeconfig per identity (JSON is valid YAML); the admin one is <state>/kubeconfig."""
    p.config.mkdir(parents=True, exist_ok=True)
    ca = base64.b64encode((p.pki / "ca.crt").read_bytes()).decode()
    for name in IDENTITIES:
        token = (p.pki / f"{name}.token").read_text().strip()
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": "botfleet",
            "clusters": [{"name": "botfleet", "cluster": {"server": f"https://127.0.0.1:{API_PORT}",
                                                           "certificate-authority-data": ca}}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": "botfleet", "context": {"cluster": "botfleet", "user": name}}],
        }
        path = p.kubeconfig_for(name)
        path.write_text(json.dumps(cfg, indent=2) + "\n")
        path.chmod(0o600)


# --------------------------------------------------------------------------------------------- API client


class Api:
    """A tiny HTTPS client for the apiserver: faster than spawning kubectl, and usable by dns-sync every second."""

    def __init__(self, p: Paths, identity: str = "admin") -> None:
        self.base = f"https://127.0.0.1:{API_PORT}"
        self.token = (p.pki / f"{identity}.token").read_text().strip()
        self.ctx = ssl.create_default_context(cafile=str(p.pki / "ca.crt"))

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                timeout: float = 5.0) -> tuple[int, Any]:
        """Returns (status, decoded JSON or text); status 0 when the server cannot be reached."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        except (OSError, ssl.SSLError):
            return 0, None
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        return body if status == 200 else None

    def ensure(self, collection: str, obj: dict[str, Any]) -> None:
        """Create, or replace when it exists (our bootstrap objects are owned by this script)."""
        status, body = self.request("POST", collection, obj)
        if status == 409:
            name = obj["metadata"]["name"]
            current = self.get(f"{collection}/{name}") or {}
            obj = {**obj, "metadata": {**obj["metadata"],
                                       "resourceVersion": current.get("metadata", {}).get("resourceVersion")}}
            status, body = self.request("PUT", f"{collection}/{name}", obj)
        if status not in (200, 201):
            raise ClusterError(f"cannot create {collection}/{obj['metadata']['name']}: {status} {body}")

    def ready(self) -> bool:
        return self.request("GET", "/readyz", timeout=2)[0] == 200


# --------------------------------------------------------------------------------------------- processes


def pid_file(p: Paths, name: str) -> Path:
    return p.pids / f"{name}.pid"


def read_pid(p: Paths, name: str) -> int | None:
    try:
        return int(pid_file(p, name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie (a dead child of a still-running `up` stays a zombie until reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def running(p: Paths, name: str) -> int | None:
    """The component's pid when it runs. The command line must name it, so a stale pid file reused by
    an unrelated process (after a reboot, say) is never mistaken for ours, nor killed by `down`."""
    pid = read_pid(p, name)
    if not pid or not pid_alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if name.encode() in cmdline else None


def still_owner(p: Paths, name: str, started: float, grace: float = 10.0) -> bool:
    """For the detached helpers: keep running while the pid file names this process.

    `start` writes the pid file just after the fork, so a helper waits up to `grace` seconds to see its pid.
    Once another pid (a newer `up`) or no file (after `down`) is there, the helper exits by itself.
    """
    if read_pid(p, name) == os.getpid():
        return True
    return time.monotonic() - started < grace and read_pid(p, name) is None


def start(p: Paths, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start a detached process (own session, so it outlives `up` and the test run) logging to logs/<name>.log."""
    p.logs.mkdir(parents=True, exist_ok=True)
    p.pids.mkdir(parents=True, exist_ok=True)
    pid_file(p, name).unlink(missing_ok=True)  # a stale pid would tell a new helper to exit (still_owner)
    with open(p.logs / f"{name}.log", "ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, cwd=p.root)
    pid_file(p, name).write_text(f"{proc.pid}\n")
    return proc.pid


def stop(p: Paths, name: str, timeout: float = 10.0) -> None:
    """SIGTERM by pid, then SIGKILL; never by process name."""
    pid = running(p, name)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while pid_alive(pid) and time.monotonic() < deadline + 5:
                time.sleep(0.1)
    pid_file(p, name).unlink(missing_ok=True)


def log_tail(p: Paths, name: str, lines: int = 25) -> str:
    path = p.logs / f"{name}.log"
    if not path.exists():
        return ""
    tail = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- last lines of {path}:\n" + "\n".join(tail)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------------------------- host networking


def ip_link_exists(name: str) -> bool:
    return run(["ip", "link", "show", name], check=False).returncode == 0


def ensure_bridge() -> None:
    """The bridge first, with its .1: that address is the node IP and must exist before anything binds to it."""
    if not ip_link_exists(BRIDGE):
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    if f"inet {NODE_IP}/" not in run(["ip", "-4", "addr", "show", BRIDGE]).stdout:
        run(["ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def set_sysctl(key: str, value: str) -> None:
    path = Path("/proc/sys") / key.replace(".", "/")
    with contextlib.suppress(OSError):
        if path.read_text().strip() != value:
            path.write_text(value)


IPTABLES_COMMENT = "botfleet-cluster"


def ensure_host_firewall() -> None:
    """Pods must reach the node IP on any port (dnsmasq, forwarder, a test's HTTP server) and be forwarded.

    Both policies are ACCEPT here today; explicit rules keep it working if someone sets them to DROP.
    """
    rules = [("INPUT", ["-i", BRIDGE]), ("FORWARD", ["-i", BRIDGE]), ("FORWARD", ["-o", BRIDGE])]
    for chain, match in rules:
        spec = [*match, "-m", "comment", "--comment", IPTABLES_COMMENT, "-j", "ACCEPT"]
        if run(["iptables", "-C", chain, *spec], check=False).returncode != 0:
            run(["iptables", "-I", chain, "1", *spec])


def cleanup_iptables() -> None:
    """Delete the KUBE-* chains (kubelet, kube-proxy), our CNI masquerade chains and our ACCEPT rules.

    Targeted -D/-X, not a table restore: podman on this machine owns rules in the same tables.
    `kube-proxy --cleanup` is no help: it fails without ipset.
    """
    for binary in ("iptables", "ip6tables"):
        if not shutil.which(binary):
            continue
        for table in ("filter", "nat", "mangle"):
            proc = run([f"{binary}-save", "-t", table], check=False)
            if proc.returncode != 0:
                continue
            ours: set[str] = set()
            deletions: list[list[str]] = []
            for line in proc.stdout.splitlines():
                if line.startswith(":KUBE-"):
                    ours.add(line[1:].split()[0])
            for line in proc.stdout.splitlines():
                if not line.startswith("-A "):
                    continue
                args = shlex.split(line)
                chain, rest = args[1], args[2:]
                target = rest[rest.index("-j") + 1] if "-j" in rest else ""
                # Match on the parsed words: iptables-save escapes the quotes inside the comment.
                is_cni_ours = target.startswith("CNI-") and 'name: "botfleet"' in " ".join(rest)
                if is_cni_ours:
                    ours.add(target)
                if chain in ours or chain.startswith("KUBE-"):
                    continue  # flushed with its chain below
                if target.startswith("KUBE-") or is_cni_ours or IPTABLES_COMMENT in line:
                    deletions.append(["-D", chain, *rest])
            for rule in deletions:
                run([binary, "-t", table, *rule], check=False)
            for chain in sorted(ours):
                run([binary, "-t", table, "-F", chain], check=False)
            for chain in sorted(ours):
                run([binary, "-t", table, "-X", chain], check=False)


def unmount_under(prefixes: list[str]) -> None:
    """Unmount (lazily, deepest first) everything containers and the kubelet left under our directories."""
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].encode().decode("unicode_escape")
        if any(target == pre or target.startswith(pre.rstrip("/") + "/") for pre in prefixes):
            mounts.append(target)
    for target in sorted(set(mounts), key=lambda m: m.count("/"), reverse=True):
        run(["umount", "-l", target], check=False)


# --------------------------------------------------------------------------------------------- containerd


def containerd_config(p: Paths) -> str:
    """`containerd config default`, with the settings this machine needs (real-node.md)."""
    text = run(["containerd", "config", "default"]).stdout
    replacements = {
        r'^root = ".*"$': f'root = "{CONTAINERD_ROOT}"',
        r'^state = ".*"$': f'state = "{p.containerd_state}"',
        r'^(\s*)address = "/run/containerd/containerd.sock"$': rf'\1address = "{p.containerd_socket}"',
        # Even root cannot set a negative oom_score_adj here: without this every sandbox fails with
        # "can't get final child's PID from pipe: EOF".
        r"^(\s*)restrict_oom_score_adj = .*$": r"\1restrict_oom_score_adj = true",
        r"^(\s*)disable_apparmor = .*$": r"\1disable_apparmor = true",
        r'^(\s*)sandbox_image = ".*"$': rf'\1sandbox_image = "{PAUSE_IMAGE}"',
        r"^(\s*)SystemdCgroup = .*$": r"\1SystemdCgroup = false",
        r'^(\s*)bin_dir = "/opt/cni/bin"$': r'\1bin_dir = "/usr/lib/cni"',
        # Podman's conflist sits in /etc/cni/net.d and the CRI loads only the first file found.
        r'^(\s*)conf_dir = "/etc/cni/net.d"$': rf'\1conf_dir = "{p.cni_conf_dir}"',
        # Network namespaces under our state dir, so `down` finds and unmounts them.
        r"^(\s*)netns_mounts_under_state_dir = .*$": r"\1netns_mounts_under_state_dir = true",
    }
    for pattern, repl in replacements.items():
        text, n = re.subn(pattern, repl, text, flags=re.M)
        if n != 1:
            raise ClusterError(f"containerd config: expected one match for {pattern!r}, got {n}")
    return text


def write_cni_config(p: Paths) -> None:
    p.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    conflist = {
        "cniVersion": "0.4.0",
        "name": "botfleet",
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(p.cni_ipam_dir),
                      "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    (p.cni_conf_dir / "10-botfleet.conflist").write_text(json.dumps(conflist, indent=2) + "\n")


def ctr(p: Paths, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run(["ctr", "--address", str(p.containerd_socket), "-n", "k8s.io", *args], check=check, timeout=timeout)


def containerd_ready(p: Paths) -> bool:
    return p.containerd_socket.exists() and ctr(p, "version", check=False, timeout=5).returncode == 0


def start_containerd(p: Paths) -> None:
    CONTAINERD_ROOT.mkdir(parents=True, exist_ok=True)
    p.containerd_state.mkdir(parents=True, exist_ok=True)
    p.containerd_config.write_text(containerd_config(p))
    write_cni_config(p)
    start(p, "containerd", ["containerd", "--config", str(p.containerd_config)])


def containerd_images(p: Paths) -> dict[str, str]:
    """{image name: manifest digest} in containerd's k8s.io namespace."""
    out = ctr(p, "images", "ls").stdout.splitlines()[1:]
    return {line.split()[0]: line.split()[2] for line in out if line.strip()}


def config_digest(p: Paths, manifest_digest: str) -> str | None:
    """The image ID (config digest) behind a manifest, descending through an index if needed."""
    proc = ctr(p, "content", "get", manifest_digest, check=False)
    if proc.returncode != 0:
        return None
    doc = json.loads(proc.stdout)
    if "manifests" in doc:
        for m in doc["manifests"]:
            plat = m.get("platform", {})
            if plat.get("os", "linux") == "linux" and plat.get("architecture", "amd64") == "amd64":
                return config_digest(p, m["digest"])
        return None
    return doc.get("config", {}).get("digest")


def podman_image(image: str) -> tuple[str, list[str]]:
    """(image ID as sha256:..., full names) for a podman image."""
    proc = run(["podman", "image", "inspect", "--format", "{{.Id}} {{json .RepoTags}}", image])
    image_id, tags = proc.stdout.strip().split(" ", 1)
    return "sha256:" + image_id.removeprefix("sha256:"), json.loads(tags) or []


def import_images(p: Paths, images: list[str]) -> None:
    """podman save | ctr import, skipping images containerd already has with the same image ID."""
    present = containerd_images(p)
    for image in images:
        image_id, tags = podman_image(image)
        # podman qualifies short names (botfleet/x:1 -> localhost/botfleet/x:1); containerd keeps the saved name.
        names = [t for t in tags if t == image or t.endswith("/" + image)] or tags
        if any(n in present and config_digest(p, present[n]) == image_id for n in names):
            continue
        started = time.monotonic()
        save = subprocess.Popen(["podman", "save", "--format", "docker-archive", image], stdout=subprocess.PIPE)
        imp = subprocess.run(["ctr", "--address", str(p.containerd_socket), "-n", "k8s.io", "images", "import",
                              "-"], stdin=save.stdout, capture_output=True, text=True)
        assert save.stdout is not None
        save.stdout.close()
        if save.wait() != 0 or imp.returncode != 0:
            raise ClusterError(f"import of {image} failed: {imp.stderr.strip()}")
        log(f"imported {image} into containerd ({time.monotonic() - started:.1f}s)")


def running_tasks(p: Paths) -> list[str]:
    if not containerd_ready(p):
        return []
    rows = [line.split() for line in ctr(p, "tasks", "ls").stdout.splitlines()[1:]]
    return [row[0] for row in rows if len(row) >= 3 and row[2] == "RUNNING"]


def cleanup_containers(p: Paths) -> None:
    """Containers outlive the kubelet: kill and remove every task and container containerd still has."""
    if not containerd_ready(p):
        return
    tasks = [line.split()[0] for line in ctr(p, "tasks", "ls").stdout.splitlines()[1:] if line.strip()]
    for task in tasks:
        ctr(p, "tasks", "kill", "-a", "-s", "SIGKILL", task, check=False)
    for task in tasks:
        for _ in range(20):
            if ctr(p, "tasks", "rm", "-f", task, check=False).returncode == 0:
                break
            time.sleep(0.25)
    for container in ctr(p, "containers", "ls", "-q").stdout.split():
        ctr(p, "containers", "rm", container, check=False)


def kill_orphan_shims(p: Paths) -> None:
    """Shims started by *our* containerd carry our socket in their command line; stop any that survived."""
    marker = str(p.containerd_socket).encode()
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline and marker in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc_dir.name), signal.SIGKILL)


# --------------------------------------------------------------------------------------------- control plane

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  # The botfleet operator's reads too, so a test sees a 403 on any request it makes.
  - level: Metadata
    users: ["system:serviceaccount:botfleet-system:botfleet-operator"]
    verbs: ["get", "list"]
  # Other reads and watches would drown the writes tests count per client.
  - level: None
    verbs: ["get", "list", "watch"]
  # Node and controller heartbeats: an update every 10 s per holder, of interest to no test.
  - level: None
    resources: [{group: "coordination.k8s.io", resources: ["leases"]}]
  - level: Request
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
  - level: None
"""


def start_etcd(p: Paths, bins: Path) -> None:
    del bins  # etcd is Debian's own package
    shutil.rmtree(p.etcd_data, ignore_errors=True)  # fresh per `up`: no state leaks between test sessions
    start(p, "etcd", [
        "etcd", "--name", "botfleet", "--data-dir", str(p.etcd_data),
        f"--listen-client-urls=http://127.0.0.1:{ETCD_PORT}", f"--advertise-client-urls=http://127.0.0.1:{ETCD_PORT}",
        f"--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
        f"--initial-cluster=botfleet=http://127.0.0.1:{ETCD_PEER_PORT}", "--initial-cluster-state=new",
        "--log-level=warn",
    ])


def start_apiserver(p: Paths, bins: Path) -> None:
    (p.config / "audit-policy.yaml").write_text(AUDIT_POLICY)
    pki = p.pki
    start(p, "kube-apiserver", [
        str(bins / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{ETCD_PORT}",
        "--bind-address=127.0.0.1", f"--secure-port={API_PORT}", "--insecure-port=0",
        # A loopback address cannot go into the kubernetes Endpoints: `up` writes them by hand (NODE_IP,
        # through the forwarder), so in-cluster clients reach the API at kubernetes.default.
        "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
        # Node: kubelets get what their pods need by identity alone, as in kubeadm clusters; so the kubelet can
        # start before anything is bound in RBAC (that is, while the apiserver still boots).
        "--authorization-mode=Node,RBAC", "--allow-privileged=true",
        f"--token-auth-file={pki / 'tokens.csv'}", f"--client-ca-file={pki / 'ca.crt'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP",
        f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
        f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--audit-policy-file={p.config / 'audit-policy.yaml'}", f"--audit-log-path={p.audit_log}",
        "--audit-log-format=json", "--audit-log-mode=blocking",
        "--profiling=false", "--v=1",
    ])


def start_controller_manager(p: Paths, bins: Path) -> None:
    kc = str(p.kubeconfig_for("controller-manager"))
    pki = p.pki
    start(p, "kube-controller-manager", [
        str(bins / "kube-controller-manager"),
        f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
        # --port=0: otherwise 1.20 also serves an insecure port on 0.0.0.0.
        "--bind-address=127.0.0.1", "--port=0", f"--secure-port={CONTROLLER_MANAGER_PORT}",
        "--leader-elect=false", "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
        f"--controllers={CONTROLLERS}", "--v=1",
    ])


def start_scheduler(p: Paths, bins: Path) -> None:
    kc = str(p.kubeconfig_for("scheduler"))
    start(p, "kube-scheduler", [
        str(bins / "kube-scheduler"),
        f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1", "--port=0", f"--secure-port={SCHEDULER_PORT}", "--leader-elect=false",
        "--v=1",
    ])


def bootstrap_objects(api: Api) -> None:
    """What kubeadm and addons would create: the cluster DNS Service and the kubernetes Endpoints."""
    # No CoreDNS in Debian: a selector-less kube-dns Service at the kubelet's clusterDNS, pointing at dnsmasq.
    dns_ports = [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]
    api.ensure("/api/v1/namespaces/kube-system/services", {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
        "spec": {"clusterIP": DNS_SERVICE_IP,
                 "ports": [{**port, "targetPort": 53} for port in dns_ports]},
    })
    api.ensure("/api/v1/namespaces/kube-system/endpoints", {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "kube-dns", "namespace": "kube-system"},
        "subsets": [{"addresses": [{"ip": NODE_IP}], "ports": dns_ports}],
    })
    # The apiserver listens on loopback; pods reach it at kubernetes.default (10.0.0.1:443) -> NODE_IP:API_PORT,
    # which the forwarder relays to 127.0.0.1.
    api.ensure("/api/v1/namespaces/default/endpoints", {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "kubernetes", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": NODE_IP}], "ports": [{"name": "https", "port": API_PORT,
                                                                 "protocol": "TCP"}]}],
    })


# --------------------------------------------------------------------------------------------- node


def kubelet_config(p: Paths) -> dict[str, Any]:
    hard_nofile = int(run(["sh", "-c", "ulimit -Hn"]).stdout.strip() or 65536)
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": NODE_IP, "port": KUBELET_PORT, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": KUBELET_HEALTHZ_PORT,
        "cgroupDriver": "cgroupfs", "failSwapOn": False,
        "maxOpenFiles": min(1000000, hard_nofile),  # the kubelet may not raise it above the hard limit
        "resolvConf": str(p.config / "kubelet-resolv.conf"),
        "clusterDNS": [DNS_SERVICE_IP], "clusterDomain": CLUSTER_DOMAIN,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(p.pki / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        # Single node, no attach/detach controller: let the kubelet attach volumes itself.
        "enableControllerAttachDetach": False,
        # Images cannot be pulled back here: never garbage-collect them, never evict for disk.
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "serializeImagePulls": False,
        # Report Ready sooner after start (default 10 s); one node, so the extra writes cost nothing.
        "nodeStatusUpdateFrequency": "4s",
    }


def start_kubelet(p: Paths, bins: Path) -> None:
    (p.config / "kubelet-resolv.conf").write_text(f"nameserver {NODE_IP}\n")  # for dnsPolicy: Default pods
    (p.config / "kubelet.json").write_text(json.dumps(kubelet_config(p), indent=2) + "\n")
    p.kubelet_dir.mkdir(parents=True, exist_ok=True)
    start(p, "kubelet", [
        str(bins / "kubelet"),
        f"--config={p.config / 'kubelet.json'}", f"--kubeconfig={p.kubeconfig_for('node')}",
        f"--root-dir={p.kubelet_dir}", f"--cert-dir={p.kubelet_dir / 'pki'}",
        "--container-runtime=remote", f"--container-runtime-endpoint=unix://{p.containerd_socket}",
        f"--image-service-endpoint=unix://{p.containerd_socket}",
        f"--node-ip={NODE_IP}", f"--hostname-override={NODE_IP}", f"--pod-infra-container-image={PAUSE_IMAGE}",
        "--v=1",
    ])


def start_kube_proxy(p: Paths, bins: Path) -> None:
    start(p, "kube-proxy", [
        str(bins / "kube-proxy"),
        f"--kubeconfig={p.kubeconfig_for('kube-proxy')}", "--proxy-mode=iptables",
        f"--cluster-cidr={POD_CIDR}", f"--bind-address={NODE_IP}", f"--hostname-override={NODE_IP}",
        "--conntrack-max-per-core=0",  # leave the host's conntrack table size alone (not writable here)
        f"--metrics-bind-address=127.0.0.1:{PROXY_METRICS_PORT}",
        f"--healthz-bind-address=127.0.0.1:{PROXY_HEALTHZ_PORT}", "--v=1",
    ])


def node_object(api: Api) -> dict[str, Any] | None:
    return api.get(f"/api/v1/nodes/{NODE_IP}")


def node_ready(api: Api) -> bool:
    node = node_object(api) or {}
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in node.get("status", {}).get("conditions", []))


def untaint_node(api: Api) -> None:
    """Without the node-lifecycle controller nothing removes the registration taint; do it ourselves."""
    node = node_object(api) or {}
    taints = node.get("spec", {}).get("taints") or []
    keep = [t for t in taints if t.get("key") != "node.kubernetes.io/not-ready"]
    if len(keep) != len(taints):
        api.request("PATCH", f"/api/v1/nodes/{NODE_IP}", {"spec": {"taints": keep or None}},
                    content_type="application/merge-patch+json")


def default_service_account_ready(api: Api) -> bool:
    sa = api.get("/api/v1/namespaces/default/serviceaccounts/default") or {}
    return bool(sa.get("secrets"))  # 1.20 mounts the token Secret; pods are refused until it exists


# --------------------------------------------------------------------------------------------- DNS


def upstream_nameservers() -> list[str]:
    """The host's resolvers, so pods with dnsPolicy Default (or external names) still resolve."""
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        return []
    servers = [ln.split()[1] for ln in lines if ln.startswith("nameserver") and len(ln.split()) > 1]
    return [s for s in servers if not s.startswith("127.") and s != NODE_IP]


def start_dnsmasq(p: Paths) -> None:
    p.dns_dir.mkdir(parents=True, exist_ok=True)
    if not p.dns_hosts.exists():
        p.dns_hosts.write_text("")
    argv = [
        "dnsmasq", "--keep-in-foreground", "--log-facility=-", "--conf-file=/dev/null", "--user=root",
        f"--pid-file={p.dns_dir / 'dnsmasq.pid'}",
        f"--listen-address={NODE_IP}", "--bind-interfaces", "--port=53",
        "--no-resolv", "--no-hosts", f"--addn-hosts={p.dns_hosts}",
        # Unknown cluster names are NXDOMAIN here, never forwarded; the TTL is 0 so changes show at once.
        f"--local=/{CLUSTER_DOMAIN}/", "--local-ttl=0", "--no-negcache",
    ]
    argv += [f"--server={ns}" for ns in upstream_nameservers()]
    start(p, "dnsmasq", argv)


def hosts_file_text(services: dict[str, Any]) -> str:
    """`<clusterIP> <svc>.<ns>.svc.cluster.local` for every Service with a cluster IP (headless ones skipped)."""
    lines = []
    for svc in services.get("items", []):
        ip = svc.get("spec", {}).get("clusterIP")
        if not ip or ip == "None":
            continue
        meta = svc["metadata"]
        lines.append(f"{ip} {meta['name']}.{meta['namespace']}.svc.{CLUSTER_DOMAIN}")
    return "".join(f"{line}\n" for line in sorted(lines))


def cmd_dns_sync(args: argparse.Namespace) -> int:
    """Regenerate dnsmasq's hosts file from the Services every `interval` seconds; SIGHUP dnsmasq on change.

    Exits by itself when its pid file no longer names it (after `down`, or a newer `up`).
    """
    p = Paths.from_env()
    api = Api(p)
    started = time.monotonic()
    last = p.dns_hosts.read_text() if p.dns_hosts.exists() else None
    while still_owner(p, "dns-sync", started):
        status, body = api.request("GET", "/api/v1/services", timeout=5)
        if status == 200:
            text = hosts_file_text(body)
            if text != last:
                tmp = p.dns_hosts.with_suffix(".tmp")
                tmp.write_text(text)
                os.replace(tmp, p.dns_hosts)
                last = text
                pid = running(p, "dnsmasq")
                if pid:
                    os.kill(pid, signal.SIGHUP)  # dnsmasq re-reads --addn-hosts on SIGHUP
                print(f"{time.strftime('%H:%M:%S')} {text.count(chr(10))} services", flush=True)
        time.sleep(args.interval)
    return 0


# --------------------------------------------------------------------------------------------- TCP forwarder


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction; pass a half-close on (a client's shutdown(SHUT_WR) must not cut off the reply)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _forward_one(target_host: str, port: int, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
    try:
        up_reader, up_writer = await asyncio.open_connection(target_host, port)
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    for w in (writer, up_writer):
        w.close()


async def _forward_main(listen: str, target: str, ports: list[int], p: Paths) -> None:
    servers = []
    for port in ports:
        def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, port: int = port) -> Any:
            return _forward_one(target, port, r, w)
        try:
            servers.append(await asyncio.start_server(handler, listen, port, reuse_address=True))
            print(f"forwarding {listen}:{port} -> {target}:{port}", flush=True)
        except OSError as err:  # one busy port must not take the others down
            print(f"cannot listen on {listen}:{port}: {err}", flush=True)
    started = time.monotonic()
    while still_owner(p, "forward", started):
        await asyncio.sleep(1)
    for server in servers:
        server.close()


def forward_ports_default() -> str:
    return os.environ.get("BOTFLEET_FORWARD_PORTS", DEFAULT_FORWARD_PORTS)


def parse_ports(spec: str) -> list[int]:
    return sorted({int(x) for x in spec.replace(" ", ",").split(",") if x.strip()})


def cmd_forward(args: argparse.Namespace) -> int:
    """Relay NODE_IP:<port> to 127.0.0.1:<port>: Redis, PostgreSQL and RabbitMQ listen on loopback only."""
    asyncio.run(_forward_main(args.listen, args.target, parse_ports(args.ports), Paths.from_env()))
    return 0


# --------------------------------------------------------------------------------------------- up / down / status


def component_state(p: Paths) -> dict[str, int | None]:
    return {name: running(p, name) for name in COMPONENTS}


def health(p: Paths) -> dict[str, Any]:
    procs = component_state(p)
    api = Api(p) if (p.pki / "admin.token").exists() else None
    api_ready = bool(api and procs["kube-apiserver"] and api.ready())
    report: dict[str, Any] = {
        "components": {name: {"running": bool(pid), "pid": pid} for name, pid in procs.items()},
        "apiserver_ready": api_ready,
        "node_ready": bool(api_ready and api and node_ready(api)),
        "default_serviceaccount": bool(api_ready and api and default_service_account_ready(api)),
    }
    report["healthy"] = all(procs.values()) and report["node_ready"] and report["default_serviceaccount"]
    report.update(env_vars(p))
    return report


def env_vars(p: Paths) -> dict[str, str]:
    return {"KUBECONFIG": str(p.kubeconfig), "CONTAINERD_ADDRESS": str(p.containerd_socket),
            "BOTFLEET_CLUSTER_DIR": str(p.root), "BOTFLEET_NODE_IP": NODE_IP,
            "BOTFLEET_AUDIT_LOG": str(p.audit_log)}


def helper_python() -> str:
    """The interpreter for the detached helpers: never a venv's, which may be rebuilt while the cluster runs."""
    if sys.prefix != sys.base_prefix:
        base = Path(sys.base_prefix) / "bin" / "python3"
        return str(base) if base.exists() else "/usr/bin/python3"
    return sys.executable


def start_aux(p: Paths, bins: Path, name: str) -> None:
    """(Re)start one of the stateless components by name."""
    here = [helper_python(), str(Path(__file__).resolve())]
    ports = ",".join(str(x) for x in parse_ports(f"{forward_ports_default()},{API_PORT}"))
    starters: dict[str, Callable[[], object]] = {
        "kube-controller-manager": lambda: start_controller_manager(p, bins),
        "kube-scheduler": lambda: start_scheduler(p, bins),
        "kube-proxy": lambda: start_kube_proxy(p, bins),
        "dnsmasq": lambda: start_dnsmasq(p),
        "dns-sync": lambda: start(p, "dns-sync", [*here, "dns-sync"], env=env_with_state(p)),
        "forward": lambda: start(p, "forward", [*here, "forward", "--ports", ports], env=env_with_state(p)),
    }
    starters[name]()


def env_with_state(p: Paths) -> dict[str, str]:
    return {**os.environ, "BOTFLEET_CLUSTER_DIR": str(p.root)}


def wait_until_usable(p: Paths, api: Api, bins: Path, timeout: float = 180) -> None:
    """Node registered and untainted, node Ready, and the default ServiceAccount (with its token) in place."""
    deadline = time.monotonic() + timeout

    def remaining() -> float:
        return max(1.0, deadline - time.monotonic())

    wait_for("the node to register", lambda: node_object(api), remaining(),
             on_timeout=lambda: log_tail(p, "kubelet"))
    untaint_node(api)
    log("node registered; waiting for it to be Ready")
    wait_for("the node to be Ready", lambda: node_ready(api), remaining(),
             on_timeout=lambda: log_tail(p, "kubelet") + "\n" + log_tail(p, "containerd"))

    def service_account() -> bool:
        # Trap: the controller manager can die while the apiserver settles ("unable to get any supported
        # resources from server"); then no default ServiceAccount ever appears. Restart it.
        if not running(p, "kube-controller-manager"):
            log("kube-controller-manager died; restarting it")
            start_aux(p, bins, "kube-controller-manager")
        return default_service_account_ready(api)

    log("node Ready; waiting for the default ServiceAccount")
    wait_for("the default ServiceAccount", service_account, remaining(), interval=1.0,
             on_timeout=lambda: log_tail(p, "kube-controller-manager"))


def fresh_up(p: Paths) -> None:
    version = build_kubernetes()
    build_pause_image(version)
    bins = bin_dir(version)
    p.root.mkdir(parents=True, exist_ok=True)
    if p.logs.exists():  # keep the previous run's logs for post-mortems, one generation deep
        shutil.rmtree(p.root / "logs.prev", ignore_errors=True)
        p.logs.rename(p.root / "logs.prev")
    p.audit_log.unlink(missing_ok=True)
    ensure_pki(p)
    write_kubeconfigs(p)

    set_sysctl("net.ipv4.ip_forward", "1")
    set_sysctl("net.bridge.bridge-nf-call-iptables", "1")  # Service replies between pods on one bridge
    ensure_bridge()
    ensure_host_firewall()

    start_containerd(p)
    start_etcd(p, bins)
    wait_for("etcd", lambda: http_ok(f"http://127.0.0.1:{ETCD_PORT}/health"), 30,
             on_timeout=lambda: log_tail(p, "etcd"))
    log("etcd is up; starting kube-apiserver")
    start_apiserver(p, bins)
    # The apiserver takes ~15 s to get ready and the kubelet ~10 s to initialise: overlap them. The kubelet
    # retries until the apiserver answers, and the Node authorizer needs no RBAC objects.
    wait_for("containerd", lambda: containerd_ready(p), 30, on_timeout=lambda: log_tail(p, "containerd"))
    import_images(p, [PAUSE_IMAGE])
    start_kubelet(p, bins)
    for name in ("dnsmasq", "forward"):
        start_aux(p, bins, name)
    api = Api(p)
    wait_for("the apiserver /readyz", api.ready, 90, on_timeout=lambda: log_tail(p, "kube-apiserver"))
    log("kube-apiserver is ready; starting the controllers")
    bootstrap_objects(api)
    # Only now: a controller manager started against a booting apiserver can die (see wait_until_usable), and
    # the others would be refused until the bootstrap RBAC policy exists, then back off for up to 30 s.
    for name in ("kube-controller-manager", "kube-scheduler", "kube-proxy", "dns-sync"):
        start_aux(p, bins, name)
    wait_until_usable(p, api, bins)


def repair(p: Paths) -> bool:
    """The core runs but a helper died: restart just the helpers. Returns False when a fresh start is needed."""
    procs = component_state(p)
    if not all(procs[name] for name in CORE) or not Api(p).ready():
        return False
    bins = bin_dir()
    for name, pid in procs.items():
        if not pid:
            log(f"{name} is not running; restarting it")
            start_aux(p, bins, name)
    wait_until_usable(p, Api(p), bins, timeout=60)
    return True


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.closing(socket.socket()) as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def cluster_lock() -> contextlib.AbstractContextManager[None]:
    """One `up` or `down` at a time: two test sessions may start together."""
    return file_lock(CACHE_ROOT / "cluster.lock")


def cmd_up(args: argparse.Namespace) -> int:
    del args
    started = time.monotonic()
    p = Paths.from_env()
    with cluster_lock():
        if health(p)["healthy"]:
            log(f"up: already running and healthy ({time.monotonic() - started:.1f}s)")
            return 0
        ensure_packages(BUILD_PACKAGES)
        if any(component_state(p).values()) and repair(p):
            log(f"up: repaired ({time.monotonic() - started:.1f}s)")
            return 0
        if not running(p, "kube-apiserver") and port_in_use(API_PORT):
            # Cleaning up here would delete the bridge and iptables chains of a live cluster.
            raise ClusterError(f"port {API_PORT} is taken by an apiserver this state dir ({p.root}) did not start: "
                               "another cluster runs; stop it with its own BOTFLEET_CLUSTER_DIR")
        teardown(p, quiet=True)  # whatever a crashed run left behind
        fresh_up(p)
    log(f"up: cluster ready in {time.monotonic() - started:.1f}s; KUBECONFIG={p.kubeconfig}")
    return 0


def delete_all_pods(p: Paths, api: Api, timeout: float = 30) -> None:
    """Delete pods while the kubelet still runs, so it stops their containers and releases their IPs."""
    # Controllers would recreate what we delete: stop them first.
    for name in ("kube-controller-manager", "kube-scheduler"):
        stop(p, name)
    namespaces = api.get("/api/v1/namespaces") or {"items": []}
    for ns in namespaces["items"]:
        name = ns["metadata"]["name"]
        api.request("DELETE", f"/api/v1/namespaces/{name}/pods",
                    {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 1})

    def stopped() -> bool:
        # The kubelet finalises a deleted pod only at its next status sync (up to ~20 s later), but what matters
        # is that it stopped every container gracefully; teardown cleans up whatever remains after that.
        pods = api.get("/api/v1/pods")
        return (pods is not None and not pods["items"]) or not running_tasks(p)

    try:
        wait_for("pods to stop", stopped, timeout)
    except ClusterError:
        log("some pods did not terminate in time; killing their containers directly")


def teardown(p: Paths, quiet: bool = False) -> None:
    """Stop everything `up` started and clean the host, keeping the image store, PKI and binary cache."""
    api = Api(p) if (p.pki / "admin.token").exists() else None
    if api and running(p, "kube-apiserver") and running(p, "kubelet") and api.ready():
        delete_all_pods(p, api)
    for name in reversed(COMPONENTS):
        if name != "containerd":
            stop(p, name)
    if not containerd_ready(p) and p.containerd_config.exists() and p.containerd_state.exists():
        # containerd died (a crashed run) but its shims and containers may live on: a new containerd
        # reconnects to them, so start one just to clean up.
        start(p, "containerd", ["containerd", "--config", str(p.containerd_config)])
        with contextlib.suppress(ClusterError):
            wait_for("containerd (for cleanup)", lambda: containerd_ready(p), 20)
    cleanup_containers(p)
    stop(p, "containerd")
    kill_orphan_shims(p)
    unmount_under([str(p.root), str(CONTAINERD_ROOT), str(p.containerd_state)])
    cleanup_iptables()
    if ip_link_exists(BRIDGE):
        run(["ip", "link", "del", BRIDGE], check=False)
    for path in (p.etcd_data, p.kubelet_dir, p.cni_ipam_dir, p.containerd_state, p.dns_dir, p.pids):
        shutil.rmtree(path, ignore_errors=True)
    p.containerd_socket.unlink(missing_ok=True)
    # The CRI plugin's per-sandbox/container dirs of containers removed above (the image store stays).
    for sub in ("sandboxes", "containers"):
        shutil.rmtree(CONTAINERD_ROOT / "io.containerd.grpc.v1.cri" / sub, ignore_errors=True)
    # Container logs the kubelet wrote (paths are fixed in 1.20).
    for logs_dir in (Path("/var/log/pods"), Path("/var/log/containers")):
        if logs_dir.is_dir():
            for entry in logs_dir.iterdir():
                if entry.is_symlink() or entry.is_file():
                    entry.unlink()
                else:
                    shutil.rmtree(entry, ignore_errors=True)
    if not quiet:
        log("down: stopped and cleaned")


def cmd_down(args: argparse.Namespace) -> int:
    del args
    started = time.monotonic()
    with cluster_lock():
        teardown(Paths.from_env())
    log(f"down: done in {time.monotonic() - started:.1f}s")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    del args
    report = health(Paths.from_env())
    print(json.dumps(report, indent=2))
    return 0 if report["healthy"] else 1


def cmd_env(args: argparse.Namespace) -> int:
    del args
    for key, value in env_vars(Paths.from_env()).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def cmd_import_image(args: argparse.Namespace) -> int:
    p = Paths.from_env()
    if not containerd_ready(p):
        raise ClusterError(f"containerd is not running at {p.containerd_socket}: run `python3 ci/cluster.py up`")
    import_images(p, args.images)
    return 0


def cmd_debian_base(args: argparse.Namespace) -> int:
    print(ensure_debian_base(args.tag))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build (or find cached) binaries and the pause image")
    b.add_argument("--refresh", action="store_true", help="ask apt for the current source version again")
    b.set_defaults(func=cmd_build)
    sub.add_parser("up", help="start the cluster (idempotent)").set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop the cluster and clean the host").set_defaults(func=cmd_down)
    sub.add_parser("status", help="JSON health report; exit 0 when healthy").set_defaults(func=cmd_status)
    sub.add_parser("env", help="shell exports for other scripts").set_defaults(func=cmd_env)
    i = sub.add_parser("import-image", help="podman image(s) -> containerd, skipping ones already there")
    i.add_argument("images", nargs="+")
    i.set_defaults(func=cmd_import_image)
    d = sub.add_parser("debian-base", help=f"make {DEBIAN_BASE_IMAGE} in podman if missing")
    d.add_argument("--tag", default=DEBIAN_BASE_IMAGE)
    d.set_defaults(func=cmd_debian_base)
    ds = sub.add_parser("dns-sync", help="(internal) Services -> dnsmasq hosts file")
    ds.add_argument("--interval", type=float, default=1.0)
    ds.set_defaults(func=cmd_dns_sync)
    f = sub.add_parser("forward", help="(internal) TCP forwarder from the node IP to 127.0.0.1")
    f.add_argument("--listen", default=NODE_IP)
    f.add_argument("--target", default="127.0.0.1")
    f.add_argument("--ports", default=forward_ports_default(), help="comma-separated (env BOTFLEET_FORWARD_PORTS)")
    f.set_defaults(func=cmd_forward)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ClusterError as err:
        print(f"cluster.py {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
