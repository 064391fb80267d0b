// What a sandbox's processes see as their file tree, as host directories: the root (the overlay),
// its scratch (`/tmp`, `/dev/shm`) and every volume bound into it, and the kernel file systems
// (`/proc`, `/sys`, `/dev`) that live only inside. The files API and the file watch resolve every
// sandbox path through this view, so they see exactly what `cat` and `ls` inside see.

/** A directory of the host that the sandbox sees at `containerPath`. */
export interface ViewMount {
  /** Absolute, normalised (`/`, `/tmp`, `/workspace/data`). */
  containerPath: string
  /** Where it is on the host. */
  hostPath: string
  readOnly: boolean
}

export interface SandboxView {
  /** The root (`/`) first; any order after it (resolution takes the deepest match). */
  mounts: readonly ViewMount[]
  /** Container paths served by the sandbox's own kernel file systems: unreachable from the host. */
  unreachable: readonly string[]
}

/** The container paths of kernel file systems that every sandbox has and the host cannot see. */
export const KERNEL_PATHS: readonly string[] = ['/proc', '/sys', '/dev']
