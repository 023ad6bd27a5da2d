"""Property tests: arbitrary bytes, shapes, dtypes and extreme values fed to ``cotj.load_dna``, to ``cotj plan``
(through :func:`cotj.cli.main`) and to ``DNAPredictor.load``. Each either succeeds or raises its documented
exception with a short message; the command line exits 0, or 2 with one line on stderr.

The properties run in a child pytest process (:func:`test_no_input_aborts_the_interpreter`), so an input that
aborts the interpreter (a failed allocation, a panic across the FFI) fails the test instead of killing the run.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import struct
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cotj
from cotj.cli import main
from property_child import DTYPES, EXAMPLES, EXTREME, MAX_MESSAGE, SETTINGS, in_child, run_properties_in_child
from property_child import refused_well as _refused_well


@pytest.mark.slow
def test_no_input_aborts_the_interpreter():
    run_properties_in_child(__file__)


@contextlib.contextmanager
def _file(name: str, data: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        yield path


def _npy(descr: str, fortran: bool, shape: str, data: bytes) -> bytes:
    """A version-1.0 .npy file with a hand-written header."""
    header = f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}".encode("latin1", "replace")
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header) % 65536) + header + data


def _load(path: Path) -> np.ndarray | None:
    """``cotj.load_dna(path)``: the array, or None after checking the refusal."""
    try:
        out = cotj.load_dna(path)
    except (ValueError, TypeError) as exc:
        _refused_well(exc)
        return None
    assert out.dtype == np.float64 and out.ndim in (1, 2) and out.size > 0 and np.all(np.isfinite(out))
    return out


@in_child
@SETTINGS
@given(suffix=st.sampled_from([".npy", ".json", ".csv"]), data=st.binary(max_size=400))
def test_property_load_dna_on_arbitrary_bytes(suffix, data):
    with _file(f"dna{suffix}", data) as path:
        _load(path)


@in_child
@SETTINGS
@given(
    descr=st.one_of(DTYPES.map(repr), st.sampled_from(["'|O'", "'<U3'", "'|V0'", "'<M8[s]'", "[('a', '<f8')]", "5"]),
                    st.text(max_size=12)),
    fortran=st.sampled_from(["False", "True", "1", "'x'"]),
    shape=st.one_of(st.lists(st.integers(-3, 2**64), max_size=4).map(lambda v: repr(tuple(v))), st.text(max_size=12),
                    st.integers(0, 3000).map(lambda n: repr((1,) * n))),
    data=st.binary(max_size=256),
)
def test_property_load_dna_on_npy_headers_claiming_anything(descr, fortran, shape, data):
    with _file("dna.npy", _npy(descr, fortran, shape, data)) as path:
        _load(path)


@in_child
@SETTINGS
@given(arr=hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)))
def test_property_load_dna_reads_every_valid_npy_exactly(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    with _file("dna.npy", buf.getvalue()) as path:
        out = _load(path)
    ok = arr.dtype.kind in "fiu" and arr.ndim in (1, 2) and arr.size > 0 and np.all(np.isfinite(arr.astype(np.float64)))
    assert (out is not None) == ok
    if ok:
        np.testing.assert_array_equal(out, arr.astype(np.float64))


def _rows(elements: st.SearchStrategy[float]) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=60), elements=elements)


@in_child
@SETTINGS
@given(rows=_rows(EXTREME), kind=st.sampled_from(["json", "csv", "json-lines"]))
def test_property_load_dna_on_extreme_values(rows, kind):
    if kind == "json":
        text = json.dumps({"dna": rows.tolist()})
    elif kind == "json-lines":
        text = "\n".join(json.dumps(r) for r in np.atleast_2d(rows).tolist())
    else:
        text = "\n".join(",".join(repr(v) for v in r) for r in np.atleast_2d(rows).tolist())
    with _file(f"dna.{'json' if kind != 'csv' else 'csv'}", text.encode()) as path:
        out = _load(path)
    assert (out is not None) == bool(np.all(np.isfinite(rows)))


def _flag(name: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return values.map(lambda v: [name, v])


NUMBERS = st.one_of(st.integers(-5, 2**70).map(str), st.floats().map(repr), st.text(max_size=6))
FLAGS = st.lists(
    st.one_of(
        _flag("--budget", st.one_of(st.integers(-2, 70).map(str), NUMBERS, st.just("3,4"))),
        _flag("--tau", st.one_of(st.floats(0, 1).map(repr), NUMBERS)),
        _flag("--max-steps", st.one_of(st.integers(1, 70).map(str), NUMBERS)),
        _flag("--first", st.one_of(st.sampled_from(["any", "top", "1", "3"]), NUMBERS)),
        _flag("--last", st.one_of(st.sampled_from(["any", "bottom", "1", "3"]), NUMBERS)),
        st.just(["--format", "json"]),
    ),
    max_size=3,
).map(lambda pairs: [part for pair in pairs for part in pair])


def _main(argv: list[str], stdin: str) -> tuple[int, str, str]:
    """``cotj ARGV`` in this process with ``stdin``: (status, stdout, stderr)."""
    out, err, saved = io.StringIO(), io.StringIO(), sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(argv)
            except SystemExit as exc:  # argparse
                status = exc.code if isinstance(exc.code, int) else 2
    finally:
        sys.stdin = saved
    return status, out.getvalue(), err.getvalue()


def _plan_cli(stdin: str, flags: list[str]) -> None:
    status, out, err = _main(["plan", "-", *flags], stdin)
    assert status in (0, 2), (status, err)
    if status == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cotj plan: error: "), err[:2000]
        assert len(lines[0]) <= MAX_MESSAGE + 100 and out == ""
    else:
        assert out.strip() and err == ""


@in_child
@SETTINGS
@given(rows=_rows(st.one_of(EXTREME, st.floats(0, 10))), json_text=st.booleans(), flags=FLAGS)
def test_property_cli_plan_on_extreme_rows_and_flags(rows, json_text, flags):
    lines = (",".join(repr(v) for v in r) for r in np.atleast_2d(rows).tolist())
    text = json.dumps(rows.tolist()) if json_text else "\n".join(lines)
    _plan_cli(text, flags)


@in_child
@SETTINGS
@given(text=st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin1"))), flags=FLAGS)
def test_property_cli_plan_on_arbitrary_text(text, flags):
    _plan_cli(text, flags)


CONFIG_VALUES = st.one_of(st.integers(-2**70, 2**70), st.integers(2, 40), st.booleans(), st.floats(), st.none(),
                          st.text(max_size=4), st.lists(st.integers(0, 3), max_size=2))
CONFIGS = st.one_of(
    st.fixed_dictionaries({"format": st.just("cotj.DNAPredictor/1")},
                          optional={k: CONFIG_VALUES for k in ("in_dim", "n_levels", "hidden", "dropout", "x")}),
    st.fixed_dictionaries({"format": st.just("cotj.DNAPredictor/1"), "in_dim": st.integers(2, 6),
                           "n_levels": st.integers(2, 6), "hidden": st.integers(2, 8), "dropout": st.floats(0, 0.9)}),
    st.lists(st.integers(), max_size=3),
    st.text(max_size=10),
)
STATE_NAMES = st.sampled_from(["net.0.weight", "net.0.bias", "net.3.weight", "net.3.bias", "net.6.weight",
                               "net.6.bias", "x_mean", "x_std", "mean_dna", "other"])


@st.composite
def _safetensors(draw: st.DrawFn) -> bytes:
    """A safetensors file with a hand-written header: any names, dtypes, shapes and offsets, any data length."""
    tensors, offset = {}, 0
    for name in draw(st.lists(STATE_NAMES, max_size=9, unique=True)):
        shape = draw(st.lists(st.one_of(st.integers(0, 8), st.integers(0, 2**62)), max_size=3))
        dtype = draw(st.sampled_from(["F32", "F64", "F16", "BF16", "I32", "BOOL", "U8", "XX"]))
        size = draw(st.one_of(st.just(int(np.prod(shape, dtype=object)) * 4), st.integers(0, 64)))
        end = draw(st.one_of(st.just(offset + size), st.integers(-1, 2**64)))
        tensors[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}
        offset = end if isinstance(end, int) and 0 <= end < 4096 else offset
    header = json.dumps(tensors).encode()
    length = draw(st.one_of(st.just(len(header)), st.integers(0, 2**64 - 1)))
    return struct.pack("<Q", length) + header + draw(st.binary(max_size=300))


@pytest.mark.torch
@in_child
@SETTINGS
@given(config=CONFIGS, weights=st.one_of(st.binary(max_size=200), _safetensors()))
def test_property_predictor_load_on_hostile_files(config, weights):
    from cotj.predict import DNAPredictor

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "dna_predictor.json").write_text(json.dumps(config))
        (Path(tmp) / "dna_predictor.safetensors").write_bytes(weights)
        try:
            model = DNAPredictor.load(tmp, device="cpu")
        except ValueError as exc:
            _refused_well(exc)
            return
    assert np.all(np.isfinite(model.predict(np.zeros(model.config["in_dim"]), align=False)))


@pytest.mark.torch
@in_child
@SETTINGS
@given(config=st.fixed_dictionaries({"format": st.just("cotj.DNAPredictor/1"), "in_dim": st.integers(2, 6),
                                     "n_levels": st.integers(2, 6), "hidden": st.integers(2, 8),
                                     "dropout": st.floats(0, 0.9)}),
       value=EXTREME, name=STATE_NAMES)
def test_property_predictor_load_on_valid_files_with_extreme_weights(config, value, name):
    from cotj.predict import DNAPredictor

    sizes = {k: config[k] for k in ("in_dim", "n_levels", "hidden", "dropout")}
    with np.errstate(over="ignore"):
        value = float(np.float32(value))  # what the float32 weights hold
    with tempfile.TemporaryDirectory() as tmp:
        model = DNAPredictor(**sizes)
        if name in model.state_dict():
            model.state_dict()[name].fill_(value)
        model.save(tmp)
        finite = name not in model.state_dict() or np.isfinite(value)
        try:
            DNAPredictor.load(tmp, device="cpu")
        except ValueError as exc:
            _refused_well(exc)
            assert not finite and "NaN or inf" in str(exc)
            return
    assert finite


# ------------------------------------------------------------------ TeacherCost.load and cotj.execute

JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), EXTREME, st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=6), inner, max_size=5)),
    max_leaves=20,
)
TEACHER_FIELDS = ["format", "grid", "edges_below_diagonal", "end", "n_samples", "rows", "gram_upper", "settings",
                  "rows.base", "rows.center", "rows.spread", "rows.beta", "rows.var"]


def _teacher_doc(n: int, seed: int, gram: bool, rows: bool) -> dict:
    """A valid teacher cost document of ``n`` levels (tests/test_teacher_load_bad_input.py's teacher, saved)."""
    from test_teacher_load_bad_input import small_teacher

    with tempfile.TemporaryDirectory() as tmp:
        small_teacher(n, seed, gram, rows).save(Path(tmp) / "t.json")
        return json.loads((Path(tmp) / "t.json").read_text())


def _numbers_of_size(draw: st.DrawFn, shape: tuple[int, ...]) -> object:
    """Nested lists of extreme or plausible numbers, of ``shape`` or of a shape near it."""
    if draw(st.booleans()):
        shape = tuple(draw(st.integers(0, s + 2)) for s in shape)[: draw(st.integers(0, len(shape) + 1))] or (1,)
    values = hnp.arrays(np.float64, shape, elements=st.one_of(EXTREME, st.floats(0, 2)))
    return draw(values).tolist()


@st.composite
def _mutated_teacher(draw: st.DrawFn) -> str:
    """A valid teacher cost file of 2..5 levels with up to three fields replaced by arbitrary JSON, numbers of a
    near size or deleted; as JSON text (NaN and Infinity allowed, as Python writes them)."""
    n = draw(st.integers(2, 5))
    doc = _teacher_doc(n, draw(st.integers(0, 3)), draw(st.booleans()), draw(st.booleans()))
    expected = {"grid": (n,), "edges_below_diagonal": (n * (n - 1) // 2,), "end": (n,), "gram_upper": ((2 * n + 2) * (2 * n + 3) // 2,),
                "rows.base": (n,), "rows.center": (n, 2), "rows.spread": (n, 2), "rows.beta": (n, 2, n), "rows.var": (n, n)}  # fmt: skip
    for field in draw(st.lists(st.sampled_from(TEACHER_FIELDS), max_size=3)):
        doc.setdefault("settings", {"guidance": 2.0})
        *parents, last = field.split(".")
        target = doc
        for key in parents:
            target = target.get(key) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            continue
        how = draw(st.sampled_from(["json", "numbers", "delete"]))
        if how == "delete":
            target.pop(last, None)
        elif how == "numbers" and field in expected:
            target[last] = _numbers_of_size(draw, expected[field])
        else:
            target[last] = draw(JSON)
    if draw(st.booleans()):  # a grid of any size, as a small file may claim
        doc["grid"] = (np.arange(1, (m := draw(st.integers(0, 5000))) + 1) / max(m, 1)).tolist()
    return json.dumps(doc)


def _load_teacher(text: str | bytes):
    """``TeacherCost.load`` of a file holding ``text``: the cost, or None after checking the refusal."""
    from cotj.planning.objectives import TeacherCost

    with _file("teacher.json", text.encode() if isinstance(text, str) else text) as path:
        try:
            tc = TeacherCost.load(path)
        except ValueError as exc:
            _refused_well(exc)
            assert str(exc).startswith(f"{path}: not a valid teacher cost file: "), str(exc)[:300]
            return None
    n = tc.grid.size
    assert np.all(np.isfinite(tc.grid)) and np.all(np.diff(tc.grid) > 0) and 0 < tc.grid[0] and tc.grid[-1] <= 1
    below = np.tril_indices(n, -1)
    assert np.all(np.isfinite(tc.edges[below])) and np.all(np.isfinite(tc.end)) and tc.n_samples >= 1
    assert cotj.plan_batch(tc.dense(), 2, current=n - 1).levels.shape == (1, 2)
    if tc.gram is not None:
        assert tc.plan("euler", 2).levels.shape == tc.plan("unipc", 2).levels.shape == (2,)
    try:
        scale = tc.row_scale(np.arange(n), np.ones((n, 3)), np.full((n, 3), 0.5))
    except ValueError as exc:  # a row model of huge coefficients: its scale overflows
        assert "row scale overflows" in str(exc)
    else:
        assert scale.shape == (n, n) and np.all(np.isfinite(scale))
    return tc


@in_child
@SETTINGS
@given(doc=JSON, raw=st.binary(max_size=200))
def test_property_teacher_load_on_arbitrary_json_and_bytes(doc, raw):
    assert _load_teacher(json.dumps(doc)) is None  # no JSON value but the format's object passes
    _load_teacher(raw)


@in_child
@SETTINGS
@given(text=_mutated_teacher())
def test_property_teacher_load_on_valid_files_with_fields_replaced(text):
    _load_teacher(text)


FEW = settings(SETTINGS, max_examples=max(EXAMPLES // 3, 10))
"""The execute properties run the analytic model: a third of the examples."""
ARRAYS = hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))


def _execute_call(call) -> object:
    """``call()``: its result, or None after checking the refusal."""
    try:
        return call()
    except (ValueError, TypeError) as exc:
        _refused_well(exc)
        return None


@functools.lru_cache(maxsize=1)
def _execute_teacher():
    from test_teacher_load_bad_input import small_teacher

    return small_teacher(6, 1)


@in_child
@FEW
@given(level=st.one_of(hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=2, max_side=3)), st.integers(-3, 8),
                       st.floats(), st.text(max_size=3)),
       x=hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
       x0_hat=hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
       done=st.one_of(st.integers(-1, 4), st.floats(0, 4), st.none()),
       solver=st.sampled_from(["euler", "unipc"]),
       previous=st.one_of(st.none(), st.integers(-2, 7), hnp.arrays(DTYPES, st.integers(0, 3))))
