"""CRAG end to end on the tiny backbone (locally and through the OpenAI-compatible server) and its mention
extraction, the LLM teacher and judge of `bench sft-data` through that server, and `bench serve` stopping cleanly
on Ctrl-C."""

import dataclasses
import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from baselines.crag import parse_mentions
from baselines.remap import Remapper
from bench.data.catalog import catalog_from_entries
from bench.data.datasets import load_dataset
from bench.data.records import ContextItem
from bench.data.synthetic import SYNTHETIC_SIZES, write_synthetic
from bench.models.backbones import load_backbone
from bench.models.openai_server import ServerHandle, serve
from bench.runs.folders import read_json, read_jsonl
from bench.runs.runner import execute
from cli import app
from processes import HANG_LIMIT_S, ChildOutput

REPO = Path(__file__).resolve().parents[2]
STEPS = ("reflection", "recommendation", "rerank")


@pytest.fixture(scope="module")
def bench_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    cache = tmp_path_factory.getbasetemp() / "bench-cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCH_CACHE", str(cache))
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            patch.delenv(name, raising=False)
        yield cache


@pytest.fixture(scope="module")
def server(bench_cache: Path) -> Iterator[ServerHandle]:
    """The tiny backbone runs build (redial corpus, seed 0, the run cache), served on 127.0.0.1."""
    backbone = load_backbone("tiny", corpus=load_dataset("redial").corpus(), cache_dir=bench_cache / "backbones",
                             device="cpu")
    with serve(backbone) as handle:
        yield handle


@pytest.fixture(scope="module")
def no_context_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset with its mentioned-item records removed, so CRAG must ask the LLM for them."""
    directory = tmp_path_factory.mktemp("no-context")
    dataset = write_synthetic(directory, SYNTHETIC_SIZES["smoke"])
    for split, examples in dataset.splits.items():
        records = [dataclasses.replace(example, context_items=()).to_json() for example in examples]
        (directory / f"{split}.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    return directory


def test_crag_on_tiny_writes_every_step_per_example(tmp_path: Path, bench_cache: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--algo", "crag", "--model", "tiny", "--preset", "smoke", "--limit", "4",
                                      "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "runs").iterdir()
    records = read_jsonl(folder / "examples.jsonl")
    assert len(records) == 4
    for record in records:
        crag = record["crag"]
        assert crag["context_source"] == "dataset" and crag["extraction"] is None
        assert len(crag["retrieved"]) == 30
        assert all(isinstance(crag[step]["output"], (str, type(None))) for step in STEPS)
        assert isinstance(crag["reflection"]["prompt"][0]["content"], str) and crag["reflection"]["kept"]
        assert "Candidates from similar users:" in crag["recommendation"]["prompt"][-1]["content"]
        if crag["reflection"]["fallback"]:
            assert crag["reflection"]["kept"] == [entry[:2] for entry in crag["retrieved"][:10]]
        if crag["rerank"]["fallback"]:
            assert record["text"] == crag["recommendation"]["output"]
    artifacts = read_json(folder / "summary.json")["artifacts"]
    assert artifacts["k"] == 30 and artifacts["context_source"] == "dataset" and artifacts["endpoint"] is None
    assert read_json(folder / "metrics.json")["n_examples"] == 4


def test_crag_through_an_openai_compatible_endpoint_extracts_mentions_and_caches(
        tmp_path: Path, server: ServerHandle, no_context_dataset: Path) -> None:
    from bench.runs.specs import make_spec

    spec = make_spec("crag", "openai:tiny", "smoke", {"eval_limit": 3, "max_new_tokens": 16},
                     dataset=str(no_context_dataset), base_url=server.url)
    before = server.chat_requests
    outcome = execute(spec, tmp_path, log=lambda _: None, progress=False)
    records = read_jsonl(outcome.folder / "examples.jsonl")
    assert len(records) == 3
    for record in records:
        crag = record["crag"]
        assert crag["context_source"] == "llm"
        assert "List every movie" in crag["extraction"]["prompt"][0]["content"]
        assert isinstance(crag["extraction"]["output"], str) and len(crag["retrieved"]) == 30
    usage = read_json(outcome.folder / "usage.json")
    sent = server.chat_requests - before
    assert sent == usage["requests"] >= 9 and usage["failed_prompts"] == 0
    assert read_json(outcome.folder / "summary.json")["artifacts"]["endpoint"] == usage

    execute(spec, tmp_path, force=True, log=lambda _: None, progress=False)
    assert server.chat_requests - before == sent
    assert read_jsonl(outcome.folder / "examples.jsonl") == records


def test_sft_data_with_an_llm_teacher_and_judge(tmp_path: Path, server: ServerHandle,
                                                no_context_dataset: Path) -> None:
    out = tmp_path / "demos"
    result = CliRunner().invoke(app, ["sft-data", "--dataset", str(no_context_dataset), "--out", str(out),
                                      "--teacher", "openai:tiny", "--judge", "openai:tiny", "--base-url", server.url,
                                      "--limit", "3", "--max-new-tokens", "16"])
    assert result.exit_code == 0, result.output
    report = read_json(out / "report.json")
    assert report["catalog_compliance"] == 1.0 and report["n_examples"] == 3
    assert report["filled"] + sum(report["remap"]["counts"][s] for s in ("exact", "normalised", "fuzzy")) >= 60
    assert report["endpoint_usage"]["openai:tiny"]["requests"] >= 3
    assert all(len(example.completion.splitlines()) == 20 for example in load_dataset(str(out)).split("train"))


def test_bench_serve_answers_and_stops_on_ctrl_c(bench_cache: Path, server: ServerHandle) -> None:
    process = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "serve", "--port", "0"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        child = ChildOutput(process)
        line = child.wait_for("serving tiny at http://127.0.0.1:")  # readiness, however busy the machine
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(f"{url}/models", timeout=HANG_LIMIT_S) as reply:
            assert json.loads(reply.read())["data"][0]["id"] == "tiny"
        process.send_signal(signal.SIGINT)
        output = child.finish()
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and "stopping" in output and "Traceback" not in output


def test_extracted_mentions_are_labelled_and_remapped() -> None:
    catalog = catalog_from_entries([("The Matrix", 1999, 0), ("Alien", 1979, 0), ("Heat", 1995, 0)], "test")
    answer = "**Liked:**\n1. the matrix (1999)\nHeat (1996)\nDisliked: Alien (1979)\nNot A Movie (2001)\nAlien (1979)"
    assert parse_mentions(answer, Remapper(catalog)) == (
        ContextItem("The Matrix", 1999, True), ContextItem("Heat", 1995, True), ContextItem("Alien", 1979, False))
    assert parse_mentions("\n\n", Remapper(catalog)) == ()
