// The review page's replay (frontend/src/replay.js) under plain Node, as a property: over random
// histories — two or three editors typing, deleting and syncing at random, their updates stored in
// the order a server would (now and then out of causal order, as two hubs can commit them), at random
// times with ties and idle stretches — the replay's text at any time t equals the document rebuilt
// from scratch from the updates stored up to t. Seeded: a failure prints the seed that reproduces it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as Y from '../../frontend/node_modules/yjs/dist/yjs.mjs';
import { GAP_LEAD_MS, IDLE_GAP_MS, Replay, advance, firstDeletions, fromBase64, fromBase64All, textChange } from '../../frontend/src/replay.js';

/** A small deterministic generator (mulberry32). */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ['x', 'ab', 'def ', '\n', '  return 1\n', 'é', '😀', 'ключ'];

/**
 * A random history: `{updates: [{at, author, data}], root}` in stored order. Each editor's own
 * updates reach the "server" in the order they were made; the editors sync with each other only now
 * and then (so edits are concurrent), and sometimes two neighbouring stored updates are swapped
 * (out of causal order). Options, for the harder cases: `swap` (the chance of a swap; 0.05),
 * `shuffle` (the chance that an update is moved up to 8 places later: far out of order), `repeat`
 * (the chance that an update is stored twice, the second time later: a re-sent edit) and `relay`
 * (the chance that a sync is stored too: a whole document's state, several clients' structs in one
 * update, deleted content included, as a relaying client's resync sends it).
 */
function history(seed, { root = 'code', swap = 0.05, shuffle = 0, repeat = 0, relay = 0 } = {}) {
  const r = rng(seed);
  const editors = Array.from({ length: 2 + Math.floor(r() * 2) }, (_, i) => {
    const doc = new Y.Doc();
    const out = [];
    doc.on('update', (u, origin) => {
      if (origin !== 'sync') out.push(u);
    });
    return { doc, out, author: `user-${i}` };
  });
  const stored = [];
  const steps = 20 + Math.floor(r() * 160);
  for (let s = 0; s < steps; s++) {
    const e = editors[Math.floor(r() * editors.length)];
    const text = e.doc.getText(root);
    const len = text.length;
    // Positions between characters (never inside a surrogate pair: no editor puts the cursor there,
    // and Yjs replaces a split pair with U+FFFD in the stored document for good).
    const s = text.toString();
    const bounds = [0];
    for (let i = 0; i < s.length; i += s.codePointAt(i) > 0xffff ? 2 : 1) bounds.push(i + (s.codePointAt(i) > 0xffff ? 2 : 1));
    const pick = () => bounds[Math.floor(r() * bounds.length)];
    const roll = r();
    if (len > 0 && roll < 0.3) {
      const a = pick();
      const b = pick();
      if (a !== b) text.delete(Math.min(a, b), Math.abs(a - b));
    } else if (roll < 0.85) {
      text.insert(pick(), WORDS[Math.floor(r() * WORDS.length)]);
    } else {
      // Two editors sync (everything each has, both ways).
      const other = editors[Math.floor(r() * editors.length)];
      if (other !== e) {
        Y.applyUpdate(other.doc, Y.encodeStateAsUpdate(e.doc), 'sync');
        Y.applyUpdate(e.doc, Y.encodeStateAsUpdate(other.doc), 'sync');
        if (r() < relay) stored.push({ author: e.author, data: Y.encodeStateAsUpdate(e.doc) });
      }
    }
    // Whatever an editor made reaches the server now or a little later.
    for (const ed of editors) {
      while (ed.out.length > 0 && r() < 0.7) stored.push({ author: ed.author, data: ed.out.shift() });
    }
  }
  for (const ed of editors) for (const data of ed.out) stored.push({ author: ed.author, data });
  for (let i = 0; i + 1 < stored.length; i++) {
    if (r() < swap) [stored[i], stored[i + 1]] = [stored[i + 1], stored[i]];
  }
  for (let i = stored.length - 1; i >= 0; i--) {
    if (r() < shuffle) stored.splice(Math.min(stored.length, i + 1 + Math.floor(r() * 8)), 0, ...stored.splice(i, 1));
    if (r() < repeat) stored.splice(Math.min(stored.length, i + 1 + Math.floor(r() * 20)), 0, stored[i]);
  }
  let at = Date.UTC(2026, 0, 1, 10);
  const updates = stored.map((u) => {
    const gap = r();
    at += gap < 0.2 ? 0 : gap < 0.95 ? Math.floor(r() * 2000) : 10_000 + Math.floor(r() * 600_000);
    return { ...u, at };
  });
  return { updates, root };
}

