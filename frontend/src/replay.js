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
// Applying 30,000 keystrokes one by one is what cost (Yjs integrates, then merges, each on its own),
// so an update that is *ready* — everything it builds on already in, nothing of it in yet, plain text
// — is not applied on its own: its clocks and deletions are read from its bytes (`Scan`) and it joins
// a batch (`Batch`) of such updates, applied as one update in which a keystroke typed right after the
// previous one is one struct with it (as Y.mergeUpdates joins them), without its deletions: they are
// in the replay's own table, and where an item goes does not depend on them (so `doc` holds the
// history's items, not its final text: it is only for the replay to read). A deletion of what is not
// in yet counts at once, which shows the same (a character is shown only once it is in). An update
// that is not ready (two hubs may commit out of causal order: it waits in the document, as in any
// rebuild, and counts from the update that completes it), a repeated or relayed one, or anything but
// text, is applied on its own after the batch so far, and the transaction's delete set tells what it
// deleted (a deletion recorded twice counts from the first); batching resumes once nothing waits.
// `new Replay(updates, {fast: false})` applies every update on its own: the tests check both agree.
//
// One limit: the text is read from the final document, so content Yjs rewrote for good is shown as
// rewritten at every moment — an edit inside a surrogate pair (half an emoji, which no editor makes)
// turns both halves into U+FFFD in the stored document, and the replay shows that from the start (or,
// for a deletion of half of one in a batch, the half left).
import * as Y from 'yjs';
import * as decoding from 'lib0/decoding';

