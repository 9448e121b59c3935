"""The character model: embedding -> dropout -> fused nn.RNN/nn.LSTM/nn.GRU -> dropout -> linear, whose weight
may be the embedding itself (--tie-embedding).

In training the fused module's kernel may run on masked copies of its recurrent weights (weight drop).

Below it, one-step cells written from the equations. They are the readable statement of what
each fused module computes; tests hold the two to the same numbers. Training never uses them.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from charrnn.settings.config import ModelConfig

State = Tensor | tuple[Tensor, Tensor]

_FUSED = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
# The kernel each fused module calls, by its mode; after (input, state, weights) they take
# (has_biases, num_layers, dropout, train, bidirectional, batch_first).
_KERNELS = {"RNN_TANH": torch.rnn_tanh, "RNN_RELU": torch.rnn_relu, "LSTM": torch.lstm, "GRU": torch.gru}
# Le, Jaitly & Hinton's (2015) scale for the input weights of an identity-initialised ReLU network.
IRNN_INPUT_STD = 1e-3


class CharRNN(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        # A bidirectional model fills gaps (charrnn/generation/fill.py). Its mask is an input row beyond the
        # vocabulary, so a literal mask character in the text stays an ordinary character.
        self.embedding = nn.Embedding(config.vocab_size + config.bidirectional, config.embed_size)
        extra = {"nonlinearity": config.nonlinearity} if config.cell == "rnn" else {}
        self.rnn = _FUSED[config.cell](
            input_size=config.embed_size,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
            bidirectional=config.bidirectional,
            **extra,
        )
        self.head = nn.Linear((1 + config.bidirectional) * config.hidden_size, config.vocab_size)
        if config.tie_embedding:
            # One matrix embeds the characters and scores them (Press & Wolf, 2017; Inan et al., 2017): a rare
            # character's row learns from every time it is read as well as predicted.
            self.head.weight = self.embedding.weight
        directions = ("", "_reverse") if config.bidirectional else ("",)
        self._layers = list(itertools.product(range(config.num_layers), directions))
        self._init_recurrent_weights()

    def _init_recurrent_weights(self) -> None:
        h = self.config.hidden_size
        with torch.no_grad():
            for layer, direction in self._layers:
                w_hh = getattr(self.rnn, f"weight_hh_l{layer}{direction}")
                b_ih = getattr(self.rnn, f"bias_ih_l{layer}{direction}")
                b_hh = getattr(self.rnn, f"bias_hh_l{layer}{direction}")
                if self.config.init == "identity":
                    # Le, Jaitly & Hinton (2015): h_t starts as a copy of h_{t-1}, so the gradient
                    # through time neither shrinks nor grows at first.
                    w_hh.copy_(torch.eye(h))
                    b_ih.zero_()
                    b_hh.zero_()
                    if self.config.nonlinearity == "relu":
                        # With W_hh = I a ReLU state adds up its inputs; at PyTorch's default input weights
                        # that made the loss 280 bits per character within one window. Their input
                        # weights start as small as theirs did.
                        getattr(self.rnn, f"weight_ih_l{layer}{direction}").normal_(0.0, IRNN_INPUT_STD)
                if self.config.cell == "lstm":
                    # Gates are ordered (input, forget, cell, output). A forget bias of 1 keeps the
                    # cell state flowing early in training (Jozefowicz et al., 2015).
                    b_ih[h : 2 * h].fill_(1.0)
                    b_hh[h : 2 * h].zero_()

    def forward(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """ids (batch, time) -> logits (batch, time, vocab) and the state after the last step."""
        x = dropout(self.embedding(ids), self.config.embed_dropout, self.training)
        if self.training and self.config.weight_drop > 0:
            output, state = self._rnn_with_dropped_recurrent_weights(x, state)
        else:
            output, state = self.rnn(x, state)
        return self.head(dropout(output, self.config.dropout, self.training)), state

    def _rnn_with_dropped_recurrent_weights(self, x: Tensor, state: State | None) -> tuple[Tensor, State]:
        """DropConnect on every W_hh (Merity et al., 2017, "weight drop"): one mask per batch, the same at
        every step, so the recurrence itself is regularised while the fused kernel still runs it.

        The module keeps its raw weights, the parameters the optimiser updates, and the kernel it calls gets
        the dropped ones directly, laid out as the module's own (see `laid_out_like`). Swapping them into the
        module instead (torch.func.functional_call) makes it flatten its weights anew on a GPU twice a step,
        moving the parameters' storage each time."""
        rnn, p = self.rnn, self.config.weight_drop
        # Each layer and direction holds (W_ih, W_hh, b_ih, b_hh), in the order the kernel takes them.
        raw = [weight for layer in rnn.all_weights for weight in layer]
        dropped = [dropout(w, p, True) if j == 1 else w for layer in rnn.all_weights for j, w in enumerate(layer)]
        if state is None:
            zeros = x.new_zeros(rnn.num_layers * (1 + rnn.bidirectional), x.size(0), rnn.hidden_size)
            state = (zeros, zeros) if rnn.mode == "LSTM" else zeros
        weights = laid_out_like(dropped, like=raw)
        flags = (rnn.bias, rnn.num_layers, rnn.dropout, True, rnn.bidirectional, rnn.batch_first)
        output, *final = _KERNELS[rnn.mode](x, state, weights, *flags)
        return output, tuple(final) if rnn.mode == "LSTM" else final[0]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout as F.dropout does it (keep each element with probability 1 - p, scale by 1 / (1 - p)),
    with the mask drawn as uniform numbers >= p, which is cheaper than F.dropout's bernoulli_
    (docs/performance.md, "Measured choices"). The draws are fp32 whatever x is, so that bf16 and fp16
    do not round p."""
    if not training or p == 0:
        return x
    return x * torch.rand(x.shape, device=x.device).ge_(p).div_(1 - p).to(x.dtype)


def laid_out_like(tensors: list[Tensor], like: list[Tensor]) -> list[Tensor]:
    """`tensors` (shaped as `like`) in the memory layout of `like`: when `like` shares one storage, copied,
    differentiably, into one new buffer, each where its counterpart sits in that storage; else as they are.

    The fused module's weights share one storage on a GPU, where flatten_parameters() lays them out as
    cuDNN wants them, and cuDNN runs a weight list laid out so in place. Handed separate tensors, it copies
    them into such a buffer at every call, with the UserWarning "RNN module weights are not part of single
    contiguous chunk of memory". On a CPU the weights are separate tensors, which its kernels take.
    """
    storage = like[0].untyped_storage()
    if any(t.untyped_storage().data_ptr() != storage.data_ptr() for t in like):
        return tensors
    offsets, size = [t.storage_offset() for t in like], storage.nbytes() // like[0].element_size()
    pieces, position, end = [], {}, 0
    for index in sorted(range(len(tensors)), key=offsets.__getitem__):
        if offsets[index] > end:
            pieces.append(tensors[index].new_zeros(offsets[index] - end))
        position[index] = len(pieces)
        pieces.append(tensors[index].reshape(-1))
        end = offsets[index] + tensors[index].numel()
    if size > end:
        pieces.append(tensors[0].new_zeros(size - end))
    chunks = torch.cat(pieces).split([piece.numel() for piece in pieces])
    return [chunks[position[i]].view(t.shape) for i, t in enumerate(tensors)]


def has_finite_weights(model: nn.Module) -> bool:
    """Whether every parameter is finite: a NaN or infinity in one spreads to every output.

    A tensor's smallest and largest values are finite exactly when all its values are (a NaN makes
    both NaN). Finding them is cheaper than isfinite(), which writes a mask as large as the weights.
    """
    return all(
        p.numel() == 0 or bool(torch.stack(torch.aminmax(p.detach())).isfinite().all()) for p in model.parameters()
    )


def detach_state(state: State | None) -> State | None:
    """Cut the graph between training windows: truncated back-propagation through time."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def layer_weights(rnn: nn.RNNBase, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return tuple(getattr(rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def rnn_step(x: Tensor, h: Tensor, w_ih, w_hh, b_ih, b_hh, nonlinearity: str = "tanh") -> Tensor:
    """Vanilla cell: h_t = tanh(W_hh h_{t-1} + W_xh x_t + b). The output y_t = W_hy h_t is the model's head."""
    act = torch.tanh if nonlinearity == "tanh" else torch.relu
    return act(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)


def lstm_step(x: Tensor, state: tuple[Tensor, Tensor], w_ih, w_hh, b_ih, b_hh) -> tuple[Tensor, Tensor]:
    """LSTM: gates decide what the cell state c forgets, takes in and shows as h."""
    h, c = state
    i, f, g, o = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=-1)
    input_gate, forget_gate, output_gate = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
    candidate = torch.tanh(g)
    c = forget_gate * c + input_gate * candidate
    h = output_gate * torch.tanh(c)
    return h, c


def gru_step(x: Tensor, h: Tensor, w_ih, w_hh, b_ih, b_hh) -> Tensor:
    """GRU: the update gate z mixes old state and candidate; the reset gate r masks the old state in the candidate."""
    x_r, x_z, x_n = (x @ w_ih.T + b_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = (h @ w_hh.T + b_hh).chunk(3, dim=-1)
    reset = torch.sigmoid(x_r + h_r)
    update = torch.sigmoid(x_z + h_z)
    candidate = torch.tanh(x_n + reset * h_n)
    return (1 - update) * candidate + update * h
