"""A teacher cost file takes no content on trust: every malformed file is one ValueError naming the
file and the field, checked before anything is built from it, and memory stays within a small multiple of the
file; the multistep costs refuse grids past MAX_MULTISTEP_LEVELS before allocating."""

from __future__ import annotations

import copy
import json
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cotj.planning.objectives import (
    MAX_MULTISTEP_LEVELS,
    MAX_TEACHER_LEVELS,
    RowModel,
    TeacherCost,
    multistep_cost_bytes,
)


def small_teacher(n: int = 6, seed: int = 0, gram: bool = True, rows: bool = True) -> TeacherCost:
    """A valid n-level teacher cost of random positive costs, with a row model of 2 features and a Gram matrix of
    random trajectories."""
    rng = np.random.default_rng(seed)
    grid = np.arange(1, n + 1) / n
    edges = np.where(np.tril(np.ones((n, n), dtype=bool), -1), rng.uniform(0.01, 1.0, (n, n)), np.inf)
    model = None
    if rows:
        model = RowModel(rng.normal(size=n), rng.normal(size=(n, 2)), rng.uniform(0.5, 2.0, (n, 2)),
                         rng.normal(size=(n, 2, n)) * 0.1, rng.uniform(0.0, 0.1, (n, n)))
    g = None
    if gram:
        v = rng.normal(size=(2 * n + 2, 64))
        g = v @ v.T / 64
        g = (g + g.T) / 2
    return TeacherCost(grid, edges, rng.uniform(0.01, 1.0, n), 32, model, g)


def saved_doc(tc: TeacherCost, tmp_path: Path) -> dict[str, Any]:
    tc.save(tmp_path / "good.json")
    return json.loads((tmp_path / "good.json").read_text())


def _set(path: str, value: Any):
    """A change of the document: the field at ``path`` ("rows.spread", "grid.3") set to ``value``."""

    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(last)] = value
        elif value is _DELETE:
            del target[last]
        else:
            target[last] = value

    return change


_DELETE = object()
MALFORMED = {
    # values that would raise exceptions of other types
    "rows a list": (_set("rows", [1, 2]), "rows must be an object with exactly the fields"),
    "n_samples 1e400": (_set("n_samples", float("inf")), "n_samples must be an int >= 1, got inf"),
    # scalars and one-element lists that numpy would broadcast
    "scalar edges": (_set("edges_below_diagonal", 0.5), "edges_below_diagonal must be a list of numbers, got a JSON float"),
    "one-element edges": (_set("edges_below_diagonal", [0.5]), r"edges_below_diagonal must have shape (15,) for a grid of 6"),
    "scalar gram": (_set("gram_upper", 1.0), "gram_upper must be a list of numbers"),
    "one-element gram": (_set("gram_upper", [1.0]), "gram_upper must have shape (105,)"),
    # grids
    "NaN grid": (_set("grid.2", float("nan")), "grid must be finite"),
    "descending grid": (_set("grid", [1.0, 0.8, 0.6, 0.4, 0.2, 0.1]), "grid must be noise levels in (0, 1], strictly ascending"),
    "grid above 1": (_set("grid.5", 1.5), "grid must be noise levels in (0, 1]"),
    "negative grid": (_set("grid.0", -0.1), "grid must be noise levels in (0, 1]"),
    "one level": (_set("grid", [1.0]), "grid must be a list of 2..4096 levels"),
    "grid of text": (_set("grid", ["0.1", "1"]), "grid must hold numbers, got text"),
    "grid of booleans": (_set("grid", [False, True]), "grid must hold numbers, got booleans"),
    "grid of huge ints": (_set("grid", [1, 10**400]), "grid must be (nested) lists of numbers"),
    "nested grid": (_set("grid", [[0.5, 1.0]]), "grid must be a list of 2..4096 levels (MAX_TEACHER_LEVELS), got shape (1, 2)"),
    # row model
    "spread 0": (_set("rows.spread.1.0", 0.0), "rows.spread must be > 0"),
    "NaN beta": (_set("rows.beta.1.0.2", float("nan")), "rows.beta must be finite"),
    "negative var": (_set("rows.var.0.0", -1.0), "rows.var must be >= 0"),
    "ragged center": (_set("rows.center.1", [1.0]), "rows.center must be (nested) lists of numbers of one shape"),
    "rows missing var": (_set("rows.var", _DELETE), "rows must be an object with exactly the fields"),
    "100 features": (_set("rows.center", [[0.0] * 100] * 6), "rows.center must be (N, F) with N = 6 and F in 1..64"),
    # counts and costs
    "n_samples -5": (_set("n_samples", -5), "n_samples must be an int >= 1, got -5"),
    "n_samples 2.7": (_set("n_samples", 2.7), "n_samples must be an int >= 1, got 2.7"),
    "n_samples true": (_set("n_samples", True), "n_samples must be an int >= 1, got True"),
    "n_samples text": (_set("n_samples", "32"), "n_samples must be an int >= 1, got 32"),
    "negative edge": (_set("edges_below_diagonal.3", -1.0), "edges_below_diagonal must be >= 0"),
    "infinite end": (_set("end.0", float("inf")), "end must be finite"),
    "end of 5": (_set("end", [1.0] * 5), "end must have shape (6,)"),
    "negative gram diagonal": (_set("gram_upper.0", -1.0), "gram_upper must hold a Gram matrix: its diagonal"),
    "no format": (_set("format", _DELETE), "format must be 'cotj.teacher_cost/1', got 'None'"),
    "no end": (_set("end", _DELETE), "field 'end' is missing"),
}


