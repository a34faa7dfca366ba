// The chat page. It only renders: the model runs in the engine's worker. The site's
// settings (title, welcome, system prompt, suggestions, sampling defaults, caps) come from
// site.json's `page` section, written by `pocketlm build`.

import { ChatView, visitorMessage } from './chat_view.js';
import { createEngine, describeBackend, unsupportedReason } from './engine.js';
import { forgetSite } from './forget.js';
import { setUpKiosk } from './kiosk.js';
import { copyText, loadMarkdown, renderMarkdown } from './markdown.js';
import { cachingAvailable, downloadModel, modelState } from './model_cache.js';
import { ModelPicker, presetModel, remember } from './model_picker.js';
import { prepareOffline } from './offline.js';
import { readSettings, wellFormed } from './settings.js';
import { applyPage, readPage } from './site_page.js';

/** @typedef {import('./engine.js').Engine} Engine */
/** @typedef {import('./engine.js').ChatMessage} ChatMessage */
/** @typedef {import('./chat_view.js').Bubble} Bubble */
/** @typedef {import('./worker.js').SiteModel} SiteModel */

/** @param {string} id */
const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const ui = {
  status: byId('status'),
  update: /** @type {HTMLButtonElement} */ (byId('update')),
  loading: byId('loading'),
  progress: /** @type {HTMLProgressElement} */ (byId('progress')),
  progressText: byId('progress-text'),
  main: byId('chat'),
  messages: /** @type {HTMLOListElement} */ (byId('messages')),
  welcome: byId('welcome'),
  suggestions: byId('suggestions'),
  composer: /** @type {HTMLFormElement} */ (byId('composer')),
  prompt: /** @type {HTMLTextAreaElement} */ (byId('prompt')),
  send: /** @type {HTMLButtonElement} */ (byId('send')),
  stop: /** @type {HTMLButtonElement} */ (byId('stop')),
  newChat: /** @type {HTMLButtonElement} */ (byId('new-chat')),
  temperature: /** @type {HTMLInputElement} */ (byId('temperature')),
  maxTokens: /** @type {HTMLInputElement} */ (byId('max-tokens')),
  forget: /** @type {HTMLButtonElement} */ (byId('forget')),
  changeModel: /** @type {HTMLButtonElement} */ (byId('change-model')),
  models: byId('models'),
  modelList: /** @type {HTMLUListElement} */ (byId('model-list')),
  modelsClose: /** @type {HTMLButtonElement} */ (byId('models-close')),
};

const view = new ChatView(ui.messages, ui.main);
const page = readPage(document);

/** @type {ChatMessage[]} */
let history = [];
/** @type {Engine | null} */
let engine = null;
let busy = false;
/** Stop (or Escape) aborts it: it ends the current answer, even one not yet at the engine. */
let stopper = new AbortController();
/** Bumped by New chat: an answer that arrives for an older conversation is dropped. */
let conversation = 0;
/** @type {Promise<unknown>} the engine forgetting the last conversation */
let resetting = Promise.resolve();
/** @type {SiteModel | null} the model loaded (or being loaded) */
let currentModel = null;
/** @type {ModelPicker | null} */
let picker = null;
/** @type {import('./model_cache.js').SiteFile[]} manifest.json's files */
let siteFiles = [];
/** The loading bar, in bytes: the runtime (service worker's precache), the chosen model's
 *  download, and the engine's own reads, which run over both. */
const bar = { runtime: 0, runtimeTotal: 0, model: 0, read: 0 };

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
  view.update(() => {
    ui.status.textContent = text;
    ui.status.setAttribute('role', alert ? 'alert' : 'status');
  });
}

