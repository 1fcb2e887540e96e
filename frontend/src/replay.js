// The replay of an interview's document (the review page, /review/<code>): its text at any point of
// its stored history, fast enough to scrub through tens of thousands of updates.
//
// No DOM: the page (pages/review.js) and the tests (tests/js/replay.test.js, tests/bench/replay.mjs)
// use it alike.
//
// How: the stored updates are applied once, in the stored order (seq), to one Y.Doc that keeps deleted
// content (gc off), all in one transaction, keeping for each client its clock in the state vector
// after each update (the points where it changes) and, for every deleted clock range, the update that
// deleted it. The text after the first n updates is then one walk along the document's items: the
// characters inserted by then (their clock below the state vector after update n) and not deleted by
// then — whatever n, one pass over the document and a binary search per item, with no update applied
// again and no checkpoint to start from.
// Applying 30,000 keystrokes one by one is what cost (Yjs integrates, then merges, each on its own), so
// an update that is *ready* — everything it builds on and everything it deletes already in, nothing of
// it in yet, plain text — is not applied on its own: its clocks and deletions are read from its bytes
// (`Scan`) and it joins a batch (`Batch`) of such updates, applied as one update in which a keystroke
// typed right after the previous one is one struct with it (as Y.mergeUpdates joins them). An update
// that is not ready (two hubs may commit out of causal order: it waits in the document, as in any
// rebuild, and counts from the update that completes it; so does a deletion stored before what it
// deletes), a repeated or relayed one, or anything but text, is applied on its own after the batch so
// far, and the transaction's delete set tells what it deleted; batching resumes once nothing waits.
// `new Replay(updates, {fast: false})` applies every update on its own: the tests check both agree.
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
   * @param {{root?: string, fast?: boolean}} [opts] `root`: the shared text's name ('code', or
   *   'notes' for the notes); `fast: false` applies every update on its own (the fallback), for the tests
   */
  constructor(updates, { root = 'code', fast = true } = {}) {
    this.updates = updates;
    this.root = root;
    /** How the replay was built: 'fast' (ready updates applied together) or 'plain' (one by one). */
    this.built = fast ? 'fast' : 'plain';
    try {
      this._build(fast);
    } catch (err) {
      if (!fast) throw err;
      // A bug of the fast path must not cost the review: the plain way, from scratch.
      console.error('replay: the fast build failed, applying every update on its own', err);
      this.built = 'plain';
      this._build(false);
    }
    /** Times, in order of the updates: for `indexAt`. Out-of-order times are clamped up. */
    this.times = new Float64Array(updates.length);
    let last = -Infinity;
    for (let i = 0; i < updates.length; i++) {
      last = Math.max(last, updates[i].at);
      this.times[i] = last;
    }
    this._cache = { index: -1, text: '' };
  }

  /** Builds `doc`, `text`, `clocks` and `deletions` (see the header). */
  _build(fast) {
    const updates = this.updates;
    this.doc = new Y.Doc({ gc: false });
    this.text = this.doc.getText(this.root);
    /**
     * Per client, its clock in the state vector after the first n updates, as the points where it
     * changes: after `at[k]` updates (increasing), `clock[k]`; 0 before the first.
     * @type {Map<number, {at: number[], clock: number[]}>}
     */
    this.clocks = new Map();
    /**
     * Per client, the deleted clock ranges with the number of updates after which they are deleted
     * (`at`), sorted by clock, without overlaps (a clock counts from the first update that deleted it).
     * @type {Map<number, {clock: number, end: number, at: number}[]>}
     */
    this.deletions = new Map();
    const deleted = (client, clock, end, at) => {
      let list = this.deletions.get(client);
      if (!list) this.deletions.set(client, (list = []));
      list.push({ clock, end, at });
    };
    /** The state vector after the updates so far. */
    const sv = new Map();
    const moved = (client, clock, at) => {
      sv.set(client, clock);
      let c = this.clocks.get(client);
      if (!c) this.clocks.set(client, (c = { at: [], clock: [] }));
      c.at.push(at);
      c.clock.push(clock);
    };
    /** How many updates were applied on their own (not ready, or `fast` off). */
    this.alone = 0;
    const store = this.doc.store;
    const batch = fast ? new Batch() : null;
    const scan = fast ? new Scan() : null;
    /** Whether the document has nothing waiting (no ready update depends on what waits). */
    let settled = true;
    // One transaction for all (one per update would clean up and merge the whole store each time).
    Y.transact(this.doc, (tr) => {
      const recorded = new Map(); // client → entries of tr.deleteSet already read
      const flush = () => {
        if (batch.empty) return;
        Y.applyUpdate(this.doc, batch.take());
        for (const [client, clock] of sv) {
          if (Y.getState(store, client) !== clock) throw new Error(`replay: client ${client} at ${Y.getState(store, client)} after the batch, not ${clock}`);
        }
        if (store.pendingStructs !== null || store.pendingDs !== null) throw new Error('replay: the batch left something waiting');
        // Its deletions are recorded already (read from the updates).
        for (const [client, items] of tr.deleteSet.clients) recorded.set(client, items.length);
      };
      for (let i = 0; i < updates.length; i++) {
        const data = updates[i].data;
        if (fast && settled && scan.read(data, sv)) {
          // Ready: into the batch, its clocks and deletions read from its bytes.
          batch.add(scan, data);
          const D = scan.dels;
          for (let k = 0; k < D.length; k += 3) deleted(D[k], D[k + 1], D[k + 1] + D[k + 2], i + 1);
          const G = scan.groups;
          for (let k = 0; k < G.length; k += 3) if (G[k + 2] !== G[k + 1]) moved(G[k], G[k + 2], i + 1);
          continue;
        }
        if (fast) flush();
        this.alone++;
        try {
          Y.applyUpdate(this.doc, data);
        } catch {
          // An update that does not decode changes nothing (the server never stores one).
        }
        settled = store.pendingStructs === null && store.pendingDs === null;
        // Deletions this update made (the transaction's delete set only grows until it ends).
        for (const [client, items] of tr.deleteSet.clients) {
          const from = recorded.get(client) ?? 0;
          if (items.length === from) continue;
          for (let k = from; k < items.length; k++) deleted(client, items[k].clock, items[k].clock + items[k].len, i + 1);
          recorded.set(client, items.length);
        }
        for (const client of store.clients.keys()) {
          const clock = Y.getState(store, client);
          if (clock !== (sv.get(client) ?? 0)) moved(client, clock, i + 1);
        }
      }
      if (fast) flush();
    });
    for (const [client, list] of this.deletions) this.deletions.set(client, firstDeletions(list));
  }

  /** The state vector after the first `n` updates. */
  stateAt(n) {
    const sv = new Map();
    for (const [client, { at, clock }] of this.clocks) {
      // The last change at or before n.
      let lo = 0;
      let hi = at.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (at[mid] <= n) lo = mid + 1;
        else hi = mid;
      }
      if (lo > 0) sv.set(client, clock[lo - 1]);
    }
    return sv;
  }

  /** Number of updates. */
  get length() {
    return this.updates.length;
  }

  /** The text after the first `index` updates (0: empty; `length`: all of them). */
  textAt(index) {
    const n = Math.min(Math.max(0, Math.floor(index)), this.updates.length);
    if (n === this._cache.index) return this._cache.text;
    const sv = this.stateAt(n);
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

// ---- The fast build: updates read from their bytes, applied as one update ----
//
// An update in the v1 encoding (lib0 varints): the number of clients; per client the number of
// structs, the client, the first clock, then the structs — an info byte (content kind in its low 5
// bits; 0x80: an origin id follows, 0x40: a right origin id follows, 0x20: a parent key, only when
// neither is there), then the content; then the delete set: per client, ranges (clock, length).
// `Scan` reads only what the replay needs, and says whether the update is *ready* — one Y.applyUpdate
// of it would integrate all of it and apply all its deletions at once: nothing of it already in,
// nothing missing (each client's structs start at the document's clock, every origin and deleted range
// is in), and only text (string content under a root key). Anything else is left to Yjs, update by update.

const BAD = new Error('replay: malformed update');
/** Decodes a string's UTF-8 as lib0 does (fatal): for its length in UTF-16 units. */
const utf8 = typeof TextDecoder === 'function' ? new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }) : null;

