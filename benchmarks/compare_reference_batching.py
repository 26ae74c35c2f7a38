"""How far an online-spread checkpoint's members move when its reference forecasts are drawn
together (the default, up to ``forecast.models.online._REFERENCE_BATCH`` issue times per draw)
instead of one at a time.

Loads the checkpoint twice, draws ``--members`` members at the protocol's first test issue time
with each setting (fresh copies: all ``history + 1`` reference forecasts run), and prints the
largest and mean absolute difference of the members and their mean spread.

Usage::

    .venv/bin/python benchmarks/compare_reference_batching.py \
        --checkpoint runs/cfg/schaake-snap/model.safetensors [--data era5-uk-t2m] [--members 50]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default="era5-uk-t2m")
    p.add_argument("--members", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    import forecast.models.online as online
    from forecast.data import open_dataset
    from forecast.data.protocols import PROTOCOLS, get_protocol
    from forecast.data.windows import context_of
    from forecast.models import load_model

    ds = open_dataset(args.data)
    proto = next(get_protocol(n) for n in PROTOCOLS.names() if get_protocol(n).dataset == args.data)
    issue = proto.windows(ds, "test").issue_times(ds)[0]
    together = online._REFERENCE_BATCH
    members = {}
    for batch in (together, 1):
        online._REFERENCE_BATCH = batch
        model = load_model(args.checkpoint)
        ens = model.sample(context_of(ds, issue, model.context), args.members, seed=0)
        members[batch] = np.stack([ens[v].values for v in model.variables])
    online._REFERENCE_BATCH = together
    diff = np.abs(members[together] - members[1])
    print(
        f"{args.checkpoint} at {issue}, {args.members} members: references drawn up to "
        f"{together} at a time vs one at a time: max |difference| {diff.max():.3g}, mean "
        f"{diff.mean():.3g}; mean spread of the members {members[1].std(axis=1).mean():.3f}"
    )


if __name__ == "__main__":
    main()
