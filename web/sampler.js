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
// probabilities are float64. Per decode step: the penalty is written into the row for the
// call and undone before it returns (no copy of the row), top-k is one pass keeping the k
// highest plus one pass comparing each logit with the k-th, and the buffers are reused.

/**
 * @typedef {object} SamplingSettings
 * @property {number} temperature 0 = greedy
 * @property {number} topK 0 = off
 * @property {number} topP in (0, 1]; 1 = off
 * @property {number} repetitionPenalty > 0; 1 = off
 */

/** @typedef {{ids: Int32Array, probs: Float64Array}} Kept ids in increasing order */

/** Reused between calls: a seen-id mark per id, and the ids the penalty changed with their
 * original logits (the penalty is applied to the row in place and undone after). */
let seen = new Uint8Array(0);
let changedIds = new Int32Array(0);
let changedValues = new Float32Array(0);

/**
 * Step 1 in place: the logit x of each distinct valid id of `previous` becomes x / penalty
 * if x > 0, else x * penalty. Returns how many ids changed; `restore` undoes it.
 * @param {Float32Array} row
 * @param {number} penalty
 * @param {ArrayLike<number>} previous
 * @returns {number}
 */
function penalizeInPlace(row, penalty, previous) {
  if (penalty === 1 || previous.length === 0) return 0;
  if (seen.length !== row.length) seen = new Uint8Array(row.length);
  if (changedIds.length < previous.length) {
    changedIds = new Int32Array(previous.length);
    changedValues = new Float32Array(previous.length);
  }
  const p = Math.fround(penalty);
  let n = 0;
  for (let j = 0; j < previous.length; j++) {
    const id = previous[j];
    if (id < 0 || id >= row.length || seen[id]) continue;
    seen[id] = 1;
    const x = row[id];
    changedIds[n] = id;
    changedValues[n++] = x;
    row[id] = x > 0 ? Math.fround(x / p) : Math.fround(x * p);
  }
  return n;
}

/**
 * Undo `penalizeInPlace`: the first `count` changed ids get their logits back.
 * @param {Float32Array} row
 * @param {number} count
 */
function restore(row, count) {
  for (let j = 0; j < count; j++) {
    const id = changedIds[j];
    row[id] = changedValues[j];
    seen[id] = 0;
  }
}

/**
 * `use(row after the repetition penalty)`: the penalty is written into `row` for the call
 * and undone after it (no copy of the row), so `row` is unchanged when this returns.
 * @template T
 * @param {Float32Array} row
 * @param {number} penalty
 * @param {ArrayLike<number>} previous
 * @param {(logits: Float32Array) => T} use
 * @returns {T}
 */
function withPenalty(row, penalty, previous, use) {
  const count = penalizeInPlace(row, penalty, previous);
  try {
    return use(row);
  } finally {
    restore(row, count);
  }
}

/**
 * The row after the repetition penalty, as a new array (the sampler itself works in place).
 * @param {Float32Array} row
 * @param {number} penalty
 * @param {ArrayLike<number>} previous
 * @returns {Float32Array}
 */
export function penalize(row, penalty, previous) {
  return withPenalty(row, penalty, previous, (logits) => logits.slice());
}

/**
 * The first index of the highest value.
 * @param {Float32Array} row
 */
export function argmax(row) {
  let best = 0;
  let high = row[0];
  for (let i = 1; i < row.length; i++) {
    const x = row[i];
    if (x > high) {
      high = x;
      best = i;
    }
  }
  return best;
}

/** Reused between calls: the k highest values so far, in decreasing order. */
let topBuffer = new Float32Array(0);

/**
 * The k-th highest value of `values` (1 <= k < length).
 * @param {Float32Array} values
 * @param {number} k
 */
function kthHighest(values, k) {
  if (k > 64) return values.slice().sort()[values.length - k];
  // A small sorted buffer of the k highest: one comparison per value in the common case.
  if (topBuffer.length < k) topBuffer = new Float32Array(k);
  const top = topBuffer;
  top.fill(-Infinity, 0, k);
  let low = -Infinity; // top[k - 1]
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    if (!(x > low)) continue;
    let j = k - 1;
    while (j > 0 && x > top[j - 1]) {
      top[j] = top[j - 1];
      j--;
    }
    top[j] = x;
    low = top[k - 1];
  }
  return low;
}

/** Reused between calls: the kept ids before they are copied out. */
let keptBuffer = new Int32Array(0);

/**
 * Steps 1-5 without the draw: the kept ids (increasing) and their probabilities.
 * Greedy settings keep the argmax alone. `row` is unchanged when this returns.
 * @param {Float32Array} row the last position's logits, one per token id
 * @param {SamplingSettings} settings
 * @param {ArrayLike<number>} previous every id of the sequence so far
 * @returns {Kept}
 */
export function kept(row, settings, previous) {
  return withPenalty(row, settings.repetitionPenalty, previous, (logits) => keptAfterPenalty(logits, settings));
}

/**
 * Steps 2-5 on a penalized row. Scaling by a positive temperature keeps the order (float32
 * rounding is monotonic), so the k-th highest scaled logit is the scaled k-th highest logit,
 * and no scaled copy of the row is made. A scaled logit can only equal the scaled k-th
 * highest when the logit is within a float32 rounding (relative 2^-24, each way) of the k-th
 * highest, so only logits above `kth` less a millionth of it (and 1e-30, for a k-th
 * highest of 0) are scaled and compared.
 * @param {Float32Array} logits
 * @param {SamplingSettings} settings
 * @returns {Kept}
 */
function keptAfterPenalty(logits, settings) {
  if (settings.temperature === 0) return { ids: Int32Array.of(argmax(logits)), probs: Float64Array.of(1) };
  const t = Math.fround(settings.temperature);
  const size = logits.length;
  if (keptBuffer.length < size) keptBuffer = new Int32Array(size);
  let n = 0;
  let top = -Infinity;
  if (settings.topK > 0 && settings.topK < size) {
    const kth = kthHighest(logits, settings.topK);
    const threshold = Math.fround(kth / t);
    const candidate = kth - Math.abs(kth) * 1e-6 - 1e-30;
    for (let i = 0; i < size; i++) {
      const raw = logits[i];
      if (!(raw >= candidate)) continue;
      const x = Math.fround(raw / t);
      if (x >= threshold) {
        keptBuffer[n++] = i;
        if (x > top) top = x;
      }
    }
  } else {
    for (let i = 0; i < size; i++) {
      keptBuffer[n++] = i;
      const x = Math.fround(logits[i] / t);
      if (x > top) top = x;
    }
  }
  const ids = keptBuffer.slice(0, n);
  const probs = new Float64Array(n);
  let total = 0;
  for (let j = 0; j < n; j++) {
    probs[j] = Math.exp(Math.fround(logits[ids[j]] / t) - top);
    total += probs[j];
  }
  for (let j = 0; j < n; j++) probs[j] /= total;
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
