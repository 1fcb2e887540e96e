// The replay of an interview's document (the review page, /review/<code>): its text at any point of
// its stored history, fast enough to scrub through tens of thousands of updates.
//
// No DOM: the page (pages/review.js) and the tests (tests/js/replay.test.js, tests/bench/replay.mjs)
// use it alike.
//
// How: every stored update is applied once, in the stored order (seq), to one Y.Doc that keeps deleted
// content (gc off), all in one transaction. While doing so it keeps, for each update, the document's
// state vector after it (a clock per client, shared while unchanged), and for every deletion the
// update that made it (the transaction's delete set, read as it grows). The text after the first n
// updates is then one walk along the document's items: the characters inserted by then (their clock
// below the state vector after update n) and not deleted by then — whatever n, one pass over the
// document and a binary search per item, with no update applied again and no checkpoint to start from.
// An update that arrives before what it depends on (two hubs may commit out of causal order) waits in
// the document, as it would in any rebuild, and counts from the update that completes it; so does a
// deletion that arrives before what it deletes.
//
// One limit: the text is read from the final document, so content Yjs rewrote for good is shown as
// rewritten at every moment — an edit inside a surrogate pair (half an emoji, which no editor makes)
// turns both halves into U+FFFD in the stored document, and the replay shows that from the start.
import * as Y from 'yjs';

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
   * @param {{root?: string}} [opts] `root`: the shared text's name ('code', or 'notes' for the notes)
   */
  constructor(updates, { root = 'code' } = {}) {
    this.updates = updates;
    this.root = root;
    this.doc = new Y.Doc({ gc: false });
    this.text = this.doc.getText(root);
    /** @type {Map<number, number>[]} the state vector after the first n updates, at [n] */
    this.svs = [new Map()];
    /**
     * Per client, the deleted clock ranges with the number of updates after which they are deleted
     * (`at`), sorted by clock. A clock is deleted once (Yjs never deletes a deleted item again), so the
     * ranges do not overlap.
     * @type {Map<number, {clock: number, end: number, at: number}[]>}
     */
    this.deletions = new Map();
    // One transaction for all (one per update would clean up and merge the whole store each time).
    const store = this.doc.store;
    let prev = this.svs[0];
    Y.transact(this.doc, (tr) => {
      const recorded = new Map(); // client → entries of tr.deleteSet already read
      for (let i = 0; i < updates.length; i++) {
        try {
          Y.applyUpdate(this.doc, updates[i].data);
        } catch {
          // An update that does not decode changes nothing (the server never stores one).
        }
        // Deletions this update made (the transaction's delete set only grows until it ends).
        for (const [client, items] of tr.deleteSet.clients) {
          const from = recorded.get(client) ?? 0;
          if (items.length === from) continue;
          let list = this.deletions.get(client);
          if (!list) this.deletions.set(client, (list = []));
          for (let k = from; k < items.length; k++) list.push({ clock: items[k].clock, end: items[k].clock + items[k].len, at: i + 1 });
          recorded.set(client, items.length);
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
      }
    });
    for (const list of this.deletions.values()) list.sort((a, b) => a.clock - b.clock);
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

  /** The text after the first `index` updates (0: empty; `length`: all of them). */
  textAt(index) {
    const n = Math.min(Math.max(0, Math.floor(index)), this.updates.length);
    if (n === this._cache.index) return this._cache.text;
    const sv = this.svs[n];
    const parts = [];
    for (let item = this.text._start; item !== null; item = item.right) {
      const str = item.content?.str;
      if (typeof str !== 'string') continue; // deleted content already collected, formats, embeds
      const client = item.id.client;
      const start = item.id.clock;
      const end = Math.min(start + item.length, sv.get(client) ?? 0);
      if (end <= start) continue; // not inserted yet
      let pos = start;
      const list = this.deletions.get(client);
      if (list !== undefined) {
        // The first range that ends after `start`.
        let lo = 0;
        let hi = list.length;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          if (list[mid].end <= start) lo = mid + 1;
          else hi = mid;
        }
        for (let k = lo; k < list.length && list[k].clock < end; k++) {
          const d = list[k];
          if (d.at > n) continue; // deleted later
          const from = Math.max(d.clock, pos);
          if (from > pos) parts.push(str.slice(pos - start, from - start));
          pos = Math.max(pos, Math.min(d.end, end));
        }
      }
      if (pos < end) parts.push(pos === start && end === start + item.length ? str : str.slice(pos - start, end - start));
    }
    const text = parts.join('');
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
