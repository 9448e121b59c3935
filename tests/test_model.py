import dataclasses
import warnings

import pytest
import torch
from torch.func import functional_call

from charrnn.generation.sampling import Stepper
from charrnn.model import network as model_module
from charrnn.model.device import parameter_count
from charrnn.model.network import (
    CharRNN,
    detach_state,
    dropout,
    gru_step,
    has_finite_weights,
    layer_weights,
    lstm_step,
    rnn_step,
)
from charrnn.settings.config import ModelConfig


def reference_forward(model: CharRNN, ids: torch.Tensor) -> torch.Tensor:
    """The model's outputs, computed one step at a time with the equations in model.py."""
    config = model.config
    batch, steps = ids.shape
    zeros = torch.zeros(batch, config.hidden_size)
    state = [(zeros, zeros) if config.cell == "lstm" else zeros for _ in range(config.num_layers)]
    outputs = []
    for t in range(steps):
        x = model.embedding(ids[:, t])
        for layer in range(config.num_layers):
            weights = layer_weights(model.rnn, layer)
            if config.cell == "lstm":
                state[layer] = lstm_step(x, state[layer], *weights)
                x = state[layer][0]
            elif config.cell == "gru":
                state[layer] = x = gru_step(x, state[layer], *weights)
            else:
                state[layer] = x = rnn_step(x, state[layer], *weights, nonlinearity=config.nonlinearity)
        outputs.append(model.head(x))
    return torch.stack(outputs, dim=1)


CELLS = [
    {"cell": "rnn"},
    {"cell": "rnn", "nonlinearity": "relu", "init": "identity"},
    {"cell": "lstm"},
    {"cell": "gru"},
    {"cell": "lstm", "tie_embedding": True},
]


def options_id(options: dict) -> str:
    return "-".join("tied" if value is True else str(value) for value in options.values())


@pytest.mark.parametrize("options", CELLS, ids=options_id)
def test_equations_match_fused_module(options):
    torch.manual_seed(0)
    embed = 16 if options.get("tie_embedding") else 5  # a tied embedding is as wide as the hidden state
    model = CharRNN(ModelConfig(vocab_size=11, num_layers=2, hidden_size=16, embed_size=embed, dropout=0.0, **options))
    model.eval()
    ids = torch.randint(0, 11, (3, 20))
    with torch.no_grad():
        fused, _ = model(ids)
        assert torch.allclose(reference_forward(model, ids), fused, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 2], ids=["streaming", "batched"])
@pytest.mark.parametrize("options", CELLS, ids=options_id)
def test_single_step_cells_match_whole_sequence(options, batch):
    torch.manual_seed(1)
    embed = 12 if options.get("tie_embedding") else 4
    model = CharRNN(ModelConfig(vocab_size=9, num_layers=3, hidden_size=12, embed_size=embed, dropout=0.3, **options))
    model.eval()
    ids = torch.randint(0, 9, (batch, 15))
    with torch.no_grad():
        fused, fused_state = model(ids)
        _, state = model(ids[:, :5])
        stepper = Stepper(model, batch)
        layers = stepper.split_state(state)
        stepped = []
        for t in range(5, 15):
            logits, layers = stepper.step(ids[:, t], layers)
            stepped.append(logits)
    assert torch.allclose(torch.stack(stepped, 1), fused[:, 5:], atol=1e-5)
    joined = stepper.join_state(layers)
    for a, b in zip(
        joined if isinstance(joined, tuple) else [joined],
        fused_state if isinstance(fused_state, tuple) else [fused_state],
    ):
        assert torch.allclose(a, b, atol=1e-5)


def test_a_tied_embedding_is_the_output_layer_and_learns_from_both():
    """With --tie-embedding one matrix embeds the characters and scores them: the output side's gradient alone
    reaches it, and the parameter count, as counted before building, says one matrix."""
    config = ModelConfig(vocab_size=9, hidden_size=12, embed_size=12, tie_embedding=True)
    model = CharRNN(config)
    assert model.head.weight is model.embedding.weight
    assert model.num_parameters() == parameter_count(config)
    assert model.num_parameters() == CharRNN(dataclasses.replace(config, tie_embedding=False)).num_parameters() - 9 * 12
    model.head(torch.randn(3, 12)).sum().backward()
    assert model.embedding.weight.grad.abs().sum() > 0


def test_state_starts_at_zero():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=5, cell="gru", hidden_size=8, embed_size=3))
    model.eval()
    ids = torch.randint(0, 5, (2, 7))
    zero = torch.zeros(model.config.num_layers, 2, 8)
    assert torch.equal(model(ids)[0], model(ids, zero)[0])


