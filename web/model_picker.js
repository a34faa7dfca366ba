// The model picker of a site that bundles several models: each model's name, download size
// and licence, whether it is downloaded already, "Use" and "Delete download". The choice is
// remembered in this browser; `?model=ID` in the address picks one directly.

import { cachingAvailable, deleteModel, modelState } from './model_cache.js';

/** @typedef {import('./worker.js').SiteModel} SiteModel */

const REMEMBERED = 'pocketlm-model';

/**
 * The model to load without asking: the page address's `?model=`, the one chosen on an
 * earlier visit, or the only one; null when the visitor has to choose.
 * @param {SiteModel[]} models
 * @param {boolean} kiosk kiosks never wait for a choice: the first model then
 * @returns {SiteModel | null}
 */
export function presetModel(models, kiosk) {
  const byId = (/** @type {string | null} */ id) => models.find((m) => m.id === id) ?? null;
  const asked = byId(new URLSearchParams(location.search).get('model'));
  if (asked) return asked;
  if (models.length === 1) return models[0];
  let remembered = null;
  try { remembered = byId(localStorage.getItem(REMEMBERED)); } catch { /* storage blocked */ }
  return remembered ?? (kiosk ? models[0] : null);
}

/** @param {SiteModel} model */
export function remember(model) {
  try { localStorage.setItem(REMEMBERED, model.id); } catch { /* storage blocked */ }
}

/** @param {number} bytes */
const megabytes = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

export class ModelPicker {
  /**
   * @param {HTMLElement} section the picker (hidden until shown)
   * @param {HTMLUListElement} list where the models are listed
   * @param {HTMLButtonElement} close "Back to the chat"
   * @param {SiteModel[]} models
   */
  constructor(section, list, close, models) {
    this.section = section;
    this.list = list;
    this.close = close;
    this.models = models;
  }

  /**
   * Show the list until a model is chosen (resolves with it) or, when `current` is given,
   * until the visitor goes back to it (resolves with null).
   * @param {SiteModel | null} current the model in use, which cannot be deleted
   * @returns {Promise<SiteModel | null>}
   */
  choose(current) {
    return new Promise((resolve) => {
      const done = (/** @type {SiteModel | null} */ model) => {
        this.section.hidden = true;
        document.body.classList.remove('picking');
        this.close.onclick = null;
        resolve(model);
      };
      this.close.onclick = () => done(null);
      // Shown once the list is current: the last opening's states (a model since downloaded
      // or put in use) are never on screen.
      this.render(current, done).finally(() => {
        this.section.hidden = false;
        document.body.classList.add('picking');
        this.close.hidden = current === null;
        /** @type {HTMLButtonElement | null} */ (this.list.querySelector('button:not([disabled])'))?.focus();
      });
    });
  }

  /**
   * @param {SiteModel | null} current
   * @param {(model: SiteModel) => void} done
   */
  async render(current, done) {
    const states = await Promise.all(this.models.map((m) => modelState(m)));
    this.list.replaceChildren(...this.models.map((model, i) => {
      const item = document.createElement('li');
      item.className = 'model';
      item.dataset.model = model.id;
      const name = document.createElement('strong');
      name.textContent = model.name;
      const facts = document.createElement('span');
      facts.className = 'model-facts';
      const licence = model.license ? `licence ${model.license}` : 'licence not stated';
      const state = states[i] === 'cached' ? 'downloaded' : 'not downloaded yet';
      facts.textContent = `${megabytes(model.bytes)} · ${licence} · ${model === current ? 'in use' : state}`;
      const use = document.createElement('button');
      use.type = 'button';
      use.className = 'use-model';
      use.textContent = model === current ? 'In use' : 'Use';
      use.disabled = model === current;
      use.setAttribute('aria-label', `Use ${model.name}`);
      use.addEventListener('click', () => done(model));
      item.append(name, facts, use);
      if (states[i] !== 'absent' && model !== current && cachingAvailable()) {
        const remove = document.createElement('button');
        remove.type = 'button';
        remove.className = 'delete-model';
        remove.textContent = 'Delete download';
        remove.setAttribute('aria-label', `Delete the download of ${model.name}`);
        remove.addEventListener('click', async () => {
          remove.disabled = true;
          await deleteModel(model);
          await this.render(current, done);
        });
        item.append(remove);
      }
      return item;
    }));
  }
}
