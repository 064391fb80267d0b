// runsc under containerd's runc v2 shim (Debian's runsc has no containerd-shim-runsc-v1): the
// shim runs `BinaryName` as if it were runc, so BinaryName is this wrapper, which adds what
// runsc.ts passes on its command line:
// - the global flags (ptrace, --network, --file-access=shared: runsc.ts says why);
// - /proc/sys/net hidden at create/start/restore for --network=sandbox (runsc.ts's lifecycleArgv);
// - `exec --internal-pid-file <pid file>.guest`: the shim's exec pid is the host pid of the
//   detached `runsc exec` waiter, and SIGKILL to it leaves the guest process running; the guest
//   pid lets the driver kill the process itself (`runsc kill --pid`), as runsc.ts does.
import { chmod, writeFile } from 'node:fs/promises'
import type { RunscNetwork } from '../runsc.js'

/** The runsc flags of runsc.ts's globalArgs, minus --root (the shim passes its own). */
export function runscFlags(network: RunscNetwork, platform = 'ptrace'): string[] {
  return [`--platform=${platform}`, `--network=${network}`, '--file-access=shared']
}

/** The suffix of the guest pid file next to the shim's `<exec id>.pid`. */
export const GUEST_PID_SUFFIX = '.guest'

export function runscWrapperScript(network: RunscNetwork, bin = 'runsc'): string {
  const flags = runscFlags(network).join(' ')
  const hideNet =
    network === 'sandbox'
      ? `exec unshare --mount --propagation private -- sh -c 'mount -t tmpfs -o size=4k,mode=0555 none /proc/sys/net && exec "$@"' runsc-net ${bin} ${flags} "$@"`
      : `exec ${bin} ${flags} "$@"`
  return `#!/bin/sh
# Written by s0 (src/runtime/containerd/runsc-shim.ts): runsc for containerd's runc v2 shim.
# Pass 1: the verb (first word that is not a flag or a global flag's value) and --pid-file.
verb= pidfile= prev=
for a do
  case "$prev" in --root|--log|--log-format) prev=; continue ;; esac
  if [ -z "$verb" ]; then
    case "$a" in -*) ;; *) verb=$a ;; esac
  elif [ "$prev" = --pid-file ]; then
    pidfile=$a
  fi
  prev=$a
done
# Pass 2 (exec only): --internal-pid-file right after the verb.
if [ "$verb" = exec ] && [ -n "$pidfile" ]; then
  done_=
  for a do
    shift
    set -- "$@" "$a"
    if [ -z "$done_" ] && [ "$a" = exec ]; then
      set -- "$@" --internal-pid-file "$pidfile${GUEST_PID_SUFFIX}"
      done_=1
    fi
  done
fi
case "$verb" in
  create|start|restore) ${hideNet} ;;
  *) exec ${bin} ${flags} "$@" ;;
esac
`
}

export async function writeRunscWrapper(file: string, network: RunscNetwork): Promise<void> {
  await writeFile(file, runscWrapperScript(network), { mode: 0o755 })
  await chmod(file, 0o755)
}
