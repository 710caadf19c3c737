"""Your own data as a training source: arrays ``(N, *D)`` from ``.npy``, ``.pt`` or CSV files.

    from scoresde.data import load_data
    data = load_data("ring.npy")              # an ArrayDataset, (N, 2)
    x = data.sample(512, generator=torch.Generator().manual_seed(0))

Every file is checked on load: it must hold a numeric array with at least one row and one
column, and every entry must be finite; anything else raises ``DataError`` naming the file
and the problem.
"""

from __future__ import annotations

import csv
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from solvers.inputs import as_count, check_device, check_generator

__all__ = ["ArrayDataset", "DataError", "load_array", "as_tensor_data", "draw_rows", "check_representable",
           "integer_levels", "ARRAY_SUFFIXES"]

ARRAY_SUFFIXES = (".npy", ".pt", ".pth", ".csv", ".tsv", ".txt")


class DataError(ValueError):
    """User data that cannot be used: missing, empty, wrong shape, non-numeric or non-finite."""


def draw_rows(rows: Tensor, n: int, generator: torch.Generator | None,
              device: torch.device | str | None) -> tuple[Tensor, torch.device]:
    """``n`` rows of ``rows: (N, *D)`` drawn uniformly with replacement, and the device to return them on.

    The indices are drawn on ``generator``'s device (the CPU without one); the result should go
    to ``device`` if given, else there.

    Raises:
        NotAnIntegerError: ``n`` is not an integer. ValueError: ``n < 1``, an unknown device.
        TypeError: ``generator`` is not a ``torch.Generator``.
    """
    n = as_count(n, "n")
    check_generator(generator)
    where = None if device is None else check_device(device)
    gdev = generator.device if generator is not None else torch.device("cpu")
    idx = torch.randint(rows.shape[0], (n,), generator=generator, device=gdev)
    return rows[idx.to(rows.device)], where or gdev


def check_sample_dtype(dtype: Any) -> torch.dtype | None:
    """``dtype`` for a dataset's ``sample``: ``None`` or a floating ``torch.dtype`` (as the toys take).

    Raises:
        TypeError: anything else (an integer or bool dtype would truncate the data silently).
    """
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point
                              or dtype.is_complex):
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    return dtype


