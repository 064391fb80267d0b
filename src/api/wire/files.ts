// File entries (stat, list) in the SDK's wire shape, for sandboxes and volumes alike.

export interface WireFileInfo {
  name: string
  path: string
  type: 'file' | 'dir' | 'symlink'
  size: number
  /** Permission bits. */
  mode: number
  modTime: Date
  isLink: boolean
  linkTarget?: string
}

export function fileInfoJson(f: WireFileInfo): Record<string, unknown> {
  return {
    name: f.name,
    path: f.path,
    type: f.type,
    size: f.size,
    mode: f.mode.toString(8).padStart(4, '0'),
    mod_time: f.modTime.toISOString(),
    is_link: f.isLink,
    ...(f.linkTarget !== undefined ? { link_target: f.linkTarget } : {}),
  }
}
