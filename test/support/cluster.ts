// A cluster on one machine for tests: cluster-processes.ts over a fresh test database.
import { freshDb } from './db.js'
import { startClusterProcesses, type Cluster, type ClusterOptions } from './cluster-processes.js'

export type { Cluster, ClusterProcess } from './cluster-processes.js'

export async function startCluster(
  o: Omit<ClusterOptions, 'databaseUrl' | 'dropDatabase'>,
): Promise<Cluster> {
  const tdb = await freshDb()
  let dropped: Promise<void> | undefined
  const drop = (): Promise<void> => (dropped ??= tdb.drop())
  try {
    return await startClusterProcesses({ ...o, databaseUrl: tdb.url, dropDatabase: drop })
  } catch (err) {
    await drop()
    throw err
  }
}
