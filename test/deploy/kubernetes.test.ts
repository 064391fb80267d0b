// The Kubernetes manifests (deploy/kubernetes), rendered offline for the base and every overlay by
// a small kustomize (./kustomize.ts) and checked two ways: every object against the Kubernetes API
// schema (npm kubernetes-models; a kind with no model here fails), and the wiring that schemas
// cannot see (probes, selectors, Secret and ConfigMap keys, the agent's host access).
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { readdirSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet'
import { Deployment } from 'kubernetes-models/apps/v1/Deployment'
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler'
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1/Ingress'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget'
import { PriorityClass } from 'kubernetes-models/scheduling.k8s.io/v1/PriorityClass'
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap'
import { Namespace } from 'kubernetes-models/v1/Namespace'
import { Secret } from 'kubernetes-models/v1/Secret'
import { Service } from 'kubernetes-models/v1/Service'
import type { IContainer } from 'kubernetes-models/v1/Container'
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec'
import { podSpec, render, type K8sObject } from './kustomize.js'
import { AGENT_ENV, PROCESS_ENV, SHARED_ENV } from './roles.js'

const ROOT = path.resolve(import.meta.dirname, '..', '..', 'deploy', 'kubernetes')
const OVERLAYS = readdirSync(path.join(ROOT, 'overlays')).map((name) => `overlays/${name}`)
const TARGETS = ['base', ...OVERLAYS]
const NAMESPACE = 's0'
const IMAGE = 'ghcr.io/s0-dev/s0'
const TAINT = { key: 's0.dev/sandbox-node', value: 'true', effect: 'NoSchedule' }

/** apiVersion/kind -> a validator from the API schema. Every kind we emit must be here. */
const MODELS: Record<string, (o: K8sObject) => void> = {
  'v1/Namespace': (o) => new Namespace(o as never).validate(),
  'v1/ConfigMap': (o) => new ConfigMap(o as never).validate(),
  'v1/Secret': (o) => new Secret(o as never).validate(),
  'v1/Service': (o) => new Service(o as never).validate(),
  'apps/v1/Deployment': (o) => new Deployment(o as never).validate(),
  'apps/v1/DaemonSet': (o) => new DaemonSet(o as never).validate(),
  'policy/v1/PodDisruptionBudget': (o) => new PodDisruptionBudget(o as never).validate(),
  'autoscaling/v2/HorizontalPodAutoscaler': (o) => new HorizontalPodAutoscaler(o as never).validate(),
  'networking.k8s.io/v1/Ingress': (o) => new Ingress(o as never).validate(),
  'scheduling.k8s.io/v1/PriorityClass': (o) => new PriorityClass(o as never).validate(),
}

function find<T = K8sObject>(objects: K8sObject[], kind: string, name: string): T {
  const hit = objects.find((o) => o.kind === kind && o.metadata.name === name)
  if (hit === undefined) throw new Error(`no ${kind}/${name} rendered`)
  return hit as T
}

function pod(o: K8sObject): IPodSpec {
  const spec = podSpec(o)
  if (spec === undefined) throw new Error(`${o.kind}/${o.metadata.name} has no pod template`)
  return spec as unknown as IPodSpec
}

function podLabels(o: K8sObject): Record<string, string> {
  return (o as unknown as Deployment).spec?.template.metadata?.labels ?? {}
}

function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v)
}

function container(o: K8sObject, name: string): IContainer {
  const c = pod(o).containers.find((x) => x.name === name)
  if (c === undefined) throw new Error(`${o.kind}/${o.metadata.name} has no container ${name}`)
  return c
}

/** Environment a container ends up with: envFrom sources' keys, then env (which wins). */
function effectiveEnv(objects: K8sObject[], c: IContainer): Map<string, string | { from: string }> {
  const env = new Map<string, string | { from: string }>()
  for (const from of c.envFrom ?? []) {
    const ref = from.configMapRef ?? from.secretRef
    const kind = from.configMapRef !== undefined ? 'ConfigMap' : 'Secret'
    const data = dataOf(find(objects, kind, ref?.name ?? ''))
    for (const [k, v] of Object.entries(data)) env.set(k, kind === 'ConfigMap' ? v : { from: kind })
  }
  for (const e of c.env ?? []) env.set(e.name, e.value ?? { from: Object.keys(e.valueFrom ?? {})[0] ?? '?' })
  return env
}

