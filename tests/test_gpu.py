"""What only a CUDA GPU shows: cuDNN's fused kernels under weight drop, fp16 loss scaling, NCCL, and checkpoints
written on a GPU read on a CPU. Skipped where torch sees no CUDA GPU; scripts/gpu-check runs them on one."""

import dataclasses
import json
import math
import os
import subprocess
import sys
import warnings

import pytest
import torch
from torch.func import functional_call

from charrnn.model.network import CharRNN
from charrnn.settings.config import ModelConfig
from charrnn.storage import checkpoint
from tests.conftest import run, train_run
from tests.test_distributed import SHAPE, TRAIN, losses

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")]

# cuDNN may run fp32 recurrences in TF32 (torch.backends.cudnn.allow_tf32 is on by default): agreement to about
# 1e-3, where a weight-drop mask of p = 0.4 left out, or one applied twice, moves the logits by tens of percent.
CUDNN = {"rtol": 1e-3, "atol": 1e-4}


def shares_one_storage(rnn: torch.nn.RNNBase) -> bool:
    return len({w.untyped_storage().data_ptr() for layer in rnn.all_weights for w in layer}) == 1


@pytest.mark.parametrize(
    "cell, precision", [("lstm", "fp32"), ("gru", "fp32"), ("rnn", "fp32"), ("lstm", "fp16"), ("lstm", "bf16")]
)
def test_weight_drop_trains_on_cudnn_without_a_warning(tmp_path, text_file, cell, precision):
    """The AWD-LSTM trap: cuDNN handed weights outside its flat buffer warns "not part of single contiguous
    chunk of memory" at every step and copies them; every UserWarning is an error here."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        outcome = train_run(
            tmp_path / "run", text_file, {"cell": cell, "weight_drop": 0.25}, device="cuda", precision=precision
        )
    assert outcome.finished and math.isfinite(outcome.best_val_bpc)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_weight_drop_on_cudnn_runs_the_masked_weights_and_trains_the_raw_ones(cell):
    """cuDNN gets the dropped W_hh, not the stale weights of its own flat buffer (pytorch/pytorch#90500): the
    logits are those of the fused module run on explicitly masked weights, the raw W_hh's gradient flows through
    the mask, the module's weights stay in one flat buffer, and evaluation uses the whole weights."""
    p, device = 0.4, torch.device("cuda")
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=7, cell=cell, num_layers=2, hidden_size=32, embed_size=5, dropout=0.0, embed_dropout=0.0
    )
    model = CharRNN(dataclasses.replace(config, weight_drop=p)).to(device)
    plain = CharRNN(dataclasses.replace(config, weight_drop=0.0)).to(device)
    plain.load_state_dict(model.state_dict())
    assert shares_one_storage(model.rnn)
    ids = torch.randint(0, 7, (3, 12), device=device)
    projection = torch.randn(3, 12, 7, device=device)

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        logits, _ = model.train()(ids)
        (logits * projection).sum().backward()
    assert shares_one_storage(model.rnn)

    recurrent = {name: w for name, w in model.rnn.named_parameters() if name.startswith("weight_hh")}
    masks = {name: w.grad != 0 for name, w in recurrent.items()}
    for mask in masks.values():
        assert 1 - mask.float().mean().item() == pytest.approx(p, abs=0.1)
    masked = {name: (recurrent[name].detach() * masks[name] / (1 - p)).requires_grad_() for name in recurrent}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # functional_call's weights sit outside the flat buffer
        reference, _ = functional_call(plain.train(), {f"rnn.{name}": w for name, w in masked.items()}, (ids,))
        (reference * projection).sum().backward()
    torch.testing.assert_close(logits, reference, **CUDNN)
    assert not torch.allclose(logits, plain(ids)[0], **CUDNN)
    for name, weight in recurrent.items():
        torch.testing.assert_close(weight.grad, masked[name].grad * masks[name] / (1 - p), **CUDNN)

    with torch.no_grad():
        torch.testing.assert_close(model.eval()(ids)[0], plain.eval()(ids)[0], **CUDNN)


def test_fp16_with_loss_scaling_trains_finite_and_keeps_its_scale(tmp_path, text_file):
    outcome = train_run(tmp_path / "run", text_file, {"weight_drop": 0.25}, device="cuda", precision="fp16")
    assert outcome.finished and math.isfinite(outcome.best_val_bpc)
    train_losses = losses(tmp_path / "run")
    assert all(math.isfinite(loss) for loss in train_losses)
    assert train_losses[-1] < train_losses[0]
    saved = checkpoint.load(tmp_path / "run" / "last.pt")
    assert saved["scaler"]["scale"] > 0
    assert all(torch.isfinite(w).all() for w in saved["model"].values())


def test_a_checkpoint_written_on_a_gpu_scores_and_samples_on_a_cpu(tmp_path, text_file):
    train_run(tmp_path / "run", text_file, device="cuda")
    raw = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert {w.device.type for w in raw["content"]["model"].values()} == {"cuda"}

    scores = {}
    for device in ("cuda", "cpu"):
        result = run("eval", tmp_path / "run", "--split", "val", "--device", device, "--json")
        assert result.exit_code == 0, result.output
        scores[device] = json.loads(result.stdout)
    assert scores["cpu"]["chars"] == scores["cuda"]["chars"]
    assert scores["cpu"]["bpc"] == pytest.approx(scores["cuda"]["bpc"], rel=CUDNN["rtol"])

    sampled = run("sample", tmp_path / "run", "--device", "cpu", "--length", "80", "--seed", "1")
    assert sampled.exit_code == 0, sampled.output
    assert len(sampled.stdout) >= 80


def _train_command(out_dir, data, *launcher):
    options = {**SHAPE, **TRAIN, "max_steps": 12}
    options["layers"] = options.pop("num_layers")
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    # TF32 off in cuBLAS and cuDNN alike: what is compared is the split of the batch, not TF32's rounding.
    result = subprocess.run(
        [sys.executable, *launcher, "-m", "charrnn", "train", "--data", str(data), "--out", str(out_dir)]
        + ["--device", "cuda", *argv],
        capture_output=True,
        text=True,
        env={**env, "OMP_NUM_THREADS": "1", "NVIDIA_TF32_OVERRIDE": "0"},
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.device_count() < 2, reason="NCCL needs two GPUs")
def test_two_nccl_processes_train_like_one_with_the_same_global_batch(tmp_path, text_file):
    _train_command(tmp_path / "one", text_file)
    two = _train_command(
        tmp_path / "two", text_file, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"
    )
    assert "2 processes of 4 streams" in two.stderr
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-4)
