#!/usr/bin/env python3
"""Builds botfleet's container images with podman, from the project's own Dockerfiles.

  python3 ci/images.py bases             stand-in base images, made here (no registry needed)
  python3 ci/images.py build [NAME...]   build the images (default: all four); an image whose
                                         inputs are unchanged is not rebuilt
  python3 ci/images.py import [NAME...]  load them into the node's containerd (ci/cluster.py)
  python3 ci/images.py list              JSON: {name: {image, id, inputs_hash, size}}

Images: rasa, action-server, model-serving, operator, tagged localhost/botfleet/NAME:0.1.0
(podman's name for botfleet/NAME:0.1.0) and docker.io/botfleet/NAME:0.1.0 (the name
containerd gives the `botfleet/NAME:0.1.0` that the charts' pods ask for).

Bases. Nothing is pulled: `bases` makes the images the Dockerfiles start FROM.
  localhost/debian:bookworm-slim, also tagged docker.io/library/debian:bookworm-slim:
    debootstrap --variant=minbase bookworm, imported with `podman import`.
  docker.io/library/python:3.10-slim and :3.11-slim: that Debian, Python's runtime
    libraries, and this machine's pyenv build of Python copied in at the same path (its
    libpython is found by RPATH), linked into /usr/local/bin as in the real images. TLS to
    the package registries is intercepted here: the machine's CA bundle replaces the
    image's and PIP_CERT points at it, so `pip install` inside a build works.

Caching. Every image is labelled botfleet.inputs=HASH, a hash of its Dockerfile, the files
its COPY/ADD (and RUN --mount=type=bind) instructions take from the build context (the
git-tracked and untracked-but-not-ignored files of those paths), its build arguments and
the IDs of its base images. `build` skips an image whose label matches: a warm machine
rebuilds nothing. --force rebuilds anyway (podman's layer cache still applies).

Model serving installs CPU-only torch from PyTorch's index, which this machine cannot
reach. When a CPU wheel of the pinned torch lies in one of pip's find-links folders
(`pip config list`, PIP_FIND_LINKS), the build context is a copy of model-serving/ outside
the repository with that wheel linked in as wheels/, and the build gets
TORCH_FIND_LINKS=wheels and TORCH_INDEX_URL= (pip's own index for torch's dependencies).
BOTFLEET_TORCH_WHEEL=PATH picks the wheel; BOTFLEET_TORCH_WHEEL=index builds as real users
do, from PyTorch's index.

Settings (environment):
  BOTFLEET_IMAGES_DIR   ~/.cache/botfleet/images: containers.conf, build contexts, logs
  CONTAINERS_CONF       podman's configuration; default: the one written there (runc,
                        lowered ulimits), which this machine needs
  BOTFLEET_DEBIAN_MIRROR   http://deb.debian.org/debian

From tests: sys.path.insert(0, "ci"); import images; images.build_images(["rasa"]).
Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VERSION = "0.1.0"
STATE = Path(os.environ.get("BOTFLEET_IMAGES_DIR") or Path.home() / ".cache/botfleet/images")
LABEL = "botfleet.inputs"

CONTAINERS_CONF = """\
# Written by ci/images.py. runc: cgroups here are v1 in hybrid mode, which crun refuses.
# Raising rlimits is not permitted here, and podman's default ulimits would.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]

[engine]
runtime = "runc"
"""

DEBIAN_BASE = "localhost/debian:bookworm-slim"
DEBIAN_ALIASES = ("docker.io/library/debian:bookworm-slim",)
DEBIAN_MIRROR = os.environ.get("BOTFLEET_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# What the official image lists in /etc/apt/sources.list.d/debian.sources.
DEBIAN_SOURCES = """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT") or "/root/.pyenv") / "versions"
# python:X-slim tag -> the pyenv build copied in.
PYTHONS = {"3.10": "3.10.13", "3.11": "3.11.7"}
# Python's runtime libraries (the real image installs the same), and what it also has.
PYTHON_PACKAGES = (
    "ca-certificates netbase tzdata passwd libssl3 libffi8 zlib1g libbz2-1.0 libsqlite3-0 libreadline8 "
    "liblzma5 libncursesw6 libuuid1 libnsl2"
)
# Of the pyenv build's site-packages, what the real image ships; the rest are this
# machine's own installs.
KEEP_SITE_PACKAGES = re.compile(
    r"^(pip|setuptools|wheel|pkg_resources|_distutils_hack)([-_.].*)?$|^distutils-precedence\.pth$|^README\.txt$")