class Scan {
  constructor() {
    /** Per struct: client, clock, length, origin client, origin clock (-1: none), right origin client,
     * right origin clock (-1: none), header start, header end, string start, string end. */
    this.structs = [];
    /** Per client of the update: client, first clock, end clock. */
    this.groups = [];
    /** Per deleted range: client, clock, length. */
    this.dels = [];
    this.data = null;
    this.pos = 0;
    this.strStart = 0;
  }

  varUint() {
    const a = this.data;
    let num = 0;
    let mult = 1;
    for (;;) {
      if (this.pos >= a.length) throw BAD;
      const r = a[this.pos++];
      num += (r & 0x7f) * mult;
      if (r < 0x80) return num;
      mult *= 128;
      if (mult > 2 ** 53) throw BAD;
    }
  }

  /** Skips a var-length string; its length in UTF-16 units, or -1 when it is not valid UTF-8. */
  string() {
    const len = this.varUint();
    const start = this.pos;
    const end = start + len;
    this.strStart = start;
    if (end > this.data.length) throw BAD;
    this.pos = end;
    const a = this.data;
    for (let k = start; k < end; k++) {
      if (a[k] >= 0x80) {
        if (utf8 === null) return -1;
        try {
          return utf8.decode(a.subarray(start, end)).length;
        } catch {
          return -1;
        }
      }
    }
    return len;
  }

