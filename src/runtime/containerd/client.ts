// containerd's gRPC API from Node: the .proto files of Debian's golang-github-containerd-containerd-dev
// (and the gogo/google ones they import, from golang-github-gogo-protobuf-dev), loaded at run
// time with @grpc/proto-loader, so nothing generated is checked in. Only the services the
// driver uses: Containers, Tasks, Version; every call carries our namespace.
import { existsSync } from 'node:fs'
import path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { S0Error } from '../../core/errors.js'

/** Where Debian's -dev packages put Go sources (and with them the .proto files). */
const GOCODE = '/usr/share/gocode/src'
const CONTAINERD_API = 'github.com/containerd/containerd/api'

/** The include dirs: containerd's imports are `github.com/...`, `gogoproto/...`, `google/protobuf/...`. */
function includeDirs(gocode: string): string[] {
  return [
    gocode,
    path.join(gocode, 'github.com/gogo/protobuf'),
    path.join(gocode, 'github.com/gogo/protobuf/protobuf'),
  ]
}

const SERVICES = [
  'services/containers/v1/containers.proto',
  'services/tasks/v1/tasks.proto',
  'services/version/v1/version.proto',
]

/** A containerd `Process.status` (api/types/task/task.proto), as proto-loader gives enums. */
export type TaskStatus = 'UNKNOWN' | 'CREATED' | 'RUNNING' | 'STOPPED' | 'PAUSED' | 'PAUSING'

export interface AnyMsg {
  type_url: string
  value: Buffer
}

export interface ProcessMsg {
  container_id: string
  id: string
  pid: number
  status: TaskStatus
  exit_status: number
}

export interface ContainerMsg {
  id: string
  labels?: Record<string, string>
  image?: string
  runtime: { name: string; options?: AnyMsg | null }
  spec: AnyMsg
  snapshotter?: string
  snapshot_key?: string
}

/** Requests and responses we use, field names as in the .proto files (keepCase). */
export interface Calls {
  'containers.Create': [{ container: ContainerMsg }, { container: ContainerMsg }]
  'containers.Get': [{ id: string }, { container: ContainerMsg }]
  'containers.List': [{ filters: string[] }, { containers: ContainerMsg[] }]
  'containers.Delete': [{ id: string }, object]
  'tasks.Create': [
    { container_id: string; stdin?: string; stdout?: string; stderr?: string; terminal?: boolean },
    { container_id: string; pid: number },
  ]
  'tasks.Start': [{ container_id: string; exec_id?: string }, { pid: number }]
  'tasks.Delete': [{ container_id: string }, { exit_status: number }]
  'tasks.DeleteProcess': [{ container_id: string; exec_id: string }, { exit_status: number }]
  'tasks.Get': [{ container_id: string; exec_id?: string }, { process: ProcessMsg }]
  'tasks.List': [{ filter?: string }, { tasks: ProcessMsg[] }]
  'tasks.Kill': [{ container_id: string; exec_id?: string; signal: number; all?: boolean }, object]
  'tasks.Exec': [
    {
      container_id: string
      exec_id: string
      stdin?: string
      stdout?: string
      stderr?: string
      terminal?: boolean
      spec: AnyMsg
    },
    object,
  ]
  'tasks.ResizePty': [{ container_id: string; exec_id: string; width: number; height: number }, object]
  'tasks.CloseIO': [{ container_id: string; exec_id: string; stdin: boolean }, object]
  'tasks.Pause': [{ container_id: string }, object]
  'tasks.Resume': [{ container_id: string }, object]
  'tasks.ListPids': [{ container_id: string }, { processes: { pid: number }[] }]
  'tasks.Wait': [{ container_id: string; exec_id?: string }, { exit_status: number }]
  'version.Version': [object, { version: string; revision: string }]
}
export type CallName = keyof Calls

type Stub = grpc.Client

/** The proto include root, or a clear error naming the package to install. */
export function containerdProtoRoot(gocode: string = GOCODE): string {
  const probe = path.join(gocode, CONTAINERD_API, SERVICES[1] as string)
  if (!existsSync(probe))
    throw new S0Error(
      'runtime_unavailable',
      `containerd .proto files not found at ${probe}: install golang-github-containerd-containerd-dev`,
    )
  return gocode
}

