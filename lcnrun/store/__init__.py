"""Results on disk: one HDF5 file per run (:mod:`.runfile`), the experiment folder
(:mod:`.experiment`), atomic replacement (:mod:`.atomic`). No typer/rich, no lcnrun.spec: the
store receives and returns plain data."""
from .atomic import atomic_write_text, clean_stale_temporaries
from .experiment import ExperimentDir, ManifestRow
from .runfile import (FORMAT, FORMAT_VERSION, STATUSES, RunData, RunFileError, RunRecord,
                      is_complete_run, read_run, read_run_attrs, read_run_status, write_run)

__all__ = ["FORMAT", "FORMAT_VERSION", "STATUSES", "ExperimentDir", "ManifestRow", "RunData",
           "RunFileError", "RunRecord", "atomic_write_text", "clean_stale_temporaries",
           "is_complete_run", "read_run", "read_run_attrs", "read_run_status", "write_run"]
