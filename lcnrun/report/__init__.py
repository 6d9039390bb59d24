"""Reports on results: plain data for the CLI to render (nothing here prints).

- :mod:`.source`:  what a user names (an experiment folder, a spec file, a folder of run files)
  -> its run files and sweep points; reading thousands of run files' attributes quickly.
- :mod:`.status`:  counts of completed / diverged / failed / stopped / running / pending runs.
- :mod:`.summary`: one row per run (the spec values that vary, status, final figures), filters,
  sorting, aggregation over seeds.
- :mod:`.diff`:    two runs or two experiments compared within tolerances.
"""
