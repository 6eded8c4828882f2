"""Series in CSV files: a header, then one row per time step in time order; the first column is
the time stamp (a number or an ISO date / time), every other column a numeric feature, empty
cells missing. A run learns windows of `data.window` consecutive steps cut from one or more
such files (paths separated by commas), with the features standardised as a table's columns
(`tables.Standardizer`, saved in the run's table.json).
"""
import dataclasses

import numpy as np

from scorelab.data import tables


@dataclasses.dataclass(frozen=True)
class Series:
    time: str  # the first column's name
    stamps: list[str]  # each row's time stamp as in the file
    table: tables.Table  # the feature columns


def read(path, stats: tables.Standardizer | None = None) -> Series:
    """The series in `path`; refused, naming the line, where a time stamp is missing, not a
    number or ISO date, or not after the previous one, and where a feature holds text. With a
    run's `stats` the feature columns must be the run's."""
    full = tables.read(path)
    if len(full.columns) < 2:
        raise ValueError(f"{path}: a series needs a time-stamp column and at least one feature "
                         f"column, got the columns {list(full.columns)}")
    time_name, columns = full.columns[0], full.columns[1:]
    if stats is not None:
        stats.check_columns(columns, path)
    for j, levels in enumerate(full.levels[1:], start=1):
        if levels:
            line, text = next((i + 2, row[j]) for i, row in enumerate(full.cells) if row[j])
            raise ValueError(f"{path}, line {line}, column {full.columns[j]!r}: {text!r} is "
                             f"not a number: every column after the time stamp must be numeric "
                             f"(empty cells are missing)")
    stamps = [row[0] for row in full.cells]
    times = _times(stamps, path)
    order = np.flatnonzero(~(times[1:] > times[:-1]))
    if len(order):
        i = int(order[0]) + 1
        raise ValueError(f"{path}, line {i + 2}: time stamp {stamps[i]!r} is not after the one "
                         f"before it ({stamps[i - 1]!r}): rows must be in time order, one per "
                         f"time step")
    table = tables.Table(columns, [row[1:] for row in full.cells], full.values[:, 1:],
                         full.levels[1:])
    return Series(time_name, stamps, table)


def _times(stamps: list[str], path) -> np.ndarray:
    """The stamps as numbers (seconds since 1970 for dates), to check their order."""
    out = np.empty(len(stamps))
    for i, text in enumerate(stamps):
        if not text:
            raise ValueError(f"{path}, line {i + 2}: the time stamp is empty")
        try:
            out[i] = float(text)
        except ValueError:
            try:
                out[i] = np.datetime64(text, "s").astype(np.int64)
            except ValueError:
                raise ValueError(f"{path}, line {i + 2}: time stamp {text!r} is neither a "
                                 f"number nor an ISO date (2024-01-31, 2024-01-31T12:00)") from None
    return out


def next_stamps(stamps: list[str], count: int) -> list[str]:
    """`count` time stamps after the last, at the median spacing of the last 50 (a forecast's
    rows), written like the file's: numbers, or ISO dates / times."""
    times = _times(stamps, "the series")
    step = float(np.median(np.diff(times[-51:]))) if len(times) > 1 else 1.0
    ahead = times[-1] + step * np.arange(1, count + 1)
    if _is_number(stamps[-1]):
        whole = all(_is_number(s) and float(s).is_integer() for s in stamps[-51:])
        return [str(int(round(t))) if whole else f"{t:.6g}" for t in ahead]
    unit = "D" if len(stamps[-1]) <= 10 else "s"
    return [str(np.datetime64(int(round(t)), "s").astype(f"datetime64[{unit}]")) for t in ahead]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def load(path: str, window: int, test_fraction: float = 0.1):
    """(train, test, standardizer): every window of `window` consecutive steps (stride 1) of
    each series, standardised float32 (n, window, features), NaN where missing. The last 10%
    of each series' steps (at least one window's worth) are held out: test windows lie there,
    training windows before it, so no held-out step is trained on."""
    if not path:
        raise ValueError("data.path: a series run needs a CSV file (or several, separated by "
                         "commas)")
    if not (isinstance(window, int) and window >= 2):
        raise ValueError(f"data.window must be an integer >= 2, got {window!r}")
    every = [read(p.strip()) for p in str(path).split(",")]
    columns = every[0].table.columns
    for p, s in zip(str(path).split(","), every):
        if s.table.columns != columns:
            raise ValueError(f"{p.strip()}: its feature columns {list(s.table.columns)} differ "
                             f"from the first file's {list(columns)}")
    parts = []
    for p, s in zip(str(path).split(","), every):
        values = s.table.values
        held = max(int(round(test_fraction * len(values))), window)
        if len(values) < held + window:
            raise ValueError(f"{p.strip()}: {len(values)} time steps; with data.window="
                             f"{window} a series needs at least {held + window} (windows to "
                             f"train on and {held} held-out steps)")
        parts.append((values[:-held], values[-held:]))
    train_steps = np.concatenate([a for a, _ in parts])
    empty = [c for c, n in zip(columns, np.isfinite(train_steps).sum(0)) if n == 0]
    if empty:
        raise ValueError(f"columns {empty} are empty in the training steps of data.path: a "
                         f"series cannot learn a column with no values; drop it")
    stats = tables.Standardizer.fit(columns, train_steps)
    train = np.concatenate([windows(stats.to_model(a), window) for a, _ in parts])
    test = np.concatenate([windows(stats.to_model(b), window) for _, b in parts])
    return train, test, stats


def windows(values: np.ndarray, window: int) -> np.ndarray:
    """(steps, features) -> (steps - window + 1, window, features): every window, stride 1."""
    view = np.lib.stride_tricks.sliding_window_view(values, window, axis=0)
    return np.ascontiguousarray(view.transpose(0, 2, 1))
