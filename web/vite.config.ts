// Vite build config: web/dist for the server to serve; the dev server proxies XMPP endpoints to a local Rookery.
import { defineConfig } from 'vite';

declare const process: { env: Record<string, string | undefined> };
const target = process.env.ROOKERY_DEV_HTTP ?? 'http://127.0.0.1:5280';

export default defineConfig({
  base: './',
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2020', sourcemap: true },
  server: {
    proxy: {
      '/xmpp-websocket': { target, ws: true },
      '/http-bind': { target },
    },
  },
  test: { include: ['test/**/*.test.ts'] },
} as Parameters<typeof defineConfig>[0]);