let loaded: grpc.GrpcObject | undefined

function definitions(): grpc.GrpcObject {
  if (loaded) return loaded
  const gocode = containerdProtoRoot()
  const def = protoLoader.loadSync(
    SERVICES.map((s) => path.join(CONTAINERD_API, s)),
    // keepCase: the .proto names; enums as their names; 64-bit ints as numbers (pids, sizes).
    { keepCase: true, enums: String, longs: Number, defaults: true, includeDirs: includeDirs(gocode) },
  )
  loaded = grpc.loadPackageDefinition(def)
  return loaded
}

function serviceCtor(dotted: string): grpc.ServiceClientConstructor {
  let node: unknown = definitions()
  for (const part of dotted.split('.')) node = (node as Record<string, unknown>)[part]
  if (typeof node !== 'function') throw new Error(`containerd proto: no service ${dotted}`)
  return node as grpc.ServiceClientConstructor
}

/** A gRPC error's status code (NOT_FOUND, ALREADY_EXISTS...) or undefined for other errors. */
export function grpcCode(err: unknown): grpc.status | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'number' ? code : undefined
}

export const GrpcStatus = grpc.status

/** One connection to one containerd, in one namespace. */
export class ContainerdClient {
  private readonly stubs: Record<'containers' | 'tasks' | 'version', Stub>

  constructor(
    readonly socketPath: string,
    readonly namespace: string,
  ) {
    const target = `unix://${socketPath}`
    const creds = grpc.credentials.createInsecure()
    const make = (svc: string): Stub => new (serviceCtor(svc))(target, creds) as unknown as Stub
    this.stubs = {
      containers: make('containerd.services.containers.v1.Containers'),
      tasks: make('containerd.services.tasks.v1.Tasks'),
      version: make('containerd.services.version.v1.Version'),
    }
  }

  /** One unary call with our namespace and a deadline. */
  call<N extends CallName>(name: N, req: Calls[N][0], timeoutMs: number): Promise<Calls[N][1]> {
    const [svc, method] = name.split('.') as ['containers' | 'tasks' | 'version', string]
    const stub = this.stubs[svc] as unknown as Record<
      string,
      (
        req: unknown,
        md: grpc.Metadata,
        opts: grpc.CallOptions,
        cb: (err: grpc.ServiceError | null, res: unknown) => void,
      ) => void
    >
    const md = new grpc.Metadata()
    md.set('containerd-namespace', this.namespace)
    return new Promise((resolve, reject) => {
      stub[method]?.call(stub, req, md, { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(err)
        else resolve(res as Calls[N][1])
      })
    })
  }

  close(): void {
    for (const s of Object.values(this.stubs)) s.close()
  }
}

/** An `Any` carrying JSON, as containerd's typeurl does for the OCI spec types. */
export function jsonAny(typeUrl: string, value: unknown): AnyMsg {
  return { type_url: typeUrl, value: Buffer.from(JSON.stringify(value)) }
}

export const SPEC_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Spec'
export const PROCESS_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Process'

/**
 * The runc v2 shim's options (`containerd.runc.v1.Options` in runtime/v2/runc/options/oci.proto):
 * only `binary_name` (6) and `root` (7), both strings, so they are encoded here by hand rather
 * than through a second protobuf library.
 */
export function runcOptionsAny(opts: { binaryName?: string; root?: string }): AnyMsg {
  const parts: Buffer[] = []
  const str = (field: number, s: string): void => {
    const bytes = Buffer.from(s)
    parts.push(Buffer.from([(field << 3) | 2]), varint(bytes.length), bytes)
  }
  if (opts.binaryName) str(6, opts.binaryName)
  if (opts.root) str(7, opts.root)
  return { type_url: 'containerd.runc.v1.Options', value: Buffer.concat(parts) }
}

function varint(n: number): Buffer {
  const out: number[] = []
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80)
    n >>>= 7
  }
  out.push(n)
  return Buffer.from(out)
}
