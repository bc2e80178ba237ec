import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Servers with several threads each on a 2-core machine: keep file parallelism modest.
    maxWorkers: 2,
  },
});
