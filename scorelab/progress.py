"""Progress of a long loop: a tqdm bar on a terminal, plain periodic lines otherwise, so that a
log redirected to a file holds readable lines rather than a bar's control characters."""
import sys
import time

import jax
from tqdm import tqdm


class Progress:
    """`update(done, postfix)` after each unit of work; closes itself at `total`. Only process
    0 reports; with output that is not a terminal a line is written every `every_s` seconds
    and at the end."""

    def __init__(self, total: int, *, desc: str, unit: str = "it", initial: int = 0,
                 file=None, every_s: float = 30.0):
        self.total, self.desc, self.unit, self.done = total, desc, unit, initial
        self.file = file or sys.stdout
        self.every_s, self.start = every_s, time.monotonic()
        self.last, self.first = self.start, initial
        enabled = jax.process_index() == 0 and total > 0
        self.bar = (tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.file,
                         dynamic_ncols=True, mininterval=1.0)
                    if enabled and self.file.isatty() else None)
        self.plain = enabled and self.bar is None

    def update(self, done: int, postfix: str = "") -> None:
        self.done = done
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            if postfix:
                self.bar.set_postfix_str(postfix, refresh=True)
            if done >= self.total:
                self.bar.close()
        elif self.plain:
            now = time.monotonic()
            if now - self.last >= self.every_s or done >= self.total:
                self.last = now
                rate = (done - self.first) / max(now - self.start, 1e-9)
                print(f"{self.desc}: {done}/{self.total} {self.unit} ({rate:.3g} {self.unit}/s)"
                      + (f" {postfix}" if postfix else ""), file=self.file, flush=True)