/** The kinds of random history the tests go through (options of `history`). */
const KINDS = [
  { name: 'mostly in order' },
  { name: 'far out of order', swap: 0.2, shuffle: 0.15 },
  { name: 'repeated updates', repeat: 0.1 },
  { name: 'relayed resyncs', relay: 0.5, swap: 0.1 },
  { name: 'everything', swap: 0.1, shuffle: 0.1, repeat: 0.05, relay: 0.3 },
];

/** The document rebuilt from scratch from the updates stored at or before `t`. */
function rebuilt({ updates, root }, t) {
  const doc = new Y.Doc();
  for (const u of updates) if (u.at <= t) Y.applyUpdate(doc, u.data);
  return doc.getText(root).toString();
}

/** Two editors with the given client ids, their own updates collected in order, and a full sync. */
function twoEditors(idA, idB) {
  const a = new Y.Doc();
  a.clientID = idA;
  const b = new Y.Doc();
  b.clientID = idB;
  const ups = [];
  for (const d of [a, b]) d.on('update', (u, origin) => origin !== 'sync' && ups.push(u));
  const sync = () => {
    Y.applyUpdate(a, Y.encodeStateAsUpdate(b), 'sync');
    Y.applyUpdate(b, Y.encodeStateAsUpdate(a), 'sync');
  };
  return { a, b, ups, sync };
}

