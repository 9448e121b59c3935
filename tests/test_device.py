import os
import subprocess
import sys

import pytest
import torch
import torch.serialization

from charrnn.api import load
from charrnn.errors import CharRNNError
from charrnn.model import device
from charrnn.storage import checkpoint
from tests.conftest import TINY, assert_error, run, train_run

no_gpu = pytest.mark.skipif(
    torch.cuda.is_available() or torch.backends.mps.is_available(), reason="this machine has a GPU"
)


@no_gpu
def test_auto_picks_the_cpu_without_a_gpu_and_says_so(tmp_path, text_file):
    assert device.resolve("auto") == torch.device("cpu")
    result = run("train", "--data", text_file, "--max-steps", 2, "--hidden-size", 16, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "on cpu, fp32" in result.stderr


@no_gpu
def test_asking_for_a_missing_gpu_is_an_error(tmp_path, text_file):
    result = run("train", "--data", text_file, "--device", "cuda", "--max-steps", 2, "--out", tmp_path / "run")
    assert_error(result, "--device cuda, but this PyTorch sees no CUDA GPU", "--device cpu")
    with pytest.raises(CharRNNError, match="unknown device 'tpu'"):
        device.resolve("tpu")


def test_fp16_on_the_cpu_points_to_bf16(tmp_path, text_file):
    args = ["--device", "cpu", "--precision", "fp16", "--max-steps", 2, "--out", tmp_path / "run"]
    assert_error(run("train", "--data", text_file, *args), "--precision fp16 needs a GPU", "--precision bf16")


cpu_has_bf16 = pytest.mark.skipif(
    not device._trains_in_bf16("lstm"), reason="this CPU has no oneDNN bf16 kernel for the LSTM (no AVX-512)"
)


@cpu_has_bf16
def test_bf16_autocast_trains_on_the_cpu_close_to_fp32(tmp_path, text_file):
    full = train_run(tmp_path / "fp32", text_file, device="cpu", max_steps=10)
    half = train_run(tmp_path / "bf16", text_file, device="cpu", precision="bf16", max_steps=10)
    # Matrix products in bf16 keep about 3 significant digits; weights stay fp32.
    assert half.best_val_bpc == pytest.approx(full.best_val_bpc, rel=0.02)
    weights = checkpoint.load(tmp_path / "bf16" / "best.pt")["model"]
    assert all(w.dtype == torch.float32 for w in weights.values())
    resumed = checkpoint.load(tmp_path / "bf16" / "last.pt")
    assert resumed["train_config"]["precision"] == "bf16"


@pytest.mark.parametrize("budget", [["--max-steps", "2"], ["--max-time", "30s"]], ids=["steps", "time, timed first"])
def test_bf16_on_a_cpu_without_the_kernels_ends_in_one_error_line(tmp_path, text_file, budget):
    # oneDNN capped at AVX2 is what a CPU without AVX-512 offers: the fused LSTM has no bf16 kernel there.
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "1"}
    args = ["--data", str(text_file), *TINY, "--cell", "lstm", *budget, "--out", str(tmp_path / "run")]
    result = subprocess.run(
        [sys.executable, "-m", "charrnn", "train", *args, "--device", "cpu", "--precision", "bf16"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        "error: --precision bf16: this CPU cannot run the fused lstm in bf16 (oneDNN has no bf16 kernel for it "
        "here; CPUs without AVX-512 lack one). Use --precision fp32"
    ]
    assert not (tmp_path / "run").exists()


def save_as_if_on_a_gpu(content, path, monkeypatch):
    """Write a checkpoint whose tensors are tagged cuda:0, as torch.save does on a GPU."""
    registry = list(torch.serialization._package_registry)
    monkeypatch.setattr(
        torch.serialization, "_package_registry", [(0, lambda storage: "cuda:0", lambda obj, location: None)] + registry
    )
    checkpoint.save(path, content)
    monkeypatch.setattr(torch.serialization, "_package_registry", registry)


@no_gpu
def test_a_checkpoint_written_on_a_gpu_loads_and_samples_on_the_cpu(tiny_run, tmp_path, monkeypatch):
    gpu_file = tmp_path / "gpu.pt"
    save_as_if_on_a_gpu(checkpoint.load(tiny_run / "best.pt"), gpu_file, monkeypatch)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(gpu_file, weights_only=True)  # the file really names a CUDA device

    loaded = load(gpu_file)
    assert next(loaded.model.parameters()).device == torch.device("cpu")
    assert loaded.generate("Alice", length=20, seed=1) == load(tiny_run).generate("Alice", length=20, seed=1)
    result = run("sample", gpu_file, "--device", "cpu", "--prime", "The", "--length", 30, "--seed", 2)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("The") and len(result.stdout) == 33
    result = run("eval", gpu_file, "--device", "cpu", "--data", tiny_run.parent / "text.txt", "--json")
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_compiled_training_matches_eager_training(tmp_path, text_file):
    eager = train_run(tmp_path / "eager", text_file, model={"dropout": 0.0}, device="cpu", max_steps=4)
    compiled = train_run(
        tmp_path / "compiled", text_file, model={"dropout": 0.0}, device="cpu", max_steps=4, compile=True
    )
    assert compiled.best_val_bpc == pytest.approx(eager.best_val_bpc, rel=1e-4)


@pytest.mark.slow
def test_compile_without_a_working_compiler_ends_in_one_error_line(tmp_path, text_file):
    env = {**os.environ, "CXX": str(tmp_path / "no-such-g++"), "OMP_NUM_THREADS": "1"}
    args = ["--data", str(text_file), *TINY, "--max-steps", "2", "--device", "cpu", "--compile"]
    result = subprocess.run(
        [sys.executable, "-m", "charrnn", "train", *args, "--out", str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: --compile: torch.compile cannot build code here") and "no-such-g++" in line
    assert line.endswith("Leave out --compile")
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.slow
def test_compiled_training_runs_with_weight_drop(tmp_path, text_file):
    # Compiled code draws its own random numbers, so the masks, and the losses, differ slightly from eager ones.
    options = {"model": {"dropout": 0.0, "weight_drop": 0.25}, "device": "cpu", "max_steps": 4}
    eager = train_run(tmp_path / "eager", text_file, **options)
    compiled = train_run(tmp_path / "compiled", text_file, compile=True, **options)
    assert compiled.best_val_bpc == pytest.approx(eager.best_val_bpc, rel=0.02)
