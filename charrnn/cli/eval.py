"""`charrnn eval`: a language model's score on a text, or a fill model's on hidden characters."""

import dataclasses
import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from charrnn.cli.common import (
    CheckpointArgument,
    DeviceOption,
    ThreadsOption,
    end_process,
    fail,
    handles_errors,
    out,
    print_json,
    progress_bar,
    use_threads,
)
from charrnn.cli.options import choice_enum, given, opt, plain
from charrnn.settings.config import DynamicEvalConfig

Split = choice_enum("Split", ("train", "val", "test"))


@handles_errors
def eval_command(
    checkpoint_path: CheckpointArgument,
    split: Annotated[Split, typer.Option(help="Which split of the training data to score.")] = Split.test,
    data: Annotated[Optional[str], typer.Option(help="Score this whole text instead of a split.")] = None,
    skip_unknown: Annotated[
        bool, typer.Option(help="Leave out characters the model never saw (and count them).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object: loss, bpc, perplexity, chars.")
    ] = False,
    compare: Annotated[
        Optional[Path],
        typer.Option(
            metavar="CHECKPOINT",
            help="Fill model only: score the same hidden characters with this language model, from the left.",
        ),
    ] = None,
    dynamic: Annotated[
        bool,
        typer.Option(
            help="Dynamic evaluation: a copy of the model learns from each segment of the text right after "
            "scoring it, so it adapts to the passage it reads."
        ),
    ] = False,
    dynamic_lr: opt(DynamicEvalConfig, "lr") = None,
    dynamic_decay: opt(DynamicEvalConfig, "decay") = None,
    threads: ThreadsOption = None,
    device: DeviceOption = None,
):
    """Score text: loss in nats per character, bits per character, perplexity.

    A fill model is scored on characters hidden as in training (the same ones every time): accuracy
    and bits per character."""
    use_threads(threads)
    from charrnn import distributed
    from charrnn.api import load
    from charrnn.evaluation.score import diverged

    split = split.value
    if not dynamic and (dynamic_lr is not None or dynamic_decay is not None):
        fail("--dynamic-lr and --dynamic-decay set dynamic evaluation. Add --dynamic", 2)
    if dynamic and compare is not None:
        fail("--compare scores a fill model, which --dynamic does not apply to. Drop one of them", 2)
    settings = DynamicEvalConfig(**given({"lr": dynamic_lr, "decay": dynamic_decay}))
    device = plain(device, "auto")
    loaded = load(checkpoint_path, device)
    if dynamic:
        loaded.require("lm")
    ids, skipped, start, end, what = text_to_score(loaded, data, split, skip_unknown)
    if loaded.objective == "fill" or compare is not None:
        counts = {"skipped": skipped} if skip_unknown else {}
        eval_fill(loaded, ids, start, end, split if data is None else "test", what, compare, counts, as_json, device)
        return
    report = {}
    # Under torchrun the processes share the chunks of a plain score, and only rank 0 reports.
    group = distributed.Group() if dynamic else distributed.from_environment()
    if dynamic:
        result = score_dynamically(loaded, ids, start, end, settings)
        report["dynamic"] = dataclasses.asdict(settings)
        what += " (dynamic evaluation)"
    else:
        result = score_shared(loaded, ids, start, end, group)
    report = result.as_dict() | report | ({"skipped": skipped} if skip_unknown else {})
    if not as_json:
        out.print(
            f"{what}: {result.loss:.4f} nats/char, {result.bpc:.4f} bits/char, perplexity {result.perplexity:.3f}, "
            f"{result.chars:,} characters scored" + (f", {skipped:,} unknown skipped" if skip_unknown else ""),
            markup=False,
        )
    if dynamic and diverged(result.loss, loaded.model.config.vocab_size):
        score = "not finite" if not math.isfinite(result.loss) else f"{result.bpc:.4g} bits/char, far worse than chance"
        fail(f"the score is {score}: the adapted weights diverged. Pass a smaller --dynamic-lr")
    if not math.isfinite(result.loss):
        fail("the score is not finite. The checkpoint may hold non-finite weights; use an earlier one")
    if as_json:
        print_json(report)
    end_process(0, group.active)


