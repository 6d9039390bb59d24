"""Sweeps on a Slurm cluster: the pending points of an experiment as array jobs of bundled tasks,
submitted with ``sbatch`` and left to Slurm (nothing waits on the login node).

One module per concept, in the order a submission goes through them:

- :mod:`.pending`: from a spec to a plan (which points, as which tasks);
- :mod:`.select`: which points are submitted (pending, stopped; failed with ``--rerun-failed``);
- :mod:`.bundle`: how many points a task runs (``--points-per-task``, or from the time of a point);
- :mod:`.plan`: tasks, arrays within ``MaxArraySize``, options, the tasks file;
- :mod:`.script`: the sbatch script of each array, and of the index job;
- :mod:`.submit`: ``sbatch`` and the record in ``results/<name>/slurm/submissions.jsonl``;
- :mod:`.probe`: what ``squeue`` / ``sacct`` say about the tasks, for ``lcnrun status``;
- :mod:`.commands`: running Slurm's commands.

A submission writes into ``results/<name>/slurm/``: ``<tag>.tasks`` (one line ``INDICES RUN_IDS``
per task), ``<tag>.sbatch`` (or ``<tag>-<k>.sbatch``, one per array), the tasks' logs
``%A_%a.out``, the index job's script ``<tag>-index.sbatch`` and log ``<tag>-index-%j.out``
(after every array, ``lcnrun status`` once: it merges the tasks' run-index journals) and a line
of ``submissions.jsonl``. With ``--max-parallel K`` (Slurm's ``%K``
throttle) split arrays run one after the other (``--dependency=afterany``), so that no more than
``K`` tasks of the submission run at once. See docs/cluster.md.
"""