def test_identity_init_and_zero_bias():
    model = CharRNN(ModelConfig(vocab_size=5, cell="rnn", init="identity", num_layers=2, hidden_size=6))
    for layer in range(2):
        w_ih, w_hh, b_ih, b_hh = layer_weights(model.rnn, layer)
        assert torch.equal(w_hh, torch.eye(6))
        assert not b_ih.any() and not b_hh.any()


def test_lstm_forget_bias_starts_at_one():
    model = CharRNN(ModelConfig(vocab_size=5, cell="lstm", hidden_size=4, num_layers=1))
    _, _, b_ih, b_hh = layer_weights(model.rnn, 0)
    assert torch.equal((b_ih + b_hh)[4:8], torch.ones(4))


def test_dropout_only_while_training():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=7, hidden_size=16, embed_size=4, dropout=0.5))
    ids = torch.randint(0, 7, (2, 10))
    model.train()
    assert not torch.equal(model(ids)[0], model(ids)[0])
    model.eval()
    assert torch.equal(model(ids)[0], model(ids)[0])


def test_embed_dropout_zeroes_and_rescales_the_inputs_only_while_training():
    torch.manual_seed(0)
    model = CharRNN(
        ModelConfig(
            vocab_size=7, num_layers=1, hidden_size=8, embed_size=4, dropout=0.0, embed_dropout=0.5, weight_drop=0.0
        )
    )
    ids = torch.randint(0, 7, (3, 10))
    model.train()
    seen = []  # a hook on the module sees its input only when no weight drop hands the kernel other weights
    model.rnn.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    model(ids)
    dropped, kept = seen[0] == 0, model.embedding(ids) * 2
    assert 0 < dropped.float().mean() < 1
    assert torch.equal(seen[0][~dropped], kept[~dropped])
    model.eval()
    model(ids)
    assert torch.equal(seen[1], model.embedding(ids))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_weight_drop_masks_the_recurrent_weights_while_training_only(bidirectional):
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=7, hidden_size=32, embed_size=4, dropout=0.0, embed_dropout=0.0, weight_drop=0.0)
    plain = CharRNN(dataclasses.replace(config, bidirectional=bidirectional))
    dropped = CharRNN(dataclasses.replace(config, bidirectional=bidirectional, weight_drop=0.5))
    dropped.load_state_dict(plain.state_dict())
    ids = torch.randint(0, 7, (3, 12))
    dropped.train()
    logits, _ = dropped(ids)
    assert not torch.allclose(logits, plain.train()(ids)[0])
    logits.sum().backward()
    # A dropped weight gets no gradient: about half of each W_hh, and none of W_ih.
    for name, weight in dropped.rnn.named_parameters():
        zero_share = (weight.grad == 0).float().mean().item()
        assert (0.4 < zero_share < 0.6) if name.startswith("weight_hh") else zero_share < 0.1, name
    # Outside the masked call the recurrent module holds its whole weights again, in training and in evaluation.
    inputs = torch.randn(3, 12, 4)
    assert torch.equal(dropped.rnn(inputs)[0], plain.rnn(inputs)[0])
    dropped.eval(), plain.eval()
    assert torch.equal(dropped(ids)[0], plain(ids)[0])


def train_step(model: CharRNN, ids: torch.Tensor) -> torch.Tensor:
    """A training forward and backward with every warning an error; the logits."""
    projection = torch.randn(*ids.shape, model.config.vocab_size, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logits, _ = model(ids)
        (logits * projection).sum().backward()
    return logits


WEIGHT_DROP_CELLS = [{"cell": "lstm"}, {"cell": "gru"}, {"cell": "rnn"}, {"cell": "lstm", "bidirectional": True}]


@pytest.mark.parametrize("options", WEIGHT_DROP_CELLS, ids=lambda o: "-".join(map(str, o.values())))
def test_weight_drop_trains_the_raw_weights_through_the_mask(options):
    """The gradient of each raw W_hh is the gradient of the fused module run on explicitly masked weights
    (torch.func.functional_call), scaled by 1 / (1 - p) where the mask kept a weight and zero where it did not."""
    p = 0.4
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=7, num_layers=2, hidden_size=16, embed_size=5, dropout=0.0, embed_dropout=0.0, weight_drop=p
    )
    model = CharRNN(dataclasses.replace(config, **options))
    plain = CharRNN(dataclasses.replace(config, weight_drop=0.0, **options))
    plain.load_state_dict(model.state_dict())
    ids = torch.randint(0, 7, (3, 12))
    logits = train_step(model.train(), ids)

    recurrent = {name: w for name, w in model.rnn.named_parameters() if name.startswith("weight_hh")}
    masks = {name: w.grad != 0 for name, w in recurrent.items()}
    for mask in masks.values():
        assert 1 - mask.float().mean().item() == pytest.approx(p, abs=0.1)
    masked = {name: (recurrent[name].detach() * masks[name] / (1 - p)).requires_grad_() for name in recurrent}
    reference = functional_call(plain.train(), {f"rnn.{name}": w for name, w in masked.items()}, (ids,))[0]
    projection = torch.randn(*ids.shape, 7, generator=torch.Generator().manual_seed(1))
    (reference * projection).sum().backward()

    torch.testing.assert_close(logits, reference)
    for name, weight in recurrent.items():
        torch.testing.assert_close(weight.grad, masked[name].grad * masks[name] / (1 - p))
    for (name, weight), (_, reference_weight) in zip(model.named_parameters(), plain.named_parameters()):
        if "weight_hh" not in name:
            torch.testing.assert_close(weight.grad, reference_weight.grad, msg=name)


