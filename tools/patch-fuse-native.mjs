// Three fixes to fuse-native 2.2.6's C source, then the addon is built from it (node-gyp-build
// prefers build/Release over the prebuilt binary). Run by `npm install`/`npm ci` (the package's
// install script); idempotent.
// 1. utimens passes a file's atime where its mtime belongs (`l->atime` twice), so `touch -m`,
//    rsync, tar and cp -p would set the wrong mtime.
// 2. utimens turns UTIME_NOW and UTIME_OMIT alike into 1073 ms, and libfuse drops a change of
//    one time alone unless the file system says it takes UTIME_OMIT (`touch -a` changed
//    nothing): the flag is set and the two arrive as sentinel values.
// 3. The FUSE threads take signals. libfuse 2.9 blocks only TERM/INT/HUP/QUIT in its workers, so
//    SIGCHLD (every child process Node reaps) may run libuv's signal handler on a FUSE thread,
//    and libfuse cancels its workers when a mount goes away: a worker cancelled inside that
//    handler (its read/write of libuv's signal lock pipe are cancellation points) takes the
//    lock with it, and the next child process hangs the whole server. The loop thread now blocks
//    every signal before starting libfuse, and the workers inherit that mask.
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'

const require = createRequire(import.meta.url)
const dir = path.dirname(require.resolve('fuse-native/package.json'))
const source = path.join(dir, 'fuse-native.c')

const PATCHES = [
  {
    name: 'utimens mtime',
    bug: 'FUSE_UINT64_TO_INTS_ARGV(l->atime, 5)',
    fix: 'FUSE_UINT64_TO_INTS_ARGV(l->mtime, 5) /* patched by s0: was l->atime */',
  },
  {
    name: 'utimens UTIME_NOW and UTIME_OMIT',
    bug: `FUSE_METHOD_VOID(utimens, 5, 0, (const char *path, const struct timespec tv[2]), {
  l->path = path;
  l->atime = timespec_to_uint64(&tv[0]);
  l->mtime = timespec_to_uint64(&tv[1]);`,
    fix: `/* patched by s0: UTIME_NOW and UTIME_OMIT both became 1073 ms; now sentinels past year 10000
   (src/fuse/operations.ts: UTIME_NOW_MS, UTIME_OMIT_MS) */
static uint64_t s0_utime_ms (const struct timespec* ts) {
  if (ts->tv_nsec == UTIME_OMIT) return 0xFFFFFFFFFFFFULL;
  if (ts->tv_nsec == UTIME_NOW) return 0xFFFFFFFFFFFEULL;
  return timespec_to_uint64(ts);
}
FUSE_METHOD_VOID(utimens, 5, 0, (const char *path, const struct timespec tv[2]), {
  l->path = path;
  l->atime = s0_utime_ms(&tv[0]);
  l->mtime = s0_utime_ms(&tv[1]);`,
  },
  {
    name: 'utimens with UTIME_OMIT reaches us',
    bug: 'if (implemented[op_utimens]) ops.utimens = fuse_native_utimens;',
    fix: `if (implemented[op_utimens]) {
    ops.utimens = fuse_native_utimens;
    /* patched by s0: without it libfuse drops a setattr that sets only one of the two times */
    ops.flag_utime_omit_ok = 1;
  }`,
  },
  {
    name: 'signals blocked on FUSE threads',
    bug: `static void* start_fuse_thread (void *data) {
  fuse_thread_t *ft = (fuse_thread_t *) data;
  fuse_loop_mt(ft->fuse);`,
    fix: `#include <signal.h>
static void* start_fuse_thread (void *data) {
  fuse_thread_t *ft = (fuse_thread_t *) data;
  /* patched by s0: no signal handler may run on a FUSE thread (libfuse cancels its workers) */
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  fuse_loop_mt(ft->fuse);`,
  },
]

let text = readFileSync(source, 'utf8')
// The build records which patches it was made with: a binary from before a new patch is rebuilt.
const marker = path.join(dir, 'build', 'Release', 's0-patches.txt')
const wanted = PATCHES.map((p) => p.name).join('\n')
const built =
  existsSync(path.join(dir, 'build', 'Release', 'fuse.node')) &&
  existsSync(marker) &&
  readFileSync(marker, 'utf8') === wanted
if (PATCHES.every((p) => text.includes(p.fix)) && built) {
  console.log('patch-fuse-native: already patched and built')
  process.exit(0)
}
for (const p of PATCHES) {
  if (text.includes(p.fix)) continue
  if (!text.includes(p.bug)) {
    console.error(
      `patch-fuse-native: ${p.name}: the expected code is not in fuse-native.c; check the fuse-native version`,
    )
    process.exit(1)
  }
  text = text.replace(p.bug, p.fix)
}
writeFileSync(source, text)
execFileSync('node-gyp', ['rebuild'], { cwd: dir, stdio: 'inherit' })
writeFileSync(marker, wanted)
console.log(`patch-fuse-native: ${PATCHES.map((p) => p.name).join(', ')}; addon built from source`)
