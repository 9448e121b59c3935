"""Every command, driven through Typer's runner with generated options and files (issue 17).

Whatever is typed, a user relies on four things, which each example checks: the exit code is 0, 1 or 2;
nothing ends in a traceback; exit 1 comes with an `error: ...` line; and every checkpoint charrnn saved
before the command still loads after it (but where `--force` asked to start that run over). Values are
generated at the edges (integers huge and negative, floats NaN and infinite, text with lone surrogates,
NUL, emoji or nothing) and so are files (empty, binary, not UTF-8, a directory, a FIFO, a device, damaged
checkpoints, checkpoints of other cells, garbled metrics), on a terminal that takes UTF-8 or only ASCII.

A count that sets how long a command runs (steps, lengths, sizes) is generated small, zero or negative,
not a whole number, or far beyond what a machine holds (which must be refused), never merely large: a
valid request for a billion characters is honoured, not a defect. Each test runs FUZZ.max_examples
examples, a third of that for compare and bench, which train or measure more; HYPOTHESIS_PROFILE=thorough
runs 300.
"""

import contextlib
import enum
import os
import shutil
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.main
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from charrnn.api import load
from charrnn.cli import COMMANDS, app
from charrnn.cli.compare import COMPARE_NAMES
from charrnn.data import corpus
from charrnn.errors import CharRNNError
from charrnn.model.network import has_finite_weights
from charrnn.storage import checkpoint
from tests.conftest import TINY_MODEL, make_text, train_run

