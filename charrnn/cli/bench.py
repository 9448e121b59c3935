"""`charrnn bench`: speed against what the machine can do."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from charrnn.cli.common import ThreadsOption, err, handles_errors, out, use_threads
from charrnn.cli.options import given, opt
from charrnn.settings.config import ModelConfig, TrainConfig

M, T = ModelConfig, TrainConfig


@handles_errors
def bench(
    cell: opt(M, "cell") = None,
    num_layers: opt(M, "num_layers") = None,
    hidden_size: opt(M, "hidden_size") = None,
    batch_size: opt(T, "batch_size", help="Parallel streams in a training step.") = None,
    seq_len: opt(T, "seq_len") = None,
    num_samples: Annotated[int, typer.Option(min=1, help="Samples drawn side by side in the batched measure.")] = 32,
    min_time: Annotated[float, typer.Option(min=0, help="Seconds to repeat each measurement for.")] = 5.0,
    data: Annotated[
        Optional[str],
        typer.Option(help="A corpus name or text file: time encoding it, and train on it instead of synthetic text."),
    ] = None,
    threads: ThreadsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the table.")] = False,
):
    """Measure training, evaluation and sampling speed against what this machine can do."""
    from charrnn.studies.bench import BenchShape, run

    use_threads(threads)
    model = ModelConfig(vocab_size=1, **given({"cell": cell, "num_layers": num_layers, "hidden_size": hidden_size}))
    train = TrainConfig(max_steps=1, **given({"batch_size": batch_size, "seq_len": seq_len}))
    cell = model.cell
    shape = BenchShape(
        cell=cell,
        num_layers=model.num_layers,
        hidden_size=model.hidden_size,
        batch_size=train.batch_size,
        seq_len=train.seq_len,
        num_samples=num_samples,
    )
    report = run(shape, min_time, data=data, on_stage=lambda name: err.print(f"measuring {name}", markup=False))
    if as_json:
        out.print(json.dumps(report.as_dict()), markup=False)
        return
    out.print(
        f"{model.num_layers}-layer {model.hidden_size}-unit {cell}, batch {train.batch_size}, "
        f"sequence {train.seq_len}, "
        f"vocabulary {report.shape.vocab_size}, {report.threads} threads",
        markup=False,
    )
    out.print(report_table(report))
    out.print(f"peak resident memory {report.peak_rss_mb:,.0f} MB", markup=False)


def report_table(report) -> Table:
    """Each rate beside what it is compared with, one row a measure."""
    cell, num_samples = report.shape.cell, report.shape.num_samples
    ratios = report.ratios()
    table = Table("measure", "chars/s", "GFLOP/s", "compared with", "ratio")
    if report.corpus is not None:
        table.add_row(
            f"encoding {Path(report.corpus.path).name} ({report.corpus.megabytes:,.1f} MB)",
            f"{report.corpus.chars * report.corpus.encode_mb_per_s / report.corpus.megabytes:,.0f}",
            "",
            f"{report.corpus.encode_mb_per_s:.1f} MB/s of the file",
            "",
        )
    table.add_row("fp32 matrix-multiply peak", "", f"{report.matmul_gflops:.1f}", "", "")
    table.add_row(
        f"bare fused {cell} forward+backward",
        f"{report.cell_chars_per_s:,.0f}",
        f"{report.cell_gflops:.1f}",
        "matmul peak (MFU)",
        f"{ratios['cell_mfu']:.2f}",
    )
    table.add_row(
        "training step",
        f"{report.train_chars_per_s:,.0f}",
        f"{report.train_gflops:.1f}",
        "bare fused cell",
        f"{ratios['train_vs_cell']:.2f}",
    )
    table.add_row("", "", "", "matmul peak (MFU)", f"{ratios['train_mfu']:.2f}")
    table.add_row(
        "evaluation", f"{report.eval_chars_per_s:,.0f}", "", "training step", f"{ratios['eval_vs_train']:.1f}"
    )
    add_sampling_rows(table, report, f"nn.{cell.upper()}Cell loop", num_samples)
    return table


def add_sampling_rows(table: Table, report, loop: str, num_samples: int) -> None:
    ratios = report.ratios()
    table.add_row(
        "sampling, batch 1", f"{report.sample_chars_per_s:,.0f}", "", loop, f"{ratios['sample_vs_cell_loop']:.2f}"
    )
    table.add_row(
        "",
        "",
        "",
        f"weight-streaming limit {report.stream_limit_chars_per_s:,.0f} ({report.matvec_gb_per_s:.1f} GB/s)",
        f"{ratios['sample_vs_stream_limit']:.2f}",
    )
    table.add_row(
        f"sampling, batch {num_samples}",
        f"{report.batch_sample_chars_per_s:,.0f}",
        "",
        f"{loop} at batch {num_samples}",
        f"{ratios['batch_sample_vs_cell_loop']:.2f}",
    )
    table.add_row(
        "",
        "",
        f"{report.batch_product_gflops:.1f}",
        f"arithmetic limit {report.arithmetic_limit_chars_per_s:,.0f}",
        f"{ratios['batch_sample_vs_arithmetic_limit']:.2f}",
    )
    table.add_row(
        "",
        "",
        "",
        "sampling, batch 1",
        f"{ratios['batch_sample_vs_single']:.1f} of at most {ratios['arithmetic_limit_vs_single']:.1f}",
    )
