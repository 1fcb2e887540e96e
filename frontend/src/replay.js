// The replay of an interview's document (the review page, /review/<code>): its text at any point of
// its stored history, fast enough to scrub through tens of thousands of updates.
//
// No DOM: the page (pages/review.js) and the tests (tests/js/replay.test.js, tests/bench/replay.mjs)
// use it alike.
//
// How: every stored update is applied once, in the stored order (seq), to one Y.Doc that keeps deleted
// content (gc off). The text after the first i updates is then that document seen at a snapshot — the
// state vector of the document after update i (kept for every update: a few numbers each), and the
// deletions made so far. Deletions are kept as checkpoints every `checkpointEvery` updates, so a seek
// is one checkpoint, the deletions of at most `checkpointEvery` updates merged into it, and one pass
// over the document (`Y.Text#toDelta(snapshot)`), however long the history. An update that arrives
// before what it depends on (two hubs may commit out of causal order) waits in the document, as it
// would in any rebuild, and counts from the update that completes it (so do deletions that arrive
// before what they delete: they are part of the checkpoints).
//
// One limit: the text is read from the final document, so content Yjs rewrote for good is shown as
// rewritten at every moment — an edit inside a surrogate pair (half an emoji, which no editor makes)
// turns both halves into U+FFFD in the stored document, and the replay shows that from the start.
import * as Y from 'yjs';

/** Updates between two checkpoints of the deletions. */
export const CHECKPOINT_EVERY = 256;

/** Decodes standard base64 (what `/history` sends) to bytes. */
export function fromBase64(s) {
  if (typeof Uint8Array.fromBase64 === 'function') return Uint8Array.fromBase64(s);
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export class Replay {
  /**
   * @param {{at: number, author: string|null, data: Uint8Array}[]} updates in the stored order
   *   (`at`: milliseconds since the epoch; non-decreasing is not assumed)
   * @param {{root?: string, checkpointEvery?: number}} [opts] `root`: the shared text's name
   *   ('code', or 'notes' for the notes document)
   */
  constructor(updates, { root = 'code', checkpointEvery = CHECKPOINT_EVERY } = {}) {
    this.updates = updates;
    this.root = root;
    this.every = Math.max(1, checkpointEvery);
    this.doc = new Y.Doc({ gc: false });
    this.text = this.doc.getText(root);
    /** @type {Map<number, number>[]} the state vector after update i (index i + 1; [0] is empty) */
    this.svs = [new Map()];
    /** @type {Y.DeleteSet[]} the deletions after update k * every (checkpoint k) */
    this.checkpoints = [Y.createDeleteSet()];
    /** @type {(Y.DeleteSet|null)[]} each update's own deletions, decoded when first needed */
    this._ds = new Array(updates.length).fill(null);
    // All in one transaction (a transaction per update would clean up and merge the whole store
    // after each one: most of the time). The state vector after each update is read from the store
    // (a clock per client, a few of them) and kept only when it changed.
    const store = this.doc.store;
    let prev = this.svs[0];
    Y.transact(this.doc, () => {
      for (let i = 0; i < updates.length; i++) {
        try {
          Y.applyUpdate(this.doc, updates[i].data);
        } catch {
          // An update that does not decode changes nothing (the server never stores one).
        }
        let changed = prev.size !== store.clients.size;
        if (!changed) {
          for (const [client, clock] of prev) {
            if (Y.getState(store, client) !== clock) {
              changed = true;
              break;
            }
          }
        }
        if (changed) {
          prev = new Map();
          for (const client of store.clients.keys()) prev.set(client, Y.getState(store, client));
        }
        this.svs.push(prev);
        if ((i + 1) % this.every === 0) this.checkpoints.push(this._deletions());
      }
    });
    /** Times, in order of the updates: for `indexAt`. Out-of-order times are clamped up. */
    this.times = new Float64Array(updates.length);
    let last = -Infinity;
    for (let i = 0; i < updates.length; i++) {
      last = Math.max(last, updates[i].at);
      this.times[i] = last;
    }
    this._cache = { index: -1, text: '' };
  }

  /** Number of updates. */
  get length() {
    return this.updates.length;
  }

  /**
   * Every deletion made so far: those applied, and those still waiting for what they delete (a
   * deletion that arrived before its insertion is applied when that comes).
   */
  _deletions() {
    const applied = Y.snapshot(this.doc).ds;
    const waiting = this.doc.store.pendingDs;
    if (waiting === null) return applied;
    try {
      return Y.mergeDeleteSets([applied, Y.decodeUpdateV2(waiting).ds]);
    } catch {
      return applied;
    }
  }

  _deleteSet(i) {
    let ds = this._ds[i];
    if (ds === null) {
      try {
        ds = Y.decodeUpdate(this.updates[i].data).ds;
      } catch {
        ds = Y.createDeleteSet();
      }
      this._ds[i] = ds;
    }
    return ds;
  }

  /** The text after the first `index` updates (0: empty; `length`: all of them). */
  textAt(index) {
    const n = Math.min(Math.max(0, Math.floor(index)), this.updates.length);
    if (n === this._cache.index) return this._cache.text;
    const k = Math.floor(n / this.every);
    const parts = [this.checkpoints[k]];
    for (let i = k * this.every; i < n; i++) parts.push(this._deleteSet(i));
    const snap = Y.createSnapshot(Y.mergeDeleteSets(parts), this.svs[n]);
    let text = '';
    for (const op of this.text.toDelta(snap)) if (typeof op.insert === 'string') text += op.insert;
    this._cache = { index: n, text };
    return text;
  }

  /** How many updates were made at or before `t` (milliseconds since the epoch). */
  indexAt(t) {
    let lo = 0;
    let hi = this.times.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.times[mid] <= t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The text as it was at time `t`. */
  textAtTime(t) {
    return this.textAt(this.indexAt(t));
  }
}

/** Playing skips a stretch without activity longer than this. */
export const IDLE_GAP_MS = 5000;
/** Where playing resumes before the activity that ends an idle gap. */
export const GAP_LEAD_MS = 1000;

/** The first index of a sorted array whose value is greater than `t`. */
export function firstAfter(sorted, t) {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Where playing goes from `t` after `elapsedMs` of real time at `speed`: forward by
 * `elapsedMs * speed`, except that an idle gap — the next activity (`times`, sorted) more than
 * `IDLE_GAP_MS` away — is skipped to `GAP_LEAD_MS` before that activity. Never past `end`.
 */
export function advance(t, elapsedMs, speed, times, end) {
  let next = t + elapsedMs * speed;
  const i = firstAfter(times, t);
  const upcoming = i < times.length ? times[i] : end;
  if (upcoming - t > IDLE_GAP_MS) next = Math.max(next, upcoming - GAP_LEAD_MS);
  return Math.min(next, end);
}

/**
 * The smallest single replacement that turns `from` into `to`: `{start, end, text}` — replace
 * `from.slice(start, end)` with `text` (null when they are equal). What the page hands the editor, so a
 * seek near the last one redraws a line or two instead of the whole document.
 */
export function textChange(from, to) {
  if (from === to) return null;
  const max = Math.min(from.length, to.length);
  let start = 0;
  while (start < max && from.charCodeAt(start) === to.charCodeAt(start)) start++;
  let end = 0;
  while (end < max - start && from.charCodeAt(from.length - 1 - end) === to.charCodeAt(to.length - 1 - end)) end++;
  return { start, end: from.length - end, text: to.slice(start, to.length - end) };
}