@pytest.mark.parametrize(("change", "needle"), MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_teacher_file_is_one_value_error_naming_file_and_field(tmp_path, change, needle):
    doc = saved_doc(small_teacher(), tmp_path)
    change(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError) as info:
        TeacherCost.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a valid teacher cost file: ") and needle in message, message
    assert "\n" not in message and len(message) < 400


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[" * 100_000 + "]" * 100_000, "JSON nested too deeply"),
        ("{" * 50, "not JSON"),
        ('{"format": "cotj.teacher_cost/1", "n_samples": 1' + "0" * 5000 + "}", "not JSON"),
        ("[1, 2]", "not a cotj.teacher_cost/1 document (a JSON object), got a JSON list"),
        ("", "not JSON"),
    ],
)
def test_a_file_that_is_not_a_teacher_document_is_one_value_error(tmp_path, text, needle):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="bad.json: not a valid teacher cost file") as info:
        TeacherCost.load(path)
    assert needle in str(info.value)


def test_binary_content_is_one_value_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(b"\xff\xfe\x00{binary")
    with pytest.raises(ValueError, match=r"bad.json: not a valid teacher cost file: not JSON"):
        TeacherCost.load(path)


def test_a_saved_teacher_cost_loads_back_equal(tmp_path):
    tc = small_teacher()
    tc.save(tmp_path / "t.json")
    back = TeacherCost.load(tmp_path / "t.json")
    np.testing.assert_array_equal(back.grid, tc.grid)
    np.testing.assert_allclose(back.edges, tc.edges, rtol=1e-6)
    np.testing.assert_allclose(back.gram, tc.gram, rtol=1e-15)
    assert back.rows is not None and tc.rows is not None
    np.testing.assert_allclose(back.rows.beta, tc.rows.beta, rtol=1e-6)
    np.testing.assert_array_equal(back.plan("unipc", 3).levels, tc.plan("unipc", 3).levels)


@pytest.mark.diffusers
def test_the_shipped_teacher_cost_loads():
    from cotj.models import generator

    tc = TeacherCost.load(generator.TEACHER)
    assert tc.grid.size == 100 and tc.rows is not None and tc.gram is not None


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_small_file_cannot_claim_a_huge_grid(tmp_path):
    """A file of under 200 kB that claims a MAX_TEACHER_LEVELS-level grid with scalar edges and gram is refused
    within 2 s and 100 MiB, before the (N, N) and (2N + 2)² arrays exist."""
    n = MAX_TEACHER_LEVELS
    grid = (np.arange(1, n + 1) / n).tolist()
    doc = {"format": "cotj.teacher_cost/1", "grid": grid, "edges_below_diagonal": 1.0, "end": [1.0] * n,
           "n_samples": 3, "gram_upper": 1.0}
    path = tmp_path / "wide.json"
    path.write_text(json.dumps(doc))
    assert path.stat().st_size < 200_000
    before, start = _peak_mib(), time.perf_counter()
    with pytest.raises(ValueError, match="edges_below_diagonal must be a list of numbers"):
        TeacherCost.load(path)
    assert time.perf_counter() - start < 2.0
    assert _peak_mib() - before < 100


