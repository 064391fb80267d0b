// The sandbox runtime metrics the API serves (the SDK's SandboxRuntimeMetricName, all of them),
// and how each is made from the stored samples (samples.ts's columns).
export type MetricKind = 'gauge' | 'counter'
export type MetricUnit =
  'ratio' | 'cores' | 'seconds' | 'bytes' | 'count' | 'bytes_per_second' | 'count_per_second'
export type Statistic = 'auto' | 'average' | 'minimum' | 'maximum' | 'last' | 'rate'
export const STATISTICS: readonly Statistic[] = ['auto', 'average', 'minimum', 'maximum', 'last', 'rate']

export interface MetricDescriptor {
  name: string
  kind: MetricKind
  unit: MetricUnit
  dimensions: string[]
  description: string
}

/**
 * One series of a metric: a SQL expression over one sample row (`s`, with the previous sample of
 * the same runtime as `p`, and `dt` the seconds between them). A counter's `delta` is its change
 * since `p` (never across a runtime restart: a new runtime's counters start again at 0).
 */
export interface SeriesSource {
  dimensions?: Record<string, string>
  value: string
  delta?: string
}

export interface MetricDef extends MetricDescriptor {
  series: SeriesSource[]
  /** The unit of its `rate` statistic (counters only). */
  rateUnit?: MetricUnit
}

const cores = `(s.cpu_usage_usec - p.cpu_usage_usec) / 1e6 / NULLIF(dt, 0)`

export const METRICS: readonly MetricDef[] = [
  {
    name: 'sandbox.cpu.utilization',
    kind: 'gauge',
    unit: 'ratio',
    dimensions: [],
    description: 'CPU in use as a fraction of the CPU limit (1 = the whole limit).',
    series: [{ value: `${cores} / NULLIF(s.cpu_limit_cores, 0)` }],
  },
  {
    name: 'sandbox.cpu.usage',
    kind: 'gauge',
    unit: 'cores',
    dimensions: [],
    description: 'CPU in use, in cores (CPU seconds per second), between two samples.',
    series: [{ value: cores }],
  },
  {
    name: 'sandbox.cpu.time',
    kind: 'counter',
    unit: 'seconds',
    rateUnit: 'cores',
    dimensions: [],
    description: 'CPU time of all processes since the runtime started (cgroup CPU accounting).',
    series: [{ value: 's.cpu_usage_usec / 1e6', delta: '(s.cpu_usage_usec - p.cpu_usage_usec) / 1e6' }],
  },
  {
    name: 'sandbox.cpu.limit',
    kind: 'gauge',
    unit: 'cores',
    dimensions: [],
    description: "The CPU limit in cores (CFS quota / period; none: the host's cores).",
    series: [{ value: 's.cpu_limit_cores' }],
  },
  {
    name: 'sandbox.memory.usage',
    kind: 'gauge',
    unit: 'bytes',
    dimensions: [],
    description: 'Memory charged to the sandbox, page cache included.',
    series: [{ value: 's.memory_usage_bytes' }],
  },
  {
    name: 'sandbox.memory.working_set',
    kind: 'gauge',
    unit: 'bytes',
    dimensions: [],
    description: 'Memory usage minus inactive file cache: what counts towards an OOM kill.',
    series: [{ value: 's.memory_working_set_bytes' }],
  },
  {
    name: 'sandbox.memory.available',
    kind: 'gauge',
    unit: 'bytes',
    dimensions: [],
    description: 'Memory limit minus working set.',
    series: [{ value: 'GREATEST(s.memory_limit_bytes - s.memory_working_set_bytes, 0)' }],
  },
  {
    name: 'sandbox.memory.limit',
    kind: 'gauge',
    unit: 'bytes',
    dimensions: [],
    description: "The memory limit (none: the host's memory).",
    series: [{ value: 's.memory_limit_bytes' }],
  },
  {
    name: 'sandbox.memory.utilization',
    kind: 'gauge',
    unit: 'ratio',
    dimensions: [],
    description: 'Working set as a fraction of the memory limit.',
    series: [{ value: 's.memory_working_set_bytes::float8 / NULLIF(s.memory_limit_bytes, 0)' }],
  },
  {
    name: 'sandbox.network.io',
    kind: 'counter',
    unit: 'bytes',
    rateUnit: 'bytes_per_second',
    dimensions: ['direction'],
    description:
      "Bytes on the sandbox's network interface since the runtime started (rx: received by the sandbox).",
    series: [
      { dimensions: { direction: 'rx' }, value: 's.net_rx_bytes', delta: 's.net_rx_bytes - p.net_rx_bytes' },
      { dimensions: { direction: 'tx' }, value: 's.net_tx_bytes', delta: 's.net_tx_bytes - p.net_tx_bytes' },
    ],
  },
  {
    name: 'sandbox.network.errors',
    kind: 'counter',
    unit: 'count',
    rateUnit: 'count_per_second',
    dimensions: ['direction'],
    description: "Errors on the sandbox's network interface since the runtime started.",
    series: [
      {
        dimensions: { direction: 'rx' },
        value: 's.net_rx_errors',
        delta: 's.net_rx_errors - p.net_rx_errors',
      },
      {
        dimensions: { direction: 'tx' },
        value: 's.net_tx_errors',
        delta: 's.net_tx_errors - p.net_tx_errors',
      },
    ],
  },
  {
    name: 'sandbox.process.count',
    kind: 'gauge',
    unit: 'count',
    dimensions: [],
    description: 'Processes (tasks) in the sandbox.',
    series: [{ value: 's.pids' }],
  },
  {
    name: 'sandbox.rootfs.writable.usage',
    kind: 'gauge',
    unit: 'bytes',
    dimensions: [],
    description: 'Bytes used on the writable root file system (what the sandbox wrote over its template).',
    series: [{ value: 's.rootfs_bytes' }],
  },
  {
    name: 'sandbox.rootfs.writable.inodes',
    kind: 'gauge',
    unit: 'count',
    dimensions: [],
    description: 'Inodes used on the writable root file system.',
    series: [{ value: 's.rootfs_inodes' }],
  },
]

export const METRIC_NAMES: readonly string[] = METRICS.map((m) => m.name)

export function catalog(): MetricDescriptor[] {
  return METRICS.map(({ name, kind, unit, dimensions, description }) => ({
    name,
    kind,
    unit,
    dimensions: [...dimensions],
    description,
  }))
}
