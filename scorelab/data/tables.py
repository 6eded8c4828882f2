"""Tables in CSV files: a header of column names, one example per row, empty cells missing.
A column holds numbers (whole numbers stay whole when filled) or categories (text). Columns are
encoded with the training rows' statistics, which a run saves (`Standardizer`), so that filled
or scored files are read on the scale it learnt.

The bundled table is the Breast Cancer Wisconsin (Diagnostic) data of the UCI repository
(569 rows, 30 measurements of cell nuclei; CC BY 4.0), as in scikit-learn's
`load_breast_cancer`, without the diagnosis.
"""
import csv
import dataclasses
import json
import math
import pathlib

import numpy as np

BUNDLED = pathlib.Path(__file__).with_name("breast_cancer.csv")


@dataclasses.dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    cells: list[list[str]]  # each cell's text as in the file, "" where missing
    values: np.ndarray  # float64 (rows, columns): the number, or the category's index; NaN missing
    levels: tuple[tuple[str, ...], ...]  # per column: its categories (sorted), () if numeric


MAX_LEVELS = 64  # more distinct texts in a column are an identifier or free text, not categories


def read(path, stats: "Standardizer | None" = None) -> Table:
    """A CSV file with a header row; every other cell a number, a category's text, or empty
    (missing). A column whose cells are all text is categorical, its levels its distinct
    texts; a column that mixes numbers and text is refused, naming the first text. With a
    run's `stats` the columns must be the run's and the categories its own."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise ValueError(f"{path}: needs a header row of column names and at least one row")
    columns, cells = tuple(c.strip() for c in rows[0]), [[c.strip() for c in r] for r in rows[1:]]
    if stats is not None:
        stats.check_columns(columns, path)
    levels = stats.levels if stats is not None else None
    for i, row in enumerate(cells):
        if len(row) != len(columns):
            raise ValueError(f"{path}, line {i + 2}: {len(row)} cells, but the header names "
                             f"{len(columns)} columns")
    values = np.full((len(cells), len(columns)), np.nan)
    found = []
    for j, name in enumerate(columns):
        texts = [(i, row[j]) for i, row in enumerate(cells) if row[j]]
        numbers = {i: _number(text) for i, text in texts}
        words = [(i, text) for i, text in texts if numbers[i] is None]
        known = levels[j] if levels is not None else None
        if known or (known is None and words and len(words) == len(texts)):
            found.append(tuple(known or sorted({text for _, text in words})))
            index = {text: k for k, text in enumerate(found[-1])}
            for i, text in texts:
                if text not in index:
                    raise ValueError(f"{path}, line {i + 2}, column {name!r}: {text!r} is not "
                                     f"one of the run's categories {list(found[-1])}")
                values[i, j] = index[text]
            continue
        if words:
            i, text = words[0]
            raise ValueError(f"{path}, line {i + 2}, column {name!r}: {text!r} is not a number "
                             f"(leave a cell empty for missing; a column of categories holds "
                             f"only text)")
        for i, number in numbers.items():
            if not math.isfinite(number):
                raise ValueError(f"{path}, line {i + 2}, column {name!r}: {cells[i][j]!r} is "
                                 f"not finite")
            values[i, j] = number
        found.append(())
    return Table(columns, cells, values, tuple(found))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def write(path, columns, cells) -> None:
    """Writes the header and the rows of cell texts; the file appears whole or not at all."""
    path = pathlib.Path(path)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(cells)
    partial.replace(path)


@dataclasses.dataclass(frozen=True)
class Standardizer:
    """A table's columns in the network's units, and back.

    A numeric column is standardised, x -> (x - mean) / std; an integer column (every training
    value a whole number) is too, and its filled values are rounded and kept within the
    training range. A categorical column of L levels becomes L one-hot entries in {-1, +1}
    (the network sees L continuous entries; a draw decodes to the largest). `log_det` = sum of
    log std over the numeric columns: the nats a density in standardised units gains back in
    the file's units."""

    columns: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    integer: tuple[bool, ...] = ()  # per column; () (a v0.3 file): none
    levels: tuple[tuple[str, ...], ...] = ()  # per column; () (a v0.3 file): none categorical
    low: np.ndarray | None = None  # the training range, for the integer columns
    high: np.ndarray | None = None

    def __post_init__(self):  # a v0.3 file's numeric columns, spelt out per column
        n = len(self.columns)
        object.__setattr__(self, "integer", tuple(self.integer) or (False,) * n)
        object.__setattr__(self, "levels", tuple(self.levels) or ((),) * n)

    @classmethod
    def fit(cls, columns, values: np.ndarray, levels=None) -> "Standardizer":
        levels = tuple(levels) if levels is not None else ((),) * len(columns)
        numeric = np.array([not lv for lv in levels])
        many = [f"{c} ({len(lv)})" for c, lv in zip(columns, levels) if len(lv) > MAX_LEVELS]
        if many:
            raise ValueError(f"columns {many} hold more than {MAX_LEVELS} distinct texts: an "
                             f"identifier or free text is not a category; drop them")
        with np.errstate(all="ignore"):
            mean = np.where(numeric, np.nanmean(values, axis=0), 0.0)
            std = np.where(numeric, np.nanstd(values, axis=0), 1.0)
        constant = [c for c, s, n, num in zip(columns, std, np.isfinite(values).sum(0), numeric)
                    if num and (not s > 0 or n < 2)]
        if constant:
            raise ValueError(f"columns {constant} are constant or have fewer than 2 values in "
                             f"the training rows: they cannot be standardised")
        finite = np.where(np.isfinite(values), values, 0.0)
        integer = tuple(bool(num and np.all(finite[:, j] == np.round(finite[:, j])))
                        for j, num in enumerate(numeric))
        return cls(tuple(columns), mean, std, integer, levels, np.nanmin(values, axis=0),
                   np.nanmax(values, axis=0))

    @property
    def categorical(self) -> bool:
        return any(self.levels)

    @property
    def dim_columns(self) -> np.ndarray:
        """The column of each of the network's entries (int, (width,))."""
        widths = [len(lv) or 1 for lv in self.levels]
        return np.repeat(np.arange(len(self.columns)), widths)

    def to_model(self, values):
        """(..., columns) in the file's units -> (..., width) float32; NaN stays NaN."""
        z = (values - self.mean) / self.std
        if not self.categorical:
            return z.astype(np.float32)
        parts = []
        for j, lv in enumerate(self.levels):
            if not lv:
                parts.append(z[..., j:j + 1])
                continue
            v = values[..., j:j + 1]
            onehot = np.where(v == np.arange(len(lv)), 1.0, -1.0)
            parts.append(np.where(np.isnan(v), np.nan, onehot))
        return np.concatenate(parts, axis=-1).astype(np.float32)

    def to_data(self, x):
        """(..., width) -> (..., columns) float64: integers rounded into the training range,
        a category its index."""
        x = np.asarray(x, np.float64)
        if self.categorical:
            first = np.searchsorted(self.dim_columns, np.arange(len(self.columns)))
            x = np.stack([x[..., k:k + len(lv)].argmax(-1) if lv else x[..., k]
                          for k, lv in zip(first, self.levels)], axis=-1)
        values = np.where([bool(lv) for lv in self.levels], x, x * self.std + self.mean)
        if any(self.integer):
            whole = np.clip(np.round(values), self.low, self.high)
            values = np.where(self.integer, whole, values)
        return values

    def text(self, j: int, value: float) -> str:
        """Column j's value as a cell's text."""
        if self.levels[j]:
            return self.levels[j][int(value)]
        if self.integer[j]:
            return str(int(value))
        return f"{value:.6g}"

    @property
    def log_det(self) -> float:
        return float(np.sum(np.log(self.std)))

    def check_columns(self, columns, path) -> None:
        if tuple(columns) != self.columns:
            missing = [c for c in self.columns if c not in columns]
            extra = [c for c in columns if c not in self.columns]
            raise ValueError(f"{path}: its columns do not match the run's {len(self.columns)} "
                             f"columns (missing: {missing}, unknown: {extra}"
                             + (", same names in another order" if not missing and not extra
                                else "") + ")")

    def save(self, path) -> None:
        pathlib.Path(path).write_text(json.dumps(
            {"columns": list(self.columns), "mean": self.mean.tolist(),
             "std": self.std.tolist(), "integer": list(self.integer),
             "levels": [list(lv) for lv in self.levels], "low": self.low.tolist(),
             "high": self.high.tolist()}, indent=1))

    @classmethod
    def load(cls, path) -> "Standardizer":
        d = json.loads(pathlib.Path(path).read_text())
        bounds = {k: np.array(d[k]) for k in ("low", "high") if k in d}
        return cls(tuple(d["columns"]), np.array(d["mean"]), np.array(d["std"]),
                   tuple(d.get("integer", ())), tuple(tuple(lv) for lv in d.get("levels", ())),
                   **bounds)

def load_csv(path: str = "", test_fraction: float = 0.1):
    """(train, test, standardizer): standardised float32 rows (NaN where missing). The test
    rows are a fixed 10% of the complete rows, or, where fewer than two rows are complete
    (many missing cells), 10% of all rows (held-out losses leave missing cells out, and
    likelihoods use the complete rows); every other row is for training."""
    table = read(path or BUNDLED)
    values = table.values[~np.isnan(table.values).all(axis=1)]
    complete = np.flatnonzero(~np.isnan(values).any(axis=1))
    if len(complete) < 2:
        complete = np.arange(len(values))
    if len(values) < 2:
        raise ValueError(f"data.path={str(path or BUNDLED)!r}: needs at least 2 rows with a "
                         f"value (one held out), has {len(values)}")
    n_test = max(1, int(round(test_fraction * len(complete))))
    test = np.random.default_rng(0).permutation(complete)[:n_test]
    train = np.setdiff1d(np.arange(len(values)), test)
    stats = Standardizer.fit(table.columns, values[train], table.levels)
    return stats.to_model(values[train]), stats.to_model(values[test]), stats