  /** The clock of `client` once this update is in. */
  after(sv, client) {
    const g = this.groups;
    for (let k = 0; k < g.length; k += 3) if (g[k] === client) return g[k + 2];
    return sv.get(client) ?? 0;
  }

  /** Reads `data`; true when it is ready against the state vector `sv` (see above). */
  read(data, sv) {
    this.data = data;
    this.pos = 0;
    const S = this.structs;
    const G = this.groups;
    const D = this.dels;
    S.length = 0;
    G.length = 0;
    D.length = 0;
    try {
      const clients = this.varUint();
      for (let c = 0; c < clients; c++) {
        const n = this.varUint();
        const client = this.varUint();
        let clock = this.varUint();
        if (n === 0) continue;
        if (clock !== (sv.get(client) ?? 0)) return false; // a gap, or some of it is in already
        for (let k = 0; k < G.length; k += 3) if (G[k] === client) return false;
        G.push(client, clock, clock);
        for (let s = 0; s < n; s++) {
          const hdr = this.pos;
          if (hdr >= data.length) throw BAD;
          const info = data[this.pos++];
          // Only text: string content (4), no parent sub-key (0x20 set with an origin is a map entry).
          if ((info & 0x1f) !== 4 || (info & 0x20) !== 0) return false;
          let oc = 0;
          let ok = -1;
          let rc = 0;
          let rk = -1;
          if (info & 0x80) {
            oc = this.varUint();
            ok = this.varUint();
          }
          if (info & 0x40) {
            rc = this.varUint();
            rk = this.varUint();
          }
          if ((info & 0xc0) === 0) {
            if (this.varUint() !== 1) return false; // a nested type's child, not a root's
            if (this.string() < 0) return false;
          }
          const hdrEnd = this.pos;
          const len = this.string();
          if (len <= 0) return false;
          S.push(client, clock, len, oc, ok, rc, rk, hdr, hdrEnd, this.strStart, this.pos);
          clock += len;
        }
        G[G.length - 1] = clock;
      }
      const dsClients = this.varUint();
      for (let c = 0; c < dsClients; c++) {
        const client = this.varUint();
        const n = this.varUint();
        const state = this.after(sv, client);
        for (let r = 0; r < n; r++) {
          const clock = this.varUint();
          const len = this.varUint();
          if (len === 0) continue;
          if (clock + len > state) return false; // deletes what is not in yet
          D.push(client, clock, len);
        }
      }
    } catch {
      return false;
    }
    // Every origin in (in the document, or earlier in this update: Yjs integrates those first).
    for (let k = 0; k < S.length; k += 11) {
      const client = S[k];
      const clock = S[k + 1];
      const ok = S[k + 4];
      const rk = S[k + 6];
      if (ok >= 0 && (S[k + 3] === client ? ok >= clock : ok >= this.after(sv, S[k + 3]))) return false;
      if (rk >= 0 && (S[k + 5] === client ? rk >= clock : rk >= this.after(sv, S[k + 5]))) return false;
    }
    return true;
  }

  /** Whether the update moves the state vector `sv`. */
  changes(sv) {
    const g = this.groups;
    for (let k = 0; k < g.length; k += 3) if (g[k + 2] !== (sv.get(g[k]) ?? 0)) return true;
    return false;
  }

  /** `sv` with the update in. */
  next(sv) {
    const out = new Map(sv);
    const g = this.groups;
    for (let k = 0; k < g.length; k += 3) if (g[k + 2] !== g[k + 1]) out.set(g[k], g[k + 2]);
    return out;
  }
}

/** A growable byte buffer. */
class Bytes {
  constructor(size = 1024) {
    this.buf = new Uint8Array(size);
    this.length = 0;
  }

  reserve(n) {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const buf = new Uint8Array(size);
    buf.set(this.buf.subarray(0, this.length));
    this.buf = buf;
  }

  varUint(num) {
    this.reserve(8);
    while (num > 0x7f) {
      this.buf[this.length++] = 0x80 | (num % 128);
      num = Math.floor(num / 128);
    }
    this.buf[this.length++] = num;
  }

  bytes(src, start, end) {
    const n = end - start;
    this.reserve(n);
    if (n > 32) {
      this.buf.set(src.subarray(start, end), this.length);
      this.length += n;
    } else {
      const buf = this.buf;
      for (let k = start; k < end; k++) buf[this.length++] = src[k];
    }
  }
}

/**
 * The ready updates not applied yet, as one update: per client its structs in clock order, a struct
 * typed right after its predecessor (origin: the predecessor's last character, the same right origin)
 * joined to it as Y.mergeUpdates joins them, so Yjs integrates and merges a few thousand items, not
 * one per keystroke; and the deleted ranges, sorted and joined.
 */
