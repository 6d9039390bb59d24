"""One run = one self-contained HDF5 file ``runs/<run_id>.h5`` (docs/spec.md section 3).

Layout (``format_version`` 1)::

    /                     attrs: format="lcnrun-run", format_version=1, run_id, status,
                                 lcnrun_version, write_token (random, one per write), the
                                 record's extra attrs, attrs_json
    /spec                 scalar UTF-8 string dataset: the resolved run spec (YAML)
    /provenance           scalar UTF-8 string dataset: JSON (lcnrun.provenance)
    /trajectory/<key>     one dataset per series, first axis = stored times; keys with '/' nest
                          (t, loss, grad_norm, end_to_end, params/layer_0, invariants, rank_D ...)
    /final/<key>          arrays of the last state;  attrs: loss, grad_norm, t, ...
    /diagnostics/<name>/  arrays as datasets, scalar figures as attrs

Conventions:

- Attribute values are scalars only: str (stored as variable-length UTF-8), bool (numpy bool),
  int, float (numpy types, and 0-d arrays, keep their dtype). A ``None`` value is *not stored*: readers give a
  missing attribute, which a table shows as empty. Arrays go into datasets.
- Arrays are stored in their own dtype, never converted (bitwise reproducibility); only numeric
  and bool dtypes are accepted. Datasets of at least ``COMPRESS_MIN_BYTES`` are chunked and
  gzip-compressed (lossless, level 1, with shuffle); smaller ones are contiguous and uncompressed
  (thousands of small files: speed first).
- ``attrs_json`` (root attribute) is a JSON copy of every scalar attribute in the file under the
  names :func:`read_run_attrs` returns (``status``, ``final.loss``, ``diagnostics.<name>.<key>``).
  It lets a listing read one attribute per file instead of dozens (HDF5 costs ~30 us per
  attribute). The individual attributes stay authoritative; a file without ``attrs_json`` is
  read by walking them.
- The file is made in memory, written to a hidden temporary in the same folder with one plain
  write, and renamed into place (:mod:`lcnrun.store.atomic`): a file under its final name is
  always whole, and a full disk is a plain ``OSError`` with nothing left behind.
"""
from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import importlib
import stat

import numpy as np

from .. import interrupt
from ..provenance import lcnrun_version
from .atomic import atomic_replace
from .index import note_written


