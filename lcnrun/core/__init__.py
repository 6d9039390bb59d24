"""The numerical core: numpy and scipy, plus numba for the compiled square-loss kernels
(``kernels``, loaded on first use); no CLI, YAML, HDF5 or terminal code (a test checks).

Families, each behind one registry (the only place a spec's ``kind`` becomes a class):

- ``models.MODELS``      dense (DLN), lcn (1-D and D-dim LCN)
- ``losses.LOSSES``      square, lp, pseudo_huber, log_cosh
- ``data.DATA`` / ``data.TARGETS``   gaussian, function_space, file / teacher, random_end_to_end, ...
- ``init.INITS``         gaussian, balanced, file, explicit
- ``dynamics.DYNAMICS``  gradient_descent, gradient_flow, ...
"""