describe('replay', () => {
  test('the text at any time equals the document rebuilt from the history up to then (random histories)', () => {
    const base = Number(process.env.REPLAY_SEED ?? 1);
    for (let seed = base; seed < base + 100; seed++) {
      const kind = KINDS[seed % KINDS.length];
      const h = history(seed, { ...kind, root: seed % 3 === 0 ? 'notes' : 'code' });
      const r = rng(seed * 7919);
      const replay = new Replay(h.updates, { root: h.root });
      const first = h.updates[0]?.at ?? 0;
      const last = h.updates.at(-1)?.at ?? 0;
      const times = [first - 1, first, last, last + 1];
      for (let k = 0; k < 25; k++) times.push(first + Math.floor(r() * (last - first + 1)));
      // Some at exactly an update's time (ties: every update of that instant is in).
      for (let k = 0; k < 5 && h.updates.length; k++) times.push(h.updates[Math.floor(r() * h.updates.length)].at);
      // Random order: seeks go back and forth, as scrubbing does (the same index twice: the cache).
      for (const t of times) {
        assert.equal(replay.textAtTime(t), rebuilt(h, t), `seed ${seed} (REPLAY_SEED=${seed}, ${kind.name}), t = ${t - first} ms`);
      }
      assert.equal(replay.textAt(replay.length), rebuilt(h, Infinity), `seed ${seed}: the whole history`);
    }
  });

  test('the fast build (ready updates applied together) and the fallback (one by one) agree after every update', () => {
    const base = Number(process.env.REPLAY_SEED ?? 1);
    let alone = 0;
    let total = 0;
    for (let seed = base; seed < base + 60; seed++) {
      const kind = KINDS[seed % KINDS.length];
      const h = history(seed * 31, { ...kind, root: seed % 4 === 0 ? 'notes' : 'code' });
      const fast = new Replay(h.updates, { root: h.root });
      const plain = new Replay(h.updates, { root: h.root, fast: false });
      assert.equal(fast.built, 'fast', `seed ${seed}: the fast build failed and fell back`);
      assert.equal(plain.alone, h.updates.length);
      for (let n = 0; n <= h.updates.length; n++) {
        assert.equal(fast.textAt(n), plain.textAt(n), `seed ${seed} (REPLAY_SEED=${seed}, ${kind.name}): after ${n} of ${h.updates.length} updates`);
        assert.deepEqual(fast.stateAt(n), plain.stateAt(n), `seed ${seed}: state vector after ${n} updates`);
      }
      alone += fast.alone;
      total += h.updates.length;
    }
    // Both ways are exercised: most updates batched, some (out of order, repeated, relayed) alone.
    assert.ok(alone > 0 && alone < total / 2, `${alone} of ${total} updates applied alone`);
  });

  test('written cases: a deletion stored before what it deletes, an insertion before its origin, concurrent editors, a repeat', () => {
    const { a, b, ups, sync } = twoEditors(1, 2);
    a.getText('code').insert(0, 'hello'); // 0
    a.getText('code').insert(5, ' world'); // 1: typed after 0
    sync();
    b.getText('code').delete(1, 3); // 2: b deletes "ell"
    a.getText('code').insert(11, '!'); // 3: concurrent with 2
    b.getText('code').insert(0, '> '); // 4
    sync();
    a.getText('code').delete(0, 2); // 5: deletes b's "> "
    const check = (order, expected) => {
      const updates = order.map((k, i) => ({ at: i, author: null, data: ups[k] }));
      const fast = new Replay(updates);
      const plain = new Replay(updates, { fast: false });
      const texts = updates.map((_, n) => fast.textAt(n + 1));
      assert.deepEqual(texts, expected, `order ${order}`);
      assert.deepEqual(updates.map((_, n) => plain.textAt(n + 1)), expected, `order ${order} (fallback)`);
      for (let n = 0; n <= updates.length; n++) assert.equal(fast.textAt(n), rebuilt({ updates, root: 'code' }, n - 1), `order ${order}, ${n}`);
      return fast;
    };
    const inOrder = check([0, 1, 2, 3, 4, 5], ['hello', 'hello world', 'ho world', 'ho world!', '> ho world!', 'ho world!']);
    assert.equal(inOrder.alone, 0);
    // The deletion (2) before what it deletes (0): it waits, and counts from update 0's arrival.
    check([2, 1, 0, 3, 4, 5], ['', '', 'ho world', 'ho world!', '> ho world!', 'ho world!']);
    // An insertion (1) before its origin (0), a deletion (5) before its target (4), a repeat of 0.
    check([1, 5, 0, 3, 2, 0, 4], ['', '', 'hello world', 'hello world!', 'ho world!', 'ho world!', 'ho world!']);
  });

  test('written cases: an insertion stored before its origin alone (appended), a concurrent insertion between one editor\'s consecutive characters', () => {
    const { a, b, ups, sync } = twoEditors(3, 2);
    b.getText('code').insert(0, 'q'); // 0: b's first
    a.getText('code').insert(0, 'xy'); // 1
    sync();
    b.getText('code').insert(3, 'z'); // 2: b appends: its origin is a's "y", no right origin
    a.getText('code').insert(2, 'a'); // 3: a types inside the text
    sync();
    const text = a.getText('code').toString();
    const at = text.indexOf('a');
    b.getText('code').insert(at + 1, 'b'); // 4: b right after a's "a"
    sync();
    a.getText('code').insert(at + 1, 'c'); // 5: a after its own "a" (origin "a"), before b's "b" (right origin)
    const check = (order) => {
      const updates = order.map((k, i) => ({ at: i, author: null, data: ups[k] }));
      const fast = new Replay(updates);
      const plain = new Replay(updates, { fast: false });
      for (let n = 0; n <= updates.length; n++) {
        const expected = rebuilt({ updates, root: 'code' }, n - 1);
        assert.equal(fast.textAt(n), expected, `order ${order}, after ${n}`);
        assert.equal(plain.textAt(n), expected, `order ${order}, after ${n} (fallback)`);
      }
      return fast;
    };
    assert.equal(check([0, 1, 2, 3, 4, 5]).alone, 0);
    assert.match(check([0, 1, 2, 3, 4, 5]).textAt(6), /acb/);
    check([0, 2, 1, 3, 4, 5]); // b's append before the text it is typed after
    check([0, 1, 2, 3, 5, 4]); // a's "c" before b's "b", its right origin
  });

  test('firstDeletions: sorted by clock, each clock deleted by the first update that deleted it, small and huge clocks', () => {
    const r = rng(7);
    for (const base of [0, 2 ** 40]) {
      for (let k = 0; k < 300; k++) {
        // Random ranges, recorded in order of `at`; a clock's answer is its smallest `at`.
        const flat = [];
        let at = 1;
        for (let m = Math.floor(r() * 12); m > 0; m--) {
          const clock = base + Math.floor(r() * 40);
          flat.push(clock, clock + 1 + Math.floor(r() * 8), (at += Math.floor(r() * 2)));
        }
        const { clock, end, at: first } = firstDeletions(flat);
        for (let i = 0; i < clock.length; i++) {
          assert.ok(clock[i] < end[i] && (i === 0 || end[i - 1] <= clock[i]), 'sorted, without overlaps');
        }
        for (let c = base; c < base + 50; c++) {
          let expected = Infinity;
          for (let i = 0; i < flat.length; i += 3) if (flat[i] <= c && c < flat[i + 1]) expected = Math.min(expected, flat[i + 2]);
          let got = Infinity;
          for (let i = 0; i < clock.length; i++) if (clock[i] <= c && c < end[i]) got = first[i];
          assert.equal(got, expected, `clock ${c - base} of ${JSON.stringify(flat)}`);
        }
      }
    }
  });

  test('an empty history, an update that does not decode, base64 from /history', () => {
    const empty = new Replay([]);
    assert.equal(empty.length, 0);
    assert.equal(empty.textAtTime(Date.now()), '');
    const doc = new Y.Doc();
    const ups = [];
    doc.on('update', (u) => ups.push(u));
    doc.getText('code').insert(0, 'hello');
    doc.getText('code').insert(5, ' world');
    const b64 = ups.map((u) => Buffer.from(u).toString('base64'));
    const r = new Replay([
      { at: 1, author: null, data: fromBase64(b64[0]) },
      { at: 2, author: null, data: new Uint8Array([255, 1, 2]) },
      { at: 3, author: 'a', data: fromBase64(b64[1]) },
    ]);
    assert.deepEqual([0, 1, 2, 3].map((t) => r.textAtTime(t)), ['', 'hello', 'hello', 'hello world']);
    assert.equal(r.built, 'fast', 'an update that does not decode is left to Yjs, not taken for a bug');
    assert.deepEqual(fromBase64All([...b64, '']), [...ups, new Uint8Array()]);
    // Where the browser has Uint8Array#setFromBase64 (one buffer for all): here a stand-in for it.
    if (typeof Uint8Array.prototype.setFromBase64 !== 'function') {
      Uint8Array.prototype.setFromBase64 = function setFromBase64(s) {
        const bytes = Buffer.from(s, 'base64');
        this.set(bytes);
        return { read: s.length, written: bytes.length };
      };
      try {
        const views = fromBase64All([...b64, '', 'QQ==']);
        assert.deepEqual(views.map((v) => [...v]), [...ups.map((u) => [...u]), [], [65]]);
        assert.equal(new Set(views.map((v) => v.buffer)).size, 1);
      } finally {
        delete Uint8Array.prototype.setFromBase64;
      }
    }
    assert.equal(r.indexAt(2), 2);
  });

  test('playing: real time times the speed, idle gaps skipped to just before the next activity, never past the end', () => {
    const times = Float64Array.from([1000, 2000, 60_000, 61_000]);
    // Busy: 100 ms at 8x is 800 ms.
    assert.equal(advance(1000, 100, 8, times, 70_000), 1800);
    // From 2 s the next activity is at 60 s: skipped to GAP_LEAD_MS before it.
    assert.equal(advance(2000, 16, 1, times, 70_000), 60_000 - GAP_LEAD_MS);
    // A gap of exactly IDLE_GAP_MS is played, not skipped.
    const near = Float64Array.from([0, IDLE_GAP_MS]);
    assert.equal(advance(0, 100, 1, near, 10_000), 100);
    // Fast enough to pass the gap's landing point anyway: no step back.
    assert.equal(advance(2000, 2000, 32, times, 70_000), 66_000);
    // After the last activity the end is the next thing: skipped to it, and never past it.
    assert.equal(advance(61_000, 16, 1, times, 200_000), 200_000 - GAP_LEAD_MS);
    assert.equal(advance(69_990, 100, 32, times, 70_000), 70_000);
  });

  test('textChange: the one replacement between two texts', () => {
    const apply = (from, c) => (c ? from.slice(0, c.start) + c.text + from.slice(c.end) : from);
    const r = rng(99);
    const alphabet = 'ab\n😀';
    const random = () => Array.from({ length: Math.floor(r() * 12) }, () => alphabet[Math.floor(r() * alphabet.length)]).join('');
    for (let k = 0; k < 2000; k++) {
      const a = random();
      const b = r() < 0.3 ? a : random();
      const c = textChange(a, b);
      assert.equal(apply(a, c), b, JSON.stringify([a, b, c]));
      if (a === b) assert.equal(c, null);
    }
    assert.deepEqual(textChange('def f():\n  pass\n', 'def f(x):\n  pass\n'), { start: 6, end: 6, text: 'x' });
  });
});