class _OnUse:
    """A module imported when first used: importing h5py costs ~0.3 s, which ``lcnrun status``
    (answered from the index, :mod:`lcnrun.store.index`), ``validate`` and ``--help`` never need."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        module = importlib.import_module(self._name)
        self.__dict__.update(module.__dict__)  # later look-ups go straight to the module's names
        return getattr(module, attr)


h5py = _OnUse("h5py")
h5, h5a, h5d, h5f, h5g, h5o, h5p, h5s, h5t = (
    _OnUse(f"h5py.{m}") for m in ("h5", "h5a", "h5d", "h5f", "h5g", "h5o", "h5p", "h5s", "h5t"))

FORMAT = "lcnrun-run"
FORMAT_VERSION = 1
STATUSES = ("completed", "diverged", "failed", "stopped")
COMPRESS_MIN_BYTES = 1 << 20
INDEX_ATTR = "attrs_json"
#: a random token per write of a run file: which file this is (``lcnrun.policy``: a run file
#: written during a sweep is told from the one the sweep planned from, without file times)
TOKEN_ATTR = "write_token"
RESERVED_ROOT_ATTRS = ("format", "format_version", "run_id", "status", "lcnrun_version", TOKEN_ATTR,
                       INDEX_ATTR)
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")

_STR = np.dtype("O", metadata={"vlen": str})  # = h5py.string_dtype("utf-8"), without importing h5py


class RunFileError(Exception):
    """``path`` is not a readable lcnrun run file (missing, not HDF5, truncated, wrong format)."""

    def __init__(self, path: os.PathLike | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


@dataclass
class RunRecord:
    """Everything the runner hands to :func:`write_run` (plain data, no spec objects).

    ``trajectory`` and ``final_arrays`` map keys (``'/'`` nests: ``params/layer_0``) to arrays;
    ``final_attrs`` and ``attrs`` map names to scalars; ``diagnostics`` maps a diagnostic name to
    ``{"arrays": {key: array}, "scalars": {key: scalar}}``.
    """

    run_id: str
    status: str
    spec_text: str
    provenance: dict = field(default_factory=dict)
    trajectory: dict[str, np.ndarray] = field(default_factory=dict)
    final_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    final_attrs: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, dict] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunData(RunRecord):
    """A run read back by :func:`read_run`: the record (attribute values as Python scalars, arrays
    in their stored dtype, ``provenance`` parsed) plus where it came from."""

    path: Path | None = None
    format_version: int = FORMAT_VERSION
    lcnrun_version: str = ""


# -- writing ---------------------------------------------------------------------------------------
def _attr_value(where: str, value: Any) -> Any:
    """The value stored for an attribute (``None``: not stored); raises ``TypeError``."""
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "biuf":
        value = value[()]
    if isinstance(value, (bool, np.bool_)):
        return np.bool_(value)
    if isinstance(value, (str, np.str_)):
        return str(value)
    if isinstance(value, int):
        return np.int64(value)
    if isinstance(value, float):
        return np.float64(value)
    if isinstance(value, (np.integer, np.floating)):
        return value
    raise TypeError(f"attribute {where}: {type(value).__name__} is not a str/bool/int/float "
                    "scalar (store arrays as datasets)")


def _python_scalar(value: Any) -> Any:
    """A stored attribute value as a plain Python value (arrays, from foreign files, unchanged)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, np.generic):
        value = value.item()
        return value.decode("utf-8") if isinstance(value, bytes) else value
    return value


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _name(name: str) -> bytes:
    """An HDF5 name as h5py's high-level API encodes it (ASCII if it can, else UTF-8)."""
    try:
        return name.encode("ascii")
    except UnicodeEncodeError:
        return name.encode("utf-8")


@lru_cache(maxsize=None)
def _htypes(dtype_str: str) -> tuple:
    """``(file type, memory type)`` of a numeric dtype (``dtype.str``), as h5py's ``attrs[...] =``
    and ``create_dataset`` make them (``py_create`` logical, and bit for bit)."""
    dtype = np.dtype(dtype_str)
    return h5t.py_create(dtype, logical=True), h5t.py_create(dtype)


@lru_cache(maxsize=1)
def _str_htypes() -> tuple:
    """``(file type, memory type)`` of a ``str`` attribute or text dataset: variable-length UTF-8."""
    return h5t.py_create(_STR, logical=True), h5t.py_create(_STR)


@lru_cache(maxsize=1)
def _scalar_space() -> h5s.SpaceID:
    return h5s.create_simple(())


@lru_cache(maxsize=1)
def _small_dcpl() -> h5p.PropDCID:
    """The creation properties h5py's ``create_dataset(key, data=arr)`` gives a contiguous dataset
    (no chunks, no filters, no times, attribute creation order not tracked)."""
    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_obj_track_times(False)
    dcpl.set_attr_creation_order(0)
    return dcpl


def _put_attr(oid: Any, name: str, stored: Any) -> None:
    """Create the scalar attribute ``name = stored`` (a value of :func:`_attr_value`) on ``oid``.

    The very calls of h5py's ``attrs[name] = stored`` (same types, dataspace, value, so the same
    bytes in the file), minus its Python overhead (~0.15 ms per attribute, ~70 per run): the
    types and the scalar dataspace are made once. ``name`` must be new on ``oid``."""
    if isinstance(stored, str):
        htype, mtype = _str_htypes()
        data = np.asarray(stored, dtype=_STR)
    else:
        data = np.asarray(stored, order="C")
        htype, mtype = _htypes(data.dtype.str)
    attr = h5a.create(oid, _name(name), htype, _scalar_space())
    try:
        attr.write(data, mtype=mtype)
    finally:
        attr.close()


def _write_attrs(oid: Any, values: dict, prefix: str, index: dict) -> None:
    for key, value in values.items():
        stored = _attr_value(prefix + key, value)
        if stored is None:
            continue
        _put_attr(oid, key, stored)
        index[prefix + key] = _python_scalar(stored)