class ArrayDataset:
    """A fixed array of samples ``(N, *D)`` with a seeded sampler (uniform, with replacement).

    Args:
        data: ``(N, *D)`` tensor (checked: numeric, finite, ``N >= 1``); kept in float64 unless
            it is float32 already.
        name: label for logs, configs and error messages (a file name, or ``"array"``).

    ``sample(n, generator=g)`` draws ``n`` rows uniformly with replacement, so a training run's
    data stream is fixed by one generator state (which is what makes resuming exact).
    """

    def __init__(self, data: Tensor | np.ndarray, *, name: str = "array") -> None:
        self.data = _own(as_tensor_data(data, name), data)
        self.name = name
        self.stored_integers = _holds_integers(data)  # integers (pixel levels) before the float conversion

    @property
    def shape(self) -> tuple[int, ...]:
        """``D``: the shape of one sample."""
        return tuple(int(s) for s in self.data.shape[1:])

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def sample(
        self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """``n`` rows drawn uniformly with replacement: ``(n, *D)``.

        Raises:
            NotAnIntegerError: ``n`` is not an integer (``2.0`` included).
            ValueError: ``n < 1``, or an unknown / unavailable ``device``.
            TypeError: ``generator`` is not a ``torch.Generator``; ``dtype`` not a floating dtype.
        """
        dtype = check_sample_dtype(dtype)
        out, where = draw_rows(self.data, n, generator, device)
        return out.to(dtype=dtype or torch.float32, device=where)

    def __repr__(self) -> str:
        return f"ArrayDataset(name={self.name!r}, n={len(self)}, shape={self.shape})"


def _holds_integers(data: Any) -> bool:
    """Whether an array or tensor has an integer dtype (not bool, float or complex)."""
    if isinstance(data, np.ndarray):
        return data.dtype.kind in "iu"
    return isinstance(data, Tensor) and not (data.is_floating_point() or data.is_complex() or data.dtype == torch.bool)


def _own(tensor: Tensor, given: Any) -> Tensor:
    """``tensor``, copied when it shares memory with ``given`` (the caller's array or CPU tensor):
    a data set keeps its own values, so that a later in-place change of the caller's array can
    change neither what is trained on nor the identity recorded for it (`data_identity`)."""
    if isinstance(given, np.ndarray):
        shared = np.may_share_memory(tensor.numpy(), given)  # a bounds test: cheap, and errs towards a copy
    elif isinstance(given, Tensor) and given.device.type == "cpu" and given.layout == torch.strided:
        shared = tensor.untyped_storage().data_ptr() == given.untyped_storage().data_ptr()
    else:
        shared = False
    return tensor.clone() if shared else tensor


def as_tensor_data(data: Any, name: str = "array") -> Tensor:
    """Check that ``data`` is a usable ``(N, *D)`` numeric, finite array; return it as a tensor.

    Raises:
        DataError: not numeric, fewer than 2 dimensions, no rows, or NaN / infinite entries.
    """
    if isinstance(data, np.ndarray):
        if not (np.issubdtype(data.dtype, np.number) or data.dtype == np.bool_):
            raise DataError(f"{name}: expected a numeric array, got dtype {data.dtype}")
        if np.iscomplexobj(data):
            raise DataError(f"{name}: complex data is not supported")
        if data.dtype.kind == "f" and data.dtype.itemsize > 8:  # np.longdouble: torch has no such type
            data = _narrow_longdouble(data, name)
        data = torch.from_numpy(np.ascontiguousarray(data))
    if not isinstance(data, Tensor):
        raise DataError(f"{name}: expected an array or tensor, got {type(data).__name__}")
    if data.layout != torch.strided:  # a sparse tensor: the same values, stored densely
        data = data.to_dense()
    if data.is_complex():
        raise DataError(f"{name}: complex data is not supported")
    if not data.is_floating_point():
        data = data.to(torch.float64)
    elif data.dtype not in (torch.float32, torch.float64):
        data = data.to(torch.float32)
    data = data.detach().cpu()
    if data.ndim < 2:
        raise DataError(
            f"{name}: expected shape (N, D) (one sample per row), got {tuple(data.shape)}; "
            "reshape 1-D data to (N, 1)"
        )
    if data.shape[0] == 0 or data[0].numel() == 0:
        raise DataError(f"{name}: the data is empty (shape {tuple(data.shape)})")
    bad = ~torch.isfinite(data.reshape(data.shape[0], -1)).all(dim=1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten()
        raise DataError(
            f"{name}: {len(rows)} of {data.shape[0]} rows contain NaN or infinite values "
            f"(first at row index {int(rows[0])}, counting from 0); remove or impute them"
        )
    return data.contiguous()


def _narrow_longdouble(data: np.ndarray, name: str) -> np.ndarray:
    """``data`` (extended precision, e.g. ``np.longdouble``) as float64; refuses values beyond its range."""
    with np.errstate(over="ignore"):
        out = data.astype(np.float64)
    lost = np.isfinite(data) & ~np.isfinite(out)
    if lost.any():
        row = int(np.argwhere(lost)[0][0])
        raise DataError(f"{name}: row {row} holds a value beyond the float64 range ({data.dtype} data are "
                        "read as float64); rescale the data")
    return out


def check_representable(x: Tensor, dtype: torch.dtype, name: str, hint: str) -> None:
    """Refuse finite values of ``x: (N, *D)`` that overflow ``dtype`` (they would become inf).

    Raises:
        DataError: naming ``name``, the first such row and its value, and ``hint`` (the fix).
    """
    if not dtype.is_floating_point or x.shape[0] == 0:
        return
    if x.is_floating_point() and torch.finfo(x.dtype).max <= torch.finfo(dtype).max:
        return  # every finite value fits
    big = torch.finfo(dtype).max
    rows = x.reshape(x.shape[0], -1)
    rows = rows if rows.is_floating_point() else rows.to(torch.float64)
    over = (rows.abs() > big).any(dim=1)
    if not bool(over.any()):
        return
    bad = torch.nonzero(over).flatten()
    row = int(bad[0])
    value = float(rows[row][rows[row].abs() > big][0])
    raise DataError(
        f"{name}: {len(bad)} row(s) hold values that overflow {str(dtype).replace('torch.', '')} (largest "
        f"{big:.4g}); row {row} holds {value:.6g}. {hint}"
    )


def _load_pt(path: Path) -> Any:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if first.startswith("Weights only load failed"):  # torch's advice to unpickle code does not apply here
            import zipfile

            first = ("holds objects other than tensors, which are not unpickled: loading them could run code"
                     if zipfile.is_zipfile(path) else "neither a zip archive, as torch.save writes, nor tensors in its older format")
        raise DataError(
            f"{path}: not a readable torch file of plain tensors ({first}); save it with "
            "torch.save(tensor, path)"
        ) from None
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
        if len(tensors) != 1:
            raise DataError(
                f"{path}: a .pt data file must hold one tensor (or a dict with exactly one), "
                f"found keys {sorted(map(str, obj))}"
            )
        obj = next(iter(tensors.values()))
    return obj


def _reads_as_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _is_number(token: str) -> bool:
    """Whether a field reads as a number the way numpy's table reader reads it (so no ``1_000``)."""
    return "_" not in token and _reads_as_float(token)


def _to_number(token: str) -> float:
    if not _is_number(token):
        raise ValueError(f"{token!r} is not a number")
    return float(token)


def _quoted(line: str, delimiter: str | None) -> list[bool]:
    """Which raw fields of a line are quoted (``"1"``); a field pattern, not a parse."""
    parts = line.split(delimiter) if delimiter is not None else line.split()
    return [part.strip().startswith('"') for part in parts]


def _split(line: str, delimiter: str | None) -> list[str]:
    """The fields of one table line, stripped; with a delimiter read as CSV, so that quoted
    fields (``"x","y"``, ``"1",0.5``, as R's ``write.csv`` and pandas' ``QUOTE_NONNUMERIC`` write
    them) lose their quotes."""
    if delimiter is None:
        return [t.strip().strip('"') for t in line.split()]
    fields = next(csv.reader([line], delimiter=delimiter, skipinitialspace=True), [])
    return [t.strip() for t in fields]


def _load_text(path: Path) -> np.ndarray:
    delimiter = {".csv": ",", ".tsv": "\t"}.get(path.suffix.lower())
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text table (is it a binary file with the wrong suffix?)") from None
    numbered = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip() and not ln.lstrip().startswith("#")]
    lines = [ln for _, ln in numbered]
    if not lines:
        raise DataError(f"{path}: the file has no data rows")
    if delimiter == "," and not any("," in ln for ln in lines) and any("\t" in ln for ln in lines):
        delimiter = "\t"  # a tab-separated table saved as .csv
    if delimiter is None and all("," in ln for ln in lines):
        delimiter = ","  # a comma-separated table saved as .txt (its first row was taken as a header)
    first = _split(lines[0], delimiter)
    # pandas' to_csv writes an unnamed index column under an empty first header cell (",a,b"),
    # R's write.csv a quoted empty one ('"","a","b"')
    index_column = delimiter is not None and len(first) > 1 and not first[0] and all(first[1:])
    # R's write.csv quotes its column names and not its numbers: a first line of quoted numbers
    # ('"1","2"') above unquoted rows is a header, not data
    quoted_header = len(lines) > 1 and any(_quoted(lines[0], delimiter)) \
        and _quoted(lines[0], delimiter) != _quoted(lines[1], delimiter)
    numeric_first = all(_reads_as_float(t) for t in first if t)  # '1_000' is a bad number, not a label
    skip = 0 if numeric_first and not index_column and not quoted_header else 1  # optional header line
    body = numbered[skip:]
    if not body:
        shown = lines[0] if len(lines[0]) <= 60 else lines[0][:57] + "..."
        raise DataError(f"{path}: no data rows: its only line, {shown!r}, is not all numbers, so it was read "
                        f"as a header (column names); a table of data needs numeric rows (write booleans "
                        f"as 1 / 0)")
    try:
        if '"' in text:  # quoted fields: the csv module's reading (slower), else numpy's
            rows = [_split(line, delimiter) for _, line in body]
            out = np.array([[_to_number(t) for t in fields] for fields in rows], dtype=np.float64)
            if out.ndim != 2:
                raise ValueError("ragged rows")
        else:
            out = np.loadtxt([line for _, line in body], delimiter=delimiter, ndmin=2, dtype=np.float64)
    except ValueError as err:
        bad = _first_bad_line([(number, _split(line, delimiter)) for number, line in body])
        raise DataError(f"{path}: not a numeric table: {bad or err}") from None
    if index_column:  # the row labels are not a dimension of the data
        if out.shape[1] < 2:
            raise DataError(f"{path}: the header {lines[0]!r} marks an index column but there is no data column")
        out = out[:, 1:]
    return out


def _first_bad_line(rows: list[tuple[int, list[str]]]) -> str | None:
    """Where a table stops being numeric: ``"line L: ..."`` (1-based file line) or ``None``.

    A row with another number of fields than the first data row, or a field that is not a
    number (with a hint when ``;`` separates the fields, as in some locales' CSV).
    """
    width = None
    for number, fields in rows:
        if width is None:
            width = len(fields)
        if len(fields) != width:
            return f"line {number} has {len(fields)} fields where the first data row has {width}"
        for column, field in enumerate(fields, start=1):
            if not _is_number(field):
                hint = "; the fields look separated by ';': save the table with ',' separators" \
                    if ";" in field else ""
                return f"line {number}, column {column}: {field!r} is not a number{hint}"
    return None


def load_array(path: str | Path) -> ArrayDataset:
    """Read ``(N, *D)`` samples from a ``.npy``, ``.pt``/``.pth``, ``.csv``, ``.tsv`` or ``.txt`` file.

    CSV/TSV/TXT: one sample per row, comma / tab / whitespace separated (a ``.csv`` whose lines
    hold tabs and no commas is read as tab-separated, a ``.txt`` whose every line holds a comma
    as comma-separated); a first line that is not all numbers is
    taken as a header and skipped; a header whose first cell is empty (``,a,b``, as pandas'
    ``to_csv`` writes it, or ``"",a,b`` as R's ``write.csv`` does) marks an index column, which
    is dropped; quoted fields (``"1",0.5``) are read without their quotes; lines starting with ``#``
    are ignored. A header of quoted numbers above unquoted rows (R's ``"1","2"``) is a header; one
    made only of unquoted numbers (pandas' ``0,1``) cannot be told from a data row and is read as
    one: save with ``header=False, index=False``.

    Raises:
        FileNotFoundError: no such file.
        DataError: unsupported suffix, an unreadable file (not a plain ``.npy`` / ``torch.save``
            file of tensors, or a text table that is not UTF-8), or content that fails the
            checks of `as_tensor_data` (a sparse tensor is made dense and ``np.longdouble``
            read as float64).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no data file at {p} (working directory {Path.cwd()})")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            raw: Any = np.load(p, allow_pickle=False)
        except ValueError as err:
            raise DataError(f"{p}: not a plain numeric .npy array ({err})") from None
    elif suffix in (".pt", ".pth"):
        raw = _load_pt(p)
    elif suffix in (".csv", ".tsv", ".txt"):
        raw = _load_text(p)
    else:
        raise DataError(f"{p}: unsupported data file suffix {p.suffix!r}; use one of {', '.join(ARRAY_SUFFIXES)} "
                        "or a folder of PNG/JPEG images")
    return ArrayDataset(raw, name=p.name)


def integer_levels(data: Tensor) -> int | None:
    """How many pixel levels ``data`` looks like, when it holds whole numbers ``0 .. L-1`` with
    ``L > 2`` (256 for values up to 255, 65536 up to 65535), else ``None``.

    Used to tell an array of raw pixel levels (e.g. a ``uint8`` ``.npy`` of images) from data on
    ``[-1, 1]`` or ``[0, 1]``, whose values are not all whole numbers above 1.
    """
    if not isinstance(data, Tensor) or data.numel() == 0 or data.is_complex():
        return None
    d = data.detach()
    lo, hi = float(d.min()), float(d.max())
    if lo < 0 or hi <= 1 or hi > 65535:
        return None
    if d.is_floating_point() and not bool((d == d.round()).all()):
        return None
    return 256 if hi <= 255 else 65536
