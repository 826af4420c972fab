// The size check: each entry of the package (dist/, as published) bundled, minified and gzipped,
// with its dependencies (centrifuge, react) left out, against the budget of 6 KB (6144 bytes).
// esbuild only measures here: the package itself is plain tsc output, no bundle is shipped.
import { build } from 'esbuild';
import { gzipSync } from 'node:zlib';

const BUDGET = 6 * 1024;
let total = 0;
for (const entry of ['dist/index.js', 'dist/react.js']) {
  const out = await build({
    entryPoints: [entry], bundle: true, minify: true, format: 'esm', write: false,
    external: ['centrifuge', 'react'], target: 'es2022', logLevel: 'silent',
  });
  const code = out.outputFiles[0].contents;
  const gz = gzipSync(code, { level: 9 }).length;
  console.log(`${entry}: ${code.length} bytes minified, ${gz} bytes min+gz`);
  if (entry === 'dist/index.js') total = gz;
  else {
    // react.js imports only types from the rest: its own code is what it adds.
    total += gz;
  }
}
console.log(`@pgoutbox/models: ${total} bytes min+gz without centrifuge and react (budget ${BUDGET})`);
if (total > BUDGET) {
  console.error(`size: ${total} bytes is over the budget of ${BUDGET}`);
  process.exit(1);
}
