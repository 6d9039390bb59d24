"""Reading the ``.npz`` files a spec names (data sets, initial points)."""
from __future__ import annotations

import numpy as np

from .options import OptionError


def read_npz_arrays(path: str, keys: list[str]) -> list[np.ndarray]:
    """The float arrays ``keys`` of an ``.npz`` file; OptionError (key ``path``) if it cannot be
    read, is not an npz, lacks one of them, or one is not real (complex, strings, objects)."""
    try:
        with np.load(path) as f:
            missing = [k for k in keys if k not in f]
            if missing:
                raise OptionError("path", f"{path} lacks {', '.join(repr(k) for k in missing)} "
                                          f"(has {sorted(f.files)})")
            arrays = [f[k] for k in keys]
            for k, a in zip(keys, arrays):
                if a.dtype.kind not in "biuf":  # complex: casting would drop the imaginary part
                    raise OptionError("path", f"{path}: {k!r} has dtype {a.dtype}; it must hold real "
                                              "numbers (float, int or bool)")
            return [np.asarray(a, dtype=float) for a in arrays]
    except OptionError:  # a ValueError too: keep its own message
        raise
    except OSError as err:
        raise OptionError("path", f"cannot read {path}: {err}") from None
    except ValueError as err:
        raise OptionError("path", f"{path} is not a numpy .npz file ({err})") from None
