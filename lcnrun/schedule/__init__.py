"""Schedulers: how the points of an experiment get computed.

- :mod:`.local`: a pool of worker processes on this machine (``lcnrun sweep``);
- :mod:`.slurm`: array jobs of bundled tasks on a Slurm cluster (``lcnrun submit``);
- :mod:`.estimate`: what a point costs before it runs (memory of an ensemble member, time of a
  point), which both use to size their work.

A scheduler decides *where* and *when* points run; *what* one point does is
:func:`lcnrun.workflow.run_point`, and *who* runs a point right now is settled by its claim file
(:mod:`lcnrun.store.claims`), so that schedulers can run side by side without computing a run twice.
"""
