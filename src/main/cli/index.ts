/**
 * The command line (`mcp-session-broker serve`): argument parsing and units.
 * Runs on the main thread; the executable is `main.ts`.
 */
export { parseServeArgs, USAGE } from './args.js';
export { parseBytes, parseDuration, parseRate } from './units.js';
