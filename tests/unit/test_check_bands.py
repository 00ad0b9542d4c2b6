"""`bench check`'s bands on hand-made numbers (`bench.runs.verdicts`): band width, z and verdicts, how a target's
sample is pooled from the reference pass, the perturbed reruns and the band seeds, the leave-one-out estimate, the
failure message; and the perturbations' syntax and environment (`bench.runs.perturb`)."""

import os
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.runs.perturb import Perturbation, perturbed
from bench.runs.verdicts import (
    BandRule,
    Observation,
    Pass,
    band,
    build_reference,
    collect_samples,
    compare,
    leave_one_out,
    value_names,
    verdict,
    z_score,
)

RUNS = BandRule(k=3.0, floor=0.02)
PROBES = BandRule(k=10.0, floor=1e-6, relative_floor=1e-3)
KEY = "sft/tiny/synthetic"


def test_band_is_k_std_or_a_floor_whichever_is_wider() -> None:
    wide = band([0.30, 0.40, 0.50], RUNS)  # std 0.1 -> 3 x 0.1
    assert wide["centre"] == pytest.approx(0.40) and wide["half_width"] == pytest.approx(0.30)
    assert band([0.40, 0.40], RUNS)["half_width"] == 0.02  # no spread: the floor
    assert band([2.0, 2.0], PROBES)["half_width"] == pytest.approx(2e-3)  # relative floor
    assert band([0.0], PROBES)["half_width"] == 1e-6 and band([0.5], RUNS)["std"] == 0.0


def test_z_and_verdicts_either_way() -> None:
    cell = band([0.5, 0.5], RUNS)
    assert z_score(0.51, cell) == pytest.approx(0.5) and z_score(0.44, cell) == pytest.approx(-3.0)
    assert verdict("ndcg@20", 1.0, probe=False) == "ok"  # the edge is inside
    assert verdict("ndcg@20", -3.0, probe=False) == "regressed"
    assert verdict("ndcg@20", 1.5, probe=False) == "improved"
    assert verdict("duplicate_rate", -1.5, probe=False) == "improved"  # lower is better
    assert verdict("duplicate_rate", 1.5, probe=False) == "regressed"
    assert verdict("loss", -7.0, probe=True) == "changed"  # a probe value has no better side
    assert z_score(0.0, {"centre": 0.0, "half_width": 0.0}) == 0.0


def _observation(seed: int | None, **values: float) -> Observation:
    return Observation("sft", "tiny", "synthetic", seed, values)


def _passes() -> tuple[Pass, list[Pass]]:
    reference = Pass((_observation(0, ndcg=0.40), _observation(1, ndcg=0.30), _observation(None, loss=2.0)), (),
                     "reference", 2, 1.0)
    reruns = [Pass((_observation(0, ndcg=0.42), _observation(None, loss=2.000001)), (), "threads=1", 1, 1.0),
              Pass((_observation(0, ndcg=0.41), _observation(None, loss=1.999999)), (), "onednn=off", 2, 1.0)]
    return reference, reruns


def test_a_targets_sample_pools_the_reference_the_reruns_and_the_band_seeds() -> None:
    reference, reruns = _passes()
    samples = collect_samples(reference, reruns, {KEY: (1,)}, ["ndcg"])
    assert set(samples) == {f"{KEY} seed 0", f"{KEY} probe"}  # seed 1 is a band seed, not a target
    run = samples[f"{KEY} seed 0"]
    assert run["sources"] == ["reference", "threads=1", "onednn=off", "seed 1"]
    assert run["values"] == {"ndcg": [0.40, 0.42, 0.41, 0.30]}
    assert samples[f"{KEY} probe"]["values"] == {"loss": [2.0, 2.000001, 1.999999]}
    targets = build_reference(samples, RUNS, PROBES)
    assert targets[f"{KEY} probe"]["metrics"]["loss"]["half_width"] == pytest.approx(2e-3)
    assert targets[f"{KEY} seed 0"]["rule"] == {"k": 3.0, "floor": 0.02, "relative_floor": 0.0}


def test_leave_one_out_flags_the_source_outside_the_others_band() -> None:
    reference, reruns = _passes()
    reruns.append(Pass((_observation(0, ndcg=0.90), _observation(None, loss=2.0)), (), "jitter=1e-07:1", 2, 1.0))
    members = {m["source"]: m for m in leave_one_out(collect_samples(reference, reruns, {KEY: (1,)}, ["ndcg"]),
                                                        RUNS, PROBES)}
    assert not members["jitter=1e-07:1"]["passed"] and members["jitter=1e-07:1"]["worst"] == f"{KEY} seed 0 ndcg"
    assert members["threads=1"]["passed"] and members["reference"]["passed"]