def test_property_replanner_next_on_any_shapes_dtypes_and_values(level, x, x0_hat, done, solver, previous):
    from cotj.execute.replan import Replanner

    replanner = Replanner(_execute_teacher(), 3, solver=solver)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow in the float16/extreme inputs' own conversions
        out = _execute_call(lambda: replanner.next(level, done, x, x0_hat, previous))
    if out is not None:
        lv = np.asarray(level).reshape(-1)
        assert out.dtype == np.int64 and out.shape == lv.shape and np.all((out < lv) & (out >= -1))


class _HalfVelocity:
    """A flow model of any state shape: velocity ``x / 2``."""

    prediction = "flow"

    def __call__(self, x, t, cond):
        return 0.5 * x


TORCH_DTYPES = st.sampled_from(["float64", "float32", "float16", "bfloat16", "int64", "bool", "complex64"])


@pytest.mark.diffusers
@in_child
@FEW
@given(shape=st.lists(st.integers(0, 3), max_size=3), dtype=TORCH_DTYPES, fill=st.one_of(st.floats(-3, 3), EXTREME),
       cond_rows=st.integers(0, 4), levels=st.one_of(ARRAYS, st.lists(EXTREME, max_size=3)),
       solver=st.sampled_from(["euler", "heun", "dpmpp_2m", "unipc", "rk4"]), budget=st.integers(0, 4))