def text_to_score(loaded, data, split: str, skip_unknown: bool):
    """The ids to score, the unknown characters skipped, the span scored and how to name it: a split of the
    checkpoint's own text, or all of --data."""
    from charrnn.data import ids as corpus_ids
    from charrnn.data.splits import splits
    from charrnn.storage import checkpoint

    if data is None:
        source = loaded.content["train_config"]["data"]
        encoded = checkpoint.training_text(loaded.content, "Restore it, or pass --data to score another text")
        ids, skipped = encoded.under(loaded.vocab)
        part = splits(len(ids))[split]
        return ids, skipped, part.start, part.end, f"{split} split of {source}"
    ids, skipped = corpus_ids.load(data).under(loaded.vocab, skip_unknown=skip_unknown)
    return ids, skipped, 1, len(ids), data


def score_dynamically(loaded, ids, start: int, end: int, settings):
    from charrnn.evaluation.dynamic import dynamic_evaluate
    from charrnn.evaluation.score import scored_start

    with progress_bar(total=end - scored_start(start, end), unit="char", desc="dynamic evaluation") as bar:
        return dynamic_evaluate(loaded.model, ids, start, end, settings, on_progress=bar.update)


def score_shared(loaded, ids, start: int, end: int, group):
    """A plain score, its chunks shared among the processes of `group`; the processes but rank 0 end here."""
    from charrnn import distributed
    from charrnn.evaluation.score import evaluate

    distributed.start(group, next(loaded.model.parameters()).device)
    try:
        result = evaluate(loaded.model, ids, start, end, group=group)
    except BaseException:
        distributed.stop(all_done=False)
        raise
    distributed.stop(all_done=True)
    if not group.is_main:
        end_process(0, group.active)
    return result


def eval_fill(loaded, ids, start, end, split_name, what, compare, counts, as_json, device) -> None:
    """`charrnn eval` of a fill model: its score on hidden characters, and a language model's on the same ones."""
    from charrnn.api import load
    from charrnn.evaluation.score import scored_start
    from charrnn.generation.fill import eval_mask, score_left_to_right, score_masked

    if loaded.objective != "fill":
        fail(
            "--compare scores a fill model's hidden characters with a language model, but CHECKPOINT is a "
            "language model. Pass the fill model first: charrnn eval FILL_MODEL --compare LANGUAGE_MODEL"
        )
    train = loaded.content["train_config"]
    # A language model has nothing to predict the very first character from; a text of one has nothing to hide.
    start = scored_start(start, end)
    hidden = eval_mask(end - start, train["mask_rate"], train["mask_span"], split_name)
    result = score_masked(loaded.model, ids[start:end], hidden, train["seq_len"])
    scores = {"fill model": result}
    if compare is not None:
        language_model = load(compare, device or "auto")
        if language_model.objective != "lm":
            fail(f"{compare} is not a language model. Pass to --compare a checkpoint trained with --objective lm")
        lm_ids = language_model.vocab.encode(
            loaded.vocab.decode(ids.tolist()), fix="Pass to --compare a model trained on the same text"
        )
        scores[f"left-to-right language model {compare}"] = score_left_to_right(
            language_model.model, lm_ids, start, hidden
        )
    for name, score in scores.items():
        if not math.isfinite(score.loss):
            fail(f"the {name}'s score is not finite. Its checkpoint may hold non-finite weights; use an earlier one")
    if as_json:
        report = {"accuracy": result.accuracy, "loss": result.loss, "bpc": result.bpc, "chars": result.chars}
        if compare is not None:
            compared = scores.popitem()[1]
            report["compare"] = {"accuracy": compared.accuracy, "loss": compared.loss, "bpc": compared.bpc}
        print_json(report | counts)
        return
    out.print(
        f"{what}: {result.chars:,} hidden characters (spans of 1 to {train['mask_span']}, "
        f"about {train['mask_rate']:.0%} of the text)" + (f", {counts['skipped']:,} unknown skipped" if counts else ""),
        markup=False,
    )
    for name, score in scores.items():
        out.print(f"  {name}: accuracy {score.accuracy:.3f}, {score.bpc:.4f} bits/char", markup=False)
