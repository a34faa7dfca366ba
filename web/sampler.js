// Sampling over the whole last row of logits: pure functions of (row, settings, previous
// ids, uniform number), the same rules as pocketlm_runtime/sampling.py (the reference) and
// the numpy version in pocketlm_runtime/native.py:
//   1. repetition penalty (transformers' RepetitionPenaltyLogitsProcessor): the logit x of
//      each id in `previous` becomes x / penalty if x > 0, else x * penalty (1 = off);
//   2. temperature: logits / temperature; 0 = greedy (argmax after step 1, no draw);
//   3. top-k: keep the logits >= the k-th highest (ties kept); 0 = off, k >= vocab = all;
//   4. top-p: drop the least likely kept tokens while their cumulative probability, in
//      ascending order, is <= 1 - topP; the most likely always stays; 1 = off;
//   5. softmax over the kept tokens; the pick is the first kept id, in increasing id
//      order, at which the cumulative probability exceeds `uniform` (in [0, 1)).
// Logits arithmetic is float32 (Math.fround) like the numpy and torch versions;
// probabilities are float64.

/**
 * @typedef {object} SamplingSettings
 * @property {number} temperature 0 = greedy
 * @property {number} topK 0 = off
 * @property {number} topP in (0, 1]; 1 = off
 * @property {number} repetitionPenalty > 0; 1 = off
 */

/** @typedef {{ids: Int32Array, probs: Float64Array}} Kept ids in increasing order */

/** Reused between calls: a copy of the row for the penalty, and a seen-id mark per id. */
let scratch = new Float32Array(0);
let seen = new Uint8Array(0);

/**
 * The row after the repetition penalty: `row` itself when nothing changes, else a copy.
 * @param {Float32Array} row
 * @param {number} penalty
 * @param {ArrayLike<number>} previous
 * @returns {Float32Array}
 */
export function penalize(row, penalty, previous) {
  if (penalty === 1 || previous.length === 0) return row;
  if (scratch.length !== row.length) {
    scratch = new Float32Array(row.length);
    seen = new Uint8Array(row.length);
  }
  scratch.set(row);
  const p = Math.fround(penalty);
  for (let j = 0; j < previous.length; j++) {
    const id = previous[j];
    if (id < 0 || id >= row.length || seen[id]) continue;
    seen[id] = 1;
    const x = row[id];
    scratch[id] = x > 0 ? Math.fround(x / p) : Math.fround(x * p);
  }
  for (let j = 0; j < previous.length; j++) {
    const id = previous[j];
    if (id >= 0 && id < row.length) seen[id] = 0;
  }
  return scratch;
}

/**
 * The first index of the highest value.
 * @param {Float32Array} row
 */
export function argmax(row) {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/**
 * The k-th highest value of `values` (1 <= k < length).
 * @param {Float32Array} values
 * @param {number} k
 */
function kthHighest(values, k) {
  if (k > 64) return Float32Array.from(values).sort()[values.length - k];
  // A small sorted buffer of the k highest: one comparison per value in the common case.
  const top = new Float32Array(k).fill(-Infinity);
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    if (!(x > top[k - 1])) continue;
    let j = k - 1;
    while (j > 0 && x > top[j - 1]) {
      top[j] = top[j - 1];
      j--;
    }
    top[j] = x;
  }
  return top[k - 1];
}

/**
 * Steps 1-5 without the draw: the kept ids (increasing) and their probabilities.
 * Greedy settings keep the argmax alone.
 * @param {Float32Array} row the last position's logits, one per token id
 * @param {SamplingSettings} settings
 * @param {ArrayLike<number>} previous every id of the sequence so far
 * @returns {Kept}
 */
export function kept(row, settings, previous) {
  const logits = penalize(row, settings.repetitionPenalty, previous);
  if (settings.temperature === 0) return { ids: Int32Array.of(argmax(logits)), probs: Float64Array.of(1) };
  const t = Math.fround(settings.temperature);
  const size = logits.length;
  const scaled = new Float32Array(size);
  for (let i = 0; i < size; i++) scaled[i] = logits[i] / t;
  let ids;
  if (settings.topK > 0 && settings.topK < size) {
    const kth = kthHighest(scaled, settings.topK);
    let n = 0;
    for (let i = 0; i < size; i++) if (scaled[i] >= kth) n++;
    ids = new Int32Array(n);
    n = 0;
    for (let i = 0; i < size; i++) if (scaled[i] >= kth) ids[n++] = i;
  } else {
    ids = new Int32Array(size);
    for (let i = 0; i < size; i++) ids[i] = i;
  }
  let top = -Infinity;
  for (const id of ids) if (scaled[id] > top) top = scaled[id];
  const probs = new Float64Array(ids.length);
  let total = 0;
  for (let j = 0; j < ids.length; j++) {
    probs[j] = Math.exp(scaled[ids[j]] - top);
    total += probs[j];
  }
  for (let j = 0; j < probs.length; j++) probs[j] /= total;
  return settings.topP < 1 ? nucleus(ids, probs, settings.topP) : { ids, probs };
}

/**
 * Top-p over kept tokens. A token of probability <= (1 - topP) / n is always dropped (all
 * tokens before it in ascending order are no more likely), so only the others are sorted.
 * @param {Int32Array} ids increasing
 * @param {Float64Array} probs
 * @param {number} topP
 * @returns {Kept}
 */
function nucleus(ids, probs, topP) {
  const limit = 1 - topP;
  const small = limit / probs.length;
  let cumulative = 0;
  /** @type {number[]} */
  const rest = [];
  for (let j = 0; j < probs.length; j++) {
    if (probs[j] <= small) cumulative += probs[j];
    else rest.push(j);
  }
  rest.sort((a, b) => probs[a] - probs[b] || ids[a] - ids[b]); // ascending; ties: lower id first
  let drop = 0;
  for (; drop < rest.length - 1; drop++) {
    cumulative += probs[rest[drop]];
    if (cumulative > limit) break;
  }
  const keep = rest.slice(drop).sort((a, b) => a - b);
  let mass = 0;
  for (const j of keep) mass += probs[j];
  return {
    ids: Int32Array.from(keep, (j) => ids[j]),
    probs: Float64Array.from(keep, (j) => probs[j] / mass),
  };
}

/**
 * The next token: greedy argmax, or the inverse-CDF draw for `uniform`.
 * @param {Float32Array} row
 * @param {SamplingSettings} settings
 * @param {ArrayLike<number>} previous
 * @param {number} uniform in [0, 1), from the caller's seeded generator
 * @returns {number}
 */
export function pick(row, settings, previous, uniform) {
  if (settings.temperature === 0 && (settings.repetitionPenalty === 1 || previous.length === 0)) {
    return argmax(row);
  }
  const { ids, probs } = kept(row, settings, previous);
  let cumulative = 0;
  for (let j = 0; j < ids.length; j++) {
    cumulative += probs[j];
    if (uniform < cumulative) return ids[j];
  }
  return ids[ids.length - 1];
}

/**
 * The kept (ids, probabilities), most likely first (ties: lower id first).
 * @param {Float32Array} row
 * @param {SamplingSettings} settings
 * @param {ArrayLike<number>} previous
 * @returns {{ids: Int32Array, probs: Float64Array}}
 */
export function distribution(row, settings, previous) {
  const { ids, probs } = kept(row, settings, previous);
  const order = Array.from(ids.keys()).sort((a, b) => probs[b] - probs[a] || ids[a] - ids[b]);
  return { ids: Int32Array.from(order, (j) => ids[j]), probs: Float64Array.from(order, (j) => probs[j]) };
}
