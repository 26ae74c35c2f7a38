"""Cross-fitted spread calibration of the VAE (``calibration = "cross-fit"``) and the fold
blocks it shares with the out-of-fold first guesses (:mod:`forecast.models.folds`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forecast.errors import ForecastError
from forecast.models.folds import fold_blocks, hold_out
from forecast.models.spread import fit_correction_weights, fit_spread_factors
from forecast.models.vae import ConditionalVAE

torch.set_num_threads(1)
K, H = 6, 6


@pytest.fixture(scope="module")
def splits(synthetic_weather_ds):
    ds = synthetic_weather_ds
    return ds.isel(time=slice(0, 240)), ds.isel(time=slice(240, 312))


def _tiny(**kw) -> ConditionalVAE:
    model = ConditionalVAE.tiny(K, H)
    return ConditionalVAE(**{**model.config(), "first_guess": "diurnal", **kw})


def test_fold_blocks_partition_the_training_windows(splits):
    train, _ = splits
    blocks = fold_blocks(40, K, H, 3, "calibration_folds")
    issues = np.concatenate([b.issues for b in blocks])
    np.testing.assert_array_equal(issues, np.arange(K - 1, 40 - H))  # every window once, in order
    for b in blocks:  # the steps a block's windows touch: first context step to last target step
        assert (b.lo, b.hi) == (b.issues[0] - K + 1, b.issues[-1] + H + 1)
    masked = hold_out(train, blocks[1])
    nan = np.isnan(masked["t2m"].values).all(axis=(1, 2))
    assert nan[blocks[1].lo : blocks[1].hi].all()
    assert not nan[: blocks[1].lo].any() and not nan[blocks[1].hi :].any()
    assert not np.isnan(train["t2m"].values).any()  # the input is left as it was
    for folds in (1, 30):
        with pytest.raises(ForecastError, match=r"calibration_folds = \d+ needs 2 <= folds <= 29"):
            fold_blocks(40, K, H, folds, "calibration_folds")


def test_bad_cross_fit_options(splits):
    with pytest.raises(ForecastError, match="calibration_folds must be >= 2"):
        _tiny(calibration="cross-fit", calibration_folds=1)
    train, valid = splits
    model = _tiny(calibration="cross-fit", calibration_folds=3)
    with pytest.raises(ForecastError, match="needs 2 <= folds <= 3"):
        _tiny(calibration="cross-fit", calibration_folds=4).fit(train.isel(time=slice(0, 14)))
    # three windows, one per fold: each fold model is left without a complete window
    with pytest.raises(ForecastError, match=r"^cross-fit fold 1 of 3 \(training steps 0\.\.11 "):
        model.fit(train.isel(time=slice(0, K + H + 2)), valid)


def test_fold_models_never_see_their_windows(splits, monkeypatch):
    train, valid = splits
    seen = []
    fit = ConditionalVAE.fit

    def spy(self, data, *args, **kwargs):
        seen.append((self.spread_calibration, data["t2m"].values.copy()))
        return fit(self, data, *args, **kwargs)

    monkeypatch.setattr(ConditionalVAE, "fit", spy)
    model = _tiny(calibration="cross-fit", calibration_folds=2, calibration_windows=3)
    truth, centre, dev = model.cross_fit_samples(train, valid, members=4)
    assert len(seen) == 2 and not any(calibrated for calibrated, _ in seen)
    blocks = fold_blocks(train.sizes["time"], K, H, 2, "calibration_folds")
    for (_, values), block in zip(seen, blocks, strict=True):
        assert np.isnan(values[block.lo : block.hi]).all()
        assert not np.isnan(values[: block.lo]).any() and not np.isnan(values[block.hi :]).any()
    # 3 windows per fold, in the generated units: truth and centre (W, C, H, *s), members last
    assert truth.shape == centre.shape == (6, 1, H, 16, 24)
    assert dev.shape == (6, 1, H, 16, 24, 4)
    assert np.isfinite(dev).all() and dev.std() > 0


def test_cross_fit_calibration_uses_validation_and_held_out_windows(splits):
    train, valid = splits
    model = _tiny(calibration="cross-fit", calibration_folds=2, calibration_windows=3).fit(
        train, valid
    )
    assert model.training["cross_fit"]["folds"] == 2
    assert model.training["cross_fit"]["windows"] == 6
    # the fit's factors: the spread-skill choice on validation windows + the folds' windows
    # (the fold trainings are seeded, so they come out the same again)
    held = model.cross_fit_samples(train, valid)
    val = model.spread_samples(model._calibration_set(None, valid))
    parts = [np.concatenate(a) for a in zip(val, held, strict=True)]
    want = fit_spread_factors(*parts, np.geomspace(0.5, 4.0, 25), "spread-skill")
    np.testing.assert_allclose(model.spread_factor, want)
    only_valid = fit_spread_factors(*val, np.geomspace(0.5, 4.0, 25), "spread-skill")
    assert not np.allclose(model.spread_factor, only_valid)  # the held-out windows count
    # recalibrate repeats it on a fitted model; "valid" drops the folds again
    np.testing.assert_allclose(model.recalibrate(train, valid), want)
    np.testing.assert_allclose(model.recalibrate(train, valid, "valid"), only_valid)
    # with calibrate_correction the same windows, centred on the reference mean (the folds'
    # too, though they train without it), give the weights
    model.calibrate_correction = True
    model.recalibrate(train, valid, "cross-fit")
    held = model.cross_fit_samples(train, valid)
    val = model.spread_samples(model._calibration_set(None, valid))
    truth, centre = (np.concatenate(a) for a in list(zip(val, held, strict=True))[:2])
    assert not np.allclose(centre, parts[1])  # not the decoded prior mean
    np.testing.assert_allclose(model.correction_weight, fit_correction_weights(truth, centre))


def _count_fold_fits(monkeypatch) -> list:
    """Record every fold-model fit (a fit without spread calibration)."""
    fits = []
    fit = ConditionalVAE.fit

    def spy(self, *args, **kwargs):
        if not self.spread_calibration:
            fits.append(1)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(ConditionalVAE, "fit", spy)
    return fits


def test_cached_fold_samples_are_reused_only_for_the_same_folds(splits, tmp_path, monkeypatch):
    train, valid = splits
    model = _tiny(calibration="cross-fit", calibration_folds=2, calibration_windows=3)
    fits = _count_fold_fits(monkeypatch)
    first = model.cross_fit_samples(train, valid, members=4, cache=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["cross-fit-fold0.safetensors", "cross-fit-fold1.safetensors"]
    assert len(fits) == 2
    again = model.cross_fit_samples(train, valid, members=4, cache=tmp_path, reuse=True)
    assert len(fits) == 2  # read, not trained again
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    # other data, other members, or a file of another fold: trained again
    model.cross_fit_samples(train + 0.5, valid, members=4, cache=tmp_path, reuse=True)
    assert len(fits) == 4
    model.cross_fit_samples(train + 0.5, valid, members=3, cache=tmp_path, reuse=True)
    assert len(fits) == 6
    (tmp_path / "cross-fit-fold1.safetensors").replace(tmp_path / "cross-fit-fold0.safetensors")
    model.cross_fit_samples(train + 0.5, valid, members=3, cache=tmp_path, reuse=True)
    assert len(fits) == 8  # fold 0's file was fold 1's, fold 1's is gone
    model.cross_fit_samples(train + 0.5, valid, members=3, cache=tmp_path)
    assert len(fits) == 10  # without reuse (a fresh fit) the folds always train


def test_resume_does_not_train_the_folds_again(splits, tmp_path, monkeypatch):
    train, valid = splits
    kw = {"calibration": "cross-fit", "calibration_folds": 2, "calibration_windows": 3}
    whole = _tiny(**kw).fit(train, valid, out_dir=tmp_path / "whole")
    assert not list((tmp_path / "whole").glob("cross-fit-fold*"))  # removed at the end
    out = tmp_path / "run"
    _tiny(**kw).fit(train, valid, out_dir=out, stop_after=2)
    assert len(list(out.glob("cross-fit-fold*.safetensors"))) == 2  # kept for the resume
    fits = _count_fold_fits(monkeypatch)
    resumed = _tiny(**kw).fit(train, valid, out_dir=out, resume=True)
    assert not fits
    assert not list(out.glob("cross-fit-fold*"))
    np.testing.assert_array_equal(resumed.spread_factor, whole.spread_factor)


def test_jobs_fit_the_folds_side_by_side(splits, tmp_path):
    """``jobs=2`` trains the fold models in worker processes (one thread each here): the same
    spread factors and model as one after the other; without cross-fit it is refused."""
    train, valid = splits
    kw = {"calibration": "cross-fit", "calibration_folds": 3, "calibration_windows": 3}
    apart = _tiny(**kw).fit(train, valid)
    side = _tiny(**kw).fit(train, valid, out_dir=tmp_path / "side", jobs=2)
    np.testing.assert_array_equal(side.spread_factor, apart.spread_factor)
    assert side.training["cross_fit"]["windows"] == apart.training["cross_fit"]["windows"] == 9
    context = valid.isel(time=slice(0, K))
    np.testing.assert_array_equal(
        side.sample(context, 3, seed=1)["t2m"].values,
        apart.sample(context, 3, seed=1)["t2m"].values,
    )
    assert not list((tmp_path / "side").glob("cross-fit-fold*"))  # removed at the end
    with pytest.raises(ForecastError, match="jobs > 1 fits a VAE's cross-fit fold models"):
        _tiny().fit(train, valid, jobs=2)