function dataOf(o: K8sObject): Record<string, string> {
  const data = (o['data'] ?? {}) as Record<string, string>
  const stringData = (o['stringData'] ?? {}) as Record<string, string>
  return { ...data, ...stringData }
}

function containers(objects: K8sObject[]): { owner: K8sObject; c: IContainer }[] {
  return objects.flatMap((owner) =>
    podSpec(owner) === undefined
      ? []
      : [...(pod(owner).initContainers ?? []), ...pod(owner).containers].map((c) => ({ owner, c })),
  )
}

describe.each(TARGETS)('deploy/kubernetes/%s', (target) => {
  const objects = render(path.join(ROOT, target))
  const api = find(objects, 'Deployment', 's0-api')
  const agent = find(objects, 'DaemonSet', 's0-agent')
  const apiContainer = container(api, 'api')
  const agentContainer = container(agent, 'agent')

  it('renders objects that each validate against the Kubernetes API schema', () => {
    expect(objects.length).toBeGreaterThan(0)
    for (const o of objects) {
      const validate = MODELS[`${o.apiVersion}/${o.kind}`]
      if (validate === undefined) throw new Error(`${o.apiVersion} ${o.kind} has no model in this test`)
      expect(() => validate(o), `${o.kind}/${o.metadata.name}`).not.toThrow()
    }
    const ids = objects.map((o) => `${o.kind}/${o.metadata.name}`)
    expect(new Set(ids).size).toBe(ids.length)
  })

  it('puts every namespaced object in the s0 namespace, which it creates', () => {
    find(objects, 'Namespace', NAMESPACE)
    for (const o of objects) {
      if (o.kind === 'Namespace' || o.kind === 'PriorityClass') expect(o.metadata.namespace).toBeUndefined()
      else expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe(NAMESPACE)
    }
  })

  it('runs the roles from the s0 image', () => {
    for (const { owner, c } of containers(objects)) expect(c.image, owner.metadata.name).toMatch(`${IMAGE}:`)
    expect(apiContainer.command).toEqual(['s0', 'api'])
    expect(agentContainer.command).toEqual(['s0', 'agent'])
  })

  it('resolves every Secret, ConfigMap and PriorityClass reference to something rendered', () => {
    for (const { owner, c } of containers(objects)) {
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.secretKeyRef ?? e.valueFrom?.configMapKeyRef
        if (ref === undefined) continue
        const kind = e.valueFrom?.secretKeyRef !== undefined ? 'Secret' : 'ConfigMap'
        const data = dataOf(find(objects, kind, ref.name ?? ''))
        expect(Object.keys(data), `${owner.metadata.name} env ${e.name}`).toContain(ref.key)
      }
      for (const from of c.envFrom ?? []) {
        if (from.configMapRef !== undefined) find(objects, 'ConfigMap', from.configMapRef.name ?? '')
        if (from.secretRef !== undefined) find(objects, 'Secret', from.secretRef.name ?? '')
      }
      // $(VAR) in a value expands only from variables defined earlier in env.
      const earlier = new Set<string>()
      for (const e of c.env ?? []) {
        for (const m of (e.value ?? '').matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) {
          expect(earlier, `${owner.metadata.name} env ${e.name}`).toContain(m[1])
        }
        earlier.add(e.name)
      }
    }
    const priorityClass = pod(agent).priorityClassName
    if (priorityClass !== undefined) find(objects, 'PriorityClass', priorityClass)
  })

  it('gives both roles the shared settings, and the agent its node settings', () => {
    const apiEnv = effectiveEnv(objects, apiContainer)
    const agentEnv = effectiveEnv(objects, agentContainer)
    for (const name of [...SHARED_ENV, ...PROCESS_ENV]) {
      expect(apiEnv.has(name), `api ${name}`).toBe(true)
      expect(agentEnv.has(name), `agent ${name}`).toBe(true)
    }
    for (const name of AGENT_ENV) expect(agentEnv.has(name), `agent ${name}`).toBe(true)
    expect(apiEnv.get('S0_OBJECT_STORE')).toBe('s3')
    // The credentials come from Secrets, never from plain values or the ConfigMap.
    for (const name of ['DATABASE_URL', 'S0_S3_SECRET_ACCESS_KEY', 'S0_SECRET_KEY', 'S0_CLUSTER_TOKEN']) {
      expect(apiEnv.get(name), `api ${name}`).toEqual({ from: 'secretKeyRef' })
      expect(agentEnv.get(name), `agent ${name}`).toEqual({ from: 'secretKeyRef' })
    }
  })

  it('probes the API on /readyz (ready) and /healthz (alive) on a port it declares', () => {
    const ports = (apiContainer.ports ?? []).map((p) => p.name)
    expect(apiContainer.readinessProbe?.httpGet?.path).toBe('/readyz')
    expect(ports).toContain(apiContainer.readinessProbe?.httpGet?.port)
    expect(apiContainer.livenessProbe?.httpGet?.path).toBe('/healthz')
    expect(ports).toContain(apiContainer.livenessProbe?.httpGet?.port)
    const port = effectiveEnv(objects, apiContainer).get('S0_PORT')
    expect((apiContainer.ports ?? []).map((p) => String(p.containerPort))).toContain(port)
  })

  it('keeps the API off the sandbox nodes and unprivileged', () => {
    const spec = pod(api)
    expect(spec.hostNetwork ?? false).toBe(false)
    expect(spec.tolerations ?? []).not.toContainEqual(expect.objectContaining({ key: TAINT.key }))
    expect(apiContainer.securityContext?.privileged ?? false).toBe(false)
    expect(apiContainer.securityContext?.allowPrivilegeEscalation).toBe(false)
  })

  it('selects the API pods (and only them) from the Service, the PDB and the HPA', () => {
    const labels = podLabels(api)
    const agentLabels = podLabels(agent)
    expect(selects((api as unknown as Deployment).spec?.selector.matchLabels ?? {}, labels)).toBe(true)

    const service = find<Service>(objects, 'Service', 's0-api')
    expect(selects(service.spec?.selector ?? {}, labels)).toBe(true)
    expect(selects(service.spec?.selector ?? {}, agentLabels)).toBe(false)
    const containerPorts = (apiContainer.ports ?? []).map((p) => p.name)
    for (const p of service.spec?.ports ?? []) expect(containerPorts).toContain(p.targetPort)

    const pdb = find<PodDisruptionBudget>(objects, 'PodDisruptionBudget', 's0-api')
    expect(selects(pdb.spec?.selector?.matchLabels ?? {}, labels)).toBe(true)
    expect(selects(pdb.spec?.selector?.matchLabels ?? {}, agentLabels)).toBe(false)

    const hpa = find<HorizontalPodAutoscaler>(objects, 'HorizontalPodAutoscaler', 's0-api')
    expect(hpa.spec?.scaleTargetRef).toMatchObject({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: 's0-api',
    })
    expect(hpa.spec?.metrics?.map((m) => m.resource?.name)).toContain('cpu')
    // Utilisation is measured against the request: without one the HPA cannot act.
    expect(apiContainer.resources?.requests?.['cpu']).toBeDefined()
    const replicas = (api as unknown as Deployment).spec?.replicas ?? 1
    expect(hpa.spec?.minReplicas ?? 1).toBeLessThanOrEqual(replicas)
    expect(replicas).toBeLessThanOrEqual(hpa.spec?.maxReplicas ?? 0)
  })

  it('routes the API host and the wildcard exposure domain through the Ingress to the Service', () => {
    const ingress = find<Ingress>(objects, 'Ingress', 's0')
    const domain = dataOf(find(objects, 'ConfigMap', 's0-config'))['S0_EXPOSURE_DOMAIN']
    const hosts = (ingress.spec?.rules ?? []).map((r) => r.host)
    expect(hosts).toContain(`*.${domain}`)
    expect(hosts.length).toBeGreaterThanOrEqual(2)
    const tlsHosts = (ingress.spec?.tls ?? []).flatMap((t) => t.hosts ?? [])
    for (const h of hosts) expect(tlsHosts).toContain(h)
    for (const rule of ingress.spec?.rules ?? []) {
      for (const p of rule.http?.paths ?? []) {
        const service = find<Service>(objects, 'Service', p.backend.service?.name ?? '')
        expect((service.spec?.ports ?? []).map((x) => x.name)).toContain(p.backend.service?.port?.name)
      }
    }
  })

  it('runs the agent privileged on the host network of tainted sandbox nodes, with FUSE and cgroups', () => {
    const spec = pod(agent)
    expect(spec.hostNetwork).toBe(true)
    expect(spec.dnsPolicy).toBe('ClusterFirstWithHostNet')
    expect(agentContainer.securityContext?.privileged).toBe(true)
    expect(agentContainer.securityContext?.runAsUser ?? 0).toBe(0)
    expect(spec.nodeSelector?.[TAINT.key]).toBe(TAINT.value)
    expect(spec.tolerations).toContainEqual({ ...TAINT, operator: 'Equal' })

    const hostPaths = new Map((spec.volumes ?? []).map((v) => [v.name, v.hostPath?.path]))
    const mounts = new Map(
      (agentContainer.volumeMounts ?? []).map((m) => [m.mountPath, hostPaths.get(m.name)]),
    )
    const env = effectiveEnv(objects, agentContainer)
    expect(mounts.get('/dev/fuse')).toBe('/dev/fuse')
    expect(mounts.get('/sys/fs/cgroup')).toBe('/sys/fs/cgroup')
    expect(mounts.get(String(env.get('S0_STATE_DIR')))).toBe('/var/lib/s0')
    expect(mounts.get('/run/netns')).toBe('/run/netns')
    // The agent's mounts there are the host's: a restarted agent finds what it adopts.
    const propagation = new Map(
      (agentContainer.volumeMounts ?? []).map((m) => [m.mountPath, m.mountPropagation]),
    )
    expect(propagation.get('/run/netns')).toBe('Bidirectional')
    expect(propagation.get(String(env.get('S0_STATE_DIR')))).toBe('Bidirectional')

    const nodeName = agentContainer.env?.find((e) => e.name === 'S0_NODE_NAME')
    expect(nodeName?.valueFrom?.fieldRef?.fieldPath).toBe('spec.nodeName')
    const port = String(env.get('S0_PORT'))
    expect((agentContainer.ports ?? []).map((p) => String(p.containerPort))).toContain(port)
    expect(String(env.get('S0_ADVERTISE_URL'))).toMatch(new RegExp(`^http://\\$\\(POD_IP\\):${port}$`))
  })

  it('reserves what the sandboxes may use with the agent requests, and offers that memory', () => {
    const requests = agentContainer.resources?.requests ?? {}
    expect(requests['cpu']).toBeDefined()
    expect(requests['memory']).toBeDefined()
    expect(agentContainer.resources?.limits).toBeUndefined()
    const fields = new Map((agentContainer.env ?? []).map((e) => [e.name, e.valueFrom?.resourceFieldRef]))
    // CPU is shared, not leased: a sandbox's quota would otherwise be reserved whole.
    expect(fields.has('S0_NODE_CPU_MILLIS')).toBe(false)
    expect(fields.get('S0_NODE_MEMORY_BYTES')).toMatchObject({ resource: 'requests.memory' })
    expect(Number(effectiveEnv(objects, agentContainer).get('S0_NODE_MAX_SANDBOXES'))).toBeGreaterThan(0)
  })
})

