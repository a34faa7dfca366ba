// The conversation on screen: bubbles, streamed text, and notes or errors placed next to
// the message they concern. Text from the model or the visitor is inserted as text, never
// as HTML. The newest line is kept in view inside the scrolling area, above the input.

/**
 * @typedef {object} Bubble
 * @property {HTMLLIElement} item the list item
 * @property {HTMLElement} body where the message's text goes
 */

export class ChatView {
  /**
   * @param {HTMLOListElement} list the conversation (role=log)
   * @param {HTMLElement} scroller the element that scrolls (holds the list)
   */
  constructor(list, scroller) {
    this.list = list;
    this.scroller = scroller;
    /** whether the newest line was in view at the last scroll (kept when the area shrinks) */
    this.atEnd = true;
    scroller.addEventListener('scroll', () => { this.atEnd = this.nearEnd(); }, { passive: true });
    // The input area grows or the window turns: keep the newest line where it was.
    new ResizeObserver(() => { if (this.atEnd) this.reveal(true); }).observe(scroller);
  }

  /** Whether the scrolling area shows its end (within a few lines). */
  nearEnd() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  /**
   * Append a message.
   * @param {'user' | 'assistant'} role
   * @param {string} text
   * @returns {Bubble}
   */
  add(role, text) {
    const item = document.createElement('li');
    item.className = role;
    const who = document.createElement('span');
    who.className = 'visually-hidden';
    who.textContent = role === 'user' ? 'You: ' : 'Model: ';
    const body = document.createElement(role === 'assistant' ? 'div' : 'p'); // answers hold Markdown blocks
    body.className = 'text';
    body.textContent = text;
    item.append(who, body);
    this.list.append(item);
    this.reveal(true);
    return { item, body };
  }

  /**
   * A short note under a message (e.g. a setting that was clamped).
   * @param {Bubble} bubble
   * @param {string} text
   */
  note(bubble, text) {
    const note = document.createElement('p');
    note.className = 'note';
    note.textContent = text;
    bubble.item.append(note);
    this.reveal(true);
  }

  /**
   * An error, in the bubble it concerns, announced to screen readers.
   * @param {Bubble} bubble
   * @param {string} text
   */
  error(bubble, text) {
    bubble.item.classList.add('failed');
    const error = document.createElement('p');
    error.className = 'error';
    error.setAttribute('role', 'alert');
    error.textContent = text;
    bubble.item.append(error);
    this.reveal(true);
  }

  /**
   * Change the page (buttons under the last message, a status line that wraps), keeping
   * the newest line in view when it was. The change is measured at once: a size the
   * conversation has only between two frames is never seen by the ResizeObserver.
   * @param {() => void} change
   */
  update(change) {
    const follow = this.nearEnd();
    change();
    if (follow) this.reveal(true);
  }

  /** Remove every message. */
  clear() {
    this.list.replaceChildren();
  }

  /**
   * Scroll so the newest line shows above the input area: always when `force`, otherwise
   * only when the visitor has not scrolled up to read.
   * @param {boolean} [force]
   */
  reveal(force = false) {
    if (force || this.nearEnd()) {
      this.scroller.scrollTop = this.scroller.scrollHeight;
      this.atEnd = true;
    }
  }

  /**
   * Streams text into a message: pieces are queued and written once per animation frame.
   * @param {Bubble} bubble
   * @param {(element: HTMLElement, text: string) => void} [render] draws the whole text so
   *   far (default: as plain text)
   */
  sink(bubble, render) {
    let text = '';
    let frame = 0;
    const draw = render ?? ((/** @type {HTMLElement} */ element, /** @type {string} */ all) => { element.textContent = all; });
    const flush = () => {
      frame = 0;
      const follow = this.nearEnd();
      draw(bubble.body, text);
      if (follow) this.reveal(true);
    };
    return {
      /** @param {string} piece */
      put: (piece) => {
        text += piece;
        if (!frame) frame = requestAnimationFrame(flush);
      },
      end: () => {
        if (frame) cancelAnimationFrame(frame);
        flush();
      },
      get text() { return text; },
    };
  }
}

/**
 * One line for the visitor from an engine error: a Python exception's class name is dropped
 * ("pocketlm_runtime.generator.ContextFull: 9000 tokens ..." -> "9000 tokens ...").
 * @param {unknown} error
 */
export function visitorMessage(error) {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/^[A-Za-z_][\w.]*(Error|Full|Exception): /, '');
}