KEEP_BIN = re.compile(r"^(python|pip|pydoc|idle|2to3)")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PYTHON_BASE_FORMAT = 3  # bump when the way the stand-ins are made changes


@dataclass(frozen=True)
class Spec:
    dockerfile: str  # relative to ROOT
    context: str  # relative to ROOT


IMAGES = {
    "rasa": Spec("services/rasa/Dockerfile", "."),
    "action-server": Spec("services/action-server/Dockerfile", "."),
    "model-serving": Spec("model-serving/Dockerfile", "model-serving"),
    "operator": Spec("operator/Dockerfile", "."),
    "gateway": Spec("services/gateway/Dockerfile", "."),
}


def local_ref(name: str) -> str:
    return f"localhost/botfleet/{name}:{VERSION}"


def cluster_ref(name: str) -> str:
    return f"docker.io/botfleet/{name}:{VERSION}"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- podman -------------------------------------------------------------------------


def configure_podman() -> Path:
    """Writes the containers.conf this machine needs and points CONTAINERS_CONF at it
    (unless the caller set one)."""
    STATE.mkdir(parents=True, exist_ok=True)
    conf = STATE / "containers.conf"
    if not conf.is_file() or conf.read_text() != CONTAINERS_CONF:
        conf.write_text(CONTAINERS_CONF)
    os.environ.setdefault("CONTAINERS_CONF", str(conf))
    return Path(os.environ["CONTAINERS_CONF"])