describe('overlays', () => {
  const replicasOf = (target: string): number | undefined =>
    find<Deployment>(render(path.join(ROOT, target)), 'Deployment', 's0-api').spec?.replicas

  it('dev runs one API replica and a smaller agent than the base', () => {
    expect(replicasOf('overlays/dev')).toBe(1)
    const cpu = (target: string): string | undefined =>
      container(find(render(path.join(ROOT, target)), 'DaemonSet', 's0-agent'), 'agent').resources
        ?.requests?.['cpu'] as string | undefined
    expect(Number(cpu('overlays/dev'))).toBeLessThan(Number(cpu('base')))
  })

  it('production runs three API replicas on a pinned image', () => {
    expect(replicasOf('overlays/production')).toBe(3)
    const objects = render(path.join(ROOT, 'overlays/production'))
    for (const { c } of containers(objects)) expect(c.image).not.toMatch(/:latest$/)
  })
})

describe('the offline kustomize', () => {
  let dir = ''
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 's0-kustomize-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  async function overlay(name: string, kustomization: string, files: Record<string, string> = {}) {
    const at = path.join(dir, name)
    await mkdir(at, { recursive: true })
    await writeFile(path.join(at, 'kustomization.yaml'), kustomization)
    for (const [file, text] of Object.entries(files)) await writeFile(path.join(at, file), text)
    return at
  }

  it('refuses a kustomization feature it does not implement', async () => {
    const at = await overlay('unknown', 'resources: []\ncommonLabels: {a: b}\n')
    expect(() => render(at)).toThrow(/"commonLabels" is not supported/)
  })

  it('refuses a patch on a list whose merge rule it does not know', async () => {
    const base = JSON.stringify(path.join(ROOT, 'base'))
    const at = await overlay('ports', `resources: [${base}]\npatches: [{path: p.yaml}]\n`, {
      'p.yaml':
        'apiVersion: v1\nkind: Service\nmetadata: {name: s0-api}\nspec: {ports: [{name: x, port: 1}]}\n',
    })
    expect(() => render(at)).toThrow(/how kustomize merges "ports" is not known/)
  })

  it('merges env by name with the patch first, replaces atomic lists, and deletes on null', async () => {
    const at = await overlay('merge', 'resources: [d.yaml]\npatches: [{path: p.yaml}]\n', {
      'd.yaml': [
        'apiVersion: apps/v1',
        'kind: Deployment',
        'metadata: {name: d, labels: {a: "1", b: "2"}}',
        'spec:',
        '  template:',
        '    spec:',
        '      containers:',
        '        - {name: c, image: i, command: [x, y], env: [{name: A, value: "1"}, {name: B, value: "2"}]}',
      ].join('\n'),
      'p.yaml': [
        'apiVersion: apps/v1',
        'kind: Deployment',
        'metadata: {name: d, labels: {b: null}}',
        'spec:',
        '  template:',
        '    spec:',
        '      containers:',
        '        - {name: c, command: [z], env: [{name: B, value: "3"}, {name: C, value: "4"}]}',
      ].join('\n'),
    })
    const [d] = render(at)
    const c = container(d as K8sObject, 'c')
    expect(c.command).toEqual(['z'])
    expect(c.env).toEqual([
      { name: 'B', value: '3' },
      { name: 'C', value: '4' },
      { name: 'A', value: '1' },
    ])
    expect(c.image).toBe('i')
    expect(d?.metadata['labels']).toEqual({ a: '1' })
  })

  it('rewrites images by name, keeping or replacing the tag', async () => {
    const at = await overlay(
      'images',
      'resources: [d.yaml]\nimages: [{name: r.example:5000/x, newTag: "2"}, {name: y, newName: z}]\n',
      {
        'd.yaml':
          'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: "r.example:5000/x:1"}, {name: b, image: "y:7"}, {name: c, image: "yy:7"}]}\n',
      },
    )
    const [p] = render(at)
    expect((pod(p as K8sObject).containers ?? []).map((c) => c.image)).toEqual([
      'r.example:5000/x:2',
      'z:7',
      'yy:7',
    ])
  })
})
