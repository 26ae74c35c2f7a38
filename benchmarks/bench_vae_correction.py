"""Does a VAE's mean correction of its anchor hold on windows it has not seen?

A residual VAE (``first_guess = "gp"``) generates the GP mean plus a correction. This draws
the VAE's calibration windows (its validation windows, and the held-out training windows of
its ``calibration_folds`` cross-fit fold models: each block drawn by a model trained without
it) and prints, per block and lead, the RMSE (normalized units) of

- the anchor alone (the first guess: no correction),
- the ensemble mean (16 members, spread factor 1),
- the reference mean (the mean decode of the fixed latents that ``calibrate_correction``
  shrinks),
- the reference mean times the weights that ``calibrate_correction`` fits on all the blocks
  together (:func:`forecast.models.spread.fit_correction_weights`; in-sample there).

It trains ``calibration_folds`` fold models, as the VAE's fit does (``--jobs 2``: two at a
time).

Usage::

    .venv/bin/python benchmarks/bench_vae_correction.py \\
        --checkpoint outputs/final/online-spread-pooled-vae-era5-uk-t2m/model.safetensors \\
        --component 0 --data era5-uk-t2m --jobs 2
"""

from __future__ import annotations

import argparse

import numpy as np

LEADS = (0, 2, 5, 11, 17, 23)  # lead indices shown (1, 3, 6, 12, 18, 24 steps)


def _rmse(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """RMSE per lead of the first channel, over windows and points."""
    axes = (0, *range(3, truth.ndim))
    return np.sqrt(((pred - truth) ** 2).mean(axis=axes))[0]


def _vae_of(model, component: int):
    """The VAE inside a checkpoint's model (itself, a pool's component, an online wrapper's)."""
    while model.kind == "online-spread":
        model = model.model
    if model.kind == "pooled":
        model = model.models[component]
    if model.kind != "vae":
        raise SystemExit(
            f"the checkpoint holds a {model.kind!r} model; pass a vae or a pool of vaes"
        )
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--component", type=int, default=0, help="which model of a pool")
    p.add_argument("--data", required=True, help="data set name or path (as forecast train)")
    p.add_argument("--jobs", type=int, default=1)
    args = p.parse_args()

    import torch

    from forecast.commands.train import protocol_for
    from forecast.data import open_dataset
    from forecast.models import load_model
    from forecast.models.spread import fit_correction_weights

    torch.set_num_threads(1)
    vae = _vae_of(load_model(args.checkpoint), args.component)
    ds = open_dataset(args.data)
    proto = protocol_for(args.data, ds, None, None)
    train, valid = proto.split(ds, "train"), proto.split(ds, "val")
    vae.calibrate_correction = True  # samples centred on the reference mean (folds too)
    val = vae.spread_samples(vae._calibration_items(valid, vae.calibration_windows), 16)
    held = vae.cross_fit_samples(train, valid, jobs=args.jobs)
    every = [np.concatenate(a) for a in zip(val, held, strict=True)]
    weight = fit_correction_weights(every[0], every[1])[0]
    print(f"weights ({every[0].shape[0]} windows):", " ".join(f"{w:.2f}" for w in weight))
    per_fold = held[0].shape[0] // vae.calibration_folds
    parts = {"validation": val}
    for k in range(vae.calibration_folds):
        parts[f"fold {k + 1}"] = tuple(a[k * per_fold : (k + 1) * per_fold] for a in held)
    parts["all"] = tuple(every)
    print("RMSE (normalized) at leads", ", ".join(str(k + 1) for k in LEADS))
    for name, (truth, centre, dev) in parts.items():
        print(f"{name} ({truth.shape[0]} windows)")
        rows = {
            "anchor alone": np.zeros_like(truth),
            "ensemble mean": centre + dev.mean(axis=-1),
            "reference mean": centre,
            "weighted": centre * weight[None, :, None, None].astype(np.float32)[None],
        }
        for key, pred in rows.items():
            print(f"  {key:15s}", _rmse(pred, truth)[list(LEADS)].round(3))


if __name__ == "__main__":
    main()
