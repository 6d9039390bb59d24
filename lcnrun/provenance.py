"""Where and how a run was produced: the ``provenance`` record stored in every run file.

:func:`collect_provenance` is called when a run starts, :func:`finish_provenance` when it ends.
Everything that cannot change within a process (git state of the lcnrun source, package versions,
host, platform, BLAS thread pools) is looked up once per process and cached, so a call costs a
few microseconds after the first. The result is plain JSON-able data::

    {"git_commit": "9f3e..." | null, "git_dirty": bool | null,
     "source_sha256": "..." (the package's own files, see source_sha256),
     "versions": {"python", "numpy", "scipy", "numba", "h5py", "lcnrun"},
     "host", "platform", "pid", "start_utc": "2026-01-31T12:00:00.123456+00:00",
     "blas_threads": {...},
     "slurm": {"job_id", "array_job_id", "array_task_id", "cpus_per_task"} (null when absent),
     "seeds": {...},
     # added by finish_provenance:
     "end_utc", "wall_seconds", "error": str | null}
"""
from __future__ import annotations

import hashlib
import importlib
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
GIT_TIMEOUT_SECONDS = 3.0
SLURM_VARIABLES = {"job_id": "SLURM_JOB_ID", "array_job_id": "SLURM_ARRAY_JOB_ID",
                   "array_task_id": "SLURM_ARRAY_TASK_ID", "cpus_per_task": "SLURM_CPUS_PER_TASK"}
#: the environment variables that set the BLAS/OpenMP thread pools: the schedulers set every one
#: (local workers to 1, Slurm tasks to their cpus) and provenance records them
BLAS_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                  "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "BLIS_NUM_THREADS")


def available_cores() -> int:
    """The cores this process may use (its CPU affinity: a Slurm allocation, ``taskset``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@lru_cache(maxsize=1)
def lcnrun_version() -> str:
    """``lcnrun.__version__``, else the installed distribution's version, else the version in the
    ``pyproject.toml`` of a source checkout, else ``"0+unknown"``."""
    import lcnrun
    version = getattr(lcnrun, "__version__", None)
    if version:
        return str(version)
    from importlib import metadata
    try:
        return metadata.version("lcnrun")
    except metadata.PackageNotFoundError:
        pass
    try:
        import tomllib
        project = tomllib.loads((PACKAGE_DIR.parent / "pyproject.toml").read_text())["project"]
        if project.get("name") == "lcnrun":
            return str(project["version"])
    except (ImportError, OSError, KeyError, ValueError):
        pass
    return "0+unknown"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PACKAGE_DIR), *args], capture_output=True,
                             text=True, timeout=GIT_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


@lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git checkout holding the lcnrun package, or ``(None, None)``.

    ``dirty`` means files under the package folder differ from the commit, or are new and not
    ignored by ``.gitignore`` (an uncommitted module changes what runs just as an edit does). A package that is not tracked by the enclosing repository (e.g. installed into a
    virtual environment that lives inside some other checkout) gives ``(None, None)``.
    """
    commit = _git("rev-parse", "HEAD")
    if not commit or not _git("ls-files", "--", "__init__.py"):
        return None, None
    status = _git("status", "--porcelain", "--", ".")
    return commit.strip(), (None if status is None else bool(status.strip()))


def _module_version(name: str) -> str | None:
    module = sys.modules.get(name)
    if module is None:
        try:
            module = importlib.import_module(name)
        except ImportError:
            return None
    version = getattr(module, "__version__", None)
    return None if version is None else str(version)


#: the files of the package that decide what a run computes (code and the figures' specs)
SOURCE_SUFFIXES = (".py", ".yaml")


@lru_cache(maxsize=4)
def source_sha256(package_dir: Path = PACKAGE_DIR) -> str:
    """sha256 over the package's own source files (``lcnrun/**/*.py`` and ``*.yaml``: each file's
    path relative to the package, then its bytes, in sorted order); compiled caches excluded.

    What a checkpoint must have been written by to be resumed (with the package versions): unlike
    the git commit it is the same for a commit that changes only tests or docs, and it also works
    for a copy that is not a git checkout (an installed wheel, a copied tree)."""
    h = hashlib.sha256()
    root = Path(package_dir)
    files = sorted(p for p in root.rglob("*")
                   if p.suffix in SOURCE_SUFFIXES and "__pycache__" not in p.parts and p.is_file())
    for path in files:
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        try:
            h.update(path.read_bytes())
        except OSError:  # an unreadable file: counted by its name only (it cannot be imported either)
            pass
        h.update(b"\0")
    return h.hexdigest()


@lru_cache(maxsize=1)
def _static() -> dict:
    commit, dirty = git_state()
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "source_sha256": source_sha256(),
        "versions": {"python": platform.python_version(), "numpy": _module_version("numpy"),
                     "scipy": _module_version("scipy"), "numba": _module_version("numba"),
                     "h5py": _module_version("h5py"),
                     "lcnrun": lcnrun_version()},
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }


@lru_cache(maxsize=1)
def _threadpools() -> dict | None:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return {f"{p.get('internal_api')}:{Path(p.get('filepath', '')).name}": p.get("num_threads")
            for p in threadpool_info()}


def blas_threads() -> dict:
    """Thread counts of the BLAS/OpenMP pools: from threadpoolctl when installed (looked up once
    per process), else the environment variables that set them (null when unset)."""
    pools = _threadpools()
    if pools is not None:
        return pools
    return {name: os.environ.get(name) for name in BLAS_VARIABLES}


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def collect_provenance(seeds: dict) -> dict:
    """The provenance of a run starting now (see the module docstring); ``seeds`` is copied in."""
    static = _static()
    prov = dict(static, versions=dict(static["versions"]))
    prov.update({
        "pid": os.getpid(),
        "start_utc": _utc_now(),
        "blas_threads": blas_threads(),
        "slurm": {key: os.environ.get(var) for key, var in SLURM_VARIABLES.items()},
        "seeds": dict(seeds),
    })
    return prov


def finish_provenance(prov: dict, error: str | None) -> dict:
    """Add ``end_utc``, ``wall_seconds`` (end - start, wall clock) and ``error``; returns ``prov``."""
    end = datetime.now(timezone.utc)
    prov["end_utc"] = end.isoformat(timespec="microseconds")
    try:
        prov["wall_seconds"] = (end - datetime.fromisoformat(prov["start_utc"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        prov["wall_seconds"] = None
    prov["error"] = error
    return prov
