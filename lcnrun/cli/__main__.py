"""``python -m lcnrun.cli ARGS`` is ``lcnrun ARGS`` (what a Slurm array task runs: the submitting
interpreter, whether or not the ``lcnrun`` entry point is on the task's PATH)."""
from . import app

app(prog_name="lcnrun")
