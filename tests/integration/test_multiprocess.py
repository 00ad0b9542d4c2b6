"""Two CPU processes give the same Rank-GRPO loss, gradient and advantages on the same batch as one process.

`multiprocess_loss.py` runs RankGRPOTrainer on one fixed batch (3 prompts x 4 fixed completions, generation
replaced, everything else the trainer's) once as a plain process and once under `accelerate launch` with
algorithms/configs/two_processes.yaml (two gloo processes, 6 completions each, so the second group spans both and
its per-rank hits must be gathered before they are normalised). DDP averages gradients over processes, so the
process-averaged loss and gradient must equal the single process's. Also checks the shipped accelerate configs load.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from processes import HANG_LIMIT_S
from rank_grpo_tiny import save_tiny_model, tiny_tokenizer

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "algorithms" / "configs"
SCRIPT = Path(__file__).with_name("multiprocess_loss.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_match_one_process(tmp_path: Path) -> None:
    model_dir = save_tiny_model(tmp_path / "model", tiny_tokenizer())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), str(SCRIPT.parent)])}
    one = [sys.executable, str(SCRIPT), str(model_dir), str(tmp_path / "one.pt")]
    two = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "two_processes.yaml"),
           "--main_process_port", str(_free_port()), str(SCRIPT), str(model_dir), str(tmp_path / "two.pt")]
    runs = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for command in (one, two)]
    for run in runs:
        output, _ = run.communicate(timeout=HANG_LIMIT_S)  # a hang guard only, far beyond a busy machine's start
        assert run.returncode == 0, output[-4000:]

    single = torch.load(tmp_path / "one.pt")
    double = torch.load(tmp_path / "two.pt")
    assert (single["num_processes"], double["num_processes"]) == (1, 2)
    for loss_type in ("dapo", "grpo"):
        expected, actual = single[loss_type], double[loss_type]
        assert expected["advantages"][4:8].abs().sum() > 0  # the group split over the two processes carries signal
        torch.testing.assert_close(actual["advantages"], expected["advantages"], atol=1e-6, rtol=0)
        torch.testing.assert_close(actual["loss"], expected["loss"], atol=1e-6, rtol=0)
        torch.testing.assert_close(actual["gradient"], expected["gradient"], atol=1e-6, rtol=0)
        assert expected["gradient"].abs().max() > 1e-3


@pytest.mark.parametrize(("name", "distributed_type", "zero_stage"),
                         [("zero2.yaml", "DEEPSPEED", 2), ("zero3.yaml", "DEEPSPEED", 3),
                          ("two_processes.yaml", "MULTI_GPU", None)])
def test_accelerate_configs_load(name: str, distributed_type: str, zero_stage: int | None) -> None:
    config = load_config_from_file(str(CONFIGS / name))
    assert config.distributed_type == distributed_type and config.compute_environment == "LOCAL_MACHINE"
    if zero_stage is not None:
        assert config.deepspeed_config["zero_stage"] == zero_stage and config.mixed_precision == "bf16"
