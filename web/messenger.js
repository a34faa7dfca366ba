// A tiny promise-based messenger between the page and its worker.
//
// Requests are `{id, type, ...fields}`. Each gets exactly one answer, `{id, type: 'reply',
// result}` or `{id, type: 'error', error}`, and on the way any number of
// `{id, type: 'stream', data}` messages (tokens). Messages without an id are events
// (`{type: 'progress', ...}`) for whoever listens.

/**
 * @typedef {{id?: number, type: string, [field: string]: any}} Message
 * @typedef {(data: any) => void} StreamHandler
 */

/** The calling side (the page). */
export class Messenger {
  /**
   * @param {Worker} worker
   * @param {(event: Message) => void} [onEvent] receives messages that answer no request
   */
  constructor(worker, onEvent = () => {}) {
    this.worker = worker;
    this.nextId = 1;
    /** @type {Map<number, {resolve: (value: any) => void, reject: (error: Error) => void, onStream?: StreamHandler}>} */
    this.pending = new Map();
    worker.addEventListener('message', (event) => this.receive(event.data, onEvent));
    worker.addEventListener('error', (event) => this.failAll(new Error(event.message || 'the worker failed to start')));
  }

  /**
   * Send a request; resolves with the reply, rejects with the error.
   * @param {string} type
   * @param {Record<string, any>} [fields]
   * @param {StreamHandler} [onStream] receives the request's stream messages
   * @returns {Promise<any>}
   */
  request(type, fields = {}, onStream) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onStream });
      this.worker.postMessage({ ...fields, id, type });
    });
  }

  /**
   * @param {Message} message
   * @param {(event: Message) => void} onEvent
   */
  receive(message, onEvent) {
    const waiting = message.id === undefined ? undefined : this.pending.get(message.id);
    if (!waiting) {
      onEvent(message);
      return;
    }
    if (message.type === 'stream') {
      waiting.onStream?.(message.data);
      return;
    }
    this.pending.delete(/** @type {number} */ (message.id));
    if (message.type === 'error') waiting.reject(new Error(message.error));
    else waiting.resolve(message.result);
  }

  /** @param {Error} error */
  failAll(error) {
    for (const waiting of this.pending.values()) waiting.reject(error);
    this.pending.clear();
  }
}

/**
 * The answering side (the worker): `handlers[type](message, stream)` returns the result
 * (or a promise of it); a throw becomes an error reply; an unknown type is an error too.
 * @param {Record<string, (message: Message, stream: StreamHandler) => any>} handlers
 * @param {{postMessage: (message: any) => void, addEventListener: Function}} scope
 */
export function serve(handlers, scope) {
  scope.addEventListener('message', async (/** @type {MessageEvent<Message>} */ event) => {
    const message = event.data;
    const { id, type } = message;
    try {
      const handler = Object.hasOwn(handlers, type) ? handlers[type] : undefined;
      if (!handler) throw new Error(`unknown request type ${JSON.stringify(type)}`);
      const result = await handler(message, (data) => scope.postMessage({ id, type: 'stream', data }));
      scope.postMessage({ id, type: 'reply', result });
    } catch (error) {
      scope.postMessage({ id, type: 'error', error: errorText(error) });
    }
  });
}

/**
 * One line for an error, whatever was thrown (a Python exception keeps its last line).
 * @param {unknown} error
 */
export function errorText(error) {
  if (error && typeof error === 'object' && 'type' in error && 'message' in error
      && typeof error.message === 'string' && error.constructor?.name === 'PythonError') {
    const lines = error.message.trim().split('\n');
    return lines[lines.length - 1];
  }
  return error instanceof Error ? error.message : String(error);
}