def _put_text(oid: Any, name: bytes, text: str) -> None:
    """A scalar variable-length UTF-8 dataset, as ``create_dataset(name, data=text, dtype=_STR)``."""
    htype, mtype = _str_htypes()
    dset = h5d.create(oid, name, htype, _scalar_space(), dcpl=_small_dcpl())
    try:
        dset.write(h5s.ALL, h5s.ALL, np.asarray(text, dtype=_STR), mtype=mtype)
    finally:
        dset.close()


def _write_dataset(group: h5py.Group, key: str, value: Any, where: str) -> None:
    if not key or key.startswith("/") or key.endswith("/"):
        raise ValueError(f"{where}: bad dataset key {key!r}")
    arr = np.asarray(value)
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"{where}/{key}: cannot store an array of dtype {arr.dtype} "
                        "(numeric or bool arrays only)")
    if arr.ndim and arr.nbytes >= COMPRESS_MIN_BYTES:
        group.create_dataset(key, data=arr, chunks=True, compression="gzip",
                             compression_opts=1, shuffle=True)
        return
    # small: what ``group.create_dataset(key, data=arr)`` does, in its low-level calls (a nested
    # key's groups made by ``require_group``, as it makes them)
    parent, _, leaf = key.rpartition("/")
    if parent:
        group = group.require_group(parent)
    data = np.asarray(arr, order="C")
    htype, mtype = _htypes(data.dtype.str)
    dset = h5d.create(group.id, _name(leaf), htype, h5s.create_simple(data.shape),
                      dcpl=_small_dcpl())
    try:
        dset.write(h5s.ALL, h5s.ALL, data, mtype=mtype)
    finally:
        dset.close()


def _write_arrays(group: h5py.Group, arrays: dict, where: str) -> None:
    for key, value in arrays.items():
        _write_dataset(group, key, value, where)


def _write_contents(f: h5py.File, record: RunRecord) -> str:
    """Write ``record`` into the open file ``f``; returns the ``attrs_json`` text stored."""
    index: dict[str, Any] = {}
    clash = set(record.attrs) & set(RESERVED_ROOT_ATTRS)
    if clash:
        raise ValueError(f"record.attrs may not set the reserved attributes {sorted(clash)}")
    root = {"format": FORMAT, "format_version": FORMAT_VERSION, "run_id": record.run_id,
            "status": record.status, "lcnrun_version": lcnrun_version(),
            TOKEN_ATTR: secrets.token_hex(8), **record.attrs}
    top = f["/"].id
    _write_attrs(top, root, "", index)
    _put_text(top, b"spec", record.spec_text)
    _put_text(top, b"provenance", json.dumps(
        record.provenance, sort_keys=True, ensure_ascii=False, default=_json_default))
    _write_arrays(f.create_group("trajectory"), record.trajectory, "trajectory")
    final = f.create_group("final")
    _write_arrays(final, record.final_arrays, "final")
    _write_attrs(final.id, record.final_attrs, "final.", index)
    diagnostics = f.create_group("diagnostics")
    for name, parts in record.diagnostics.items():
        if not name or "/" in name or "." in name:
            raise ValueError(f"diagnostics: bad diagnostic name {name!r} (no '/' or '.')")
        unknown = set(parts) - {"arrays", "scalars"}
        if unknown:
            raise ValueError(f"diagnostics/{name}: unknown parts {sorted(unknown)} "
                             "(expected 'arrays' and 'scalars')")
        group = diagnostics.create_group(name)
        _write_arrays(group, parts.get("arrays", {}), f"diagnostics/{name}")
        _write_attrs(group.id, parts.get("scalars", {}), f"diagnostics.{name}.", index)
    text = json.dumps(index, ensure_ascii=False, separators=(",", ":"))
    _put_attr(top, INDEX_ATTR, text)
    return text