/** Decodes standard base64 (what `/history` sends) to bytes. */
export function fromBase64(s) {
  if (typeof Uint8Array.fromBase64 === 'function') return Uint8Array.fromBase64(s);
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * Decodes the updates of `/history` (base64 strings) into views of one buffer: one allocation for all,
 * not one per update (30,000 of them in a two-hour interview).
 */
export function fromBase64All(strings) {
  if (typeof Uint8Array.prototype.setFromBase64 !== 'function') return strings.map((s) => fromBase64(s));
  let total = 0;
  for (const s of strings) total += Math.ceil(s.length / 4) * 3;
  const buf = new Uint8Array(total);
  let off = 0;
  return strings.map((s) => {
    const { written } = buf.subarray(off).setFromBase64(s);
    const out = buf.subarray(off, off + written);
    off += written;
    return out;
  });
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
     * Per client, the deleted clock ranges [clock[k], end[k]) with the number of updates after which
     * they are deleted (at[k]), sorted by clock, without overlaps (a clock counts from the first update
     * that deleted it).
     * @type {Map<number, {clock: Float64Array, end: Float64Array, at: Float64Array}>}
     */
    this.deletions = new Map();
    /** @type {Map<number, number[]>} per client while building: clock, end, at, … as recorded */
    const recordedDeletions = new Map();
    const deleted = (client, clock, end, at) => {
      let list = recordedDeletions.get(client);
      if (!list) recordedDeletions.set(client, (list = []));
      list.push(clock, end, at);
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
          const D = scan.dels.a;
          for (let k = 0; k < scan.dels.n; k += 3) deleted(D[k], D[k + 1], D[k + 1] + D[k + 2], i + 1);
          const G = scan.groups.a;
          for (let k = 0; k < scan.groups.n; k += 3) if (G[k + 2] !== G[k + 1]) moved(G[k], G[k + 2], i + 1);
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
    for (const [client, list] of recordedDeletions) this.deletions.set(client, firstDeletions(list));
  }

  /** The state vector after the first `n` updates. */
  stateAt(n) {
    const sv = new Map();
    for (const [client, { at, clock }] of this.clocks) {
      // The last change at or before n.
      const lo = firstAfter(at, n);
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
      const dels = this.deletions.get(client);
      if (dels !== undefined) {
        const { clock, end: ends, at } = dels;
        // The first range that ends after `start`.
        for (let k = firstAfter(ends, start); k < ends.length && clock[k] < end; k++) {
          if (at[k] > n) continue; // deleted later
          const from = Math.max(clock[k], pos);
          if (from > pos) parts.push(str.slice(pos - start, from - start));
          pos = Math.max(pos, Math.min(ends[k], end));
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
    return firstAfter(this.times, t);
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
// bits; 0x80: an origin id follows, 0x40: a right origin id follows; with neither, the parent: a root
// type's name or an item's id; 0x20: a map key), then the content; then the delete set: per client,
// ranges (clock, length). `Scan` reads only what the replay needs, and says whether the update is
// *ready* — one Y.applyUpdate of it would integrate all of it at once: nothing of it already in,
// nothing missing (each client's structs start at the document's clock, every origin is in), and only
// text (string content under a root type). Anything else is left to Yjs, update by update.

const BAD = new Error('replay: malformed update');
/** Decodes a string's UTF-8 as lib0 does (fatal): for its length in UTF-16 units. */
const utf8 = typeof TextDecoder === 'function' ? new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }) : null;

/** A growable Float64Array (reused: `n` reset, the storage kept). */
class Floats {
  constructor(size = 64) {
    this.a = new Float64Array(size);
    this.n = 0;
  }

  push3(x, y, z) {
    if (this.n + 3 > this.a.length) this.grow();
    const a = this.a;
    a[this.n] = x;
    a[this.n + 1] = y;
    a[this.n + 2] = z;
    this.n += 3;
  }

  grow() {
    const a = new Float64Array(this.a.length * 2);
    a.set(this.a);
    this.a = a;
  }
}

/** Fields of a struct in `Scan.structs`. */
const STRUCT = 11;

class Scan {
  constructor() {
    /** Per struct (STRUCT numbers): client, clock, length, origin client, origin clock (-1: none),
     * right origin client, right origin clock (-1: none), header start, header end, string start,
     * string end. */
    this.structs = new Float64Array(STRUCT * 16);
    this.nStructs = 0;
    /** Per client of the update: client, first clock, end clock. */
    this.groups = new Floats(12);
    /** Per deleted range: client, clock, length. */
    this.dels = new Floats(48);
    /** Reads the update (lib0's decoder, reused: `arr` and `pos` set per update). */
    this.dec = decoding.createDecoder(new Uint8Array(0));
    this.strStart = 0;
  }

  varUint() {
    return decoding.readVarUint(this.dec);
  }

  /** Skips a var-length string; its length in UTF-16 units, or -1 when it is not valid UTF-8. */
  string() {
    const len = this.varUint();
    const dec = this.dec;
    const start = dec.pos;
    const end = start + len;
    if (end > dec.arr.length) throw BAD;
    dec.pos = end;
    this.strStart = start;
    const a = dec.arr;
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
    const g = this.groups.a;
    for (let k = 0; k < this.groups.n; k += 3) if (g[k] === client) return g[k + 2];
    return sv.get(client) ?? 0;
  }

  /** Reads `data`; true when it is ready against the state vector `sv` (see above). */
  read(data, sv) {
    const dec = this.dec;
    dec.arr = data;
    dec.pos = 0;
    this.nStructs = 0;
    const G = this.groups;
    const D = this.dels;
    G.n = 0;
    D.n = 0;
    try {
      const clients = this.varUint();
      for (let c = 0; c < clients; c++) {
        const n = this.varUint();
        const client = this.varUint();
        let clock = this.varUint();
        if (n === 0) continue;
        if (clock !== (sv.get(client) ?? 0)) return false; // a gap, or some of it is in already
        for (let k = 0; k < G.n; k += 3) if (G.a[k] === client) return false;
        for (let s = 0; s < n; s++) {
          const hdr = dec.pos;
          if (hdr >= data.length) throw BAD;
          const info = data[dec.pos++];
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
          const hdrEnd = dec.pos;
          const len = this.string();
          if (len <= 0) return false;
          if (STRUCT * (this.nStructs + 1) > this.structs.length) {
            const grown = new Float64Array(this.structs.length * 2);
            grown.set(this.structs);
            this.structs = grown;
          }
          const S = this.structs;
          const o = STRUCT * this.nStructs++;
          S[o] = client;
          S[o + 1] = clock;
          S[o + 2] = len;
          S[o + 3] = oc;
          S[o + 4] = ok;
          S[o + 5] = rc;
          S[o + 6] = rk;
          S[o + 7] = hdr;
          S[o + 8] = hdrEnd;
          S[o + 9] = this.strStart;
          S[o + 10] = dec.pos;
          clock += len;
        }
        G.push3(client, sv.get(client) ?? 0, clock);
      }
      // Deletions, even of what is not in yet: the replay shows a character only once it is in, so
      // a deletion that comes first is the same as one that counts from the update bringing it.
      const dsClients = this.varUint();
      for (let c = 0; c < dsClients; c++) {
        const client = this.varUint();
        const n = this.varUint();
        for (let r = 0; r < n; r++) {
          const clock = this.varUint();
          const len = this.varUint();
          if (len > 0) D.push3(client, clock, len);
        }
      }
    } catch (err) {
      // A bug, not a malformed update (lib0's decoder and the checks here throw plain errors): the
      // build falls back (see Replay).
      if (err instanceof TypeError || err instanceof ReferenceError) throw err;
      return false;
    }
    // Every origin in (in the document, or earlier in this update: Yjs integrates those first).
    const S = this.structs;
    for (let o = 0; o < STRUCT * this.nStructs; o += STRUCT) {
      const client = S[o];
      const clock = S[o + 1];
      const ok = S[o + 4];
      const rk = S[o + 6];
      if (ok >= 0 && (S[o + 3] === client ? ok >= clock : ok >= this.after(sv, S[o + 3]))) return false;
      if (rk >= 0 && (S[o + 5] === client ? rk >= clock : rk >= this.after(sv, S[o + 5]))) return false;
    }
    return true;
  }
}

/**
 * A growable byte buffer, reset and reused (a client's open struct in `Batch` is rebuilt for every
 * keystroke it joins). Not lib0's `Encoder`, which cannot be reset: with it, building the batches took
 * twice as long in Node (30,000 keystrokes: 12 against 6–9 ms warm, 78–86 against 37–44 ms cold).
 */
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
 * one per keystroke. Without their deletions: where an item goes never depends on whether its
 * neighbours are deleted, and the replay reads deletions from its own table (`deletions`), never from
 * the items — so the document's items are the same, only fewer of them split and marked deleted.
 * (An update applied on its own may then delete again what a batch deleted: that deletion is recorded
 * too, and the first one counts.)
 */
class Batch {
  constructor() {
    /** @type {Map<number, {first: number, count: number, out: Bytes, hdr: Uint8Array|null, hdrStart: number, hdrEnd: number, str: Bytes, end: number, rc: number, rk: number}>} */
    this.clients = new Map();
    this.empty = true;
  }

  add(scan, data) {
    const S = scan.structs;
    for (let k = 0; k < STRUCT * scan.nStructs; k += STRUCT) {
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
    u.varUint(0); // no deletions (see above)
    this.clients.clear();
    this.empty = true;
    return u.buf.subarray(0, u.length);
  }
}

/**
 * A client's deletions (`[clock, end, at, …]` as recorded, `at` non-decreasing), sorted by clock and
 * without overlaps: where two recorded ranges overlap (a range deleted by two updates — concurrent
 * deletions, a repeated update), each clock keeps the first update that deleted it. (Yjs records a
 * deleted clock once; the ranges read from the bytes of ready updates can repeat one.)
 * @returns {{clock: Float64Array, end: Float64Array, at: Float64Array}}
 */
export function firstDeletions(flat) {
  const count = flat.length / 3;
  // The order by clock, then by `at` (the order recorded).
  let order;
  let fits = count < 2 ** 26;
  for (let k = 0; fits && k < flat.length; k += 3) fits = flat[k] < 2 ** 27;
  if (fits) {
    // As numbers, clock · 2^26 + index (exact in a double's 53 bits): a native sort.
    const keys = new Float64Array(count);
    for (let k = 0; k < count; k++) keys[k] = flat[3 * k] * 2 ** 26 + k;
    keys.sort();
    order = new Uint32Array(count);
    for (let k = 0; k < count; k++) order[k] = keys[k] % 2 ** 26;
  } else {
    order = Uint32Array.from({ length: count }, (_, k) => k).sort((a, b) => flat[3 * a] - flat[3 * b] || a - b);
  }
  // A group of g ranges gives at most 2g - 1 pieces (one range inside another: three).
  const clock = new Float64Array(2 * count);
  const end = new Float64Array(2 * count);
  const at = new Float64Array(2 * count);
  let n = 0;
  for (let i = 0; i < count; ) {
    const r = 3 * order[i];
    // A group of ranges that overlap one another (transitively).
    let j = i + 1;
    let groupEnd = flat[r + 1];
    while (j < count && flat[3 * order[j]] < groupEnd) groupEnd = Math.max(groupEnd, flat[3 * order[j++] + 1]);
    if (j === i + 1) {
      clock[n] = flat[r];
      end[n] = flat[r + 1];
      at[n++] = flat[r + 2];
    } else {
      const group = Array.from(order.subarray(i, j), (k) => ({ clock: flat[3 * k], end: flat[3 * k + 1], at: flat[3 * k + 2] }));
      const cuts = [...new Set(group.flatMap((d) => [d.clock, d.end]))].sort((a, b) => a - b);
      for (let k = 0; k + 1 < cuts.length; k++) {
        let first = Infinity;
        for (const d of group) if (d.clock <= cuts[k] && cuts[k + 1] <= d.end) first = Math.min(first, d.at);
        if (first === Infinity) continue;
        if (n > 0 && end[n - 1] === cuts[k] && at[n - 1] === first) {
          end[n - 1] = cuts[k + 1];
        } else {
          clock[n] = cuts[k];
          end[n] = cuts[k + 1];
          at[n++] = first;
        }
      }
    }
    i = j;
  }
  return { clock: clock.subarray(0, n), end: end.subarray(0, n), at: at.subarray(0, n) };
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
