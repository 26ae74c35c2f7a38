"""The checkpoint file: equal arrays stored once, format 1 still read, damaged files refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from forecast.checkpoint import MIN_SHARED_BYTES, equal_arrays, load_checkpoint, save_checkpoint
from forecast.errors import ForecastError


def _stored(path) -> set[str]:
    with safe_open(str(path), framework="numpy") as f:
        return set(f.keys())


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    big = rng.normal(size=(16, 32)).astype(np.float32)  # 2048 bytes
    small = np.arange(4.0)
    return {
        "c0/w": big,
        "c1/w": big.copy(),  # equal: stored once
        "c2/w": big.reshape(32, 16).copy(),  # same bytes, another shape: kept
        "c3/w": big.astype(np.float64),  # same values, another dtype: kept
        "c4/w": big + np.float32(1e-6),  # another array: kept
        "c0/b": small,
        "c1/b": small.copy(),  # equal but below MIN_SHARED_BYTES: kept
    }


def test_equal_arrays_are_stored_once_and_loaded_as_copies(tmp_path):
    arrays = _arrays()
    assert arrays["c1/b"].nbytes < MIN_SHARED_BYTES <= arrays["c0/w"].nbytes
    assert equal_arrays(arrays) == {"c1/w": "c0/w"}
    path = save_checkpoint(tmp_path / "m.safetensors", arrays, {"kind": "x"})
    assert _stored(path) == set(arrays) - {"c1/w"}

    loaded, meta = load_checkpoint(path)
    assert meta["format"] == 2 and meta["kind"] == "x"
    assert set(loaded) == set(arrays)
    for name, value in arrays.items():
        assert loaded[name].dtype == value.dtype
        np.testing.assert_array_equal(loaded[name], value)
    loaded["c1/w"][0, 0] = 99.0  # its own copy, not a view of the stored one
    assert loaded["c0/w"][0, 0] == arrays["c0/w"][0, 0]


def test_a_file_of_format_1_is_read(tmp_path):
    arrays = _arrays()
    path = tmp_path / "old.safetensors"
    meta = {"format": 1, "version": "0.1.0", "kind": "x"}
    save_file(arrays, str(path), metadata={"forecast": json.dumps(meta)})
    loaded, read = load_checkpoint(path)
    assert read == meta and set(loaded) == set(arrays)
    np.testing.assert_array_equal(loaded["c1/w"], arrays["c1/w"])


def test_the_format_written_is_this_versions_whatever_the_metadata_says(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", _arrays(), {"format": 1, "kind": "x"})
    assert load_checkpoint(path)[1]["format"] == 2  # format 1 readers would miss c1/w


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            {"forecast": json.dumps({"format": 3})},
            r"checkpoint format 3, forecast .* reads formats 1, 2; upgrade forecast to read it",
        ),
        (
            {"forecast": json.dumps({"format": 0})},
            r"checkpoint format 0, forecast .* reads formats 1, 2; retrain it with this version",
        ),
        (
            {
                "forecast": json.dumps({"format": 2}),
                "forecast.same_as": json.dumps({"c9/w": "nope"}),
            },
            r"damaged: its shared array 'c9/w' -> 'nope' does not resolve",
        ),
        (
            {
                "forecast": json.dumps({"format": 2}),
                "forecast.same_as": json.dumps({"c0/w": "c0/b"}),
            },
            r"damaged: its shared array 'c0/w' -> 'c0/b'",
        ),
    ],
)
def test_unreadable_files_are_refused_in_one_line(tmp_path, header, message):
    path = tmp_path / "bad.safetensors"
    save_file({"c0/w": np.zeros(300), "c0/b": np.zeros(300)}, str(path), metadata=header)
    with pytest.raises(ForecastError, match=message) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)


def test_the_size_benchmark_reports_the_saving_of_a_format_1_file(
    tmp_path, load_script, monkeypatch, capsys
):
    arrays = _arrays()
    path = tmp_path / "old.safetensors"
    meta = {"format": 1, "version": "0.1.0", "kind": "x"}
    save_file(arrays, str(path), metadata={"forecast": json.dumps(meta)})
    bench = load_script("benchmarks/bench_checkpoint_size.py")
    monkeypatch.setattr("sys.argv", ["bench", str(path), "--repeat", "1"])
    bench.main()
    row = capsys.readouterr().out.splitlines()[-1].strip("| ").split(" | ")
    assert row[:2] == [str(path), "1"]
    assert row[3] == "7 / 7" and row[6] == "6"  # the copy stores c1/w once
    assert len(list(tmp_path.iterdir())) == 1  # the copy is not left behind


def test_the_size_benchmark_refuses_a_copy_that_loads_other_content(
    tmp_path, load_script, monkeypatch
):
    path = save_checkpoint(tmp_path / "m.safetensors", _arrays(), {"kind": "x"})
    bench = load_script("benchmarks/bench_checkpoint_size.py")

    def lossy(target, arrays, meta):  # a writer that drops an array
        return save_checkpoint(target, {k: v for k, v in arrays.items() if k != "c4/w"}, meta)

    monkeypatch.setattr(bench, "save_checkpoint", lossy)
    monkeypatch.setattr("sys.argv", ["bench", str(path), "--repeat", "1"])
    with pytest.raises(SystemExit, match="the copy in the current format loads other content"):
        bench.main()