async function load() {
  applyPage(page, document, (text) => send(text));
  ui.temperature.value = String(page.temperature);
  ui.maxTokens.value = String(page.maxNewTokens);
  ui.maxTokens.max = String(page.maxNewTokensCap);
  const unsupported = unsupportedReason();
  if (unsupported) throw new Error(unsupported); // before downloading hundreds of megabytes
  const markdown = loadMarkdown();
  const [site, manifest] = await Promise.all([fetchJson('site.json'), fetchJson('manifest.json')]);
  siteFiles = manifest.files;
  /** @type {SiteModel[]} */
  const models = site.models;
  picker = new ModelPicker(ui.models, ui.modelList, ui.modelsClose, models);
  bar.runtimeTotal = siteFiles.reduce((/** @type {number} */ sum, /** @type {any} */ f) => sum + (f.lazy || f.model ? 0 : f.size), 0);
  setStatus('Downloading…');
  // The runtime downloads while the visitor chooses a model (sites with several).
  const offlineReady = prepareOffline({
    buildId: manifest.build_id,
    onProgress: (loaded) => { bar.runtime = loaded; showBar('Downloading'); },
    onUpdate: (apply) => {
      ui.update.hidden = false;
      ui.update.onclick = apply;
    },
  });
  let chosen = presetModel(models, page.kiosk);
  if (!chosen) {
    ui.loading.hidden = true;
    setStatus('Choose a model to download');
    chosen = /** @type {SiteModel} */ (await picker.choose(null));
    ui.loading.hidden = false;
  }
  showBar('Downloading', chosen);
  // The model downloads beside the runtime: into its own cache, which the service worker reads.
  const modelReady = fetchModel(chosen);
  const offline = await offlineReady;
  await modelReady;
  await loadModel(chosen);
  await markdown;
  showReady(`${offline.message}; loaded in ${engine?.loadSeconds.toFixed(1)} s`);
  document.body.dataset.ready = 'true';
  ui.changeModel.hidden = models.length < 2 || page.kiosk;
  // For tests, benchmarks and the console.
  /** @type {any} */ (window).pocketlm = {
    get engine() { return engine; }, page, get history() { return history; }, get drafting() { return drafting; },
    get model() { return currentModel?.id; },
  };
  if (page.kiosk) {
    setUpKiosk(page, {
      reset: newChat,
      hasConversation: () => history.length > 0 || ui.prompt.value !== '' || ui.messages.childElementCount > 0,
      busy: () => busy,
    });
    // Unattended: check now and then that the model still answers, and restart it if not.
    window.setInterval(() => { if (!busy && engine && !recovering) engine.ping().then((alive) => { if (!alive) recover(); }); }, 15_000);
  }
  setBusy(false);
  ui.prompt.focus();
}

/**
 * The loading bar: whichever of the downloads and the engine's reads is further along.
 * @param {string} message
 * @param {SiteModel | null} [model]
 */
function showBar(message, model = currentModel) {
  const total = bar.runtimeTotal + (model?.bytes ?? 0);
  const loaded = Math.min(Math.max(bar.runtime + bar.model, bar.read), total);
  ui.progress.value = total ? loaded / total : 0;
  ui.progressText.textContent = `${message} ${megabytes(loaded)} of ${megabytes(total)}`;
}

/**
 * Download `model` into its cache, when this browser keeps one and it is not there yet.
 * @param {SiteModel} model
 */
async function fetchModel(model) {
  currentModel = model;
  remember(model);
  bar.model = 0;
  bar.read = 0;
  if (cachingAvailable() && (await modelState(model)) !== 'cached') {
    setStatus(`Downloading ${model.name}…`);
    await downloadModel(model, siteFiles, (loaded) => { bar.model = loaded; showBar('Downloading'); });
  }
}

/**
 * Start an engine on `model` (fetched before, see fetchModel).
 * @param {SiteModel} model
 */
async function loadModel(model) {
  ui.loading.hidden = false;
  setStatus('Starting the model…');
  engine = await startEngine((progress) => { bar.read = progress.loaded; showBar(progress.message || 'Loading'); });
  ui.progress.value = 1;
  ui.loading.hidden = true;
  document.body.dataset.model = model.id;
}

/** "Models": the picker over the chat; another model replaces the engine (and the chat). */
async function changeModel() {
  if (!picker || !currentModel) return;
  if (busy) stopAnswer();
  ui.changeModel.disabled = true;
  const next = await picker.choose(currentModel);
  ui.changeModel.disabled = false;
  if (!next || next === currentModel) return;
  const old = engine;
  engine = null;
  old?.terminate();
  newChat();
  setBusy(true);
  ui.changeModel.disabled = true;
  delete document.body.dataset.model;
  try {
    ui.loading.hidden = false;
    await fetchModel(next);
    await loadModel(next);
    showReady('switched');
  } catch (error) {
    setStatus(`Could not start ${next.name}: ${visitorMessage(error)}`, true);
  } finally {
    ui.changeModel.disabled = false;
    setBusy(engine === null);
  }
}

/**
 * A new engine (from the service worker's cache after the first visit).
 * @param {(progress: import('./engine.js').Progress) => void} [onProgress]
 */
function startEngine(onProgress) {
  return createEngine({
    model: currentModel?.id,
    onProgress,
    onBackendChange: (moved) => {
      setStatus(`The GPU failed; going on with ${describeBackend(moved)}…`);
      ui.status.title = moved.reason;
    },
  });
}

/** @param {string} extra */
function showReady(extra) {
  if (!engine) return;
  const b = engine.backend;
  const where = describeBackend(b);
  const isolation = b.crossOriginIsolated ? '' : ' (not cross-origin isolated, so no threads)';
  setStatus(`Ready: ${engine.model.name} on ${where}${isolation}; ${extra}`);
  ui.status.title = b.reason;
}

