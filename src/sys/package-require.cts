/**
 * `require` bound to this package's own location, for the one dependency loaded on demand: koffi,
 * in sys/sockopt.ts, loaded inside a try so that a missing or broken native binary degrades
 * instead of failing the import.
 *
 * Why a CommonJS module (.cts) in both builds: the ESM build would otherwise need
 * `createRequire(import.meta.url)`, and `import.meta` is a syntax error in the CommonJS build
 * (dist/cjs). A CommonJS module's own `require` needs neither, and resolves koffi from where this
 * file lies, as createRequire(import.meta.url) did. The ESM build imports it as any CommonJS
 * module (dist/src/sys/package-require.cjs), the CommonJS build requires its own copy.
 */
const packageRequire: NodeJS.Require = require;
export = packageRequire;
