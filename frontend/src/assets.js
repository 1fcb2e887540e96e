// Run-time URLs of the files the page starts itself (workers, Ace's workers and search box). The build
// (frontend/build.mjs) names them by content or version and passes the names in __DUET_ASSETS__; the
// plain names below are only for code bundled without it.
/* global __DUET_ASSETS__ */
const BUILT = typeof __DUET_ASSETS__ === 'object' ? __DUET_ASSETS__ : {};

export const ASSETS = {
  jsWorker: BUILT.jsWorker ?? '/static/js-worker.js',
  pyWorker: BUILT.pyWorker ?? '/static/py-worker.js',
  aceBase: BUILT.aceBase ?? '/static/ace/',
};