def flatten_as_cudnn_would(rnn: torch.nn.RNNBase, gap: int = 3) -> list[int]:
    """Make the module's weights views of one storage, with gaps between them, as flatten_parameters() does on
    a GPU; return their offsets."""
    weights = [w for layer in rnn.all_weights for w in layer]
    offsets = [gap * (i + 1) + sum(w.numel() for w in weights[:i]) for i in range(len(weights))]
    buffer = torch.zeros(offsets[-1] + weights[-1].numel() + gap)
    with torch.no_grad():
        for weight, offset in zip(weights, offsets):
            buffer[offset : offset + weight.numel()] = weight.flatten()
            weight.set_(buffer.untyped_storage(), offset, weight.shape, weight.stride())
    return offsets


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_weight_drop_hands_the_kernel_one_buffer_laid_out_as_the_modules_own(cell, monkeypatch):
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=7, num_layers=2, hidden_size=16, embed_size=5, dropout=0.0, embed_dropout=0.0)
    model, flat = CharRNN(dataclasses.replace(config, cell=cell)), CharRNN(dataclasses.replace(config, cell=cell))
    flat.load_state_dict(model.state_dict())
    offsets = flatten_as_cudnn_would(flat.rnn)
    own = flat.rnn.weight_ih_l0.untyped_storage()
    handed = []
    kernel = model_module._KERNELS[flat.rnn.mode]

    def spy(x, state, weights, *flags):
        handed.append(weights)
        return kernel(x, state, weights, *flags)

    monkeypatch.setitem(model_module._KERNELS, flat.rnn.mode, spy)
    ids = torch.randint(0, 7, (3, 12))
    torch.manual_seed(5)
    expected = train_step(model.train(), ids)
    torch.manual_seed(5)
    logits = train_step(flat.train(), ids)

    [separate, weights] = handed
    assert len({w.untyped_storage().data_ptr() for w in separate}) == len(separate)
    storage = weights[0].untyped_storage()
    assert all(w.untyped_storage().data_ptr() == storage.data_ptr() for w in weights)
    assert [w.storage_offset() for w in weights] == offsets and storage.nbytes() == own.nbytes()
    assert storage.data_ptr() != own.data_ptr()
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    for (name, weight), (_, reference) in zip(flat.named_parameters(), model.named_parameters()):
        torch.testing.assert_close(weight.grad, reference.grad, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.2, 0.9])
def test_dropout_keeps_each_element_with_probability_one_minus_p_and_rescales_it(p, dtype):
    torch.manual_seed(0)
    x = (torch.rand(200_000) + 1).to(dtype)
    y = dropout(x, p, training=True)
    dropped = y == 0
    assert y.dtype == dtype
    assert dropped.float().mean().item() == pytest.approx(p, abs=0.005)
    torch.testing.assert_close(y[~dropped], x[~dropped] / (1 - p))
    assert torch.equal(dropout(x, p, training=False), x)


def test_detach_state_cuts_the_graph():
    model = CharRNN(ModelConfig(vocab_size=5, hidden_size=4, embed_size=2))
    _, state = model(torch.zeros(1, 3, dtype=torch.long))
    assert all(s.requires_grad for s in state)
    assert not any(s.requires_grad for s in detach_state(state))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_one_non_finite_weight_anywhere_is_found(bad):
    model = CharRNN(ModelConfig(vocab_size=5, hidden_size=4, embed_size=2, num_layers=2))
    assert has_finite_weights(model)
    for name, parameter in model.named_parameters():
        with torch.no_grad():
            kept = parameter.view(-1)[-1].item()
            parameter.view(-1)[-1] = bad
            assert not has_finite_weights(model), name
            parameter.view(-1)[-1] = kept
    assert has_finite_weights(model)
