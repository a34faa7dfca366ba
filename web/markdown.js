// Answers rendered as Markdown with markdown-it (npm, pinned; its self-contained browser
// build is copied into the site by `pocketlm build`, never fetched from a CDN).
//
// Safety: markdown-it escapes every HTML tag and entity in the source (html: false), and
// refuses javascript:, vbscript:, file: and data: link targets. Images are switched off
// (a picture from another origin would be a request the visitor never asked for), and
// links get rel="noopener noreferrer". So no markup written by the model reaches the DOM:
// only what markdown-it itself produces. Until the library has loaded, or if it cannot,
// answers are shown as plain text. Table column alignment becomes a class (align-left,
// align-center, align-right), since the site's Content-Security-Policy refuses the inline
// style attributes markdown-it writes for it.

const LIBRARY = new URL('./runtime/markdown-it/markdown-it.mjs', import.meta.url).href;

/** @type {any} the markdown-it instance */
let md = null;

/** Load markdown-it; resolves to whether Markdown is available. */
export async function loadMarkdown() {
  try {
    const { default: markdownit } = await import(LIBRARY);
    md = markdownit({ html: false, linkify: false, typographer: false, breaks: true });
    md.disable(['image', 'html_block', 'html_inline']);
    const renderLink = md.renderer.rules.link_open
      ?? ((/** @type {any[]} */ tokens, /** @type {number} */ i, /** @type {any} */ options, /** @type {any} */ _env, /** @type {any} */ self) => self.renderToken(tokens, i, options));
    md.renderer.rules.link_open = (/** @type {any[]} */ tokens, /** @type {number} */ i, /** @type {any} */ options, /** @type {any} */ env, /** @type {any} */ self) => {
      tokens[i].attrSet('rel', 'noopener noreferrer');
      tokens[i].attrSet('target', '_blank');
      return renderLink(tokens, i, options, env, self);
    };
    md.core.ruler.push('alignment_classes', (/** @type {{tokens: any[]}} */ state) => {
      for (const token of state.tokens) {
        if (token.type !== 'th_open' && token.type !== 'td_open') continue;
        const align = /text-align:(left|center|right)/.exec(token.attrGet('style') ?? '');
        token.attrs = (token.attrs ?? []).filter((/** @type {[string, string]} */ [name]) => name !== 'style');
        if (align) token.attrJoin('class', `align-${align[1]}`);
      }
    });
    return true;
  } catch (error) {
    console.warn(`pocketlm: Markdown is unavailable (${error instanceof Error ? error.message : String(error)}); answers stay plain text`);
    return false;
  }
}

/**
 * Draw `text` (the whole answer so far) into `element` as Markdown, with a copy button on
 * each code block. The source text stays on the element (`element.markdown`) for copying.
 * Re-rendering the whole answer once per animation frame shows no flicker: the browser
 * paints the new content in the same frame.
 * @param {HTMLElement} element
 * @param {string} text
 */
export function renderMarkdown(element, text) {
  /** @type {any} */ (element).markdown = text;
  if (!md) {
    element.textContent = text;
    return;
  }
  element.classList.add('markdown');
  element.innerHTML = md.render(text);
  for (const pre of element.querySelectorAll('pre')) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'copy-code';
    button.textContent = 'Copy';
    button.setAttribute('aria-label', 'Copy this code');
    button.addEventListener('click', () => copyText(pre.querySelector('code')?.textContent ?? pre.textContent ?? '', button));
    pre.append(button);
  }
}

/**
 * Put text on the clipboard and say so on the button for a moment.
 * @param {string} text
 * @param {HTMLButtonElement} button
 */
export async function copyText(text, button) {
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = 'Copied';
  } catch {
    button.textContent = 'Copy failed';
  }
  setTimeout(() => { button.textContent = label; }, 1500);
}