// ---- recovery: a worker that died or failed is replaced, a few times at most --------------

/** @type {Promise<void> | null} */
let recovering = null;
/** "Forget this site" was pressed: the engine stays stopped. */
let forgotten = false;
/** @type {number[]} when the last restarts happened (ms) */
const restarts = [];
const RESTARTS_ALLOWED = 3; // within ten minutes; then the page asks for a person instead

/** Replace the engine with a new one; the conversation is read again at the next question. */
function recover() {
  if (forgotten) return Promise.resolve();
  if (recovering) return recovering;
  const now = Date.now();
  while (restarts.length && now - restarts[0] > 600_000) restarts.shift();
  if (restarts.length >= RESTARTS_ALLOWED) {
    setStatus('The model keeps failing; it needs someone to look at this machine.', true);
    return Promise.resolve();
  }
  restarts.push(now);
  const old = engine;
  engine = null;
  old?.terminate();
  setStatus('The model stopped; restarting it…');
  recovering = startEngine().then((fresh) => {
    engine = fresh;
    showReady('restarted');
  }, (error) => {
    setStatus(`The model could not restart: ${visitorMessage(error)}`, true);
  }).finally(() => { recovering = null; });
  return recovering;
}

/** Errors that are the visitor's to fix (the prompt, a setting), not the engine's. */
const VISITOR_ERRORS = /do not fit the model's context|this site takes at most|must be|unknown generation option|prompt is empty/;

/** @param {boolean} value */
function setBusy(value) {
  busy = value;
  if (value) stopper = new AbortController();
  ui.send.disabled = value;
  ui.prompt.disabled = false;
  ui.stop.disabled = !value;
  ui.newChat.disabled = false;
}

/** Stop the answer being written (the Stop button and Escape). */
function stopAnswer() {
  if (!busy) return;
  stopper.abort();
}

/** The conversation as the model reads it: the site's system prompt first. */
function withSystem(/** @type {ChatMessage[]} */ messages) {
  return page.systemPrompt ? [{ role: 'system', content: page.systemPrompt }, ...messages] : messages;
}

/**
 * Send the text in the box (or `given`, e.g. a suggested prompt) and stream the answer.
 * @param {string} [given]
 */
async function send(given) {
  const text = wellFormed(given ?? ui.prompt.value).trim();
  if (recovering) await recovering;
  if (!engine) {
    setStatus('The model is still loading; your message stays in the box.');
    return;
  }
  if (busy) {
    setStatus('An answer is still coming: Stop it (Escape) or wait.');
    return;
  }
  if (!text) {
    ui.prompt.focus();
    return;
  }
  const { options, notes } = readSettings({ temperature: ui.temperature.value, maxNewTokens: ui.maxTokens.value }, page);
  ui.temperature.value = String(options.temperature);
  ui.maxTokens.value = String(options.maxNewTokens);
  clearTimeout(typing);
  drafted = '';
  ui.prompt.value = '';
  fitPrompt();
  setBusy(true);
  ui.welcome.hidden = true;
  const ours = conversation;
  const user = view.add('user', text);
  const answer = view.add('assistant', '');
  for (const note of notes) view.note(user, note);
  answer.item.setAttribute('aria-busy', 'true');
  const sink = view.sink(answer, renderMarkdown);
  const asked = [...history, { role: 'user', content: text }];
  const { signal } = stopper;
  try {
    await resetting;
    if (ours !== conversation) return;
    if (!(await engine.ping())) await recover();
    if (!engine) throw new Error('the model is not running; it needs someone to look at this machine');
    setStatus(`Answering on ${engine.backend.name.toUpperCase()}…`);
    const result = await engine.generate(withSystem(asked),
      { ...options, maxPromptTokens: page.maxPromptTokens ?? undefined, signal },
      (piece) => { if (ours === conversation) sink.put(piece); });
    if (ours !== conversation) return;
    sink.end();
    history = [...asked, { role: 'assistant', content: result.text }];
    view.update(() => {
      addCopyButton(answer, result.text);
      addTurnActions(user, answer, text, asked.slice(0, -1));
    });
    const t = result.timing;
    if (result.stopReason === 'stopped' && !result.text) view.note(answer, 'Stopped before the answer began.');
    const stopped = result.stopReason === 'stopped' ? 'stopped; ' : '';
    setStatus(`${stopped}${engine.backend.name.toUpperCase()} · ${t.decodeTokensPerSecond.toFixed(1)} tokens/s · `
      + `first token ${t.timeToFirstToken.toFixed(2)} s · ${t.newTokens} tokens`);
  } catch (error) {
    if (ours !== conversation) return;
    sink.end();
    // The error concerns the question (too long) or, once text came, the answer.
    const message = visitorMessage(error);
    const theirs = VISITOR_ERRORS.test(message);
    const shown = theirs ? message : 'The model failed while answering and is restarting; please ask again.';
    if (!theirs) console.error(`pocketlm: ${message}`);
    if (sink.text) view.error(answer, shown);
    else {
      answer.item.remove();
      view.error(user, shown);
    }
    setStatus('The last message was not answered; see the note under it.', true);
    if (!theirs) recover();
  } finally {
    answer.item.removeAttribute('aria-busy');
    if (ours === conversation) {
      setBusy(false);
      ui.prompt.focus();
    }
  }
}

