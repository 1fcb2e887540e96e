// Formats console arguments roughly the way Node.js prints them, so candidates see familiar output:
// strings raw at the top level, quoted inside structures; arrays, objects, Maps, Sets, errors, dates.

const MAX_DEPTH = 3;

/** The JS runner wraps the program as `${PROGRAM_PREFIX}<code>\n})`: columns on line 1 are shifted. */
export const PROGRAM_PREFIX = '(async function () {';
const MAX_ITEMS = 100;
const MAX_STRING = 10000;

function quote(s) {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n')}'`;
}

function isIdentifier(k) {
  return /^[A-Za-z_$][\w$]*$/.test(k);
}

function fnName(fn) {
  const src = Function.prototype.toString.call(fn);
  if (/^class[\s{]/.test(src)) return `[class ${fn.name || '(anonymous)'}]`;
  return fn.name ? `[Function: ${fn.name}]` : '[Function (anonymous)]';
}

export function errorText(e) {
  if (e && typeof e === 'object' && typeof e.stack === 'string' && e.stack) {
    // Chromium's stack starts with "Name: message"; keep only the frames in the user's code.
    const lines = e.stack.split('\n');
    const head = lines.filter((l) => !/^\s+at /.test(l));
    const frames = lines
      .filter((l) => /^\s+at /.test(l) && /main\.js:\d+/.test(l))
      .map((l) =>
        l
          .replace(/at (?:eval|async \S*eval\S*) \((main\.js:\d+:\d+)\)/, 'at $1')
          .replace(/main\.js:1:(\d+)/, (m, c) => `main.js:1:${Math.max(1, Number(c) - PROGRAM_PREFIX.length)}`),
      );
    return [...head, ...frames].join('\n');
  }
  if (e && typeof e === 'object' && 'message' in e) return `${e.name || 'Error'}: ${e.message}`;
  return `Uncaught ${inspect(e, 0, new Set(), false)}`;
}

export function inspect(v, depth = 0, seen = new Set(), top = true) {
  switch (typeof v) {
    case 'string':
      return top ? v : quote(v.length > MAX_STRING ? `${v.slice(0, MAX_STRING)}…` : v);
    case 'number':
      return Object.is(v, -0) ? '-0' : String(v);
    case 'bigint':
      return `${v}n`;
    case 'boolean':
    case 'undefined':
      return String(v);
    case 'symbol':
      return v.toString();
    case 'function':
      return fnName(v);
    default:
  }
  if (v === null) return 'null';
  if (seen.has(v)) return '[Circular *]';
  if (v instanceof Error) return errorText(v);
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? 'Invalid Date' : v.toISOString();
  if (v instanceof RegExp) return String(v);
  if (v instanceof Promise) return 'Promise { <pending> }';
  if (v instanceof WeakMap || v instanceof WeakSet) return `${v.constructor.name} { <items unknown> }`;
  if (depth > MAX_DEPTH) return Array.isArray(v) ? '[Array]' : '[Object]';
  seen.add(v);
  try {
    const inner = (x) => inspect(x, depth + 1, seen, false);
    if (Array.isArray(v) || ArrayBuffer.isView(v)) {
      const items = [];
      const n = Math.min(v.length, MAX_ITEMS);
      for (let i = 0; i < n; i++) items.push(i in v ? inner(v[i]) : '<empty>');
      if (v.length > MAX_ITEMS) items.push(`... ${v.length - MAX_ITEMS} more items`);
      const prefix = Array.isArray(v) ? '' : `${v.constructor.name}(${v.length}) `;
      return items.length ? `${prefix}[ ${items.join(', ')} ]` : `${prefix}[]`;
    }
    if (v instanceof Map) {
      const items = [...v].slice(0, MAX_ITEMS).map(([k, x]) => `${inner(k)} => ${inner(x)}`);
      return `Map(${v.size}) {${items.length ? ` ${items.join(', ')} ` : ''}}`;
    }
    if (v instanceof Set) {
      const items = [...v].slice(0, MAX_ITEMS).map(inner);
      return `Set(${v.size}) {${items.length ? ` ${items.join(', ')} ` : ''}}`;
    }
    const keys = Object.keys(v);
    const items = keys.slice(0, MAX_ITEMS).map((k) => `${isIdentifier(k) ? k : quote(k)}: ${inner(v[k])}`);
    if (keys.length > MAX_ITEMS) items.push(`... ${keys.length - MAX_ITEMS} more properties`);
    const ctor = Object.getPrototypeOf(v);
    const name = ctor === null ? '[Object: null prototype] ' : ctor.constructor && ctor.constructor !== Object ? `${ctor.constructor.name} ` : '';
    return items.length ? `${name}{ ${items.join(', ')} }` : `${name}{}`;
  } finally {
    seen.delete(v);
  }
}

/** console.log(fmt, ...args) with %s %d %i %f %o %O %j %c substitution, then the rest space-separated. */
export function formatArgs(args) {
  if (args.length === 0) return '';
  let rest = args;
  let out = '';
  if (typeof args[0] === 'string' && args.length > 1 && /%[sdifoOjc%]/.test(args[0])) {
    let i = 1;
    out = args[0].replace(/%([sdifoOjc%])/g, (m, f) => {
      if (f === '%') return '%';
      if (i >= args.length) return m;
      const a = args[i++];
      switch (f) {
        case 's':
          return typeof a === 'string' ? a : inspect(a, 1, new Set(), false);
        case 'd':
        case 'i':
          return typeof a === 'bigint' ? `${a}n` : String(f === 'i' ? parseInt(a, 10) : Number(a));
        case 'f':
          return String(parseFloat(a));
        case 'j':
          try {
            return JSON.stringify(a);
          } catch {
            return '[Circular]';
          }
        case 'c':
          return '';
        default:
          return inspect(a, 0, new Set(), false);
      }
    });
    rest = args.slice(i);
    if (rest.length === 0) return out;
    out += ' ';
  }
  return out + rest.map((a) => inspect(a)).join(' ');
}
