"""Loading DNA from malformed files or text, and aligning extreme predictions: a named error or a correct
result, never a warning with a wrong value, a traceback from numpy or an allocation the file does not back."""

from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest

import cotj
from cotj.planning.dna import parse_dna

REF = np.linspace(0.01, 1.0, 20) ** 2


def _npy_with_header(path, header: str, data: bytes = b"") -> None:
    """A version-1.0 .npy file with a hand-written header dict."""
    text = header.encode("latin1")
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data)


@pytest.mark.parametrize(
    ("name", "content", "error", "match"),
    [
        ("empty.csv", "", ValueError, r"empty.csv holds no DNA"),
        ("comment.csv", "# nothing\n", ValueError, r"comment.csv holds no DNA"),
        ("empty.json", "[]", ValueError, r"empty.json holds no DNA"),
        ("nokey.json", '{"x": 1}', ValueError, r"nokey.json: a JSON object must hold the DNA under the key 'dna'"),
        ("bad.json", "[1, 2", ValueError, r"bad.json is not valid JSON"),
        ("csv.json", "1,2,3", ValueError, r"csv.json is not valid JSON DNA"),
        ("deep.json", "[" * 100_000 + "]" * 100_000, ValueError, r"deep.json is not valid DNA: JSON nested too deeply"),
        ("ragged.json", "[[1, 2], [3]]", ValueError, r"dna in ragged.json must be numbers in rows of equal length"),
        ("huge_int.json", "[1.0, " + "9" * 400 + "]", TypeError, r"dna in huge_int.json must be a real numeric array"),
        ("words.json", '["a", "b"]', TypeError, r"must be a real numeric array"),
        ("scalar.json", "[[[1.0]]]", ValueError, r"dna in scalar.json must be one row \(N,\) or rows \(B, N\), got shape \(1, 1, 1\)"),
        ("number.json", '{"dna": 5}', ValueError, r"must be one row \(N,\) or rows \(B, N\), got shape \(\)"),
        ("nan.csv", "0.1,nan\n", ValueError, r"dna in nan.csv must be finite"),
        ("ragged.csv", "1,2\n3\n", ValueError, r"ragged.csv is not CSV numbers"),
        ("latin1.csv", b"\xff\xfe1,2", ValueError, r"latin1.csv is not UTF-8 text"),
        ("dna.txt", "1,2", ValueError, r"path must end in .npy, .json or .csv"),
    ],
)
def test_malformed_text_files_are_refused_by_name(tmp_path, name, content, error, match):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "input contained no data" warning on the way
        with pytest.raises(error, match=match):
            cotj.load_dna(path)


def test_npy_files_are_checked_against_their_size_before_reading(tmp_path):
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.npy is not a valid .npy file: EOF"):
        cotj.load_dna(tmp_path / "empty.npy")
    terabytes = 7 * 2**40 // 8
    _npy_with_header(tmp_path / "huge.npy", f"{{'descr': '<f8', 'fortran_order': False, 'shape': ({terabytes},), }}",
                     b"\0" * 16)
    with pytest.raises(ValueError, match=r"huge.npy .* claims shape \(962072674304,\) of float64 .* holds 16 bytes"):
        cotj.load_dna(tmp_path / "huge.npy")
    np.save(tmp_path / "whole.npy", REF)
    (tmp_path / "cut.npy").write_bytes((tmp_path / "whole.npy").read_bytes()[:-3])
    with pytest.raises(ValueError, match=r"cut.npy .* claims shape \(20,\) of float64 \(160 bytes\) .* holds 157 bytes"):
        cotj.load_dna(tmp_path / "cut.npy")
    np.save(tmp_path / "objects.npy", np.array([1, None], dtype=object), allow_pickle=True)
    with pytest.raises(TypeError, match=r"objects.npy must be a real numeric array, got dtype object"):
        cotj.load_dna(tmp_path / "objects.npy")
    _npy_with_header(tmp_path / "garbled.npy", "{'descr': '<f8', 'shape': (2,)")
    with pytest.raises(ValueError, match=r"garbled.npy is not a valid .npy file"):
        cotj.load_dna(tmp_path / "garbled.npy")
    np.save(tmp_path / "cube.npy", np.ones((1,) * 40))
    with pytest.raises(ValueError, match=r"dna in cube.npy must be one row \(N,\) or rows \(B, N\), got shape \(1, 1,"):
        cotj.load_dna(tmp_path / "cube.npy")
    np.save(tmp_path / "zero.npy", np.zeros((3, 0)))
    with pytest.raises(ValueError, match=r"zero.npy holds no DNA"):
        cotj.load_dna(tmp_path / "zero.npy")


def test_valid_npy_layouts_still_load(tmp_path):
    rows = np.stack([REF, REF / 2])
    for name, arr in (("c", rows), ("f", np.asfortranarray(rows)), ("big", rows.astype(">f8")), ("i", (rows * 9).astype(np.int16))):
        np.save(tmp_path / f"{name}.npy", arr)
        np.testing.assert_array_equal(cotj.load_dna(tmp_path / f"{name}.npy"), arr.astype(np.float64))


@pytest.mark.parametrize(
    ("text", "match"),
    [("", r"stdin holds no DNA"), ('{"x": 1}', r"under the key 'dna'"), ("[1, 2]\n[3, x]", r"stdin is not valid JSON"),
     ("1,2,x", r"stdin is not CSV numbers")],
)
def test_parse_dna_names_the_source(text, match):
    with pytest.raises(ValueError, match=match):
        parse_dna(text)


def test_parse_dna_reads_json_lines_and_csv():
    np.testing.assert_array_equal(parse_dna('{"dna": [1, 2]}\n{"dna": [3, 4]}'), [[1, 2], [3, 4]])
    np.testing.assert_array_equal(parse_dna("1,2\n3,4\n"), [[1, 2], [3, 4]])


@pytest.mark.parametrize("scale", [1e308, 1e-300])
def test_align_dna_is_exact_at_any_finite_scale(scale):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning, no constant result
        np.testing.assert_allclose(cotj.align_dna(REF * scale, REF), REF, rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(cotj.align_dna(REF * 3, REF * scale), REF * scale, rtol=1e-9)


def test_align_dna_refuses_a_result_beyond_float64():
    spike = np.r_[1.0, np.zeros(19)]
    wide = np.r_[np.full(10, 1.7e308), np.full(10, -1.7e308)]
    with pytest.raises(ValueError, match="align_dna overflows float64"):
        cotj.align_dna(spike, wide)
