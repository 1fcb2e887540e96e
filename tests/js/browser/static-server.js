// A tiny static server for tests that need no Duet server: maps / → dist/index.html,
// /interview/<code> → dist/editor.html, /preview → dist/preview.html, /static/X → dist/static/X, plus
// extra routes.
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.zip': 'application/zip',
  '.svg': 'image/svg+xml',
  '.map': 'application/json',
};

/**
 * @param {string} dist frontend/dist
 * @param {{mounts?: Record<string, string>, handler?: (req, res) => boolean | Promise<boolean>}} [opts]
 *   mounts: URL prefix → directory; handler: called first, returns true when it answered.
 */
export async function startStaticServer(dist, { mounts = {}, handler } = {}) {
  const server = createServer(async (req, res) => {
    try {
      if (handler && (await handler(req, res))) return;
      const url = new URL(req.url, 'http://x');
      let file = null;
      if (url.pathname === '/') file = path.join(dist, 'index.html');
      else if (/^\/interview\/[^/]+\/?$/.test(url.pathname)) file = path.join(dist, 'editor.html');
      else if (url.pathname === '/preview') file = path.join(dist, 'preview.html');
      else if (url.pathname.startsWith('/static/')) file = path.join(dist, 'static', url.pathname.slice('/static/'.length));
      for (const [prefix, dir] of Object.entries(mounts)) {
        if (url.pathname.startsWith(prefix)) file = path.join(dir, url.pathname.slice(prefix.length));
      }
      const root = file && Object.values(mounts).concat([dist]).find((d) => path.resolve(file).startsWith(path.resolve(d)));
      if (!file || !root) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      const body = await readFile(file);
      res.writeHead(200, {
        'content-type': TYPES[path.extname(file)] || 'application/octet-stream',
        'cache-control': 'max-age=3600',
      });
      res.end(body);
    } catch {
      if (!res.headersSent) res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    httpServer: server,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