def test_property_solve_and_replan_sample_on_any_noise_cond_and_levels(shape, dtype, fill, cond_rows, levels, solver,
                                                                        budget):
    import torch

    from cotj.execute import solve
    from cotj.execute.replan import Replanner, replan_sample

    model = _HalfVelocity()
    try:
        noise = torch.full(shape, fill, dtype=getattr(torch, dtype)) if dtype != "bool" else torch.zeros(shape, dtype=torch.bool)
    except (RuntimeError, OverflowError):  # the tensor itself cannot hold the fill
        return
    cond = torch.arange(cond_rows) % 5
    out = _execute_call(lambda: solve(model, noise, cond, levels, solver))
    if out is not None:
        assert out.shape == noise.shape and bool(torch.isfinite(out).all())
    replan = _execute_call(lambda: replan_sample(model, noise, cond, Replanner(_execute_teacher(), budget, solver=solver)))
    if replan is not None:
        assert replan[0].shape == noise.shape and bool(torch.isfinite(replan[0]).all())


@pytest.mark.diffusers
@in_child
@FEW
@given(out_shape=st.lists(st.integers(0, 3), max_size=3), sample_shape=st.lists(st.integers(0, 3), max_size=3),
       same=st.booleans(), dtype=TORCH_DTYPES, fill=st.one_of(st.floats(-3, 3), EXTREME),
       k=st.one_of(st.integers(-1, 7), st.floats(0, 4)))
def test_property_replanning_scheduler_on_any_model_output_and_sample(out_shape, sample_shape, same, dtype, fill, k):
    import diffusers
    import torch

    from cotj.execute.replan import ReplanningScheduler

    sched = ReplanningScheduler(diffusers.FlowMatchEulerDiscreteScheduler(), _execute_teacher())
    sample_shape = out_shape if same else sample_shape
    try:
        sched.set_timesteps(k)
    except (ValueError, TypeError) as exc:
        _refused_well(exc)
        return
    try:
        make = (lambda s: torch.zeros(s, dtype=torch.bool)) if dtype == "bool" else (
            lambda s: torch.full(s, fill, dtype=getattr(torch, dtype)))
        out, x = make(out_shape), make(sample_shape)
    except (RuntimeError, OverflowError):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stepped = _execute_call(lambda: sched.step(out, sched.timesteps[0], x))
    if stepped is not None:
        assert stepped.prev_sample.shape == x.shape and sched.levels == [1.0]
