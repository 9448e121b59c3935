"use strict";

const $ = (id) => document.getElementById(id);
let controller = null;

function showValue(id, format) {
  const input = $(id);
  const update = () => { $(id + "-value").textContent = format(Number(input.value)); };
  input.addEventListener("input", update);
  update();
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function setRunning(running) {
  $("generate").disabled = running;
  $("stop").disabled = !running;
}

async function describeModel() {
  try {
    const [model, limits] = await Promise.all([
      fetch("/v1/model").then((r) => r.json()),
      fetch("/v1/limits").then((r) => r.json()),
    ]);
    const m = model.model;
    const bpc = model.best_val_bpc === null ? "" : `, validation ${model.best_val_bpc.toFixed(3)} bits/char`;
    $("model").textContent =
      `${m.num_layers}-layer ${m.hidden_size}-unit ${m.cell}, ${model.parameters.toLocaleString()} parameters, ` +
      `${model.vocab_size} characters, ${model.step.toLocaleString()} training steps${bpc}`;
    const length = $("length");
    length.max = Math.min(limits.max_length, 10000);
    length.dispatchEvent(new Event("input"));
  } catch (e) {
    $("model").textContent = `cannot describe the model: ${e}`;
  }
}

// Server-sent events from a fetch body: "data: ..." lines, each event ended by a blank line.
async function readEvents(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ") && onData(line.slice(6)) === false) {
          await reader.cancel();
          return;
        }
      }
    }
  }
}

async function generate(event) {
  event.preventDefault();
  if (controller) controller.abort();
  controller = new AbortController();
  const prime = $("prime").value;
  const topP = Number($("top-p").value);
  const seed = $("seed").value.trim();
  const body = {
    prime,
    length: Number($("length").value),
    temperature: Number($("temperature").value),
    top_p: topP >= 1 ? null : topP,
    seed: seed === "" ? null : Number(seed),
    stream: true,
  };
  const primeNode = $("output-prime");
  const newNode = $("output-new");
  primeNode.textContent = "";
  newNode.textContent = "";
  let count = 0;
  let primeShown = prime === "";
  let seedUsed = "";
  const started = performance.now();
  const progress = () => {
    const seconds = (performance.now() - started) / 1000;
    return `${count.toLocaleString()} characters in ${seconds.toFixed(1)} s, seed ${seedUsed}`;
  };
  setRunning(true);
  setStatus("generating…");
  try {
    const response = await fetch("/v1/generate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) {
      const problem = await response.json().catch(() => ({ error: response.statusText }));
      setStatus(`error ${response.status}: ${problem.error}`, true);
      return;
    }
    seedUsed = response.headers.get("X-Seed") || "";
    let finished = false;
    await readEvents(response, (data) => {
      if (data === "[DONE]") {
        finished = true;
        return false;
      }
      const message = JSON.parse(data);
      if (message.error) {
        setStatus(`error: ${message.error}`, true);
        return false;
      }
      if (!primeShown) {
        primeNode.textContent = message.text;
        primeShown = true;
      } else {
        newNode.appendChild(document.createTextNode(message.text));
        count += message.text.length;
        setStatus(`generating… ${progress()}`);
      }
      return true;
    });
    if (finished) setStatus(`done: ${progress()}`);
  } catch (e) {
    if (e.name === "AbortError") setStatus(`stopped: ${progress()}`);
    else setStatus(`error: ${e.message}`, true);
  } finally {
    controller = null;
    setRunning(false);
  }
}

function stop() {
  if (controller) controller.abort();
}

showValue("temperature", (v) => (v === 0 ? "0 (greedy)" : v.toFixed(2)));
showValue("top-p", (v) => (v >= 1 ? "1 (off)" : v.toFixed(2)));
showValue("length", (v) => `${v.toLocaleString()} characters`);
$("controls").addEventListener("submit", generate);
$("stop").addEventListener("click", stop);
$("prime").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("controls").requestSubmit();
});
describeModel();
