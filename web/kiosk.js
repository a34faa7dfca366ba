// Kiosk mode (`pocketlm build --kiosk`, or `?kiosk=1`): a touch layout without settings or
// links out, a visible "Start over", and privacy between visitors: after `idleReset`
// seconds without a touch the conversation is wiped, announced by a countdown during the
// last `idleWarning` seconds. Time is read from Date.now() once a second, so a page whose
// clock jumps (a test advancing it, a machine waking up) resets at the next tick.

/**
 * @typedef {object} KioskHooks
 * @property {() => void} reset wipe the conversation (screen, history, the engine's cache)
 * @property {() => boolean} hasConversation whether there is anything to wipe
 * @property {() => boolean} busy whether an answer is being written (not idle)
 */

export class IdleReset {
  /**
   * @param {{seconds: number, warning: number, banner: HTMLElement, hooks: KioskHooks}} options
   */
  constructor({ seconds, warning, banner, hooks }) {
    this.seconds = seconds;
    this.warning = Math.min(warning, seconds);
    this.banner = banner;
    this.hooks = hooks;
    this.deadline = Date.now() + seconds * 1000;
    this.timer = 0;
  }

  /** Begin watching: any touch, click, key or scroll counts as activity. */
  start() {
    for (const type of ['pointerdown', 'keydown', 'input', 'wheel', 'touchstart']) {
      document.addEventListener(type, () => this.touch(), { capture: true, passive: true });
    }
    this.timer = window.setInterval(() => this.tick(), 1000);
  }

  /** Activity: the countdown starts again from the full time. */
  touch() {
    this.deadline = Date.now() + this.seconds * 1000;
    this.banner.hidden = true;
  }

  tick() {
    if (this.hooks.busy() || !this.hooks.hasConversation()) {
      this.touch();
      return;
    }
    const left = Math.ceil((this.deadline - Date.now()) / 1000);
    if (left <= 0) {
      this.touch();
      this.hooks.reset();
    } else if (left <= this.warning) {
      this.banner.textContent = `Starting over in ${left} s for the next visitor. Touch the screen to continue.`;
      this.banner.hidden = false;
    }
  }
}

/**
 * Turn the page into a kiosk: "Start over" instead of "New chat", no settings panel, no
 * navigation away from the site, and the idle reset.
 * @param {import('./site_page.js').PageConfig} page
 * @param {KioskHooks} hooks
 * @returns {IdleReset}
 */
export function setUpKiosk(page, hooks) {
  document.body.classList.add('kiosk');
  const newChat = /** @type {HTMLElement} */ (document.getElementById('new-chat'));
  newChat.textContent = 'Start over';
  document.getElementById('settings')?.remove();
  // No way out of the site: links to other origins do nothing, new windows are refused.
  document.addEventListener('click', (event) => {
    const link = event.target instanceof Element ? event.target.closest('a[href]') : null;
    if (link instanceof HTMLAnchorElement && (link.origin !== location.origin || link.target)) event.preventDefault();
  }, { capture: true });
  document.addEventListener('contextmenu', (event) => event.preventDefault());
  const banner = /** @type {HTMLElement} */ (document.getElementById('idle-banner'));
  const idle = new IdleReset({ seconds: page.idleReset, warning: page.idleWarning, banner, hooks });
  idle.start();
  return idle;
}
