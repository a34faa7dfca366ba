// The site's own settings, chosen by its owner at build time (`pocketlm build --title ...`
// or `--config site.toml`) and written into index.html as a JSON data block
// (<script type="application/json" id="page-config">, never executed). Defaults below
// apply to whatever the build left out.

/**
 * @typedef {object} PageConfig
 * @property {string} title
 * @property {string} welcome text shown before the first message
 * @property {string} systemPrompt sent first in every conversation ('' = the model's own)
 * @property {string[]} suggestions prompts offered as buttons
 * @property {number} temperature
 * @property {number} topP
 * @property {number} repetitionPenalty
 * @property {number} maxNewTokens default answer length
 * @property {number} maxNewTokensCap the longest answer a visitor may ask for
 * @property {number | null} maxPromptTokens the longest prompt (conversation) read, or none
 * @property {boolean} kiosk
 * @property {number} idleReset seconds without a touch before a kiosk starts over
 * @property {number} idleWarning seconds of countdown shown before that
 * @property {string} themeColor CSS colour of buttons and accents
 */

/** @type {PageConfig} */
export const DEFAULT_PAGE = {
  title: 'pocketlm',
  welcome: '',
  systemPrompt: '',
  suggestions: [],
  temperature: 0.3,
  topP: 0.9,
  repetitionPenalty: 1.1,
  maxNewTokens: 256,
  maxNewTokensCap: 4096,
  maxPromptTokens: null,
  kiosk: false,
  idleReset: 120,
  idleWarning: 15,
  themeColor: '#1a5fd0',
};

/**
 * The page's settings: the build's, then `?kiosk=1` from the URL.
 * @param {Document} doc
 * @returns {PageConfig}
 */
export function readPage(doc) {
  const block = doc.getElementById('page-config');
  /** @type {Partial<PageConfig>} */
  let given = {};
  try {
    given = block?.textContent ? JSON.parse(block.textContent) : {};
  } catch {
    console.warn('pocketlm: the page settings in index.html are not valid JSON; using defaults');
  }
  const page = { ...DEFAULT_PAGE, ...given };
  const params = new URLSearchParams(doc.defaultView?.location.search ?? '');
  if (params.get('kiosk') === '1') page.kiosk = true;
  return page;
}

/**
 * Show the settings: title, welcome text, suggestion buttons, theme colour, kiosk layout.
 * @param {PageConfig} page
 * @param {Document} doc
 * @param {(prompt: string) => void} onSuggestion
 */
export function applyPage(page, doc, onSuggestion) {
  doc.title = page.title;
  const heading = doc.getElementById('title');
  if (heading) heading.textContent = page.title;
  const welcome = /** @type {HTMLElement} */ (doc.getElementById('welcome'));
  const text = /** @type {HTMLElement} */ (doc.getElementById('welcome-text'));
  text.textContent = page.welcome;
  text.hidden = !page.welcome;
  const list = /** @type {HTMLElement} */ (doc.getElementById('suggestions'));
  list.replaceChildren(...page.suggestions.map((prompt) => {
    const button = doc.createElement('button');
    button.type = 'button';
    button.className = 'suggestion';
    button.textContent = prompt;
    button.addEventListener('click', () => onSuggestion(prompt));
    return button;
  }));
  welcome.hidden = !page.welcome && page.suggestions.length === 0;
  doc.documentElement.style.setProperty('--accent', page.themeColor);
  doc.body.classList.toggle('kiosk', page.kiosk);
}
