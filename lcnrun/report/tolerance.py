"""The default tolerances of ``lcnrun diff`` (:mod:`lcnrun.report.diff`), in a module of their own
so that the command line can show them in its help without importing the comparison (numpy, the
run files).

Numbers ``a``, ``b`` are equal when ``|a - b| <= atol + rtol * max(|a|, |b|)``: runs of one code
version on one machine are bitwise identical; these admit the last-digit changes of a reordered
sum, nothing a researcher would see.
"""
DEFAULT_RTOL = 1e-9
DEFAULT_ATOL = 1e-12
