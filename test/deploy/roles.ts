// What each s0 role needs from its deployment, whichever the shape (Kubernetes, systemd), so
// the tests of both check the same list (docs/DEPLOY.md).

/** Both `s0 api` and `s0 agent`: the shared Postgres and S3, the keys, the exposure domain. */
export const SHARED_ENV = [
  'DATABASE_URL',
  'S0_OBJECT_STORE',
  'S0_S3_ENDPOINT',
  'S0_S3_BUCKET',
  'S0_S3_REGION',
  'S0_S3_FORCE_PATH_STYLE',
  'S0_S3_ACCESS_KEY_ID',
  'S0_S3_SECRET_ACCESS_KEY',
  'S0_SECRET_KEY',
  'S0_CLUSTER_TOKEN',
  'S0_EXPOSURE_DOMAIN',
]

/** Per process: where it keeps scratch or state and where it listens. */
export const PROCESS_ENV = ['S0_STATE_DIR', 'S0_HOST', 'S0_PORT']

/** `s0 agent` only: how it registers in the nodes table. */
export const AGENT_ENV = [
  'S0_ADVERTISE_URL',
  'S0_NODE_NAME',
  'S0_NODE_MAX_SANDBOXES',
  // S0_NODE_CPU_MILLIS is left unset by the shipped files: CPU is shared, not leased.
  'S0_NODE_MEMORY_BYTES',
  'S0_NODE_LABELS',
]