def test_multistep_costs_past_the_bound_are_refused_before_building(tmp_path):
    """A valid teacher cost with a Gram matrix one level past MAX_MULTISTEP_LEVELS plans euler steps, and refuses unipc costs, whose (N + 1)³ arrays would pass 6 GB, naming the bound and the memory."""
    n = MAX_MULTISTEP_LEVELS + 1
    tc = small_teacher(n, rows=False)
    before = _peak_mib()
    with pytest.raises(ValueError, match=rf"unipc costs of a {n}-level teacher grid would take about 1\.\d GiB: "
                                         rf"multistep costs take at most MAX_MULTISTEP_LEVELS = {MAX_MULTISTEP_LEVELS}"):
        tc.plan("unipc", 4)
    assert _peak_mib() - before < 50
    assert multistep_cost_bytes(400) > 6 * 2**30
    assert tc.plan("euler", 4).levels.shape == (4,)
    within = small_teacher(40, rows=False)
    assert within.plan("dpmpp_2m", 4).levels.shape == (4,)


def test_the_constructor_checks_what_load_checks():
    tc = small_teacher()
    for change, needle in [
        (dict(n_samples=2.7), "n_samples must be an int >= 1"),
        (dict(grid=tc.grid[::-1].copy()), "grid must be finite noise levels in (0, 1], strictly ascending"),
        (dict(grid=tc.grid.tolist()), "grid must be a float64 numpy array, got list"),
    ]:
        with pytest.raises((ValueError, TypeError), match=needle.replace("(", r"\(").replace(")", r"\)")):
            TeacherCost(**{**dict(grid=tc.grid, edges=tc.edges, end=tc.end, n_samples=32, rows=tc.rows,
                                  gram=tc.gram), **change})
    assert tc.rows is not None
    bad_rows = copy.copy(tc.rows)
    object.__setattr__(bad_rows, "spread", np.zeros_like(tc.rows.spread))
    with pytest.raises(ValueError, match="rows.spread must be > 0"):
        TeacherCost(tc.grid, tc.edges, tc.end, 32, bad_rows, tc.gram)


def test_single_step_solver_costs_are_held_to_the_same_memory_bound(monkeypatch):
    """Euler and Heun costs are (N + 1)² arrays: refused once their estimate passes the multistep bound's (about
    2,350 levels at MAX_MULTISTEP_LEVELS = 160; here with the bound lowered to 10 levels, 60 levels pass it)."""
    import cotj.planning.objectives as objectives

    tc = small_teacher(60, rows=False)
    monkeypatch.setattr(objectives, "MAX_MULTISTEP_LEVELS", 10)
    with pytest.raises(ValueError, match=r"heun costs of a 60-level teacher grid would take about 0\.0 GiB, more than "
                                         r"the multistep costs at MAX_MULTISTEP_LEVELS"):
        tc.plan("heun", 3)
    monkeypatch.setattr(objectives, "MAX_MULTISTEP_LEVELS", 160)
    assert tc.plan("heun", 3).levels.shape == (3,)


def test_a_gram_matrix_whose_solver_costs_would_overflow_is_refused(tmp_path):
    """Gram entries near the float64 limit are finite, but every solver cost (a quadratic form in them) would be
    inf and no plan would have a finite cost: the file is refused when read, naming gram."""
    doc = {"format": "cotj.teacher_cost/1", "grid": [0.5, 1.0], "edges_below_diagonal": [0.05], "end": [0.8, 0.9],
           "n_samples": 32, "gram_upper": [8e307] * 21}
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"not a valid teacher cost file: gram entries must lie within"):
        TeacherCost.load(path)
    doc["gram_upper"] = [1.0] * 21
    path.write_text(json.dumps(doc))
    assert TeacherCost.load(path).plan("unipc", 2).levels.shape == (2,)