settings.register_profile(
    "fuzz",
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
settings.register_profile("thorough", settings.get_profile("fuzz"), max_examples=300)
FUZZ = settings.get_profile("thorough" if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else "fuzz")
SLOW = settings(FUZZ, max_examples=max(5, FUZZ.max_examples // 3))

# Values.

EDGE_TEXT = ["", " ", "\x00", "a\x00b", "\udcff", "The \udcfe\udcff", "😀", "é", "\u2028", "\n", "-", "x" * 300]
NOT_NUMBERS = ["", "x", "1.5", "1e3", "0x10", "1_0", " 2", "nan", "inf", "\udcff", "😀", "\x00"]
BEYOND = [2**31, 2**63 - 1, 2**63, 2**64, 10**30]
NEGATIVE = [-1, -(2**63), -(2**64), -(10**30)]


def mostly(valid, *edges):
    """`valid` in about three examples of four, so that the commands get past their checks as often as not."""
    return st.one_of([valid] * (3 * len(edges)) + list(edges))


def texts():
    return st.one_of(st.sampled_from(EDGE_TEXT), st.text(max_size=10))


def counts(high: int = 3, beyond: bool = True):
    """A count that sets how long a command runs: small, zero or negative, not a whole number, or (`beyond`)
    more than any machine holds."""
    edges = [st.integers(-2, 0), st.sampled_from(NEGATIVE), st.sampled_from(NOT_NUMBERS)]
    if beyond:
        edges.append(st.sampled_from(BEYOND))
    return mostly(st.integers(1, high), *edges).map(str)


def integers():
    """An integer whose size costs nothing: any at all."""
    return mostly(st.integers(0, 2**64 - 1), st.integers(), st.sampled_from(BEYOND + NEGATIVE + NOT_NUMBERS)).map(str)


def reals():
    edges = ["nan", "inf", "-inf", "1e309", "3.5e38", "1e38", "-0.0", "1e-320", "1e-300", "0", "1", "0.5"]
    return mostly(st.floats(0, 1).map(repr), st.floats().map(repr), st.sampled_from(edges + NOT_NUMBERS))


def choices(*values: str):
    return mostly(st.sampled_from(values), texts())


def durations():
    edges = ["0", "0s", "-1s", "1e309s", "nans", "infs", "5x", "2"]
    return mostly(st.sampled_from(["1s", "1ms", "10m", "1h", "1.5s"]), st.sampled_from(edges), texts())


THREADS = st.sampled_from(["0", "-1", "1", str(2**31), str(2**64), "x", "4097"])
DEVICES = choices("cpu", "auto", "cuda", "cuda:7", "mps")
FLAG = st.none()  # an option given alone

# Files, as recipes a Place turns into paths: readable in a failing example, made afresh in each.

RUNS = st.sampled_from(["lstm", "gru", "fill"])
INPUT_KINDS = ["text", "empty", "binary", "latin1", "bom-crlf", "short", "dir", "fifo", "devnull", "missing"]
INPUTS = mostly(
    st.just("text"),
    st.sampled_from(INPUT_KINDS + ["nul-name", "surrogate-name"]),
    st.tuples(st.just("utf8"), st.text(max_size=40)),
    st.tuples(st.just("bytes"), st.binary(max_size=40)),
)
CONFIGS = st.one_of(
    st.sampled_from(["empty", "binary", "latin1", "dir", "devnull", "devzero", "missing", "own"]),
    st.sampled_from(
        [
            "[train]\nlr = nan\n",
            "[train]\nclip_norm = 1e400\n",
            "[train]\nseed = -1\n",
            "[train]\nseed = 99999999999999999999999\n",
            "[model]\ncell = 'tcn'\n",
            "[train]\ndata = 'a\\u0000b'\n",
            "[train]\nmax_time = 'nans'\n",
            "[train]\nwarmup_steps = 1.5\n",
            "[train]\nlr = 'fast'\n",
            "[oops]\na = 1\n",
            "[train]\nweight_decay = -1\n",
            "garbage [[[",
        ]
    ).map(lambda text: ("utf8", text)),
    st.tuples(st.just("utf8"), st.text(max_size=40)),
)
CHECKPOINTS = mostly(
    st.tuples(st.just("run"), RUNS),
    st.tuples(st.just("file"), RUNS, st.sampled_from(["best.pt", "last.pt"])),
    st.tuples(st.just("damaged"), RUNS, st.sampled_from(["truncate", "flip", "zeros", "append"]), st.floats(0, 1)),
    st.sampled_from(["only-last", "nan-weights", "huge-weights", "no-run", "dir", "fifo", "devnull", "missing"]),
    st.sampled_from(["text-as-pt", "garbled-metrics"]),
)
# Names in the example's own directory: never absolute, never its parent, and without a NUL, which no
# command line can hold (argv is C strings) and nothing else hands to an output path.
OUTPUTS = st.one_of(
    st.sampled_from(
        ["new", "new.png", "new.svg", "new.txt", "new.onnx", "", ".", "dir", "fifo", "file", "file/under", "lstm"]
    ),
    st.sampled_from(["\udcffname", "😀.png", "copy-of-run", "foreign-config"]),
    st.text(alphabet=st.characters(blacklist_characters="/\x00"), max_size=8).filter(lambda name: name != ".."),
)
GARBLED_LINES = st.lists(
    st.one_of(
        st.binary(max_size=30),
        st.sampled_from([b"[1, 2]", b"42", b"null", b'{"step": "x"}', b'{"step": 1e999}', b"[" * 10_000]),
        st.sampled_from([b'{"step": 1, "elapsed_s": 0, "lr": 0, "train_loss": 1, "grad_norm": NaN}']),
    ),
    max_size=4,
)


@dataclass
class World:
    """What every example starts from: a text and three small runs, of an LSTM, a GRU and a fill model."""

    text: Path
    runs: dict[str, Path]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_run) -> World:
    root = tmp_path_factory.mktemp("fuzz")
    text = root / "text.txt"
    text.write_text(make_text(20_000))
    small = {**TINY_MODEL, "num_layers": 1, "hidden_size": 16, "embed_size": 4}
    train_run(root / "gru", text, model={**small, "cell": "gru"}, max_steps=2, eval_every=2)
    fill = {**small, "bidirectional": True}
    train_run(root / "fill", text, model=fill, objective="fill", max_steps=2, eval_every=2)
    return World(text, {"lstm": tiny_run, "gru": root / "gru", "fill": root / "fill"})


class Place:
    """One example's directory, the command's working directory: copies of the runs, and the files it names."""

    def __init__(self, root: Path, world: World):
        self.root, self.world, self.made = root, world, 0
        self.raw = set()  # files written byte by byte here, not saved by charrnn
        for name, run_dir in world.runs.items():
            shutil.copytree(run_dir, root / name, ignore=shutil.ignore_patterns("*.png"))
        shutil.copy(world.text, root / "text.txt")

    def new(self, suffix: str = "") -> Path:
        self.made += 1
        return self.root / f"made-{self.made}{suffix}"

    def special(self, kind: str) -> str:
        if kind == "dir":
            path = self.new()
            path.mkdir()
        elif kind == "fifo":
            path = self.new()
            os.mkfifo(path)
        elif kind == "devnull":
            return "/dev/null"
        elif kind == "devzero":
            return "/dev/zero"
        elif kind == "missing":
            path = self.new(".txt")
        elif kind == "nul-name":
            return "a\x00b.txt"
        elif kind == "surrogate-name":
            path = self.root / "\udcff.txt"
            path.write_bytes(make_text(3000).encode())
        else:
            raise AssertionError(kind)
        return str(path)

    def input(self, recipe) -> str:
        """A file the command reads as text."""
        contents = {
            "text": make_text(20_000).encode(),
            "empty": b"",
            "binary": b"\x00\x01\x02" * 100,
            "latin1": make_text(3000).replace("e", "\xe9").encode("latin-1"),
            "bom-crlf": b"\xef\xbb\xbf" + make_text(3000).replace("\n", "\r\n").encode(),
            "short": b"ab",
            "own": (self.root / "lstm" / "config.toml").read_bytes(),
        }
        if isinstance(recipe, tuple):
            kind, content = recipe
            data = content.encode() if kind == "utf8" else content
        elif recipe in contents:
            data = contents[recipe]
        else:
            return self.special(recipe)
        path = self.new(".txt")
        path.write_bytes(data)
        return str(path)

    def checkpoint(self, recipe) -> str:
        """A run directory or .pt file, sound or not."""
        if isinstance(recipe, tuple) and recipe[0] == "run":
            return str(self.root / recipe[1])
        if isinstance(recipe, tuple) and recipe[0] == "file":
            return str(self.root / recipe[1] / recipe[2])
        if isinstance(recipe, tuple):
            _, run, how, at = recipe
            data = bytearray((self.root / run / "best.pt").read_bytes())
            cut = int(at * (len(data) - 1))
            if how == "truncate":
                data = data[:cut]
            elif how == "flip":
                data[cut] ^= 0xFF
            elif how == "zeros":
                data[cut : cut + 64] = bytes(len(data[cut : cut + 64]))
            else:
                data += b"\x00" * 100
            path = self.new(".pt")
            path.write_bytes(bytes(data))
            self.raw.add(path)
            return str(path)
        if recipe in ("only-last", "no-run", "garbled-metrics"):
            path = self.new()
            shutil.copytree(self.root / "lstm", path)
            if recipe != "garbled-metrics":
                (path / "best.pt").unlink()
            if recipe == "no-run":
                (path / "last.pt").unlink()
            if recipe == "garbled-metrics":
                with open(path / "metrics.jsonl", "ab") as f:
                    f.write(b'\xff\xfe\n[1]\n{"step": "x"}\n' + b"[" * 10_000 + b"\n")
            return str(path)
        if recipe in ("nan-weights", "huge-weights"):
            content = checkpoint.load(self.root / "lstm" / "best.pt")
            if recipe == "nan-weights":
                content["model"]["head.weight"][0, 0] = float("nan")
            else:
                content["model"]["head.weight"].mul_(1e30)
            path = self.new(".pt")
            checkpoint.save(path, content)
            return str(path)
        if recipe == "text-as-pt":
            path = self.new(".pt")
            path.write_text("not a checkpoint")
            self.raw.add(path)
            return str(path)
        return self.special(recipe)

    def output(self, name: str) -> str:
        """A path the command writes, named relative to this directory."""
        if name == "dir":
            (self.root / "dir").mkdir(exist_ok=True)
        elif name == "fifo" and not (self.root / "fifo").exists():
            os.mkfifo(self.root / "fifo")
        elif name in ("file", "file/under"):
            (self.root / "file").write_text("a file of the user's")
        elif name == "copy-of-run":
            shutil.copytree(self.root / "gru", self.root / name, dirs_exist_ok=True)
        elif name == "foreign-config":
            (self.root / name).mkdir(exist_ok=True)
            (self.root / name / "config.toml").write_text("# the user's own\n")
        return name

    def metrics(self, lines: list[bytes]) -> str:
        """A copy of the LSTM run with lines appended to its metrics.jsonl."""
        path = self.new()
        shutil.copytree(self.root / "lstm", path)
        with open(path / "metrics.jsonl", "ab") as f:
            f.write(b"".join(line.replace(b"\n", b" ") + b"\n" for line in lines))
        return str(path)

    def saved_checkpoints(self) -> list[Path]:
        """The checkpoints charrnn wrote here. A damaged file is not one, even where it loads: a damaged zip
        directory can make torch read a tensor's tail from whatever memory held, which may be the bytes a
        sound copy left there, so such a file may load once and fail the next time."""
        return [path for path in sorted(self.root.rglob("*.pt")) if path.is_file() and path not in self.raw]


@contextlib.contextmanager
def place_for(world: World):
    with tempfile.TemporaryDirectory() as root, contextlib.chdir(root):
        yield Place(Path(root), world)


def words(option_values: list) -> list[str]:
    """Command-line words of (flag, value) pairs; a value of None is a flag given alone."""
    return [word for flag, value in option_values for word in ((flag,) if value is None else (flag, value))]


def options(strategies: dict, max_size: int = 3):
    """Up to `max_size` of a command's options, each with a value drawn from its strategy."""
    return st.lists(st.sampled_from(sorted(strategies)), unique=True, max_size=max_size).flatmap(
        lambda flags: st.tuples(*(st.tuples(st.just(f), strategies[f]) for f in flags)).map(list)
    )


def invoke(place: Place, args: list, charset: str = "utf-8", stdin: bytes | None = None, forced: tuple = ()):
    """Run the command and check what every run must keep, whatever its arguments."""
    protected = place.saved_checkpoints()
    result = CliRunner(charset=charset).invoke(app, [str(a) for a in args], input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        error = result.exception
        pytest.fail(f"{args!r} ended in a traceback:\n{''.join(traceback.format_exception(error))}")
    assert result.exit_code in (0, 1, 2), (args, result.output)
    event(f"exit {result.exit_code}")
    if result.exit_code == 1:
        assert any(line.startswith("error: ") for line in result.stderr.splitlines()), (args, result.stderr)
    for path in protected:
        if not any(path.is_relative_to(place.root / directory) for directory in forced):
            try:
                checkpoint.load(path)
            except CharRNNError as e:
                pytest.fail(f"{args!r} lost {path}: {e}")
    return result


CHARSETS = st.sampled_from(["utf-8", "utf-8", "ascii"])

# The strategies of each command's options. Every command of the app has a test here, and every option of
# each is fuzzed: one without a strategy of its own gets one for its type (`table`).

TRAIN = {
    "--data": INPUTS,
    "--cell": choices("rnn", "lstm", "gru"),
    "--layers": counts(2),
    "--hidden-size": counts(8),
    "--embed-size": counts(4),
    "--nonlinearity": choices("tanh", "relu"),
    "--init": choices("default", "identity", "orthogonal"),
    "--init-from": CHECKPOINTS,
    "--skip-unknown": FLAG,
    "--dropout": reals(),
    "--embed-dropout": reals(),
    "--weight-drop": reals(),
    "--weight-decay": reals(),
    "--ema-decay": reals(),
    "--seq-len": counts(16),
    "--batch-size": counts(4),
    "--lr": reals(),
    "--warmup-steps": integers(),
    "--clip-norm": reals(),
    "--clip-value": reals(),
    "--seed": integers(),
    "--max-steps": counts(2, beyond=False),
    "--max-time": durations(),
    "--eval-every": integers(),
    "--objective": choices("lm", "fill"),
    "--bidirectional": FLAG,
    "--mask-rate": reals(),
    "--mask-span": integers(),
    "--preset": choices("tiny", "default", "quick"),
    "--config": CONFIGS,
    "--out": OUTPUTS,
    "--resume": FLAG,
    "--force": FLAG,
    "--device": DEVICES,
    "--precision": choices("fp32", "bf16", "fp16"),
    "--threads": THREADS,
}
PATHS = {"--data": "input", "--init-from": "checkpoint", "--config": "input", "--out": "output"}
SAMPLE = {
    "--prime": texts(),
    "--prime-file": INPUTS,
    "--length": counts(20, beyond=False),
    "--temperature": reals(),
    "--top-k": integers(),
    "--top-p": reals(),
    "--seed": integers(),
    "--num-samples": counts(3),
    "--threads": THREADS,
    "--device": DEVICES,
    "--interactive": FLAG,
}
EVAL = {
    "--split": choices("train", "val", "test"),
    "--data": INPUTS,
    "--skip-unknown": FLAG,
    "--json": FLAG,
    "--compare": CHECKPOINTS,
    "--dynamic": FLAG,
    "--dynamic-lr": reals(),
    "--dynamic-decay": reals(),
    "--threads": THREADS,
    "--device": DEVICES,
}
FILL = {
    "--file": INPUTS,
    "--mask-char": texts(),
    "--temperature": reals(),
    "--seed": integers(),
    "--threads": THREADS,
    "--device": DEVICES,
}
COMPARE = {
    "--data": INPUTS,
    "--out": OUTPUTS,
    "--only": st.one_of(st.sampled_from([*COMPARE_NAMES.split(", "), ",", "gru,gru"]), texts()),
    "--max-time": durations(),
    "--max-steps": counts(1, beyond=False),
    "--layers": counts(1),
    "--hidden-size": counts(8),
    "--embed-size": counts(4),
    "--seq-len": counts(8),
    "--batch-size": counts(2),
    "--eval-every": integers(),
    "--seed": integers(),
    "--force": FLAG,
    "--json": FLAG,
    "--plot": OUTPUTS,
    "--threads": THREADS,
}
SPECS = ["rnn", "lstm", "gru", "rnn-relu:identity:1.0", "rnn::nan", "rnn::1e300", "rnn::-1", "tcn", "", ":", "rnn:x"]
GRADIENTS = {
    "--model": st.one_of(st.sampled_from(SPECS), texts()),
    "--cell": choices("rnn", "lstm", "gru"),
    "--init": choices("default", "identity", "orthogonal"),
    "--init-scale": reals(),
    "--nonlinearity": choices("tanh", "relu"),
    "--hidden-size": counts(8),
    "--layers": counts(2),
    "--embed-size": counts(4),
    "--data": INPUTS,
    "--steps": counts(5),
    "--windows": counts(3),
    "--seed": integers(),
    "--json": FLAG,
    "--plot": OUTPUTS,
    "--threads": THREADS,
}
BENCH = {
    "--cell": choices("rnn", "lstm", "gru"),
    "--layers": counts(1),
    "--hidden-size": counts(8),
    "--batch-size": counts(2),
    "--seq-len": counts(4),
    "--num-samples": counts(2),
    "--min-time": st.sampled_from(["0", "-1", "nan", "inf", "1e309", "x", "", "0.001"]),
    "--data": INPUTS,
    "--threads": THREADS,
    "--json": FLAG,
}
SERVE = {
    "--host": texts(),
    "--port": integers(),
    "--max-length": integers(),
    "--max-concurrent": integers(),
    "--threads": THREADS,
    "--device": DEVICES,
}
TABLES = {
    # Not --no-verify, which would write an unverified corpus into the checkout's corpora/.
    "corpus": {"--mirror": INPUTS, "--verify": FLAG},
    "train": TRAIN,
    "sample": SAMPLE,
    "eval": EVAL,
    "info": {"--json": FLAG},
    "plot": {"--out": OUTPUTS},
    "fill": FILL,
    "compare": COMPARE,
    "gradients": GRADIENTS,
    "bench": BENCH,
    "cache": {"--clear": FLAG, "--json": FLAG},
    "export": {"--out": OUTPUTS, "--format": choices("onnx")},
    "serve": SERVE,
}
# Options left out, and why: each would only make examples slow, never find more.
LEFT_OUT = {("train", "--compile"): "builds code with a C++ compiler for tens of seconds"}
CLICK_COMMANDS = typer.main.get_command(app).commands


def by_type(param):
    """A strategy for an option that has none of its own: cheap whatever it is, and never a path outside
    the example's directory."""
    kind = param.type_descriptor.annotation
    if param.is_flag:
        return FLAG
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return choices(*(member.value for member in kind))
    if kind is int:
        return counts(3, beyond=False)
    if kind is float:
        return reals()
    return OUTPUTS


def table(name: str) -> dict:
    """Every option of command `name` (each by its first flag) with its strategy; none for a command the
    app does not register (yet), whose test is skipped."""
    if name not in CLICK_COMMANDS:
        return {}
    options = {p.opts[0]: p for p in CLICK_COMMANDS[name].params if p.param_type_name == "option"}
    return {
        flag: TABLES[name][flag] if flag in TABLES[name] else by_type(param)
        for flag, param in options.items()
        if (name, flag) not in LEFT_OUT
    }


def registered(name: str):
    return pytest.mark.skipif(name not in COMMANDS, reason=f"charrnn has no {name} command")


def test_every_command_is_fuzzed_and_every_strategy_names_an_option():
    assert set(COMMANDS) <= set(TABLES)
    for name, strategies in TABLES.items():
        if name not in COMMANDS:
            continue
        flags = {p.opts[0] for p in CLICK_COMMANDS[name].params if p.param_type_name == "option"}
        assert set(strategies) <= flags, (name, set(strategies) - flags)


def materialise(place: Place, chosen: list, paths: dict) -> list:
    """(flag, value) pairs with each file recipe made into a path in `place`."""
    made = []
    for flag, value in chosen:
        kind = paths.get(flag)
        made.append((flag, getattr(place, kind)(value) if kind else value))
    return made


TINY_TRAIN = ["--hidden-size", "8", "--embed-size", "4", "--layers", "1", "--seq-len", "16", "--batch-size", "2"]


@FUZZ
@given(chosen=options(table("train"), max_size=4), charset=CHARSETS)
def test_train(world, chosen, charset):
    with place_for(world) as place:
        base = ["--data", "text.txt", *TINY_TRAIN, "--max-steps", "2", "--eval-every", "1", "--out", "new"]
        made = materialise(place, chosen, PATHS)
        out = next((value for flag, value in made if flag == "--out"), "new")
        forced = (out,) if out and any(flag == "--force" for flag, _ in made) else ()
        invoke(place, ["train", *base, *words(made)], charset, forced=forced)


@FUZZ
@given(
    target=CHECKPOINTS,
    chosen=options(table("sample")),
    stdin=st.lists(st.one_of(texts(), st.sampled_from([":t nan", ":t -1", ":n -5", ":n x", ":t", ":q"]))),
    charset=CHARSETS,
)
def test_sample(world, target, chosen, stdin, charset):
    with place_for(world) as place:
        made = materialise(place, chosen, {"--prime-file": "input"})
        lines = "".join(line + "\n" for line in stdin).encode("utf-8", "surrogateescape")
        args = ["sample", place.checkpoint(target), "--length", "10", *words(made)]
        invoke(place, args, charset, stdin=lines)


@FUZZ
@given(target=CHECKPOINTS, chosen=options(table("eval")), charset=CHARSETS)
def test_eval(world, target, chosen, charset):
    with place_for(world) as place:
        made = materialise(place, chosen, {"--data": "input", "--compare": "checkpoint"})
        invoke(place, ["eval", place.checkpoint(target), *words(made)], charset)


@FUZZ
@given(target=CHECKPOINTS, as_json=st.booleans(), charset=CHARSETS)
def test_info(world, target, as_json, charset):
    with place_for(world) as place:
        invoke(place, ["info", place.checkpoint(target), *(["--json"] if as_json else [])], charset)


@FUZZ
@given(target=st.one_of(CHECKPOINTS, GARBLED_LINES), out=st.one_of(st.none(), OUTPUTS), charset=CHARSETS)
def test_plot(world, target, out, charset):
    with place_for(world) as place:
        run_dir = place.metrics(target) if isinstance(target, list) else place.checkpoint(target)
        invoke(place, ["plot", run_dir, *([] if out is None else ["--out", place.output(out)])], charset)


FILL_TEXTS = mostly(
    st.sampled_from(["The ___ tea.", "_he queen", "T_e ___ ___", "___"]),
    st.text(alphabet="The queen_ ", max_size=30),
    texts(),
)


FILL_OPTIONS = {flag: strategy for flag, strategy in table("fill").items() if flag != "--file"}


@FUZZ
@given(
    target=mostly(st.just(("run", "fill")), CHECKPOINTS),
    source=mostly(
        FILL_TEXTS.map(lambda text: ("TEXT", text)), INPUTS.map(lambda file: ("--file", file)), st.just((None, None))
    ),
    chosen=options(FILL_OPTIONS),
    charset=CHARSETS,
)
def test_fill(world, target, source, chosen, charset):
    """The text to fill comes as TEXT, from --file, or not at all (`source`)."""
    with place_for(world) as place:
        given_as, value = source
        file = ["--file", place.input(value)] if given_as == "--file" else []
        text = [value] if given_as == "TEXT" else []
        args = ["fill", *words(chosen), *file, "--", place.checkpoint(target), *text]
        invoke(place, args, charset)


@SLOW
@given(chosen=options(table("compare")), charset=CHARSETS)
def test_compare(world, chosen, charset):
    with place_for(world) as place:
        base = ["--data", "text.txt", "--only", "gru", "--max-steps", "1", "--out", "cmp", *TINY_TRAIN[:6]]
        made = materialise(place, chosen, {"--data": "input", "--out": "output", "--plot": "output"})
        forced = ("cmp",) + tuple(value for flag, value in made if flag == "--out" and value)
        invoke(place, ["compare", *base, "--seq-len", "8", "--eval-every", "1", *words(made)], charset, forced=forced)


@FUZZ
@given(
    targets=st.lists(st.one_of(st.just(("run", "lstm")), CHECKPOINTS), max_size=2),
    chosen=options(table("gradients")),
    charset=CHARSETS,
)
def test_gradients(world, targets, chosen, charset):
    with place_for(world) as place:
        made = materialise(place, chosen, {"--data": "input", "--plot": "output"})
        base = ["--data", "text.txt", "--hidden-size", "8", "--steps", "3", "--windows", "2"]
        if targets:
            base = ["--steps", "3", "--windows", "2"]
        args = ["gradients", *(place.checkpoint(t) for t in targets), *base, *words(made)]
        invoke(place, args, charset)


@SLOW
@given(chosen=options(table("bench")), charset=CHARSETS)
def test_bench(world, chosen, charset):
    with place_for(world) as place:
        base = ["--hidden-size", "8", "--layers", "1", "--batch-size", "2", "--seq-len", "4", "--num-samples", "2"]
        made = materialise(place, chosen, {"--data": "input"})
        invoke(place, ["bench", *base, "--min-time", "0", *words(made)], charset)


@FUZZ
@given(
    name=st.one_of(st.none(), texts().filter(lambda name: name not in corpus.registry())),
    chosen=options(table("corpus")),
    charset=CHARSETS,
)
def test_corpus(world, name, chosen, charset):
    with place_for(world) as place:
        made = materialise(place, chosen, {"--mirror": "input"})
        invoke(place, ["corpus", *words(made), *([] if name is None else ["--", name])], charset)


@registered("cache")
@FUZZ
@given(chosen=options(table("cache")), charset=CHARSETS)
def test_cache(world, chosen, charset):
    with place_for(world) as place:
        invoke(place, ["cache", *words(chosen)], charset)


@registered("export")
@FUZZ
@given(
    target=CHECKPOINTS,
    out=OUTPUTS,
    chosen=options({flag: strategy for flag, strategy in table("export").items() if flag != "--out"}),
    charset=CHARSETS,
)
def test_export(world, target, out, chosen, charset):
    with place_for(world) as place:
        args = ["export", place.checkpoint(target), "--out", place.output(out), *words(chosen)]
        invoke(place, args, charset)


def servable(path: str) -> bool:
    """Whether serve would start serving (until Ctrl-C): a sound language model, which a damage can leave."""
    try:
        loaded = load(path)
    except CharRNNError:
        return False
    return loaded.objective == "lm" and has_finite_weights(loaded.model)


@registered("serve")
@FUZZ
@given(target=CHECKPOINTS, chosen=options(table("serve")), charset=CHARSETS)
def test_serve(world, target, chosen, charset):
    with place_for(world) as place:
        path = place.checkpoint(target)
        assume(not servable(path))
        invoke(place, ["serve", path, *words(chosen)], charset)
