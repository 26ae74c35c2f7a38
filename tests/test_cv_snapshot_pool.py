"""benchmarks/cv_snapshot_pool.py: snapshot pool against single steps on held-out blocks."""

from __future__ import annotations

import pytest

from forecast.data.synthetic import synthetic_weather

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cv(load_script):
    return load_script("benchmarks/cv_snapshot_pool.py")


def test_summary_compares_every_pool_with_the_snapshot_pool(cv):
    folds = [{"15": 1.1, "30": 0.9, "snapshots": 1.0}, {"15": 2.4, "30": 2.0, "snapshots": 2.0}]
    table = cv.summarize(folds)
    # step 15: +10 % and +20 %, mean +15 %, standard error 5 %; step 30: -10 % and 0 %
    assert "| step 15 | 1.7500 | +15.00 (5.00) |" in table
    assert "| step 30 | 1.4500 | -5.00 (5.00) |" in table
    assert "| snapshot pool | 1.5000 | +0.00 (0.00) |" in table


def test_a_run_scores_each_fold_once(cv, tmp_path, monkeypatch, capsys):
    data = tmp_path / "tiny.nc"
    synthetic_weather(seed=0, n_lat=6, n_lon=8, days=12).to_netcdf(data)
    config = tmp_path / "cfg.toml"
    config.write_text(
        "[model]\nbase = 4\nmults = [1, 2]\nemb_dim = 8\nhidden = 8\nblocks = 1\nnfe = 2\n\n"
        "[train]\nmax_steps = 6\nbatch_size = 8\nwarmup_steps = 2\n"
    )
    argv = [
        "--data", str(data), "--config", str(config), "--steps", "2,4", "--seeds", "0,1",
        "--folds", "2", "--issues", "2", "--members", "4", "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    cv.main(argv)
    table = (tmp_path / "out" / "table.md").read_text()
    for row in ("| step 2 |", "| step 4 |", "| snapshot pool | "):
        assert row in table
    assert sorted(p.name for p in (tmp_path / "out").glob("fold*.json")) == [
        "fold0.json",
        "fold1.json",
    ]

    def refit(*args, **kwargs):
        raise AssertionError("a cached fold was scored again")

    monkeypatch.setattr(cv, "fold_scores", refit)
    capsys.readouterr()
    cv.main(argv)
    assert capsys.readouterr().out == table + "\n"  # the cached folds, nothing refitted
    with pytest.raises(SystemExit, match="--folds must be >= 2"):
        cv.main([*argv[:-2], "--folds", "1", "--out", str(tmp_path / "o2")])
