// The one error catalogue: every expected failure has a stable code mapped to an HTTP status,
// a POSIX errno (for FUSE and the VFS) and whether a retry may succeed. Codes are never reused.

export interface ErrorSpec {
  readonly status: number
  readonly errno: string
  readonly retryable: boolean
  readonly summary: string
}

export const ERROR_CATALOGUE = {
  // Sandbox0 wire codes (see docs/ERRORS.md).
  bad_request: {
    status: 400,
    errno: 'EINVAL',
    retryable: false,
    summary: 'The request is malformed or fails validation.',
  },
  invalid_request: {
    status: 400,
    errno: 'EINVAL',
    retryable: false,
    summary: 'A request field has an invalid value.',
  },
  unauthorized: {
    status: 401,
    errno: 'EACCES',
    retryable: false,
    summary: 'Missing, unknown or revoked API key.',
  },
  forbidden: { status: 403, errno: 'EPERM', retryable: false, summary: 'The caller may not do this.' },
  not_found: {
    status: 404,
    errno: 'ENOENT',
    retryable: false,
    summary: 'No such resource (or it belongs to another team).',
  },
  conflict: {
    status: 409,
    errno: 'EBUSY',
    retryable: false,
    summary: 'The resource is in a state that forbids this operation.',
  },
  file_too_large: {
    status: 413,
    errno: 'EFBIG',
    retryable: false,
    summary: 'An uploaded file is larger than the limit.',
  },
  payload_too_large: {
    status: 413,
    errno: 'EFBIG',
    retryable: false,
    summary: 'The request body is larger than the limit.',
  },
  quota_exceeded: { status: 429, errno: 'EDQUOT', retryable: false, summary: 'A quota would be exceeded.' },
  internal_error: {
    status: 500,
    errno: 'EIO',
    retryable: false,
    summary: 'An unexpected failure that is not a catalogued error; see the server log.',
  },
  unavailable: {
    status: 503,
    errno: 'EAGAIN',
    retryable: true,
    summary: 'The service is starting, stopping or overloaded.',
  },

  // File-system codes (volume engine, files API, FUSE).
  file_not_found: { status: 404, errno: 'ENOENT', retryable: false, summary: 'No such file or directory.' },
  path_exists: { status: 409, errno: 'EEXIST', retryable: false, summary: 'The path already exists.' },
  path_not_directory: {
    status: 409,
    errno: 'ENOTDIR',
    retryable: false,
    summary: 'A path component, or the target, is not a directory.',
  },
  path_not_file: {
    status: 409,
    errno: 'EISDIR',
    retryable: false,
    summary: 'The path is a directory where a file is needed.',
  },
  directory_not_empty: {
    status: 409,
    errno: 'ENOTEMPTY',
    retryable: false,
    summary: 'The directory is not empty.',
  },
  name_too_long: {
    status: 400,
    errno: 'ENAMETOOLONG',
    retryable: false,
    summary: 'A name is longer than 255 bytes.',
  },
  invalid_path: {
    status: 400,
    errno: 'EINVAL',
    retryable: false,
    summary: 'The path is malformed (NUL, `..` escaping the root, or empty).',
  },
  xattr_not_found: {
    status: 404,
    errno: 'ENODATA',
    retryable: false,
    summary: 'No such extended attribute.',
  },
  xattr_too_large: {
    status: 400,
    errno: 'ERANGE',
    retryable: false,
    summary: 'An extended attribute name or value is too large.',
  },
  no_space: { status: 507, errno: 'ENOSPC', retryable: false, summary: 'The volume byte quota is used up.' },
  read_only: { status: 403, errno: 'EROFS', retryable: false, summary: 'The volume or mount is read-only.' },
  cross_device: {
    status: 409,
    errno: 'EXDEV',
    retryable: false,
    summary: 'A move between two file systems of a sandbox (its root, /tmp, a volume): copy instead.',
  },
  not_supported: {
    status: 501,
    errno: 'ENOTSUP',
    retryable: false,
    summary: 'The operation is not supported.',
  },
  bad_file_handle: { status: 400, errno: 'EBADF', retryable: false, summary: 'The file handle is not open.' },
  volume_busy: {
    status: 409,
    errno: 'EBUSY',
    retryable: true,
    summary: "Another engine instance holds the volume's writer lease.",
  },
  volume_lease_lost: {
    status: 409,
    errno: 'EIO',
    retryable: false,
    summary:
      "This instance's writer lease on the volume was taken over (its node was declared dead): the change was not committed, and no later one of this instance will be (fencing).",
  },
  mount_failed: {
    status: 500,
    errno: 'EIO',
    retryable: true,
    summary: 'libfuse could not mount or unmount the volume (see the server log for its message).',
  },
  mount_not_found: {
    status: 404,
    errno: 'ENOENT',
    retryable: false,
    summary: 'No such mount on this server.',
  },

  // Egress: policy and network.
  dns_message_invalid: {
    status: 400,
    errno: 'EBADMSG',
    retryable: false,
    summary: 'A DNS message is malformed (truncated, a bad name, a compression loop); it is dropped.',
  },
  dns_upstream_failed: {
    status: 502,
    errno: 'EIO',
    retryable: true,
    summary: 'The upstream DNS resolver did not answer in time, or answered nonsense (SERVFAIL).',
  },
  egress_upstream_unreachable: {
    status: 502,
    errno: 'ECONNREFUSED',
    retryable: true,
    summary:
      "The egress proxy could not connect to the destination (or to the policy's SOCKS5 proxy, or that proxy refused).",
  },
  egress_upstream_timeout: {
    status: 504,
    errno: 'ETIMEDOUT',
    retryable: true,
    summary: "The egress proxy's connection to the destination (or its SOCKS5 proxy) did not open in time.",
  },
  sandbox_addresses_exhausted: {
    status: 503,
    errno: 'EAGAIN',
    retryable: true,
    summary: 'Every address of the sandbox network (S0_SANDBOX_CIDR) is in use.',
  },
  egress_tls_name_invalid: {
    status: 400,
    errno: 'EINVAL',
    retryable: false,
    summary:
      'A TLS server name (SNI) is not a valid DNS name or IP address; no certificate is issued for it.',
  },
  egress_tls_ca_invalid: {
    status: 500,
    errno: 'EINVAL',
    retryable: false,
    summary:
      "A sandbox's egress CA cannot be used (unparseable, key and certificate differ, not P-256, expired).",
  },
  egress_tls_client_failed: {
    status: 400,
    errno: 'EPROTO',
    retryable: false,
    summary:
      "The sandbox's TLS handshake with the egress proxy failed (it does not trust its CA, or spoke no TLS).",
  },
  egress_tls_upstream_unreachable: {
    status: 502,
    errno: 'ECONNREFUSED',
    retryable: true,
    summary: 'The destination refused or did not answer the connection the proxy opened to it.',
  },
  egress_tls_upstream_unverified: {
    status: 502,
    errno: 'EPROTO',
    retryable: false,
    summary:
      "The destination's certificate failed verification (wrong name, untrusted chain, expired); nothing was sent to it.",
  },
  egress_tls_upstream_failed: {
    status: 502,
    errno: 'EPROTO',
    retryable: true,
    summary:
      'The TLS handshake with the destination failed (protocol, ALPN, reset) or did not finish in time.',
  },
  egress_http_bad_request: {
    status: 400,
    errno: 'EINVAL',
    retryable: false,
    summary: 'The sandbox sent a malformed HTTP request (or a head over the size limit) through the proxy.',
  },
  egress_http_upstream_failed: {
    status: 502,
    errno: 'EIO',
    retryable: true,
    summary:
      'The destination reset, timed out or answered malformed HTTP while the proxy forwarded a request.',
  },
  egress_http_substitution_failed: {
    status: 502,
    errno: 'EPROTO',
    retryable: false,
    summary:
      'A credential placeholder could not be swapped in a request body (unknown length, or over 1 MiB) and its rule fails closed.',
  },
  egress_http_body_too_large: {
    status: 413,
    errno: 'EFBIG',
    retryable: false,
    summary: 'A request body the proxy must inspect (an MCP call) is larger than the inspection limit.',
  },

  // Egress: credentials.
  credential_source_not_found: {
    status: 404,
    errno: 'ENOENT',
    retryable: false,
    summary: "No such credential source in the caller's team (or it has been deleted).",
  },
  credential_decrypt_failed: {
    status: 500,
    errno: 'EIO',
    retryable: false,
    summary:
      'A stored credential cannot be decrypted: the server secret key is not the one that sealed it, or the row was altered.',
  },
  credential_template_invalid: {
    status: 400,
    errno: 'EINVAL',
    retryable: false,
    summary: 'A credential value template uses more than the supported Go-template subset (`{{ .field }}`).',
  },
  credential_field_unknown: {
    status: 400,
    errno: 'EINVAL',
    retryable: false,
    summary: 'A credential value template names a field the credential source does not have.',
  },
  credential_projection_mismatch: {
    status: 400,
    errno: 'EINVAL',
    retryable: false,
    summary: "A binding's projection cannot be served by its source's resolver kind (or lacks its settings).",
  },
  credential_value_invalid: {
    status: 400,
    errno: 'EINVAL',
    retryable: false,
    summary: 'A projected credential value cannot be used where it goes (a header value with CR, LF or NUL).',
  },
  socks5_unreachable: {
    status: 502,
    errno: 'ECONNREFUSED',
    retryable: true,
    summary: 'The upstream SOCKS5 proxy cannot be reached.',
  },
  socks5_protocol_error: {
    status: 502,
    errno: 'EPROTO',
    retryable: false,
    summary: 'The upstream SOCKS5 proxy answered outside RFC 1928 / RFC 1929.',
  },
  socks5_auth_failed: {
    status: 502,
    errno: 'EACCES',
    retryable: false,
    summary: 'The upstream SOCKS5 proxy refused our username/password, or accepts no method we offer.',
  },
  socks5_connect_failed: {
    status: 502,
    errno: 'ECONNREFUSED',
    retryable: false,
    summary:
      'The upstream SOCKS5 proxy did not connect to the destination (its reply code is in the details).',
  },
  ssh_sandbox_auth_failed: {
    status: 403,
    errno: 'EACCES',
    retryable: false,
    summary:
      "A sandbox's SSH login to the egress SSH proxy offered no key of the binding's sandboxPublicKeys.",
  },
  ssh_host_key_mismatch: {
    status: 502,
    errno: 'EACCES',
    retryable: false,
    summary: "The upstream SSH server's host key is not in the binding's knownHosts (or is revoked there).",
  },
  ssh_upstream_failed: {
    status: 502,
    errno: 'EIO',
    retryable: true,
    summary: 'The upstream SSH server cannot be reached, or refused the real key.',
  },

  // Runtime hardening.
  storage_limit_exceeded: {
    status: 413,
    errno: 'ENOSPC',
    retryable: false,
    summary:
      "The sandbox's file system is full: its root is bounded by resources.ephemeralStorage, /tmp and /dev/shm by their sizes.",
  },

  // Storage engine codes.
  config_invalid: {
    status: 500,
    errno: 'EINVAL',
    retryable: false,
    summary: 'A configuration value is invalid.',
  },
  object_not_found: {
    status: 500,
    errno: 'EIO',
    retryable: false,
    summary: 'An object the index refers to is missing from the object store.',
  },
  object_store_unavailable: {
    status: 503,
    errno: 'EIO',
    retryable: true,
    summary: 'The object store failed or timed out (after retries).',
  },
  object_store_denied: {
    status: 500,
    errno: 'EIO',
    retryable: false,
    summary: 'The object store refused the credentials or the bucket.',
  },
  object_truncated: {
    status: 503,
    errno: 'EIO',
    retryable: true,
    summary: 'The object store returned fewer bytes than asked for.',
  },
  sync_cursor_invalid: {
    status: 400,
    errno: 'EINVAL',
    retryable: false,
    summary:
      'A sync change poll named something that is not a cursor of this server (a stale one answers `rescan`).',
  },
  sync_chunk_mismatch: {
    status: 400,
    errno: 'EBADMSG',
    retryable: true,
    summary:
      'An uploaded sync chunk does not hash to the name it was sent under (sent again, it usually passes).',
  },
  chunk_not_found: {
    status: 500,
    errno: 'EIO',
    retryable: false,
    summary: "A chunk is not in the team's chunk index.",
  },
  chunk_corrupt: {
    status: 500,
    errno: 'EIO',
    retryable: false,
    summary: 'A chunk read back does not hash to its name.',
  },
  pack_corrupt: {
    status: 500,
    errno: 'EIO',
    retryable: false,
    summary: "A pack object's trailer is missing or invalid.",
  },
  database_unavailable: {
    status: 503,
    errno: 'EIO',
    retryable: true,
    summary: 'Postgres is unreachable or failed.',
  },
  aborted: {
    status: 499,
    errno: 'EINTR',
    retryable: true,
    summary: 'The operation was cancelled by its caller.',
  },
  timeout: {
    status: 504,
    errno: 'ETIMEDOUT',
    retryable: true,
    summary: 'The operation did not finish in time.',
  },

  // Sandbox runtime codes (src/runtime).
  runtime_unavailable: {
    status: 503,
    errno: 'ENOSYS',
    retryable: false,
    summary: 'No usable OCI runtime (runc, crun, runsc) on this host, or a host tool is missing.',
  },
  runtime_failed: {
    status: 500,
    errno: 'EIO',
    retryable: false,
    summary: 'An OCI runtime or host tool (mount, ip) failed; the message carries its stderr.',
  },
  sandbox_not_found: {
    status: 404,
    errno: 'ENOENT',
    retryable: false,
    summary: 'No such sandbox on this host.',
  },
  sandbox_exists: {
    status: 409,
    errno: 'EEXIST',
    retryable: false,
    summary: 'A sandbox with this id is already running on this host.',
  },
  sandbox_not_running: {
    status: 409,
    errno: 'ESRCH',
    retryable: false,
    summary: 'The sandbox has stopped (it may have been OOM-killed); it cannot run processes.',
  },
  exec_timeout: {
    status: 408,
    errno: 'ETIMEDOUT',
    retryable: false,
    summary: 'A process or a context `/exec` in a sandbox ran longer than its time limit.',
  },
  context_not_found: {
    status: 404,
    errno: 'ENOENT',
    retryable: false,
    summary: 'No such context in this sandbox (contexts end with their sandbox or a server restart).',
  },
  process_finished: {
    status: 410,
    errno: 'ESRCH',
    retryable: false,
    summary: "The context's process has exited; restart the context to run it again.",
  },
  process_not_running: {
    status: 409,
    errno: 'ESRCH',
    retryable: false,
    summary: 'The context has no running process.',
  },
  template_not_found: {
    status: 404,
    errno: 'ENOENT',
    retryable: false,
    summary: 'No such sandbox template.',
  },
  sandbox_resume_failed: {
    status: 503,
    errno: 'EIO',
    retryable: true,
    summary: 'A paused sandbox could not be started again; it stays paused with its files.',
  },
  template_build_failed: {
    status: 500,
    errno: 'EIO',
    retryable: true,
    summary: 'Building a template root file system failed (mirror unreachable, tool error).',
  },
  template_not_ready: {
    status: 409,
    errno: 'EAGAIN',
    retryable: true,
    summary:
      'The template is still being created (a registry pull, a capture of a sandbox) or its build failed; `Retry-After` says when to ask again, `status.creation` why.',
  },

  // Accounts (src/accounts).
  team_not_empty: {
    status: 409,
    errno: 'ENOTEMPTY',
    retryable: false,
    summary:
      'The team still has teams, sandboxes, volumes, snapshots, templates or credential sources (counted in `details.blocking_resources`); delete them first.',
  },
  // Execution sessions (src/sandboxes/sessions).
  session_not_found: {
    status: 404,
    errno: 'ENOENT',
    retryable: false,
    summary: 'No execution session with this id in the sandbox.',
  },
  session_cursor_expired: {
    status: 410,
    errno: 'ESTALE',
    retryable: false,
    summary:
      "The session event cursor (`after`, `Last-Event-ID`) is older than what the session's event retention kept; read from `details.earliest`.",
  },
  session_idempotency_mismatch: {
    status: 409,
    errno: 'EEXIST',
    retryable: false,
    summary: 'The Idempotency-Key was used before with a different session spec.',
  },
  session_attempt_mismatch: {
    status: 409,
    errno: 'ESRCH',
    retryable: false,
    summary: "`expected_attempt_id` is not the session's current attempt (it restarted or stopped).",
  },
} as const satisfies Record<string, ErrorSpec>

