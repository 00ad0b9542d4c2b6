"""Resolved specs (issue 10): per-method clipping and loss aggregation, the published Rank-GRPO and its named
variants, the `paper` preset's released values, `bench run --dry-run`, and the runs a finished run is printed beside."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from algorithms.training import micro_batches
from bench.errors import BenchError
from bench.runs import presets
from bench.runs.compare import compare, null_control_pair
from bench.runs.presets import transformers_scheduler
from bench.runs.specs import canonical, make_spec, parse_method, sibling_spec, spec_from_json
from cli import app

REDIAL_TRAIN = 2771


@pytest.mark.parametrize(("algo", "low", "high", "loss_type"), [
    ("grpo", 0.2, 0.2, "bnpo"), ("gspo", 3e-4, 4e-4, "grpo"), ("rank_grpo", 0.06, 0.08, "bnpo")])
def test_clipping_and_aggregation_resolved_per_method(algo: str, low: float, high: float, loss_type: str) -> None:
    spec = make_spec(algo, "tiny", "smoke")
    assert (spec.epsilon_low, spec.epsilon_high, spec.loss_type) == (low, high, loss_type)
    assert spec.method_label == algo


def test_overrides_are_recorded_and_named() -> None:
    spec = make_spec("grpo", "tiny", "smoke", epsilon_low=0.1, loss_type="dapo")
    assert (spec.epsilon_low, spec.epsilon_high, spec.loss_type) == (0.1, 0.2, "dapo")
    assert spec.method_label == "grpo+eps0.1-0.2+dapo"
    assert spec.to_json()["epsilon_low"] == 0.1
    with pytest.raises(BenchError, match="sequence-level"):
        make_spec("gspo", "tiny", "smoke", loss_type="bnpo")
    with pytest.raises(BenchError, match="loss type"):
        make_spec("grpo", "tiny", "smoke", loss_type="token_mean")


def test_rank_grpo_is_the_published_trainer_and_its_variants_are_named() -> None:
    published = make_spec("rank_grpo", "tiny", "smoke")
    assert published.length_shaping and not published.missing_rank_credit
    assert make_spec("rank_grpo", "tiny", "smoke", missing_rank_credit=True).method_label == "rank_grpo+mrc"
    both = make_spec("rank_grpo", "tiny", "smoke", missing_rank_credit=True, reward="log_decay")
    assert both.method_label == "rank_grpo+log_decay+mrc"
    assert published.run_id != make_spec("rank_grpo", "tiny", "smoke", missing_rank_credit=True).run_id


def test_canonical_resets_rank_grpo_and_rl_fields_elsewhere() -> None:
    variant = make_spec("rank_grpo", "tiny", "smoke", missing_rank_credit=True, epsilon_low=0.3)
    from dataclasses import replace

    sft = canonical(replace(variant, algo="sft"))
    assert (sft.missing_rank_credit, sft.epsilon_low, sft.epsilon_high, sft.loss_type) == (False, None, None, None)
    assert sft == make_spec("sft", "tiny", "smoke")
    grpo = canonical(replace(variant, algo="grpo"))
    assert not grpo.missing_rank_credit
    assert spec_from_json(json.loads(json.dumps(variant.to_json()))) == variant


def test_paper_preset_is_the_released_configuration() -> None:
    spec = make_spec("rank_grpo", "tiny", "paper")
    s = spec.settings
    assert (s.rl_lr, s.beta, s.num_generations, s.prompts_per_step, s.temperature, s.mu) == (1e-6, 1e-3, 8, 48, 1.0, 1)
    assert (s.max_new_tokens, s.max_prompt_tokens, s.rl_epochs, s.rl_micro_batch, s.rl_adam_beta2) == (
        1024, 2048, 2.0, 16, 0.99)
    assert s.rl_steps == math.ceil(2 * REDIAL_TRAIN / 48) == 116
    assert (s.sft_lr, s.sft_warmup_ratio, s.sft_batch_size, s.sft_micro_batch, s.sft_epochs, s.sft_max_steps) == (
        5e-5, 0.05, 192, 12, 10.0, None)
    bitsandbytes = importlib.util.find_spec("bitsandbytes") is not None
    assert s.optim == ("paged_adamw_8bit" if bitsandbytes else "adamw_torch")
    assert make_spec("rank_grpo", "tiny", "paper", {"rl_steps": 7}).settings.rl_steps == 7


def test_optimizer_falls_back_without_bitsandbytes(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(presets.importlib.util, "find_spec",
                        lambda name, *args: None if name == "bitsandbytes" else real(name, *args))
    assert presets.resolve_optimizer("paged_adamw_8bit") == "adamw_torch"
    monkeypatch.setattr(presets.importlib.util, "find_spec", lambda name, *args: object())
    assert presets.resolve_optimizer("paged_adamw_8bit") == "paged_adamw_8bit"
    assert presets.resolve_optimizer("adamw_torch") == "adamw_torch"


def test_micro_batches_reach_the_global_batch_by_accumulation() -> None:
    assert micro_batches(384, 16) == (16, 24)
    assert micro_batches(192, 12) == (12, 16)
    assert micro_batches(8, None) == (8, 1)
    assert micro_batches(8, 16) == (8, 1)
    with pytest.raises(BenchError, match="micro-batches of 5"):
        micro_batches(8, 5)


def test_dry_run_prints_the_resolved_spec_and_writes_nothing(tmp_path: Path) -> None:
    results = tmp_path / "results"
    result = CliRunner().invoke(app, ["run", "--algo", "gspo", "--preset", "paper", "--epsilon-high", "5e-4",
                                      "--dry-run", "--results-dir", str(results)])
    assert result.exit_code == 0, result.output
    spec = json.loads(result.stdout)
    assert (spec["epsilon_low"], spec["epsilon_high"], spec["loss_type"]) == (3e-4, 5e-4, "grpo")
    assert spec["settings"]["rl_steps"] == 116 and spec["settings"]["rl_lr"] == 1e-6
    assert spec == make_spec("gspo", "tiny", "paper", epsilon_high=5e-4).to_json()
    assert not results.exists()


def test_report_to_fails_before_any_work_without_its_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    unknown = CliRunner().invoke(app, ["run", "--algo", "popularity", "--report-to", "mlflow",
                                       "--results-dir", str(results)])
    assert unknown.exit_code == 2 and "must be none, tensorboard, wandb" in unknown.output
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "wandb" else real(name, *args))
    missing = CliRunner().invoke(app, ["run", "--algo", "popularity", "--report-to", "wandb",
                                       "--results-dir", str(results)])
    assert missing.exit_code == 2 and 'pip install -e ".[wandb]"' in missing.output
    assert not results.exists()


def test_sibling_spec_is_the_published_method_with_the_same_settings() -> None:
    variant = make_spec("rank_grpo", "tiny", "smoke", {"rl_steps": 7}, dataset="synthetic:smoke", seed=3,
                        missing_rank_credit=True, reward="log_decay", epsilon_low=0.1, epsilon_high=0.1)
    grpo = sibling_spec(variant, "grpo")
    assert grpo == make_spec("grpo", "tiny", "smoke", {"rl_steps": 7}, dataset="synthetic:smoke", seed=3)
    assert grpo.method_label == "grpo" and (grpo.epsilon_low, grpo.epsilon_high) == (0.2, 0.2)
    assert sibling_spec(variant, "rank_grpo").method_label == "rank_grpo"
    assert sibling_spec(variant, "popularity").model == "none"
    # the SFT warm start every RL variant of these settings shares
    assert sibling_spec(variant, "sft") == sibling_spec(grpo, "sft") == make_spec(
        "sft", "tiny", "smoke", dataset="synthetic:smoke", seed=3)


def test_comparison_lists_complete_neighbours_and_names_the_missing(tmp_path: Path) -> None:
    spec = make_spec("rank_grpo", "tiny", "smoke", dataset="synthetic:smoke")
    for algo, ndcg in (("sft", 0.1), ("popularity", 0.05)):
        folder = tmp_path / "runs" / sibling_spec(spec, algo).run_id
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"ndcg@20": ndcg}))
    incomplete = tmp_path / "runs" / sibling_spec(spec, "grpo").run_id
    incomplete.mkdir(parents=True)
    comparison = compare(spec, {"ndcg@20": 0.2}, tmp_path)
    assert comparison.rows == (("rank_grpo", {"ndcg@20": 0.2}), ("sft start", {"ndcg@20": 0.1}),
                               ("popularity", {"ndcg@20": 0.05}))
    assert comparison.missing == ("rank_grpo+null", "grpo", "random")
    assert "not tests" in comparison.note and "rank_grpo+null, grpo, random" in comparison.note
    null = tmp_path / "runs" / null_control_pair(spec).run_id
    null.mkdir(parents=True)
    (null / "metrics.json").write_text(json.dumps({"ndcg@20": 0.15}))
    assert compare(spec, {"ndcg@20": 0.2}, tmp_path).rows[1] == ("rank_grpo+null", {"ndcg@20": 0.15})
    # a null control is shown beside its real-reward run
    assert compare(null_control_pair(spec), {}, tmp_path).missing[0] == "rank_grpo"


def test_null_control_is_a_named_variant_of_every_rl_method_sharing_its_sft_start() -> None:
    for algo in ("grpo", "gspo", "rank_grpo"):
        null = make_spec(algo, "tiny", "smoke", dataset="synthetic:smoke", reward_signal="shuffled")
        assert null.method_label == f"{algo}+null"
        assert parse_method(f"{algo}+null") == (algo, {"reward_signal": "shuffled"}, {})
        assert sibling_spec(null, "sft") == make_spec("sft", "tiny", "smoke", dataset="synthetic:smoke")
        assert sibling_spec(null, algo).reward_signal == "real"
    both = make_spec("rank_grpo", "tiny", "smoke", {"mu": 2}, dataset="synthetic:smoke", missing_rank_credit=True,
                     reward_signal="shuffled")
    assert both.method_label == "rank_grpo+mrc+mu2+null"
    assert make_spec("sft", "tiny", "smoke", reward_signal="shuffled").reward_signal == "real"  # not an RL run
    with pytest.raises(BenchError, match="Unknown reward signal 'noise'.*real, shuffled"):
        make_spec("grpo", "tiny", "smoke", dataset="synthetic:smoke", reward_signal="noise")


def test_rl_schedules_are_checked_by_name_and_map_to_transformers() -> None:
    assert transformers_scheduler("constant", 0.0) == "constant"
    assert transformers_scheduler("constant", 0.1) == "constant_with_warmup"
    assert transformers_scheduler("cosine", 0.1) == "cosine"
    with pytest.raises(BenchError, match="Did you mean 'cosine'.*constant, cosine, linear"):
        make_spec("grpo", "tiny", "smoke", {"rl_lr_scheduler": "cosin"}, dataset="synthetic:smoke")


def test_run_and_matrix_share_the_rl_knobs(tmp_path: Path) -> None:
    flags = ["--temperature", "0.7", "--beta", "0.01", "--prompts-per-step", "8", "--lr-schedule", "cosine",
             "--warmup-ratio", "0.1", "--sft-steps", "50", "--reward-signal", "shuffled"]
    result = CliRunner().invoke(app, ["run", "--algo", "grpo", "--dataset", "synthetic:smoke", "--preset", "smoke",
                                      "--dry-run", *flags])
    assert result.exit_code == 0, result.output
    settings = json.loads(result.stdout)["settings"]
    assert (settings["temperature"], settings["beta"], settings["prompts_per_step"], settings["rl_lr_scheduler"],
            settings["rl_warmup_ratio"], settings["sft_max_steps"]) == (0.7, 0.01, 8, "cosine", 0.1, 50)
    planned = CliRunner().invoke(app, ["matrix", "--algos", "grpo", "--dataset", "synthetic:smoke", "--preset",
                                       "smoke", "--seeds", "0-1", "--dry-run", *flags])
    assert planned.exit_code == 0, planned.output
    spec = make_spec("grpo", "tiny", "smoke", {"temperature": 0.7, "beta": 0.01, "prompts_per_step": 8,
                                               "rl_lr_scheduler": "cosine", "rl_warmup_ratio": 0.1,
                                               "sft_max_steps": 50},
                     dataset="synthetic:smoke", seed=1, reward_signal="shuffled")
    assert f"wave 2  {spec.run_id}" in planned.output
    assert f"wave 1  {sibling_spec(spec, 'sft').run_id}" in planned.output


def test_with_null_plans_the_run_and_its_null_control() -> None:
    result = CliRunner().invoke(app, ["run", "--algo", "rank_grpo", "--dataset", "synthetic:smoke", "--preset",
                                      "smoke", "--dry-run", "--with-null"])
    assert result.exit_code == 0, result.output
    assert "rank_grpo: would write" in result.output and "rank_grpo+null: would write" in result.output
    refused = CliRunner().invoke(app, ["run", "--algo", "sft", "--with-null", "--dry-run"])
    assert refused.exit_code == 2 and "--with-null applies to RL methods" in refused.output


def test_option_sets_refuse_clashing_flags() -> None:
    from bench.commands.options import RLOptions, with_option_sets

    def command(steps: int = 1, *, rl: RLOptions) -> None: ...

    with pytest.raises(TypeError, match="option 'steps' of RLOptions clashes"):
        with_option_sets(rl=RLOptions)(command)


def test_dtype_is_explicit_for_model_runs_and_moves_no_float32_id(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from bench.errors import UnknownNameError
    from bench.models import backbones

    monkeypatch.setattr(backbones, "default_dtype", lambda: "float32")  # this machine's default, named
    spec = make_spec("zero_shot", "tiny", "smoke")
    assert spec.dtype == "float32" and spec.to_json()["dtype"] == "float32"
    assert spec.run_id == replace(spec, dtype=None).run_id  # ids of runs made before the field stay
    assert make_spec("zero_shot", "tiny", "smoke", dtype="bfloat16").run_id != spec.run_id
    assert make_spec("popularity", "tiny", "smoke", dtype="bfloat16").dtype is None
    monkeypatch.setattr(backbones, "default_dtype", lambda: "bfloat16")  # a CUDA node
    assert make_spec("sft", "tiny", "smoke").dtype == "bfloat16"
    with pytest.raises(UnknownNameError, match="bfloat16"):
        make_spec("zero_shot", "tiny", "smoke", dtype="bf16")


def test_vllm_rl_runs_use_the_shared_hook() -> None:
    assert make_spec("grpo", "tiny", "smoke", backend="vllm").rl_rollouts == "engine"
    with pytest.raises(BenchError, match="--rl-rollouts engine"):
        make_spec("grpo", "tiny", "smoke", backend="vllm", rl_rollouts="trl")
