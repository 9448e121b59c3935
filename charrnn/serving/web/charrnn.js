// A charrnn language model in the browser: the model's step written out for each cell, and a seeded sampler.
// It is the model's eval-mode forward (embedding, every RNN, LSTM or GRU layer, the output layer) on one
// character, with PyTorch's gate order, on the weights in weights.bin that model.json names (docs/export.md).

export async function loadModel(base = ".") {
  const manifest = await (await fetch(`${base}/model.json`)).json();
  const buffer = await (await fetch(`${base}/${manifest.weights}`)).arrayBuffer();
  const tensors = {};
  for (const [name, { offset, shape }] of Object.entries(manifest.tensors)) {
    tensors[name] = new Float32Array(buffer, offset * 4, shape.reduce((a, b) => a * b, 1));
  }
  const config = manifest.model_config;
  const layers = [];
  for (let l = 0; l < config.num_layers; l++) {
    const [wIh, wHh, bIh, bHh] = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"].map((w) => tensors[`rnn.${w}_l${l}`]);
    layers.push({ wIh, wHh, bIh, bHh, inputs: manifest.tensors[`rnn.weight_ih_l${l}`].shape[1] });
  }
  return {
    config,
    vocab: manifest.vocab,
    index: new Map(manifest.vocab.map((char, id) => [char, id])),
    embedding: tensors["embedding.weight"],
    layers,
    head: { weight: tensors["head.weight"], bias: tensors["head.bias"] },
  };
}

// out = W x + b for the rows [from, from + rows) of W, whose rows are `columns` long.
function affine(weight, bias, x, from, rows, columns) {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let sum = bias[from + r];
    const row = (from + r) * columns;
    for (let j = 0; j < columns; j++) sum += weight[row + j] * x[j];
    out[r] = sum;
  }
  return out;
}

const sigmoid = (v) => 1 / (1 + Math.exp(-v));
const relu = (v) => Math.max(v, 0);

// One layer's next state from its input x and its state {h, c}; c only for an LSTM.
function cell(model, layer, x, { h, c }) {
  const { cell: kind, hidden_size: n, nonlinearity } = model.config;
  const { wIh, wHh, bIh, bHh, inputs } = layer;
  const gates = kind === "lstm" ? 4 : kind === "gru" ? 3 : 1;
  const xs = affine(wIh, bIh, x, 0, gates * n, inputs);
  const hs = affine(wHh, bHh, h, 0, gates * n, n);
  const next = { h: new Float32Array(n), c: kind === "lstm" ? new Float32Array(n) : null };
  for (let i = 0; i < n; i++) {
    if (kind === "rnn") {
      next.h[i] = (nonlinearity === "relu" ? relu : Math.tanh)(xs[i] + hs[i]);
    } else if (kind === "lstm") {
      // Gates in PyTorch's order: input, forget, cell, output.
      const [input, forget, candidate, output] = [0, 1, 2, 3].map((g) => xs[g * n + i] + hs[g * n + i]);
      next.c[i] = sigmoid(forget) * c[i] + sigmoid(input) * Math.tanh(candidate);
      next.h[i] = sigmoid(output) * Math.tanh(next.c[i]);
    } else {
      // Reset, update, new; the reset gate scales the recurrent part of the candidate only.
      const reset = sigmoid(xs[i] + hs[i]);
      const update = sigmoid(xs[n + i] + hs[n + i]);
      const candidate = Math.tanh(xs[2 * n + i] + reset * hs[2 * n + i]);
      next.h[i] = (1 - update) * candidate + update * h[i];
    }
  }
  return next;
}

export function zeroState(model) {
  const n = model.config.hidden_size;
  return model.layers.map(() => ({ h: new Float32Array(n), c: new Float32Array(n) }));
}

// The logits after character `id`, and the state after it.
export function step(model, id, state) {
  const e = model.config.embed_size;
  let x = model.embedding.subarray(id * e, (id + 1) * e);
  const next = model.layers.map((layer, l) => {
    const layerState = cell(model, layer, x, state[l]);
    x = layerState.h;
    return layerState;
  });
  const { weight, bias } = model.head;
  return { logits: affine(weight, bias, x, 0, model.vocab.length, model.config.hidden_size), state: next };
}

// The logits and state after `ids`, read from the zero state.
export function read(model, ids) {
  let result = { logits: null, state: zeroState(model) };
  for (const id of ids) result = step(model, id, result.state);
  return result;
}

// Mulberry32: a small seeded generator of numbers in [0, 1); the same seed gives the same text here,
// but not the text of `charrnn sample --seed`, which draws from PyTorch's generator.
export function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// The next id: the likeliest at temperature 0 (the first of equals, as torch.argmax), else a draw from
// softmax(logits / temperature).
export function choose(logits, temperature, random) {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  if (temperature === 0) return best;
  const weights = Array.from(logits, (v) => Math.exp((v - logits[best]) / temperature));
  let u = random() * weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < weights.length; i++) {
    u -= weights[i];
    if (u < 0) return i;
  }
  return best;
}

// The characters after `prime`, one at a time, as `charrnn sample` chooses where to start: after a newline
// when there is no prime. A model with a bounded context (model_config.context) restarts its state every
// context / 2 characters on the context - context / 2 characters before, as it was trained and as charrnn reads it.
export function* generate(model, prime, length, temperature, seed) {
  const random = seeded(seed);
  const { vocab, index } = model;
  if (!prime) {
    prime = index.has("\n") ? "\n" : vocab[Math.floor(random() * vocab.length)];
    if (!index.has("\n")) yield prime;
  }
  const unknown = [...prime].find((char) => !index.has(char));
  if (unknown !== undefined) {
    const what = `the prime holds ${JSON.stringify(unknown)}, which the model never saw`;
    throw new Error(`${what}. Use only characters from the training text in the prime`);
  }
  const context = model.config.context;
  const keep = context ? context - Math.floor(context / 2) : Infinity;
  let recent = [...prime].map((char) => index.get(char)).slice(-keep);
  let { logits, state } = read(model, recent);
  for (let n = 1; n <= length; n++) {
    const id = choose(logits, temperature, random);
    yield vocab[id];
    if (context) recent = [...recent, id].slice(-keep);
    const restart = context && n % Math.floor(context / 2) === 0;
    ({ logits, state } = restart ? read(model, recent) : step(model, id, state));
  }
}
