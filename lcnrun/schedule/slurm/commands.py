"""Asking Slurm: running its commands (``sbatch``, ``squeue``, ``scontrol`` ...) and reading the
answers that planning needs (``MaxArraySize``, the cluster's cpus)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence

#: Slurm's default ``MaxArraySize``, assumed when ``scontrol`` cannot be asked (``--dry-run``)
DEFAULT_MAX_ARRAY_SIZE = 1001
COMMAND_TIMEOUT = 60.0


class SlurmError(Exception):
    """Slurm cannot be used or refused a request: one message for the user."""


def require_command(name: str) -> str:
    """The path of the Slurm command ``name`` (``sbatch`` ...); :class:`SlurmError` if missing."""
    path = shutil.which(name)
    if path is None:
        raise SlurmError(f"`{name}` not found on PATH: Slurm is not installed here (run lcnrun "
                         "submit on the cluster's login node, or `lcnrun sweep` to run locally)")
    return path


def slurm_message(stderr: str, stdout: str = "") -> str:
    """Slurm's error lines on one line, without the ``sbatch: error:`` prefixes."""
    lines = [re.sub(r"^\w+: (error|fatal): ", "", line.strip())
             for line in (stderr or stdout).splitlines() if line.strip()]
    return "; ".join(lines) or "no message"


def run_command(args: Sequence[str], *, timeout: float = COMMAND_TIMEOUT,
                cwd: os.PathLike | str | None = None) -> subprocess.CompletedProcess:
    """Run a Slurm command (``args[0]`` looked up on PATH); :class:`SlurmError` if it cannot run."""
    exe = require_command(args[0])
    try:
        return subprocess.run([exe, *args[1:]], capture_output=True, text=True, timeout=timeout,
                              cwd=cwd, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SlurmError(f"`{' '.join(args[:2])}` did not answer within {timeout:.0f} s (is the "
                         "Slurm controller up?)") from None
    except OSError as err:
        raise SlurmError(f"cannot run {args[0]}: {err}") from None


def parse_config(text: str) -> dict[str, str]:
    """``scontrol show config`` output -> ``{key: value}``."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and " " not in key.strip():
            out[key.strip()] = value.strip()
    return out


def slurm_config() -> dict[str, str]:
    """The controller's configuration (``scontrol show config``)."""
    proc = run_command(["scontrol", "show", "config"])
    if proc.returncode != 0:
        raise SlurmError(f"scontrol show config failed: {slurm_message(proc.stderr, proc.stdout)}")
    return parse_config(proc.stdout)


def max_array_size(config: Mapping[str, str]) -> int:
    """``MaxArraySize``: array task ids run from 0 to ``MaxArraySize - 1``."""
    try:
        value = int(str(config.get("MaxArraySize", "")).split()[0])
    except (ValueError, IndexError):
        return DEFAULT_MAX_ARRAY_SIZE
    return max(1, value)


def cluster_cpus(partition: str | None = None) -> int | None:
    """The cpus of the (partition's) nodes, ``sinfo -h -o %C`` (``allocated/idle/other/total``);
    ``None`` if ``sinfo`` cannot tell."""
    args = ["sinfo", "-h", "-o", "%C"] + (["-p", partition] if partition else [])
    try:
        proc = run_command(args, timeout=30)
    except SlurmError:
        return None
    totals = [int(m[1]) for m in re.finditer(r"\d+/\d+/\d+/(\d+)", proc.stdout)]
    return (sum(totals) or None) if proc.returncode == 0 else None
