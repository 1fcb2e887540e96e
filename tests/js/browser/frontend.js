// Builds the browser client (frontend/dist) once per test process, and the test-only harness bundle.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '../../..');
export const FRONTEND = path.join(ROOT, 'frontend');
export const DIST = path.join(FRONTEND, 'dist');

let built = null;

/** `npm ci` when node_modules is missing, then `npm run build` (esbuild: about a second). */
export function buildFrontend() {
  if (built) return built;
  if (!existsSync(path.join(FRONTEND, 'node_modules', 'esbuild'))) {
    execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: FRONTEND, stdio: 'inherit' });
  }
  if (process.env.DUET_SKIP_FRONTEND_BUILD !== '1' || !existsSync(path.join(DIST, 'editor.html'))) {
    execFileSync('npm', ['run', '--silent', 'build'], { cwd: FRONTEND, stdio: 'inherit' });
  }
  built = DIST;
  return built;
}

/** Builds the harness bundle into a temporary directory; returns that directory. */
export async function buildHarness() {
  buildFrontend();
  const out = mkdtempSync(path.join(os.tmpdir(), 'duet-harness-'));
  const { buildHarness: build } = await import(pathToFileURL(path.join(FRONTEND, 'build.mjs')).href);
  await build(out);
  return out;
}
