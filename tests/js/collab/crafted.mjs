// Hand-made y-protocols messages and Yjs updates for hostile-input tests and benchmarks: what an
// attacker can send that no Yjs client would make.
import * as encoding from 'lib0/encoding';

/** `[messageSync, update, body]`. */
export function updateMessage(update) {
  const enc = encoding.createEncoder();
  encoding.writeVarUint(enc, 0);
  encoding.writeVarUint(enc, 2);
  encoding.writeVarUint8Array(enc, update);
  return encoding.toUint8Array(enc);
}

/** A hand-made Yjs update: one string struct per entry, at the start of the text (no origins). */
export function crafted(structs) {
  const enc = encoding.createEncoder();
  encoding.writeVarUint(enc, structs.length);
  for (const [client, clock, s] of structs) {
    encoding.writeVarUint(enc, 1);
    encoding.writeVarUint(enc, client);
    encoding.writeVarUint(enc, clock);
    encoding.writeUint8(enc, 4);
    encoding.writeVarUint(enc, 1);
    encoding.writeVarString(enc, 'code');
    encoding.writeVarString(enc, s);
  }
  encoding.writeVarUint(enc, 0);
  return encoding.toUint8Array(enc);
}

/** One client's `n` one-character structs, each after the previous (cheap to integrate). */
export function chain(client, n) {
  const enc = encoding.createEncoder();
  encoding.writeVarUint(enc, 1);
  encoding.writeVarUint(enc, n);
  encoding.writeVarUint(enc, client);
  encoding.writeVarUint(enc, 0);
  for (let i = 0; i < n; i++) {
    if (i === 0) {
      encoding.writeUint8(enc, 4);
      encoding.writeVarUint(enc, 1);
      encoding.writeVarString(enc, 'code');
    } else {
      encoding.writeUint8(enc, 0x80 | 4);
      encoding.writeVarUint(enc, client);
      encoding.writeVarUint(enc, i - 1);
    }
    encoding.writeVarString(enc, 'x');
  }
  encoding.writeVarUint(enc, 0);
  return encoding.toUint8Array(enc);
}
