// What the visitor typed and set, made safe to send: text without lone surrogates, and
// sampling settings clamped to the ranges the site allows (with a note saying so).

/**
 * @typedef {object} Limits the site's ranges and defaults (site.json `page`)
 * @property {number} temperature default temperature
 * @property {number} maxNewTokens default answer length, in tokens
 * @property {number} maxNewTokensCap the most an answer may have
 * @property {number} topP
 * @property {number} repetitionPenalty
 *
 * @typedef {{maxNewTokens: number, temperature: number, topP: number, repetitionPenalty: number}} Sampling
 */

/**
 * Text with every lone UTF-16 surrogate (half of a pair, e.g. from a broken paste)
 * replaced by U+FFFD, which any encoder accepts.
 * @param {string} text
 */
export function wellFormed(text) {
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/**
 * A number typed into a field, clamped into [low, high]; an empty or unreadable field
 * gives the default. Returns the value and, when it differs from what was typed, why.
 * @param {string} typed
 * @param {{name: string, low: number, high: number, fallback: number, whole?: boolean}} rule
 * @returns {{value: number, note: string}}
 */
export function clampSetting(typed, rule) {
  const text = typed.trim();
  let value = Number(text);
  if (text === '' || !Number.isFinite(value)) {
    return { value: rule.fallback, note: text === '' ? '' : `${rule.name} "${text}" is not a number; used ${rule.fallback}` };
  }
  if (rule.whole && !Number.isInteger(value)) value = Math.round(value);
  if (value < rule.low) return { value: rule.low, note: `${rule.name} ${text} is below ${rule.low}; used ${rule.low}` };
  if (value > rule.high) return { value: rule.high, note: `${rule.name} ${text} is above ${rule.high}; used ${rule.high}` };
  return { value, note: value === Number(text) ? '' : `${rule.name} ${text} is not a whole number; used ${value}` };
}

/**
 * The sampling options for an answer from the settings fields, clamped the same way
 * whichever way the visitor sends (button or Enter).
 * @param {{temperature: string, maxNewTokens: string}} typed the fields' values
 * @param {Limits} limits
 * @returns {{options: Sampling, notes: string[]}}
 */
export function readSettings(typed, limits) {
  const temperature = clampSetting(typed.temperature, { name: 'Temperature', low: 0, high: 2, fallback: limits.temperature });
  const tokens = clampSetting(typed.maxNewTokens, {
    name: 'Max new tokens', low: 1, high: limits.maxNewTokensCap, fallback: limits.maxNewTokens, whole: true,
  });
  return {
    options: {
      maxNewTokens: tokens.value,
      temperature: temperature.value,
      topP: limits.topP,
      repetitionPenalty: limits.repetitionPenalty,
    },
    notes: [temperature.note, tokens.note].filter(Boolean),
  };
}
