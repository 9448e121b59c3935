"""What `charrnn bench` measures and reports: the shape it measures (`BenchShape`, with the FLOPs and bytes
its figures are bounded by) and the `BenchReport` of rates and the ratios between them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from charrnn.model.device import GATES
from charrnn.settings.config import ModelConfig, TrainConfig

# Newline and printable ASCII: about what an English text holds.
DEFAULT_VOCAB_SIZE = 96
FLOAT_BYTES = 4
# The backward pass of a matrix product costs two products of the same size.
FORWARD_AND_BACKWARD = 3


@dataclass(frozen=True)
class BenchShape:
    """A model and batch shape to measure; by default the default model's, read from its configs."""

    cell: str = ModelConfig.cell
    num_layers: int = ModelConfig.num_layers
    hidden_size: int = ModelConfig.hidden_size
    embed_size: int = ModelConfig.embed_size
    vocab_size: int = DEFAULT_VOCAB_SIZE
    batch_size: int = TrainConfig.batch_size
    seq_len: int = TrainConfig.seq_len
    num_samples: int = 32

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            vocab_size=self.vocab_size,
            cell=self.cell,
            num_layers=self.num_layers,
            hidden_size=self.hidden_size,
            embed_size=self.embed_size,
        )

    def _layer_inputs(self) -> list[int]:
        return [self.embed_size] + [self.hidden_size] * (self.num_layers - 1)

    def cell_flops_per_char(self) -> int:
        """Forward and backward matrix-product FLOPs of the recurrent layers for one character."""
        gates = GATES[self.cell] * self.hidden_size
        return FORWARD_AND_BACKWARD * sum(2 * gates * (n + self.hidden_size) for n in self._layer_inputs())

    def model_flops_per_char(self) -> int:
        """The same for the whole model: the recurrent layers and the output layer."""
        return self.cell_flops_per_char() + FORWARD_AND_BACKWARD * 2 * self.hidden_size * self.vocab_size

    def step_matrices(self) -> list[tuple[int, int]]:
        """The shapes of the weight matrices one sampling step reads (the first layer's input is a table row)."""
        gates = GATES[self.cell] * self.hidden_size
        shapes = [(gates, self.hidden_size)] + [(gates, n) for n in self._layer_inputs()[1:]]
        return shapes + [(gates, self.hidden_size)] * (self.num_layers - 1) + [(self.vocab_size, self.hidden_size)]

    def streamed_bytes_per_step(self) -> int:
        return FLOAT_BYTES * sum(rows * cols for rows, cols in self.step_matrices())

    def step_flops_per_char(self) -> int:
        """Matrix-product FLOPs of one sampling step for one sample."""
        return 2 * sum(rows * cols for rows, cols in self.step_matrices())


@dataclass(frozen=True)
class CorpusBench:
    """Encoding a real corpus into its id cache: paid once per file, again only when the file changes."""

    path: str
    megabytes: float
    chars: int
    vocab_size: int
    encode_mb_per_s: float


@dataclass(frozen=True)
class BenchReport:
    shape: BenchShape
    threads: int
    matmul_gflops: float
    cell_chars_per_s: float
    train_chars_per_s: float
    eval_chars_per_s: float
    matvec_gb_per_s: float
    sample_chars_per_s: float
    cell_loop_chars_per_s: float
    batch_sample_chars_per_s: float
    batch_cell_loop_chars_per_s: float
    batch_product_gflops: float
    peak_rss_mb: float
    corpus: CorpusBench | None = None

    @property
    def cell_gflops(self) -> float:
        return self.cell_chars_per_s * self.shape.cell_flops_per_char() / 1e9

    @property
    def train_gflops(self) -> float:
        return self.train_chars_per_s * self.shape.model_flops_per_char() / 1e9

    @property
    def stream_limit_chars_per_s(self) -> float:
        """Batch 1 can go no faster than reading every weight matrix once per character."""
        return self.matvec_gb_per_s * 1e9 / self.shape.streamed_bytes_per_step()

    @property
    def arithmetic_limit_chars_per_s(self) -> float:
        """A batch of samples can go no faster than its step's matrix products at that many rows."""
        return self.batch_product_gflops * 1e9 / self.shape.step_flops_per_char()

    def ratios(self) -> dict[str, float]:
        return {
            "cell_mfu": self.cell_gflops / self.matmul_gflops,
            "train_mfu": self.train_gflops / self.matmul_gflops,
            "train_vs_cell": self.train_chars_per_s / self.cell_chars_per_s,
            "eval_vs_train": self.eval_chars_per_s / self.train_chars_per_s,
            "sample_vs_cell_loop": self.sample_chars_per_s / self.cell_loop_chars_per_s,
            "sample_vs_stream_limit": self.sample_chars_per_s / self.stream_limit_chars_per_s,
            "batch_sample_vs_cell_loop": self.batch_sample_chars_per_s / self.batch_cell_loop_chars_per_s,
            "batch_sample_vs_single": self.batch_sample_chars_per_s / self.sample_chars_per_s,
            "batch_sample_vs_arithmetic_limit": self.batch_sample_chars_per_s / self.arithmetic_limit_chars_per_s,
            # The most a batch can gain over this batch-1 rate: a faster batch 1 lowers it.
            "arithmetic_limit_vs_single": self.arithmetic_limit_chars_per_s / self.sample_chars_per_s,
        }

    def as_dict(self) -> dict:
        derived = {
            "cell_gflops": self.cell_gflops,
            "train_gflops": self.train_gflops,
            "stream_limit_chars_per_s": self.stream_limit_chars_per_s,
            "arithmetic_limit_chars_per_s": self.arithmetic_limit_chars_per_s,
        }
        return {**dataclasses.asdict(self), **derived, "ratios": self.ratios()}
