"""Numeric tables in CSV files: a header of column names, one example per row, empty cells
missing. Values are standardised column by column with the training rows' statistics, which a
run saves (`Standardizer`), so that filled or scored files are read on the scale it learnt.

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
    values: np.ndarray  # float64 (rows, columns), NaN where missing


def read(path) -> Table:
    """A CSV file with a header row; every other cell a number or empty (missing)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise ValueError(f"{path}: needs a header row of column names and at least one row")
    columns, cells = tuple(c.strip() for c in rows[0]), [[c.strip() for c in r] for r in rows[1:]]
    values = np.full((len(cells), len(columns)), np.nan)
    for i, row in enumerate(cells):
        if len(row) != len(columns):
            raise ValueError(f"{path}, line {i + 2}: {len(row)} cells, but the header names "
                             f"{len(columns)} columns")
        for j, cell in enumerate(row):
            if cell:
                try:
                    values[i, j] = float(cell)
                except ValueError:
                    raise ValueError(f"{path}, line {i + 2}, column {columns[j]!r}: {cell!r} "
                                     f"is not a number (leave a cell empty for missing)") from None
                if not math.isfinite(values[i, j]):
                    raise ValueError(f"{path}, line {i + 2}, column {columns[j]!r}: {cell!r} "
                                     f"is not finite")
    return Table(columns, cells, values)


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
    """x -> (x - mean) / std per column; `log_det` = sum log std, the nats that a density in
    standardised units gains back in the file's units."""

    columns: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, columns, values: np.ndarray) -> "Standardizer":
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        constant = [c for c, s, n in zip(columns, std, np.isfinite(values).sum(0)) if not s > 0
                    or n < 2]
        if constant:
            raise ValueError(f"columns {constant} are constant or have fewer than 2 values in "
                             f"the training rows: they cannot be standardised")
        return cls(tuple(columns), mean, std)

    def to_model(self, values):
        return ((values - self.mean) / self.std).astype(np.float32)

    def to_data(self, x):
        return np.asarray(x, np.float64) * self.std + self.mean

    @property
    def log_det(self) -> float:
        return float(np.sum(np.log(self.std)))

    def save(self, path) -> None:
        pathlib.Path(path).write_text(json.dumps(
            {"columns": list(self.columns), "mean": self.mean.tolist(),
             "std": self.std.tolist()}, indent=1))

    @classmethod
    def load(cls, path) -> "Standardizer":
        d = json.loads(pathlib.Path(path).read_text())
        return cls(tuple(d["columns"]), np.array(d["mean"]), np.array(d["std"]))

    def check_columns(self, columns, path) -> None:
        if tuple(columns) != self.columns:
            missing = [c for c in self.columns if c not in columns]
            extra = [c for c in columns if c not in self.columns]
            raise ValueError(f"{path}: its columns do not match the run's {len(self.columns)} "
                             f"columns (missing: {missing}, unknown: {extra}"
                             + (", same names in another order" if not missing and not extra
                                else "") + ")")


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
    stats = Standardizer.fit(table.columns, values[train])
    return stats.to_model(values[train]), stats.to_model(values[test]), stats
