"""One progress style for every long job (``sd.run``, sweeps, ``sd.compare``, the
experiments): a line per job on stderr,

    sgdsde.run [sgd]: 40% 400/1000 steps, 1.2 s, 350 steps/s, ~1.7 s left

On a terminal the line is rewritten in place (carriage return) and ends with a newline
when the job is done; otherwise (a log file, a pipe, CI) a plain line is printed after
the first chunk, then each time another tenth of the work is done, and at the end: at
most 11 lines per job. The first chunk includes compiling, so its line has no rate and
no time left; later lines take both from the chunks after it."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

__all__ = ["Progress", "note"]

_REPORTS = 10  # plain lines per job when the stream is not a terminal (besides the first)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real file
        return False


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def note(label: str, text: str, *, enabled: bool = True, stream: TextIO | None = None) -> None:
    """One plain line ``label: text`` on stderr (a stage of a job), if ``enabled``."""
    if enabled:
        print(f"{label}: {text}", file=sys.stderr if stream is None else stream, flush=True)


class Progress:
    """The progress line of one job of ``total`` units (steps, configurations, runs).

    ``update(done)`` after each chunk (``done`` cumulative); ``close()`` ends a
    terminal line early (``update(total)`` does it too). ``enabled=False`` prints
    nothing. ``stream``: default ``sys.stderr``; ``terminal``: rewrite the line in
    place (default: whether the stream is a terminal)."""

    def __init__(self, label: str, total: int, unit: str, *, enabled: bool = True,
                 stream: TextIO | None = None, terminal: bool | None = None):
        if not (isinstance(total, int) and total >= 0):
            raise ValueError(f"total: must be a non-negative integer, got {total!r}")
        self.label, self.total, self.unit, self.enabled = label, total, unit, enabled
        self.stream = sys.stderr if stream is None else stream
        self.terminal = _is_terminal(self.stream) if terminal is None else terminal
        self.began = time.perf_counter()
        self.first: tuple[int, float] | None = None  # (done, time) after the first chunk
        self.reported = -1  # the last tenth reported on a plain stream
        self.width = 0  # of the last terminal line, to blank its tail
        self.open = False  # a terminal line without its newline

    def line(self, done: int, now: float) -> str:
        """The text for ``done`` units at time ``now`` (perf_counter)."""
        percent = 100 * done / self.total if self.total else 100.0
        parts = [f"{self.label}: {percent:.0f}% {done}/{self.total} {self.unit}",
                 _seconds(now - self.began)]
        if self.first is not None and done > self.first[0] and now > self.first[1]:
            rate = (done - self.first[0]) / (now - self.first[1])
            parts.append(f"{rate:.3g} {self.unit}/s")
            if done < self.total:
                parts.append(f"~{_seconds((self.total - done) / rate)} left")
        elif done < self.total:
            parts.append("compiling included")
        return ", ".join(parts)

    def update(self, done: int) -> None:
        """Report ``done`` units finished (cumulative)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        text = self.line(done, now)
        if self.first is None:
            self.first = (done, now)
            first = True
        else:
            first = False
        finished = done >= self.total
        if self.terminal:
            pad = " " * max(self.width - len(text), 0)
            self.stream.write("\r" + text + pad + ("\n" if finished else ""))
            self.width, self.open = len(text), not finished
            self.stream.flush()
            return
        tenth = math.floor(_REPORTS * done / self.total) if self.total else _REPORTS
        if first or finished or tenth > self.reported:
            print(text, file=self.stream, flush=True)
        self.reported = max(self.reported, tenth)

    def close(self) -> None:
        """End an unfinished terminal line (an interrupted or abandoned job)."""
        if self.enabled and self.terminal and self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False
