"""benchmarks/choose_training_length.py: fold runs on held-out blocks, the chosen step."""

from __future__ import annotations

import pytest

from forecast.data.synthetic import synthetic_weather


@pytest.fixture(scope="module")
def cv(load_script):
    return load_script("benchmarks/choose_training_length.py")


def test_summary_picks_the_lowest_mean_at_shared_steps(cv):
    runs = [
        {
            "history": [
                {"step": 5, "crps": 1.0},
                {"step": 10, "crps": 0.5},
                {"step": 15, "crps": 0.9},
            ]
        },
        {
            "history": [
                {"step": 5, "crps": 0.4},
                {"step": 10, "crps": 0.6},
                {"step": 15, "crps": 0.7},
            ]
        },
        {"history": [{"step": 5, "crps": 0.3}, {"step": 10, "crps": 0.2}]},  # ends at 10
    ]
    chosen, table = cv.summarize(runs)
    assert chosen == 10  # means: step 5 0.5667, step 10 0.4333; 15 is not shared
    assert "| 10 **(chosen)** | 0.4333 | 0.1202 | 2 |" in table
    assert "| 5 | 0.5667 |" in table and "| 15 |" not in table
    with pytest.raises(SystemExit, match="share no validation step"):
        cv.summarize([runs[0], {"history": [{"step": 7, "crps": 1.0}]}])


def test_a_fold_run_validates_on_its_held_out_block_every_n_steps(cv, tmp_path):
    path = tmp_path / "tiny.nc"
    synthetic_weather(seed=0, n_lat=6, n_lon=8, days=12).to_netcdf(path)
    model_kw = {"base": 4, "mults": [1, 2], "emb_dim": 8, "hidden": 8, "blocks": 1, "nfe": 2}
    train_kw = cv._train_kw({"max_steps": 9, "batch_size": 8, "warmup_steps": 2}, 1, 3, 2)
    assert train_kw["keep"] == "last" and train_kw["eval_every_steps"] == 3
    run = cv._fit_fold(
        dict(
            data=str(path), model="diffusion", model_kw=model_kw, train_kw=train_kw, folds=3,
            fold=1, seed=1, key="k", threads=1,
        )
    )  # fmt: skip
    assert [h["step"] for h in run["history"]] == [3, 6, 9]
    assert run["fold"] == 1 and run["seed"] == 1 and run["windows"] > 0
    assert cv._train_kw({"max_steps": 9}, 1, 3, 2, until=6)["keep"] == 6
    with pytest.raises(SystemExit, match=r"--until must be in 1..max_steps \(9\), got 10"):
        cv._train_kw({"max_steps": 9}, 1, 3, 2, until=10)
    with pytest.raises(SystemExit, match="needs max_steps"):
        cv._train_kw({"epochs": 3}, 0, 3, 2)