def test_a_failure_says_how_far_outside_the_band_and_what_made_it() -> None:
    reference, reruns = _passes()
    document = {"targets": build_reference(collect_samples(reference, reruns, {KEY: (1,)}, ["ndcg"]), RUNS, PROBES)}
    rows = compare(document, [_observation(0, ndcg=0.10), _observation(None, loss=2.5),
                              _observation(2, ndcg=0.4)], ["ndcg"])
    assert [(row.target, row.verdict) for row in rows] == [
        (f"{KEY} seed 0", "regressed"), (f"{KEY} seed 2", "no reference"), (f"{KEY} probe", "changed")]
    sample = [0.40, 0.42, 0.41, 0.30]
    cell = band(sample, RUNS)
    z = (0.10 - cell["centre"]) / cell["half_width"]
    assert rows[0].message() == (
        f"{KEY} seed 0 ndcg: 0.1 is {abs(z) - 1:.1f} band half-widths below the band {cell['centre']:.6g} ± "
        f"{cell['half_width']:.2g} (z = {z:+.1f}; centre ± max(3 x std, floor 0.02) over 4: reference, threads=1, "
        "onednn=off, seed 1): regressed")
    assert "band half-widths above" in rows[2].message() and "run `bench check --update` if intended" in \
        rows[2].message()


def test_perturbations_parse_label_and_set_their_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    combined = Perturbation.parse("threads=1, onednn=off,jitter=1e-7:3")
    assert combined == Perturbation(threads=1, onednn=False, jitter=1e-7, jitter_seed=3)
    assert combined.label == "threads=1,onednn=off,jitter=1e-07:3"
    assert combined.environment() == {"BENCH_ONEDNN": "0", "BENCH_TINY_JITTER": "1e-07:3"}
    assert Perturbation.parse("threads=2").environment() == {}
    for bad in ("threads=0", "onednn=maybe", "jitter=lots", "colour=red"):
        with pytest.raises(BenchError, match="expected threads=N, onednn=off, jitter="):
            Perturbation.parse(bad)
    monkeypatch.setenv("BENCH_TINY_JITTER", "5e-1")  # a stale setting of the caller is not inherited
    monkeypatch.setenv("BENCH_CACHE", "/somewhere")
    with perturbed(Perturbation(onednn=False)) as cache:
        assert os.environ["BENCH_ONEDNN"] == "0" and "BENCH_TINY_JITTER" not in os.environ
        assert os.environ["BENCH_CACHE"] == str(cache) and cache.is_dir() and not any(cache.iterdir())
    assert "BENCH_ONEDNN" not in os.environ and os.environ["BENCH_TINY_JITTER"] == "5e-1"
    assert os.environ["BENCH_CACHE"] == "/somewhere" and not cache.exists()


def test_rl_runs_are_checked_on_their_shift_in_adam_steps_too(tmp_path: Path) -> None:
    """||theta_RL - theta_SFT|| / (lr x sqrt(n)), from the saved weights of the RL run and its SFT start: here a
    2 x 2 weight moved by (lr, -lr, lr, lr) and an untouched bias of 2, so ||delta|| = 2 lr over n = 6 weights:
    2 / sqrt(6). A change of it either way is `changed`, not better or worse."""
    import torch
    from safetensors.torch import save_file

    from bench.runs.check import rl_shift_steps
    from bench.runs.folders import runs_dir
    from bench.runs.specs import make_spec, sibling_spec
    from bench.runs.verdicts import RL_SHIFT

    spec = make_spec("grpo", "tiny", "smoke", {"rl_lr": 0.01}, dataset="synthetic:check", seed=0)
    start = {"weight": torch.zeros(2, 2), "bias": torch.full((2,), 2.0)}
    trained = {"weight": torch.tensor([[0.01, -0.01], [0.01, 0.01]]), "bias": torch.full((2,), 2.0)}
    for run, weights in ((sibling_spec(spec, "sft"), start), (spec, trained)):
        folder = runs_dir(tmp_path) / run.run_id / "model"
        folder.mkdir(parents=True)
        save_file(weights, str(folder / "model.safetensors"))
    assert rl_shift_steps(spec, tmp_path) == pytest.approx(2 / 6 ** 0.5)
    assert verdict(RL_SHIFT, -3.0, probe=False) == verdict(RL_SHIFT, 3.0, probe=False) == "changed"
    observation = Observation("grpo", "tiny", "synthetic", 0, {"ndcg@20": 0.3, RL_SHIFT: 1.2, "other": 1.0})
    assert value_names(observation, ["ndcg@20"]) == ["ndcg@20", RL_SHIFT]
