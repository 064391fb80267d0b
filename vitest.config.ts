import { defineConfig } from 'vitest/config'

// FUSE tests serve a mount from the test process and also do file I/O on it: each blocked
// syscall holds a libuv pool thread while the FUSE handler needs pool threads too (fs, DNS).
// Workers inherit this before their pool starts; the default of 4 deadlocks under 8 writers.
process.env.UV_THREADPOOL_SIZE ??= '64'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    // Templates first: built once, outside every test's timeout (test/global-templates.ts).
    globalSetup: ['test/global-templates.ts', 'test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two cores: run files in parallel, but not more than the machine can carry.
    maxWorkers: 2,
    pool: 'forks',
  },
})
