// The chat page. It only renders: the model runs in the engine's worker. Streamed text is
// inserted as text (never HTML), batched once per animation frame.

import { createEngine, describeBackend, unsupportedReason } from './engine.js';
import { prepareOffline } from './offline.js';

/** @typedef {import('./engine.js').Engine} Engine */
/** @typedef {import('./engine.js').ChatMessage} ChatMessage */

/** @param {string} id */
const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const ui = {
  status: byId('status'),
  update: /** @type {HTMLButtonElement} */ (byId('update')),
  loading: byId('loading'),
  progress: /** @type {HTMLProgressElement} */ (byId('progress')),
  progressText: byId('progress-text'),
  messages: byId('messages'),
  composer: /** @type {HTMLFormElement} */ (byId('composer')),
  prompt: /** @type {HTMLTextAreaElement} */ (byId('prompt')),
  send: /** @type {HTMLButtonElement} */ (byId('send')),
  stop: /** @type {HTMLButtonElement} */ (byId('stop')),
  newChat: /** @type {HTMLButtonElement} */ (byId('new-chat')),
  temperature: /** @type {HTMLInputElement} */ (byId('temperature')),
  maxTokens: /** @type {HTMLInputElement} */ (byId('max-tokens')),
};

/** @type {ChatMessage[]} */
let history = [];
/** @type {Engine | null} */
let engine = null;
let busy = false;

/** @param {number} bytes */
const megabytes = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

/** @param {string} path */
async function fetchJson(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`cannot load ${path}: HTTP ${response.status}`);
  return response.json();
}

/** @param {string} text @param {boolean} [alert] */
function setStatus(text, alert = false) {
  ui.status.textContent = text;
  ui.status.setAttribute('role', alert ? 'alert' : 'status');
}

async function load() {
  const unsupported = unsupportedReason();
  if (unsupported) throw new Error(unsupported); // before downloading hundreds of megabytes
  const manifest = await fetchJson('manifest.json');
  const total = manifest.files.reduce((/** @type {number} */ sum, /** @type {{size: number}} */ f) => sum + f.size, 0);
  // One bar in bytes: the service worker's precache on a first visit, the engine's own
  // reads otherwise; whichever is further along.
  let cached = 0;
  let read = 0;
  const show = (/** @type {string} */ message) => {
    const loaded = Math.min(Math.max(cached, read), total);
    ui.progress.value = total ? loaded / total : 0;
    ui.progressText.textContent = `${message} ${megabytes(loaded)} of ${megabytes(total)}`;
  };
  setStatus('Downloading…');
  show('Downloading');
  const offline = await prepareOffline({
    buildId: manifest.build_id,
    onProgress: (loaded) => { cached = loaded; show('Downloading'); },
    onUpdate: (apply) => {
      ui.update.hidden = false;
      ui.update.onclick = apply;
    },
  });
  setStatus('Starting the model…');
  engine = await createEngine({
    onProgress: (progress) => { read = progress.loaded; show(progress.message || 'Loading'); },
    onBackendChange: (moved) => {
      setStatus(`The GPU failed; going on with ${describeBackend(moved)}…`);
      ui.status.title = moved.reason;
    },
  });
  ui.progress.value = 1;
  ui.loading.hidden = true;
  const b = engine.backend;
  const where = describeBackend(b);
  const isolation = b.crossOriginIsolated ? '' : ' (not cross-origin isolated, so no threads)';
  setStatus(`Ready: ${engine.model.name} on ${where}${isolation}; ${offline.message}; loaded in ${engine.loadSeconds.toFixed(1)} s`);
  ui.status.title = b.reason;
  document.body.dataset.ready = 'true';
  // For tests, benchmarks and the console.
  /** @type {any} */ (window).pocketlm = { engine, get history() { return history; } };
  setBusy(false);
  ui.prompt.focus();
}

/** @param {boolean} value */
function setBusy(value) {
  busy = value;
  ui.send.disabled = value;
  ui.prompt.disabled = false;
  ui.stop.disabled = !value;
  ui.newChat.disabled = value;
}

/**
 * A chat bubble; returns the element text goes into.
 * @param {'user' | 'assistant'} role
 * @param {string} text
 */
function addMessage(role, text) {
  const item = document.createElement('li');
  item.className = role;
  const who = document.createElement('span');
  who.className = 'visually-hidden';
  who.textContent = role === 'user' ? 'You: ' : 'Model: ';
  const body = document.createElement('p');
  body.textContent = text;
  item.append(who, body);
  ui.messages.append(item);
  item.scrollIntoView({ block: 'end' });
  return body;
}

/** Streams text into an element: pieces are queued and written once per frame. */
function textSink(/** @type {HTMLElement} */ element) {
  const node = element.appendChild(document.createTextNode(''));
  let queued = '';
  let frame = 0;
  const flush = () => {
    frame = 0;
    node.appendData(queued);
    queued = '';
    element.scrollIntoView({ block: 'end' });
  };
  return {
    /** @param {string} text */
    put(text) {
      queued += text;
      if (!frame) frame = requestAnimationFrame(flush);
    },
    end() {
      if (frame) cancelAnimationFrame(frame);
      flush();
    },
  };
}

async function send() {
  const text = ui.prompt.value.trim();
  if (!engine || busy || !text) return;
  clearTimeout(typing);
  ui.prompt.value = '';
  history.push({ role: 'user', content: text });
  addMessage('user', text);
  const answer = addMessage('assistant', '');
  answer.parentElement?.setAttribute('aria-busy', 'true');
  const sink = textSink(answer);
  setBusy(true);
  setStatus(`Answering on ${engine.backend.name.toUpperCase()}…`);
  const options = {
    maxNewTokens: Number(ui.maxTokens.value) || 256,
    temperature: Number(ui.temperature.value) || 0,
    topP: 0.9,
    repetitionPenalty: 1.1,
  };
  try {
    const result = await engine.generate(history, options, (piece) => sink.put(piece));
    sink.end();
    history.push({ role: 'assistant', content: result.text });
    const t = result.timing;
    const stopped = result.stopReason === 'stopped' ? 'stopped; ' : '';
    setStatus(`${stopped}${engine.backend.name.toUpperCase()} · ${t.decodeTokensPerSecond.toFixed(1)} tokens/s · `
      + `first token ${t.timeToFirstToken.toFixed(2)} s · ${t.newTokens} tokens`);
  } catch (error) {
    sink.end();
    history.pop();
    setStatus(`Error: ${error instanceof Error ? error.message : String(error)}`, true);
  } finally {
    answer.parentElement?.removeAttribute('aria-busy');
    setBusy(false);
    ui.prompt.focus();
  }
}

ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  send();
});
ui.prompt.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});
// While the prompt is typed, the engine reads its settled words, so the answer starts sooner.
let typing = 0;
ui.prompt.addEventListener('input', () => {
  clearTimeout(typing);
  typing = window.setTimeout(() => {
    const draft = ui.prompt.value.trimStart();
    if (engine && !busy && draft.includes(' ')) {
      engine.prefill([...history, { role: 'user', content: draft }]).catch(() => undefined);
    }
  }, 300);
});
ui.stop.addEventListener('click', () => engine?.stop());
ui.newChat.addEventListener('click', async () => {
  await engine?.newChat();
  history = [];
  ui.messages.replaceChildren();
  setStatus('New chat');
  ui.prompt.focus();
});

load().catch((error) => {
  setStatus(`Could not start: ${error instanceof Error ? error.message : String(error)}`, true);
  ui.progressText.textContent = '';
});