def ensure_tools() -> None:
    """Installs podman, runc, catatonit and debootstrap with apt-get when one is missing."""
    wanted = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}
    missing = [pkg for tool, pkg in wanted.items() if shutil.which(tool) is None]
    if not any(Path(p).exists() for p in ("/usr/libexec/podman/catatonit", "/usr/bin/catatonit")):
        missing.append("catatonit")
    if missing:
        log(f"installing {' '.join(missing)} (apt-get)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    configure_podman()


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    configure_podman()
    result = subprocess.run(["podman", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({result.returncode}):\n{result.stderr.strip()}")
    return result


def inspect(ref: str) -> dict[str, Any] | None:
    """podman image inspect, or None when there is no such image."""
    result = podman("image", "inspect", ref, check=False)
    if result.returncode != 0:
        return None
    data = json.loads(result.stdout)
    return data[0] if data else None


def image_id(ref: str) -> str | None:
    info = inspect(ref)
    return info["Id"] if info else None


def image_label(ref: str, key: str = LABEL) -> str | None:
    info = inspect(ref)
    return ((info or {}).get("Labels") or {}).get(key) if info else None


def tag(ref: str, *aliases: str) -> None:
    wanted = image_id(ref)
    for alias in aliases:
        if image_id(alias) != wanted:
            podman("tag", ref, alias)


_lock_depth = 0


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """One builder at a time on this machine (tests and ci/cluster.py's users may build at
    once); re-entrant within a process."""
    global _lock_depth
    if _lock_depth:
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
        return
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / "build.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _lock_depth = 1
        try:
            yield
        finally:
            _lock_depth = 0
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- bases ----------------------------------------------------------------------------


def _cluster_module() -> Any:
    """ci/cluster.py as a module, when it exists (another part of CI owns it)."""
    path = ROOT / "ci/cluster.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("botfleet_ci_cluster", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # its problems must not stop image builds
        sys.modules.pop(spec.name, None)
        log(f"note: ci/cluster.py did not load ({error}); making the Debian base here")
        return None
    return module


def ensure_debian_base() -> str:
    """localhost/debian:bookworm-slim (and its docker.io name): ci/cluster.py's
    ensure_debian_base() when it has one, otherwise debootstrap + podman import here.
    Returns the image ID."""
    configure_podman()
    if image_id(DEBIAN_BASE) is None:
        cluster = _cluster_module()
        if cluster is not None and callable(getattr(cluster, "ensure_debian_base", None)):
            cluster.ensure_debian_base()
    if image_id(DEBIAN_BASE) is None:
        _debootstrap_base()
    tag(DEBIAN_BASE, *DEBIAN_ALIASES)
    found = image_id(DEBIAN_BASE)
    assert found, DEBIAN_BASE
    return found


def _debootstrap_base() -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log(f"making {DEBIAN_BASE}: debootstrap --variant=minbase bookworm (about a minute)")
    with tempfile.TemporaryDirectory(prefix="debian-rootfs-", dir=STATE) as tmp:
        rootfs = Path(tmp) / "rootfs"
        logfile = STATE / "logs/debootstrap.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)
        with logfile.open("w") as out:
            done = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR],
                                  stdout=out, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise RuntimeError(f"debootstrap failed; see {logfile}:\n{_tail(logfile)}")
        # As the official slim image: deb822 sources with updates and security, no caches.
        (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(DEBIAN_SOURCES)
        for cache in ("var/lib/apt/lists", "var/cache/apt"):
            for entry in (rootfs / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["podman", "import", "--change", 'CMD ["bash"]',
             "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "-", DEBIAN_BASE], stdin=tar.stdout, capture_output=True, text=True)
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise RuntimeError(f"podman import failed: {imported.stderr.strip()}")
    log(f"{DEBIAN_BASE}: made in {time.monotonic() - started:.0f} s")


def _pyenv_build(minor: str) -> Path:
    exact = PYENV_VERSIONS / PYTHONS[minor]
    if exact.is_dir():
        return exact
    candidates = sorted(PYENV_VERSIONS.glob(f"{minor}.*"), key=lambda p: [int(x) for x in p.name.split(".") if x.isdigit()])
    if not candidates:
        raise RuntimeError(f"no pyenv build of Python {minor} under {PYENV_VERSIONS}")
    return candidates[-1]


def _python_containerfile(prefix: Path, minor: str) -> str:
    return f"""\
# Stand-in for python:{minor}-slim, made by ci/images.py from this machine's pyenv build.
FROM {DEBIAN_BASE}
RUN apt-get update \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {PYTHON_PACKAGES} \\
    && rm -rf /var/lib/apt/lists/*
# After ca-certificates (installing it regenerates the bundle): the machine's bundle, which
# trusts the TLS interceptor in front of the package registries.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# The build's files in /usr/local, as in the real image (sys.prefix /usr/local, so pip puts
# console scripts in /usr/local/bin), and its own prefix {prefix} a symlink to
# /usr/local (the paths compiled into it). ldconfig: non-root users cannot follow libpython's
# RPATH through /root, the loader's cache finds it in /usr/local/lib.
ADD python.tar /
RUN ldconfig && python3 --version && pip --version && python3 -c "import sys; assert sys.prefix == '/usr/local', sys.prefix"
ENV LANG=C.UTF-8 \\
    PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
"""


def _python_tar(prefix: Path, minor: str, target: Path) -> None:
    """The pyenv build as a tar of /usr/local, without this machine's extra packages
    (site-packages keeps what the real image has), the test suite and the static library,
    with scripts' #! lines pointing at /usr/local/bin, and PREFIX -> /usr/local."""
    lib = f"lib/python{minor}"

    def keep(rel: str) -> bool:
        parts = rel.split("/")
        if rel.startswith(f"{lib}/site-packages/") and not KEEP_SITE_PACKAGES.match(parts[3]):
            return False
        if len(parts) >= 2 and parts[0] == "bin" and not KEEP_BIN.match(parts[1]):
            return False
        if rel in (f"{lib}/test",) or "idle_test" in parts:
            return False
        return not re.fullmatch(r"libpython.*\.a", parts[-1])

    shebang = f"#!{prefix}/bin/".encode()
    with tarfile.open(target, "w") as tar:
        for directory, dirs, files in os.walk(prefix):
            rel_dir = os.path.relpath(directory, prefix)
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            dirs[:] = sorted(d for d in dirs if keep(rel_dir + d))
            if rel_dir:
                tar.add(directory, arcname=f"usr/local/{rel_dir}", recursive=False)
            names = sorted(files) + [d for d in dirs if os.path.islink(os.path.join(directory, d))]
            for name in names:
                if not keep(rel_dir + name):
                    continue
                path = os.path.join(directory, name)
                info = tar.gettarinfo(path, arcname=f"usr/local/{rel_dir}{name}")
                if info.isfile() and rel_dir == "bin/":
                    content = Path(path).read_bytes()
                    if content.startswith(shebang):
                        content = b"#!/usr/local/bin/" + content[len(shebang):]
                        info.size = len(content)
                        tar.addfile(info, io.BytesIO(content))
                        continue
                if info.isfile():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
        # The folders between /root and the prefix (not /root itself: it keeps its mode).
        for parent in list(Path(str(prefix)[1:]).parents)[::-1][2:]:
            info = tarfile.TarInfo(str(parent))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        link = tarfile.TarInfo(str(prefix)[1:])
        link.type, link.linkname = tarfile.SYMTYPE, "/usr/local"
        tar.addfile(link)


def ensure_python_base(minor: str) -> str:
    """docker.io/library/python:MINOR-slim, built FROM the Debian base. Returns its ID."""
    ref = f"docker.io/library/python:{minor}-slim"
    prefix = _pyenv_build(minor)
    containerfile = _python_containerfile(prefix, minor)
    digest = hashlib.sha256()
    for part in (str(PYTHON_BASE_FORMAT), containerfile, ensure_debian_base(), str(prefix)):
        digest.update(part.encode() + b"\0")
    digest.update(HOST_CA_BUNDLE.read_bytes())
    for rel in (f"bin/python{minor}", "lib/" + f"libpython{minor}.so.1.0", f"lib/python{minor}/site-packages"):
        path = prefix / rel
        if path.exists():
            st = path.stat()
            digest.update(f"{rel} {st.st_size} {st.st_mtime_ns}".encode())
    inputs = digest.hexdigest()[:20]
    if image_label(ref) == inputs:
        return image_id(ref) or ""
    started = time.monotonic()
    log(f"making {ref} from {prefix}")
    with tempfile.TemporaryDirectory(prefix=f"python-{minor}-", dir=STATE) as tmp:
        context = Path(tmp)
        (context / "Containerfile").write_text(containerfile)
        shutil.copyfile(HOST_CA_BUNDLE, context / "ca-certificates.crt")
        _python_tar(prefix, minor, context / "python.tar")
        _podman_build(["-f", str(context / "Containerfile"), "-t", ref, "--label", f"{LABEL}={inputs}", str(context)],
                      STATE / f"logs/python-{minor}.log")
    log(f"{ref}: made in {time.monotonic() - started:.0f} s")
    return image_id(ref) or ""


def ensure_bases() -> dict[str, str]:
    """Every base image the Dockerfiles use: {reference: image ID}."""
    ensure_tools()
    with build_lock():
        bases = {DEBIAN_BASE: ensure_debian_base()}
        for minor in PYTHONS:
            bases[f"docker.io/library/python:{minor}-slim"] = ensure_python_base(minor)
    return bases


# --- Dockerfile inputs ------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of each instruction, continuation lines joined."""
    result, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.strip().partition(" ")
        result.append((keyword.upper(), rest.strip()))
        current = ""
    if current.strip():
        keyword, _, rest = current.strip().partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def _expand(value: str, variables: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4)
        if match.group(2) is not None and not variables.get(name):
            return match.group(3)
        return variables.get(name, "")

    return re.sub(r"\$\{(\w+)(:-([^}]*))?\}|\$(\w+)", one, value)


def dockerfile_inputs(dockerfile: Path, build_args: dict[str, str]) -> tuple[list[str], list[str]]:
    """(paths in the build context that the Dockerfile reads, external base images)."""
    variables: dict[str, str] = {}
    stages: set[str] = set()
    bases: list[str] = []
    sources: list[str] = []
    for keyword, rest in instructions(dockerfile.read_text()):
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            variables[name] = build_args.get(name, default.strip('"'))
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = _expand(words[0], variables)
            if image not in stages and image != "scratch":
                bases.append(image)
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2])
        elif keyword in ("COPY", "ADD"):
            words = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
            if any(w.startswith("--from=") for w in words):
                continue
            paths = [w for w in words if not w.startswith("--")]
            sources += [_expand(p, variables) for p in paths[:-1]]
        elif keyword == "RUN":
            for mount in re.findall(r"--mount=(\S+)", rest):
                options = dict(o.partition("=")[::2] for o in mount.split(","))
                if options.get("type", "bind") == "bind" and "from" not in options:
                    sources.append(options.get("source") or options.get("src") or ".")
    return sources, bases


def _context_files(context: Path, source: str) -> list[str]:
    """Files under SOURCE (a path or glob in the context), relative to the context."""
    source = source.strip("/") or "."
    inside_git = subprocess.run(["git", "-C", str(context), "rev-parse", "--is-inside-work-tree"],
                                capture_output=True, text=True).stdout.strip() == "true"
    if inside_git:
        listed = subprocess.run(["git", "-C", str(context), "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                                 "--", source], capture_output=True, text=True, check=True).stdout
        return sorted({f for f in listed.split("\0") if f and (context / f).is_file()})
    found: list[str] = []
    for match in sorted(context.glob(source)) if any(c in source for c in "*?[") else [context / source]:
        if match.is_file():
            found.append(str(match.relative_to(context)))
        for directory, _, files in os.walk(match):
            found += [str((Path(directory) / f).relative_to(context)) for f in files]
    return sorted(set(found))


_digests: dict[str, str] = {}


def _file_digest(path: Path) -> str:
    """sha256 of a file, remembered by (path, size, mtime) in STATE/digests.json (the
    torch wheel alone is 190 MB)."""
    st = path.stat()
    key = f"{path}:{st.st_size}:{st.st_mtime_ns}"
    if not _digests:
        with_cache = STATE / "digests.json"
        if with_cache.is_file():
            with contextlib.suppress(ValueError):
                _digests.update(json.loads(with_cache.read_text()))
    if key not in _digests:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _digests[key] = digest.hexdigest()
        if st.st_size > 1 << 20:
            STATE.mkdir(parents=True, exist_ok=True)
            big = {k: v for k, v in _digests.items() if int(k.rsplit(":", 2)[1]) > 1 << 20}
            (STATE / "digests.json").write_text(json.dumps(big))
    return _digests[key]


def inputs_hash(dockerfile: Path, context: Path, build_args: dict[str, str], base_ids: dict[str, str]) -> str:
    sources, bases = dockerfile_inputs(dockerfile, build_args)
    digest = hashlib.sha256()
    digest.update(dockerfile.read_bytes())
    digest.update(json.dumps(build_args, sort_keys=True).encode())
    for base in bases:
        qualified = base if "/" in base.split(":")[0] else f"docker.io/library/{base}"
        digest.update(f"{base}={base_ids.get(qualified) or image_id(qualified) or image_id(base)}".encode())
    files = {f for source in sources for f in _context_files(context, source)}
    files |= {f for f in (".dockerignore", ".containerignore") if (context / f).is_file()}
    for rel in sorted(files):
        digest.update(f"\0{rel}\0{_file_digest(context / rel)}".encode())
    return digest.hexdigest()[:20]


# --- model serving's torch --------------------------------------------------------------


def _pip_find_links() -> list[Path]:
    values = os.environ.get("PIP_FIND_LINKS", "").split()
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("find-links"):
            values += value.strip().strip("'\"").split()
    return [Path(v.removeprefix("file://")) for v in dict.fromkeys(values) if not re.match(r"^https?://", v)]


def torch_wheel() -> Path | None:
    """The local CPU wheel of the torch model-serving pins, or None to use the index."""
    chosen = os.environ.get("BOTFLEET_TORCH_WHEEL", "")
    if chosen == "index":
        return None
    if chosen:
        return Path(chosen)
    pinned = re.search(r"^torch==(\S+)", (ROOT / "model-serving/requirements.txt").read_text(), re.M)
    if not pinned:
        return None
    for folder in _pip_find_links():
        wheels = sorted(folder.glob(f"torch-{pinned.group(1)}+cpu-cp311-*.whl")) if folder.is_dir() else []
        if wheels:
            return wheels[-1]
    return None


def _sync_context(source: Path, target: Path, extra: dict[str, Path]) -> None:
    """TARGET becomes SOURCE's git-visible files plus EXTRA (relative name -> file, hard-linked)."""
    wanted = {rel: source / rel for rel in _context_files(source, ".")}
    wanted.update(extra)
    target.mkdir(parents=True, exist_ok=True)
    for directory, _, files in os.walk(target):
        for name in files:
            rel = str((Path(directory) / name).relative_to(target))
            if rel not in wanted:
                (target / rel).unlink()
    for rel, src in wanted.items():
        dst = target / rel
        st = src.stat()
        if dst.is_file() and dst.stat().st_size == st.st_size and dst.stat().st_mtime_ns == st.st_mtime_ns:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.unlink(missing_ok=True)
        if rel in extra:
            try:
                os.link(src, dst)
                continue
            except OSError:
                pass
        shutil.copy2(src, dst)


def build_setup(name: str) -> tuple[Path, Path, dict[str, str]]:
    """(Dockerfile, build context, build arguments) of one image."""
    spec = IMAGES[name]
    dockerfile, context = ROOT / spec.dockerfile, ROOT / spec.context
    if name != "model-serving":
        return dockerfile, context, {}
    wheel = torch_wheel()
    if wheel is None:
        return dockerfile, context, {}
    copy = STATE / "contexts/model-serving"
    _sync_context(context, copy, {f"wheels/{wheel.name}": wheel})
    return copy / dockerfile.relative_to(context), copy, {"TORCH_INDEX_URL": "", "TORCH_FIND_LINKS": "wheels"}


# --- building ---------------------------------------------------------------------------


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _podman_build(args: list[str], logfile: Path) -> None:
    logfile.parent.mkdir(parents=True, exist_ok=True)
    command = ["podman", "build", "--network", "host", "--pull=never", "--format", "docker", "--layers", *args]
    with logfile.open("w") as out:
        out.write("$ " + shlex.join(command) + "\n")
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed ({done.returncode}); {logfile}:\n{_tail(logfile)}")


def build_image(name: str, bases: dict[str, str], force: bool = False) -> dict[str, Any]:
    """Builds one image unless its label says its inputs are unchanged."""
    started = time.monotonic()
    dockerfile, context, build_args = build_setup(name)
    inputs = inputs_hash(dockerfile, context, build_args, bases)
    ref, alias = local_ref(name), cluster_ref(name)
    cached = not force and image_label(ref) == inputs
    if not cached:
        log(f"{name}: building {ref} ({dockerfile.relative_to(ROOT) if dockerfile.is_relative_to(ROOT) else dockerfile})")
        command = ["-f", str(dockerfile), "-t", ref, "-t", alias, "--label", f"{LABEL}={inputs}"]
        for key, value in build_args.items():
            command += ["--build-arg", f"{key}={value}"]
        _podman_build([*command, str(context)], STATE / f"logs/{name}.log")
    tag(ref, alias)
    info = inspect(ref) or {}
    result = {"image": alias, "local": ref, "id": info.get("Id", ""), "inputs_hash": inputs, "size": info.get("Size", 0),
              "cached": cached, "seconds": round(time.monotonic() - started, 1)}
    log(f"{name}: {'cached' if cached else 'built'} in {result['seconds']} s, {_human(result['size'])}")
    return result


def build_images(names: list[str] | None = None, force: bool = False) -> dict[str, dict[str, Any]]:
    """Builds the named images (default all); {name: {image, local, id, inputs_hash, size, cached, seconds}}."""
    names = list(names or IMAGES)
    unknown = [n for n in names if n not in IMAGES]
    if unknown:
        raise ValueError(f"unknown image(s) {unknown}; known: {list(IMAGES)}")
    with build_lock():
        bases = ensure_bases()
        return {name: build_image(name, bases, force) for name in names}


def list_images() -> dict[str, dict[str, Any]]:
    configure_podman()
    listed = {}
    for name in IMAGES:
        info = inspect(local_ref(name))
        if info:
            listed[name] = {"image": cluster_ref(name), "id": info["Id"], "inputs_hash": (info.get("Labels") or {}).get(LABEL),
                            "size": info.get("Size")}
    return listed


def import_images(names: list[str] | None = None) -> list[str]:
    """Loads the built images into the node's containerd under their docker.io names (what
    the kubelet asks for): `ci/cluster.py import-image`, which skips the ones containerd
    already has. Returns the references; raises RuntimeError when that fails."""
    refs = []
    for name in names or list(IMAGES):
        if image_id(local_ref(name)) is None:
            raise RuntimeError(f"{name} is not built: python3 ci/images.py build {name}")
        tag(local_ref(name), cluster_ref(name))
        refs.append(cluster_ref(name))
    cluster = ROOT / "ci/cluster.py"
    if not cluster.is_file():
        raise RuntimeError("ci/cluster.py does not exist: it imports images into containerd (import-image IMAGE...)")
    done = subprocess.run([sys.executable, str(cluster), "import-image", *refs], cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"ci/cluster.py import-image {' '.join(refs)} failed ({done.returncode})")
    return refs


def _human(size: int | float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit in ("B", "KB") else f"{size:.2f} {unit}"
        size /= 1000
    return str(size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("bases", help="make the stand-in base images")
    build = commands.add_parser("build", help="build images (default all)")
    build.add_argument("names", nargs="*", metavar="NAME", help=", ".join(IMAGES))
    build.add_argument("--force", action="store_true", help="build even when the inputs are unchanged")
    load = commands.add_parser("import", help="import built images into the node's containerd (ci/cluster.py)")
    load.add_argument("names", nargs="*", metavar="NAME")
    commands.add_parser("list", help="JSON of the built images")
    args = parser.parse_args(argv)
    try:
        if args.command == "bases":
            print(json.dumps(ensure_bases(), indent=2))
        elif args.command == "build":
            started = time.monotonic()
            built = build_images(args.names or None, force=args.force)
            print(json.dumps(built, indent=2))
            log(f"done in {time.monotonic() - started:.1f} s: "
                + ", ".join(f"{n} {'cached' if b['cached'] else 'built'} {b['seconds']} s" for n, b in built.items()))
        elif args.command == "import":
            print(json.dumps(import_images(args.names or None)))
        elif args.command == "list":
            print(json.dumps(list_images(), indent=2))
    except (RuntimeError, ValueError, subprocess.CalledProcessError) as error:
        log(f"error: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