class Batch {
  constructor() {
    /** @type {Map<number, {first: number, count: number, out: Bytes, hdr: Uint8Array|null, hdrStart: number, hdrEnd: number, str: Bytes, end: number, rc: number, rk: number}>} */
    this.clients = new Map();
    /** @type {Map<number, number[]>} client → clock, end, … */
    this.dels = new Map();
    this.empty = true;
  }

  add(scan, data) {
    const S = scan.structs;
    for (let k = 0; k < S.length; k += 11) {
      const client = S[k];
      let c = this.clients.get(client);
      if (c === undefined) {
        c = { first: S[k + 1], count: 0, out: new Bytes(), hdr: null, hdrStart: 0, hdrEnd: 0, str: new Bytes(), end: S[k + 1], rc: 0, rk: -1 };
        this.clients.set(client, c);
      }
      const joins = c.hdr !== null && S[k + 3] === client && S[k + 4] === c.end - 1 && S[k + 6] === c.rk && (c.rk < 0 || S[k + 5] === c.rc);
      if (!joins) {
        this.close(c);
        c.hdr = data;
        c.hdrStart = S[k + 7];
        c.hdrEnd = S[k + 8];
        c.rc = S[k + 5];
        c.rk = S[k + 6];
      }
      c.str.bytes(data, S[k + 9], S[k + 10]);
      c.end = S[k + 1] + S[k + 2];
      this.empty = false;
    }
    const D = scan.dels;
    for (let k = 0; k < D.length; k += 3) {
      let list = this.dels.get(D[k]);
      if (list === undefined) this.dels.set(D[k], (list = []));
      list.push(D[k + 1], D[k + 1] + D[k + 2]);
      this.empty = false;
    }
  }

  /** Writes the client's open struct. */
  close(c) {
    if (c.hdr === null) return;
    c.out.bytes(c.hdr, c.hdrStart, c.hdrEnd);
    c.out.varUint(c.str.length);
    c.out.bytes(c.str.buf, 0, c.str.length);
    c.count++;
    c.hdr = null;
    c.str.length = 0;
  }

  /** The batch as one v1 update; the batch is empty afterwards. */
  take() {
    const u = new Bytes(1 << 16);
    u.varUint(this.clients.size);
    for (const [client, c] of this.clients) {
      this.close(c);
      u.varUint(c.count);
      u.varUint(client);
      u.varUint(c.first);
      u.bytes(c.out.buf, 0, c.out.length);
    }
    u.varUint(this.dels.size);
    for (const [client, list] of this.dels) {
      const order = [];
      for (let k = 0; k < list.length; k += 2) order.push(k);
      order.sort((a, b) => list[a] - list[b]);
      const ranges = [];
      for (const k of order) {
        const last = ranges.length - 1;
        if (last >= 1 && list[k] <= ranges[last]) ranges[last] = Math.max(ranges[last], list[k + 1]);
        else ranges.push(list[k], list[k + 1]);
      }
      u.varUint(client);
      u.varUint(ranges.length / 2);
      for (let k = 0; k < ranges.length; k += 2) {
        u.varUint(ranges[k]);
        u.varUint(ranges[k + 1] - ranges[k]);
      }
    }
    this.clients.clear();
    this.dels.clear();
    this.empty = true;
    return u.buf.subarray(0, u.length);
  }
}

/**
 * A client's deletions, sorted by clock and without overlaps: where two recorded ranges overlap (a
 * range deleted by two updates — concurrent deletions, a repeated update), each clock keeps the first
 * update that deleted it. (Yjs records a deleted clock once; the ranges read from the bytes of ready
 * updates can repeat one.)
 */
function firstDeletions(list) {
  list.sort((a, b) => a.clock - b.clock || a.at - b.at);
  const out = [];
  for (let i = 0; i < list.length; ) {
    // A group of ranges that overlap one another (transitively).
    let j = i + 1;
    let end = list[i].end;
    while (j < list.length && list[j].clock < end) end = Math.max(end, list[j++].end);
    if (j === i + 1) {
      out.push(list[i]);
    } else {
      const cuts = [...new Set(list.slice(i, j).flatMap((d) => [d.clock, d.end]))].sort((a, b) => a - b);
      for (let k = 0; k + 1 < cuts.length; k++) {
        let at = Infinity;
        for (let m = i; m < j; m++) if (list[m].clock <= cuts[k] && cuts[k + 1] <= list[m].end) at = Math.min(at, list[m].at);
        if (at === Infinity) continue;
        const last = out.at(-1);
        if (last && last.end === cuts[k] && last.at === at) last.end = cuts[k + 1];
        else out.push({ clock: cuts[k], end: cuts[k + 1], at });
      }
    }
    i = j;
  }
  return out;
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
