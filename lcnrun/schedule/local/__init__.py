"""The local scheduler: every point of an experiment, in a pool of worker processes.

:func:`run_sweep` computes the points of a prepared experiment (``workflow.prepare``) in ``jobs``
worker processes and returns a :class:`SweepReport`. What it guarantees:

- **Pinned BLAS.** Workers are started with the ``spawn`` method and ``OMP_NUM_THREADS``,
  ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` (and friends) set to 1 in their environment, so
  numpy's BLAS is single-threaded there from its first import: N workers use N cores.
- **Skips finished work** as :mod:`lcnrun.policy` decides (the one rule of run, sweep and
  submit): a point whose run file is ``completed`` is skipped; ``failed`` and ``diverged`` ones
  too unless ``rerun_failed``; ``stopped`` ones (interrupted by SIGTERM: a time limit, a
  preemption) are run again; ``force`` runs everything again. A run file written *during this
  sweep* (by it, or by another sweep of the same experiment running at the same time: a file that
  is not the one the sweep planned from) is never run again, whatever the flags. File times play
  no part (clock skew on a shared file system).
- **Exactly once under concurrency.** A worker holds the run's claim
  (:mod:`lcnrun.store.claims`) while it decides, computes and writes; the decision is taken again
  under the claim. A point whose claim another process holds is deferred and, once nothing else is
  left, waited for: its file then says how it ended (or, if its holder died, it is run here).
- **Ensembles.** Points that differ only in what an ensemble may vary (``runner.ensemble_key``:
  initialization, data, step size, ...) are handed to a worker together (at most
  :data:`ENSEMBLE_MAX_MEMBERS`, at most :data:`ENSEMBLE_MAX_DATASETS` distinct data sets, split so
  that every worker gets a share) and computed as one batched computation; each member still gets
  its own claim and its own run file, the same file as if it had run alone (bitwise the same
  numbers). Its run files are written one by one as the ensemble ends.
- **Failures are data.** A run that raises or diverges is recorded in its run file by the runner and
  does not stop the others. A worker that dies (``kill -9``, the OOM killer) loses only the point it
  was running: that point gets a ``failed`` run file naming the signal, a new worker takes over.
- **Interruptible.** Ctrl-C (SIGINT) stops at once: runs in progress are abandoned, leaving no
  file (their temporaries are removed), so they are pending on the next sweep. SIGTERM (``kill``,
  Slurm's time limit) asks the runs in progress to stop: they write ``stopped`` run files. Either
  way :attr:`SweepReport.interrupted` names the signal. After ``kill -9`` of everything, the next
  sweep removes the leftovers (temporaries, claim files of dead processes) before it starts.

Nothing here prints: progress goes to a :class:`SweepObserver`.
"""
from __future__ import annotations

from ...provenance import available_cores
from .grouping import ENSEMBLE_MAX_DATASETS, ENSEMBLE_MAX_MEMBERS, ensemble_groups
from .outcome import UNREADABLE, PointResult, SweepError, SweepObserver, SweepReport
from .pool import GRACE_SECONDS, clean_leftovers, run_sweep
from .worker import UnitOfWork, abandon_claim_wait, attempt_unit

__all__ = ["ENSEMBLE_MAX_DATASETS", "ENSEMBLE_MAX_MEMBERS", "GRACE_SECONDS", "UNREADABLE", "PointResult",
           "SweepError", "SweepObserver", "SweepReport", "UnitOfWork", "abandon_claim_wait", "attempt_unit",
           "available_cores", "clean_leftovers", "ensemble_groups", "run_sweep"]
