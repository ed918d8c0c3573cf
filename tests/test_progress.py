"""One progress style (sgdsde._progress): a line rewritten in place on a terminal, a few
plain lines otherwise; no time-left estimate while the first (compiling) chunk is all
there is; the same format from sd.run, sweeps, compare and the experiments."""

import io
import re

import jax
import jax.numpy as jnp
import pytest

import sgdsde as sd
from sgdsde import _progress
from sgdsde._progress import Progress

LINE = re.compile(
    r"^(?P<label>.+): (?P<percent>\d+)% (?P<done>\d+)/(?P<total>\d+) (?P<unit>[a-z ]+), "
    r"(?P<elapsed>[\d.]+ s|\d+ min \d\d s)"
    r"(, compiling included|, (?P<rate>[\d.e+]+) (?P=unit)/s(, ~(?P<left>[\d.]+ s|\d+ min \d\d s) left)?)?$"
)


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def clock(monkeypatch):
    """A perf_counter that advances 1 s per call (after a first call at 0)."""
    ticks = iter(range(10**6))
    monkeypatch.setattr(_progress.time, "perf_counter", lambda: float(next(ticks)))


def _plain_lines(total, chunk):
    stream = io.StringIO()
    bar = Progress("job", total, "steps", stream=stream)
    for done in range(chunk, total + chunk, chunk):
        bar.update(min(done, total))
    bar.close()
    return stream.getvalue().splitlines()


def test_plain_stream_prints_a_few_lines_in_the_format(clock):
    lines = _plain_lines(1000, 10)  # 100 chunks
    assert len(lines) == 11  # the first chunk, then each further tenth (10 %, …, 100 %)
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    first, *rest = parsed
    assert first["done"] == "10" and lines[0].endswith("compiling included") and first["rate"] is None
    assert [int(m["percent"]) for m in rest] == list(range(10, 101, 10))
    # the clock ticks 1 s per call: each chunk after the first takes 1 s, so 10 steps/s
    assert all(float(m["rate"]) == 10.0 for m in rest)
    assert rest[0]["left"] == "1 min 30 s" and rest[-1]["left"] is None  # 900 steps left at 10/s; none at the end


@pytest.mark.parametrize("total, chunk, expected", [(40, 10, 4), (7, 7, 1), (1000, 1, 11), (3, 1, 3)])
def test_plain_line_count_is_bounded(clock, total, chunk, expected):
    assert len(_plain_lines(total, chunk)) == expected


def test_terminal_rewrites_one_line(clock):
    stream = FakeTerminal()
    bar = Progress("job", 30, "steps", stream=stream)
    for done in (10, 20, 30):
        bar.update(done)
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n") and text.count("\r") == 3
    shown = [part.rstrip() for part in text.strip().split("\r") if part]
    assert all(LINE.match(line) for line in shown)
    assert shown[0].endswith("compiling included") and "left" in shown[1] and "left" not in shown[2]


def test_terminal_close_ends_an_interrupted_line(clock):
    stream = FakeTerminal()
    bar = Progress("job", 30, "steps", stream=stream)
    bar.update(10)
    bar.close()
    assert stream.getvalue().endswith("\n") and stream.getvalue().count("\n") == 1


def test_disabled_prints_nothing_and_bad_total_is_named():
    stream = io.StringIO()
    bar = Progress("job", 10, "steps", enabled=False, stream=stream)
    bar.update(5)
    bar.close()
    assert stream.getvalue() == ""
    with pytest.raises(ValueError, match="total"):
        Progress("job", -1, "steps")


def test_run_progress_has_the_agreed_format(capsys):
    """sd.run with progress=True on a non-terminal stderr: the default 20 chunks give
    11 lines (first chunk, then every 10 %); the first has no estimate."""
    problem = sd.problems.quadratic([[1.0]], [[1.0]], 16, key=jax.random.key(0))
    sd.run(jax.random.key(1), sd.sgd("iid"), problem, sd.Hyper(0.1, 4), jnp.zeros(1), 200, progress=True)
    lines = capsys.readouterr().err.strip().splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert len(lines) == 11 and all(parsed), lines
    assert parsed[0]["label"] == "sgdsde.run [sgd(iid)]" and parsed[0]["done"] == "10"
    assert lines[0].endswith("compiling included")
    assert all(m["rate"] is not None for m in parsed[1:]) and parsed[-1]["done"] == "200"
    assert all(m["left"] is not None for m in parsed[1:-1])


def test_sde_run_counts_calls(capsys):
    """An SDE stepper with dt ≠ 1 advances dt SGD steps per call: its progress counts calls."""
    problem = sd.problems.quadratic([[1.0]], [[1.0]], 16, key=jax.random.key(0))
    stepper = sd.euler_maruyama(sd.noise.isotropic(1.0), 0.5)
    sd.run(jax.random.key(1), stepper, problem, sd.Hyper(0.1, 4), jnp.zeros(1), 40, progress=True, chunk_size=20)
    lines = capsys.readouterr().err.strip().splitlines()
    assert [LINE.match(line)["unit"] for line in lines] == ["calls", "calls"]