/**
 * A button under an answer that copies its text (the Markdown source, as written).
 * @param {Bubble} bubble
 * @param {string} text
 */
function addCopyButton(bubble, text) {
  if (!text) return;
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'copy-answer';
  button.textContent = 'Copy';
  button.setAttribute('aria-label', 'Copy this answer');
  button.addEventListener('click', () => copyText(text, button));
  bubble.item.append(button);
}

/**
 * "Regenerate" under the last answer and "Edit" under the last question (only the last
 * turn has them): both take the turn back out of the conversation, then ask again or put
 * the question back in the box.
 * @param {Bubble} user
 * @param {Bubble} answer
 * @param {string} text the question
 * @param {ChatMessage[]} before the conversation before this turn
 */
function addTurnActions(user, answer, text, before) {
  for (const old of ui.messages.querySelectorAll('.turn-action')) old.remove();
  const takeBack = () => {
    if (busy) return false;
    history = before;
    user.item.remove();
    answer.item.remove();
    return true;
  };
  const action = (/** @type {Bubble} */ bubble, /** @type {string} */ label, /** @type {() => void} */ run) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'turn-action';
    button.textContent = label;
    button.addEventListener('click', run);
    bubble.item.append(button);
  };
  action(answer, 'Regenerate', () => { if (takeBack()) send(text); });
  action(user, 'Edit', () => {
    if (!takeBack()) return;
    ui.prompt.value = text;
    fitPrompt();
    ui.prompt.focus();
  });
}

/** Forget the conversation at once on screen; the engine catches up in the background. */
function newChat() {
  conversation += 1;
  history = [];
  view.clear();
  ui.welcome.hidden = !page.welcome && page.suggestions.length === 0;
  clearTimeout(typing);
  drafted = '';
  if (engine) resetting = engine.newChat().catch(() => recover());
  setBusy(false);
  setStatus('New chat');
  ui.prompt.focus();
}

/** The box grows with its text up to its CSS max-height, then scrolls. */
function fitPrompt() {
  const follow = view.nearEnd(); // before the box changes the conversation's height
  ui.prompt.style.height = 'auto';
  ui.prompt.style.height = `${ui.prompt.scrollHeight + 2}px`;
  if (follow) view.reveal(true);
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
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && busy) {
    event.preventDefault();
    stopAnswer();
  }
});
// While the prompt is typed, the engine reads its settled words, so the answer starts
// sooner; a changed or deleted draft cancels the reading of the old one.
let typing = 0;
let drafted = '';
/** @type {Promise<unknown>} the last draft sent to be read */
let drafting = Promise.resolve();
ui.prompt.addEventListener('input', () => {
  fitPrompt();
  clearTimeout(typing);
  typing = window.setTimeout(() => {
    const draft = wellFormed(ui.prompt.value).trimStart();
    if (!engine || busy || draft === drafted) return;
    const settled = draft.includes(' ');
    if (settled) drafting = engine.prefill(withSystem([...history, { role: 'user', content: draft }])).catch(() => undefined);
    else if (drafted) drafting = engine.cancelDraft().catch(() => undefined);
    drafted = settled ? draft : '';
  }, 300);
});
ui.stop.addEventListener('click', stopAnswer);
ui.newChat.addEventListener('click', newChat);
ui.changeModel.addEventListener('click', changeModel);
ui.forget.addEventListener('click', async () => {
  if (!window.confirm('Delete the model, the conversation and everything else this site keeps in this browser?')) return;
  forgotten = true; // no restart of the engine from here on
  const old = engine;
  engine = null;
  old?.terminate();
  newChat();
  setBusy(true);
  const gone = await forgetSite();
  setStatus(`Forgotten: ${gone.caches} cache${gone.caches === 1 ? '' : 's'} and the offline copy deleted; `
    + 'reloading downloads the site again.');
});

load().catch((error) => {
  setStatus(`Could not start: ${visitorMessage(error)}`, true);
  ui.progressText.textContent = '';
});