def write_run(path: os.PathLike | str, record: RunRecord, *, fsync: bool = True) -> Path:
    """Write ``record`` to ``path`` atomically (see the module docstring); returns ``path``.

    The parent folder is created if needed. On any exception nothing is left behind: neither a
    file under ``path`` (an existing one is kept as it was) nor the temporary.
    ``fsync=False`` skips the two fsyncs (tests, scratch folders): still atomic, not durable.
    """
    path = Path(path)
    if not RUN_ID_PATTERN.match(record.run_id):
        raise ValueError(f"run id {record.run_id!r} must match {RUN_ID_PATTERN.pattern}")
    if record.status not in STATUSES:
        raise ValueError(f"status {record.status!r} must be one of {', '.join(STATUSES)}")
    image, index_text = _file_image(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_replace(path, fsync=fsync) as tmp:
        with open(tmp, "xb") as fh:
            _write_image(fh, image)
        interrupt.barrier("writing")  # tests: a signal between the temporary and the rename
    # the run index beside the run files (lcnrun.store.index), from what was just written
    note_written(path, _index_contents(record, index_text))
    return path


def _index_contents(record: RunRecord, index_text: str) -> tuple[dict, dict] | None:
    """``(read_run_attrs, read_series(KEPT_SERIES))`` of the file just made of ``record``, without
    reading it back: the attributes are the ``attrs_json`` text parsed as the reader parses it,
    the spec the text stored; the kept series the record's arrays where the file gives them back
    as they are (1-D native float64). ``None`` (read the file) for anything else: a spec with a
    NUL (HDF5 strings end at one) or a kept series of another dtype or shape."""
    from .index import KEPT_SERIES  # noqa: PLC0415

    if "\x00" in record.spec_text:
        return None
    series = {}
    for key in KEPT_SERIES:
        if key not in record.trajectory:
            continue
        arr = np.asarray(record.trajectory[key])
        if arr.dtype != np.float64 or not arr.dtype.isnative or arr.ndim != 1:
            return None
        series[key] = arr.copy()
    attrs = json.loads(index_text)
    attrs["spec"] = record.spec_text
    return attrs, series


def _write_image(fh, image: bytes) -> None:
    fh.write(image)


def _file_image(record: RunRecord) -> tuple[bytes, str]:
    """The bytes of the run file of ``record`` and its ``attrs_json`` text, made in memory (HDF5's ``core`` driver): the disk
    sees one plain write, so a full disk or a read-only folder is one ``OSError`` of Python's,
    not an HDF5 error in the middle of a file (h5py then fails in ``__dealloc__`` of every open
    object, hundreds of messages, sometimes a crash)."""
    with h5py.File(f"lcnrun-run-{record.run_id}", "w", driver="core", backing_store=False,
                   locking=False) as f:
        index_text = _write_contents(f, record)
        f.flush()
        return f.id.get_file_image(), index_text


# -- reading: fast path (low-level h5py, attributes and spec only) -------------------------------
@lru_cache(maxsize=1)
def _fast_fapl() -> h5p.PropFAID:
    fapl = h5p.create(h5p.FILE_ACCESS)
    fapl.set_fclose_degree(h5f.CLOSE_STRONG)  # closing the file releases everything at once
    try:
        fapl.set_file_locking(False, True)  # run files are immutable once in place
    except (AttributeError, RuntimeError):
        pass
    return fapl


@lru_cache(maxsize=1)
def _str_memtype() -> h5t.TypeID:
    return h5t.py_create(_STR)


def _open_fast(path: Path) -> h5f.FileID:
    try:
        return h5f.open(os.fsencode(path), h5f.ACC_RDONLY, fapl=_fast_fapl())
    except (OSError, ValueError) as exc:
        if not path.exists():
            raise RunFileError(path, "no such file") from exc
        raise RunFileError(path, f"not a readable HDF5 file ({exc})") from exc


def _decode_name(name: bytes) -> str | bytes:
    """An HDF5 name as h5py's high-level API gives it: UTF-8 text, else the bytes."""
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return name


@lru_cache(maxsize=1)
def _known_types() -> tuple:
    """``(file type, dtype, memory type)`` of the types lcnrun writes (:func:`_put_attr`,
    :func:`_write_dataset`): an attribute or dataset of a type equal to one of them
    (``H5Tequal``: every property) has that dtype, without h5py translating the type anew
    (~20 us each)."""
    known = [(*_htypes(np.dtype(t).str), np.dtype(t)) for t in ("<f8", "<i8", "|b1")]
    known.append((*_str_htypes(), _STR))
    return tuple((file_type, dtype, mtype) for file_type, mtype, dtype in known)


def _known_type(tid: h5t.TypeID) -> tuple[np.dtype, h5t.TypeID] | None:
    """``(dtype, memory type)`` of a type of :func:`_known_types`, else ``None``."""
    for file_type, dtype, mtype in _known_types():
        if tid.equal(file_type):
            return dtype, mtype
    return None


def _memtype(dtype: np.dtype) -> h5t.TypeID | None:
    """The memory type h5py's ``read`` makes for a plain numeric or bool dtype, made once per
    dtype (``py_create`` costs ~20 us a call); ``None`` (let ``read`` make it) for others."""
    if dtype.kind in "biufc" and dtype.metadata is None and dtype.fields is None:
        return _htypes(dtype.str)[1]
    return None


def _read_attr(attr: h5a.AttrID) -> Any:
    """An attribute's value as ``_python_scalar(attrs[name])`` of h5py's high-level API gives it
    (the same calls, minus most of its ~0.1 ms of Python per attribute): a plain Python scalar
    (``str`` decoded from UTF-8), an array for a foreign file's array attribute, ``h5py.Empty``
    for an empty dataspace."""
    shape = attr.shape
    known = _known_type(attr.get_type()) if shape == () else None
    if known is not None:
        out = np.zeros((), dtype=known[0])
        attr.read(out, mtype=known[1])
        value = out[()]
        if known[0] is _STR:  # variable-length strings are read as bytes
            return value.decode("utf-8", "surrogateescape")
        return _python_scalar(value)
    if shape is None:
        return h5py.Empty(attr.dtype)
    dtype = attr.dtype
    mtype = h5t.py_create(dtype)
    if dtype.subdtype is not None:  # a top-level array type: numpy takes its shape instead
        dtype, subshape = dtype.subdtype
        shape = shape + subshape
    out = np.zeros(shape, dtype=dtype)
    attr.read(out, mtype=mtype)
    info = h5t.check_string_dtype(dtype)
    if info is not None and info.length is None:  # variable-length strings are read as bytes
        out = np.array([b.decode("utf-8", "surrogateescape") for b in out.flat],
                       dtype=dtype).reshape(out.shape)
    return _python_scalar(out[()] if out.ndim == 0 else out)


def _attr_order(oid: Any) -> int:
    """The index h5py's high-level API lists an object's attributes by: creation order if the
    object tracks it (foreign files), else names (lcnrun's files: alphabetical)."""
    tracked = oid.get_create_plist().get_attr_creation_order() & h5p.CRT_ORDER_TRACKED
    return h5.INDEX_CRT_ORDER if tracked else h5.INDEX_NAME


def _walk_attrs(oid: Any, prefix: str, out: dict, skip: tuple[str, ...] = ()) -> None:
    """Every attribute of ``oid`` (a group or dataset id) into ``out[prefix + name]``, in h5py's
    order (``attrs.items()``), except the names in ``skip``."""
    order = _attr_order(oid)
    for i in range(h5a.get_num_attrs(oid)):
        attr = h5a.open(oid, index=i, index_type=order)
        name = _decode_name(attr.name)
        if name not in skip:
            out[prefix + name if prefix else name] = _read_attr(attr)


def _walk_all_attrs(fid: h5f.FileID) -> dict:
    out: dict[str, Any] = {}
    root = h5g.open(fid, b"/")
    _walk_attrs(root, "", out, (INDEX_ATTR,))
    if b"final" in root:
        _walk_attrs(h5g.open(fid, b"final"), "final.", out)
    if b"diagnostics" in root:
        diagnostics = h5g.open(fid, b"diagnostics")
        for name in diagnostics:
            _walk_attrs(h5g.open(diagnostics, name), f"diagnostics.{_decode_name(name)}.", out)
    return out


def _read_text(fid: h5f.FileID, name: bytes) -> str:
    dset = h5d.open(fid, name)
    out = np.empty((), dtype=_STR)
    dset.read(h5s.ALL, h5s.ALL, out, mtype=_str_memtype())
    value = out[()]
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _check_format(path: Path, fmt: Any, version: Any) -> None:
    if fmt != FORMAT:
        raise RunFileError(path, f"not an lcnrun run file (format attribute is {fmt!r}, "
                                 f"expected {FORMAT!r})")
    if not isinstance(version, int) or version < 1:
        raise RunFileError(path, f"bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise RunFileError(path, f"written by a newer lcnrun (format_version {version} > "
                                 f"{FORMAT_VERSION}); upgrade lcnrun to read it")


def _regular(path: Path) -> None:
    """Only a regular file is a run file: never open a FIFO (it would block) or a device."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise RunFileError(path, "no such file") from None
    except OSError as exc:
        raise RunFileError(path, f"cannot stat ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise RunFileError(path, "not a regular file")


def _fast(path: os.PathLike | str, body, check_marks: bool = True) -> Any:
    path = Path(path)
    _regular(path)
    fid = _open_fast(path)
    try:
        out = body(path, fid)
    except RunFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise RunFileError(path, f"unreadable run file ({exc})") from exc
    finally:
        fid.close()
    if check_marks:  # a file found unreadable where it was needed is unreadable everywhere
        from .index import unreadable_mark  # noqa: PLC0415

        reason = unreadable_mark(path)
        if reason is not None:
            raise RunFileError(path, reason)
    return out


def _attrs_body(path: Path, fid: h5f.FileID, walk: bool) -> dict:
    if not walk and h5a.exists(fid, INDEX_ATTR.encode()):
        out = json.loads(_read_attr(h5a.open(fid, INDEX_ATTR.encode())))
    else:
        out = _walk_all_attrs(fid)
    _check_format(path, out.get("format"), out.get("format_version"))
    out["spec"] = _read_text(fid, b"spec")
    return out


def read_run_attrs(path: os.PathLike | str, *, walk: bool = False, check_marks: bool = True) -> dict[str, Any]:
    """Every scalar of a run, without reading any array: fast enough for 10,000 files.

    Returns ``{root attr: value, "final.<key>": value, "diagnostics.<name>.<key>": value,
    "spec": resolved spec YAML text}`` with plain Python values (``format``, ``format_version``,
    ``run_id``, ``status``, ``lcnrun_version`` always present). Reads the ``attrs_json`` index
    attribute and the ``spec`` dataset; ``walk=True`` (or a file without the index) reads the
    attributes one by one instead. Raises :class:`RunFileError`, also for a file that an earlier
    full read found unreadable (:func:`lcnrun.store.index.mark_unreadable`; ``check_marks=False``
    skips that look-up).
    """
    return _fast(path, lambda p, fid: _attrs_body(p, fid, walk), check_marks)


def _status_body(path: Path, fid: h5f.FileID) -> str:
    values = {}
    for name in ("format", "format_version", "status"):
        values[name] = _read_attr(h5a.open(fid, name.encode())) \
            if h5a.exists(fid, name.encode()) else None
    _check_format(path, values["format"], values["format_version"])
    if values["status"] not in STATUSES:
        raise RunFileError(path, f"bad status {values['status']!r}")
    return values["status"]


def read_run_status(path: os.PathLike | str, *, check_marks: bool = True) -> str:
    """The ``status`` of a run file (three attributes read). Raises :class:`RunFileError` (as
    :func:`read_run_attrs`)."""
    return _fast(path, _status_body, check_marks)


def _state_body(path: Path, fid: h5f.FileID) -> tuple[str, str | None]:
    token = (_read_attr(h5a.open(fid, TOKEN_ATTR.encode()))
             if h5a.exists(fid, TOKEN_ATTR.encode()) else None)
    return _status_body(path, fid), token


def read_run_state(path: os.PathLike | str) -> tuple[str, str | None]:
    """``(status, write token)`` of a run file (``None`` for a file written before tokens).
    Raises :class:`RunFileError`."""
    return _fast(path, _state_body)


def is_complete_run(path: os.PathLike | str) -> bool:
    """Whether ``path`` holds a whole, readable lcnrun run file (any status). Never raises."""
    try:
        read_run_status(path)
    except RunFileError:
        return False
    return True


# -- reading: everything ---------------------------------------------------------------------------
def _read_dataset(dset: h5d.DatasetID) -> np.ndarray:
    """A whole dataset as an array of its stored dtype and shape (0-d for a scalar dataset)."""
    known = _known_type(dset.get_type())
    array = np.empty(dset.shape, dtype=dset.dtype if known is None else known[0])
    if array.size:
        dset.read(h5s.ALL, h5s.ALL, array,
                  mtype=_memtype(array.dtype) if known is None else known[1])
    return array


def _read_arrays(gid: h5g.GroupID) -> dict[str, np.ndarray]:
    """``{name: array}`` of every dataset below the group ``gid``, nested names joined by ``'/'``
    (``params/layer_0``): the objects and order of h5py's ``visititems`` (the same ``H5Ovisit``:
    names increasing, depth first, each object once, soft links not followed), each object
    opened once as ``visititems`` opens it (``h5o.open``)."""
    names: list[bytes] = []
    h5o.visit(gid, names.append)
    out = {}
    for name in names:
        oid = h5o.open(gid, name)
        if isinstance(oid, h5d.DatasetID):
            out[_decode_name(name)] = _read_dataset(oid)
    return out


def _attrs_of(oid: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _walk_attrs(oid, "", out)
    return out


def _run_body(path: Path, fid: h5f.FileID) -> RunData:
    root_gid = h5g.open(fid, b"/")
    root: dict[str, Any] = {}
    _walk_attrs(root_gid, "", root, (INDEX_ATTR,))  # its copy of the attributes: not needed
    _check_format(path, root.get("format"), root.get("format_version"))
    diagnostics = {}
    if b"diagnostics" in root_gid:
        diagnostics_gid = h5g.open(root_gid, b"diagnostics")
        for name in diagnostics_gid:
            gid = h5g.open(diagnostics_gid, name)
            diagnostics[_decode_name(name)] = {"arrays": _read_arrays(gid),
                                               "scalars": _attrs_of(gid)}
    final = h5g.open(root_gid, b"final") if b"final" in root_gid else None
    return RunData(
        run_id=root["run_id"], status=root["status"],
        spec_text=_read_text(fid, b"spec"),
        provenance=json.loads(_read_text(fid, b"provenance")),
        trajectory=(_read_arrays(h5g.open(root_gid, b"trajectory"))
                    if b"trajectory" in root_gid else {}),
        final_arrays=_read_arrays(final) if final is not None else {},
        final_attrs=_attrs_of(final) if final is not None else {},
        diagnostics=diagnostics,
        attrs={k: v for k, v in root.items() if k not in RESERVED_ROOT_ATTRS},
        path=path, format_version=root["format_version"],
        lcnrun_version=root["lcnrun_version"])


def read_run(path: os.PathLike | str) -> RunData:
    """Everything in a run file, arrays as numpy arrays in their stored dtype.

    Returns the :class:`RunData` that h5py's high-level API gives (attributes as by
    ``attrs.items()``, datasets as by ``visititems`` and ``dset[()]``: the same values, types and
    key orders), read through its low-level API (a small file in ~3 ms of CPU instead of ~6:
    no high-level object, selection or type translation per attribute and dataset). Raises
    :class:`RunFileError` for a file that is missing, not HDF5, truncated, not an lcnrun run
    file, or whose contents cannot be read; all but a missing file and a wrong format are then
    marked unreadable for every reader (:func:`lcnrun.store.index.mark_unreadable`).
    """
    path = Path(path)
    _regular(path)
    try:
        fid = _open_fast(path)
    except RunFileError as err:  # not HDF5, truncated: said as the full read always said it
        exc = err.__cause__ or err
        err = RunFileError(path, f"unreadable run file ({type(exc).__name__}: {exc})")
        _mark(path, err.reason)
        raise err from exc
    try:
        return _run_body(path, fid)
    except RunFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        # its attributes may read fine (status and summary read only those): tell every reader
        err = RunFileError(path, f"unreadable run file ({type(exc).__name__}: {exc})")
        _mark(path, err.reason)
        raise err from exc
    finally:
        fid.close()


def _mark(path: Path, reason: str) -> None:
    from .index import mark_unreadable  # noqa: PLC0415

    mark_unreadable(path, reason)