export type ErrorCode = keyof typeof ERROR_CATALOGUE

/** An expected failure with a stable code. Bugs are `AssertionError`s, never S0Errors. */
export class S0Error extends Error {
  readonly code: ErrorCode
  readonly details: unknown
  /** Seconds after which a retry may succeed (the API sends it as Retry-After). */
  readonly retryAfterS: number | undefined

  constructor(
    code: ErrorCode,
    message: string,
    options: { details?: unknown; cause?: unknown; retryAfterS?: number } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'S0Error'
    this.code = code
    this.details = options.details
    this.retryAfterS = options.retryAfterS
  }

  get status(): number {
    return ERROR_CATALOGUE[this.code].status
  }

  get errno(): string {
    return ERROR_CATALOGUE[this.code].errno
  }

  get retryable(): boolean {
    return ERROR_CATALOGUE[this.code].retryable
  }
}

export function isS0Error(err: unknown, code?: ErrorCode): err is S0Error {
  return err instanceof S0Error && (code === undefined || err.code === code)
}

/** The abort reason as an S0Error, so callers see one error type whatever cancelled them. */
export function abortError(signal: AbortSignal | undefined): S0Error {
  const reason: unknown = signal?.reason
  if (reason instanceof S0Error) return reason
  return new S0Error('aborted', 'operation aborted', { cause: reason })
}
