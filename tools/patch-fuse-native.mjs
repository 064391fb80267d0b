// fuse-native 2.2.6 passes a file's atime where its mtime belongs in utimens (fuse-native.c
// sends `l->atime` twice), so `touch -m`, rsync, tar and cp -p would set the wrong mtime. We fix
// that line and build the addon from source (node-gyp-build prefers build/Release over the
// prebuilt binary). Run by `npm install`/`npm ci` (the package's install script); idempotent.
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'

const require = createRequire(import.meta.url)
const dir = path.dirname(require.resolve('fuse-native/package.json'))
const source = path.join(dir, 'fuse-native.c')
const BUG = 'FUSE_UINT64_TO_INTS_ARGV(l->atime, 5)'
const FIX = 'FUSE_UINT64_TO_INTS_ARGV(l->mtime, 5) /* patched by s0: was l->atime */'

const text = readFileSync(source, 'utf8')
const built = existsSync(path.join(dir, 'build', 'Release', 'fuse.node'))
if (text.includes(FIX) && built) {
  console.log('patch-fuse-native: already patched and built')
  process.exit(0)
}
if (!text.includes(FIX)) {
  if (!text.includes(BUG)) {
    console.error(
      'patch-fuse-native: the expected line is not in fuse-native.c; check the fuse-native version',
    )
    process.exit(1)
  }
  writeFileSync(source, text.replace(BUG, FIX))
}
execFileSync('node-gyp', ['rebuild'], { cwd: dir, stdio: 'inherit' })
console.log('patch-fuse-native: utimens fixed and addon built from source')
