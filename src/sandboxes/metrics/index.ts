// Sandbox runtime metrics: the catalog, the sampler, and queries over the samples.
export {
  catalog,
  METRICS,
  METRIC_NAMES,
  STATISTICS,
  type MetricDescriptor,
  type Statistic,
} from './catalog.js'
export { MetricsSampler } from './sampler.js'
export { queryMetrics, planQuery, type MetricsQuery, type MetricsResult } from './query.js'
export { runningSandboxes } from './running.js'
export { TeamCounters, DURATION_BUCKETS_S } from './team-counters.js'
