// A small typed event emitter: `on(type, fn)` returns an unsubscribe function, `emit(type, payload)`
// calls every listener of that type with the one payload object.
//
// Like EventTarget, a listener that throws does not stop the others: the error is rethrown from a
// microtask, so the browser reports it (and the tests, which fail on page errors, see it), while the
// emitter — usually in the middle of handling a server event — carries on.
export class Emitter {
  constructor() {
    /** @type {Map<string, Set<(payload: any) => void>>} */
    this._listeners = new Map();
  }

  /** Calls `fn(payload)` on every `type` event; returns a function that unsubscribes it. */
  on(type, fn) {
    let set = this._listeners.get(type);
    if (!set) {
      set = new Set();
      this._listeners.set(type, set);
    }
    set.add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    this._listeners.get(type)?.delete(fn);
  }

  emit(type, payload) {
    const set = this._listeners.get(type);
    if (!set) return;
    // A copy: a listener may subscribe or unsubscribe while the event is delivered.
    for (const fn of [...set]) {
      try {
        fn(payload);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
