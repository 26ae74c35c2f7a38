"""benchmarks/bench_grid_nets.py and benchmarks/bench_latent.py: what they print is what they
measure."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from forecast.models.nets import GridDenoiser, SpaceTimeDenoiser

pytestmark = pytest.mark.usefixtures("one_thread")


def run(module, argv: list[str], monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", ["bench", *argv])
    module.main()
    return capsys.readouterr().out


@pytest.mark.parametrize("contiguous", [False, True])
def test_grid_nets_prints_each_networks_size_and_costs(
    contiguous, load_script, monkeypatch, capsys
):
    bench = load_script("benchmarks/bench_grid_nets.py")
    argv = "--grid 8 10 --horizon 4 --context 3 --members 3 --batch 2 --repeat 1 --threads 1"
    argv += " --net leads-as-channels:4 space-time:2" + (" --contiguous-weights" * contiguous)
    out = run(bench, argv.split(), monkeypatch, capsys)
    assert torch.get_num_threads() == 1
    rows = re.findall(
        r"^(\S+) base (\d+): ([\d,]+) parameters; forward ([\d.]+) s .*10 NFE >= ([\d.]+) s\); "
        r"training step ([\d.]+) s$",
        out,
        flags=re.M,
    )
    assert [(r[0], r[1]) for r in rows] == [("leads-as-channels", "4"), ("space-time", "2")]
    for (name, base, size, forward, ten, step), cls in zip(
        rows, (GridDenoiser, SpaceTimeDenoiser), strict=True
    ):
        net = cls(1, 4, 3, base=int(base), mults=(1, 2, 4), first_guess=True)
        assert int(size.replace(",", "")) == sum(p.numel() for p in net.parameters()), name
        assert float(forward) > 0 and float(step) > 0
        assert float(ten) == pytest.approx(10 * float(forward), abs=0.011)


def test_latent_prints_the_round_trip_error_and_path_ratios(load_script, monkeypatch, capsys):
    bench = load_script("benchmarks/bench_latent.py")
    argv = [
        "--checkpoint",
        "data/models/diffusion-synthetic-traffic.safetensors",
        "--data",
        "synthetic-traffic",
        "--invert-issues",
        "2",
        "--threads",
        "1",
    ]
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the checkpoint's path is relative
    out = run(bench, argv, monkeypatch, capsys)
    line = re.search(
        r"^diffusion: reconstruction error / anomaly ([\d.e-]+) % mean, ([\d.e-]+) % max over 2 "
        r"targets; variance ratio along the path: slerp ([\d.]+)-([\d.]+), blend ([\d.]+) at its "
        r"lowest",
        out,
        flags=re.M,
    )
    assert line, out
    mean, most, low, high, blend = map(float, line.groups())
    assert 0 <= mean <= most < 5  # the aim: below 5 % of the anomaly
    assert 0.5 < low <= 1.0 <= high < 1.5  # the ends have ratio 1 by construction
    assert blend < 1.0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux /proc")
def test_sample_speed_prints_the_memory_the_draw_adds(load_script, monkeypatch, capsys):
    bench = load_script("benchmarks/bench_sample_speed.py")
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    argv = "--checkpoint data/models/diffusion-synthetic-weather.safetensors"
    argv += " --data synthetic-weather --members 2 --repeat 1 --threads 1 --contexts 3"
    out = run(bench, argv.split(), monkeypatch, capsys)
    assert re.search(r"^whole ensemble: [\d.]+ s \([\d.]+ members/s\)$", out, flags=re.M), out
    memory = r"(\d+) MiB resident before, peak (\d+) MiB during the draws \(adds (-?\d+) MiB\)$"
    if not bench.reset_peak():  # no /proc/self/clear_refs: the lifetime peak, an upper bound
        memory = memory.replace("during the draws", "of the process so far")
        memory = memory.replace("(adds", "(adds at most")
    found = re.search(r"^memory with the data and model loaded: " + memory, out, flags=re.M)
    assert found, out
    before, peak, added = map(int, found.groups())
    assert 0 < before <= peak + 1 and abs(added - (peak - before)) <= 1
    for how in ("in one call of sample_many", "one after the other"):
        line = rf"^3 issue times x 2 members {how}: [\d.]+ s; memory: " + memory
        assert re.search(line, out, flags=re.M), out
    with pytest.raises(SystemExit, match="--reference-batch must be at least 1, got 0"):
        run(bench, [*argv.split(), "--reference-batch", "0"], monkeypatch, capsys)
    with pytest.raises(SystemExit, match="--contexts must be 0 or more, got -1"):
        run(bench, [*argv.split(), "--contexts", "-1"], monkeypatch, capsys)
