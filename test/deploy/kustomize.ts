// A small, offline kustomize: exactly the features deploy/kubernetes uses, so a test can render
// every overlay with no kubectl or kustomize binary. Anything else in a kustomization.yaml (or a
// patch list whose merge rule is not known here) is an error, never silently ignored.
//
// Supported, with kustomize's meaning:
//   resources   files (multi-document YAML) and directories holding a kustomization.yaml
//   namespace   set on every namespaced object (cluster-scoped kinds listed below keep none)
//   images      name -> newName / newTag / digest, on every container and init container
//   replicas    name -> count, on Deployments and StatefulSets
//   patches     `path` or inline `patch`, strategic merge only, the target named by the patch's
//               own kind and metadata.name: maps merge, `null` deletes a key, lists of containers,
//               env, volumes, volume mounts merge by `name` (the patch's elements first, as
//               kustomize orders them), a few atomic lists are replaced
// Order as kustomize applies it: resources (each base fully rendered), patches, namespace,
// replicas, images.
import { readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { parseAllDocuments } from 'yaml'

export type K8sObject = {
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; [key: string]: unknown }
  [key: string]: unknown
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
type JsonMap = { [key: string]: Json }

const KNOWN_KEYS = new Set(['apiVersion', 'kind', 'resources', 'namespace', 'images', 'replicas', 'patches'])
/** Kinds with no namespace among the ones we emit; the namespace transformer leaves them alone. */
const CLUSTER_SCOPED = new Set(['Namespace', 'PriorityClass', 'ClusterRole', 'ClusterRoleBinding'])
/** Strategic merge: lists merged element by element on `name` (patchMergeKey in the API). */
const MERGE_BY_NAME = new Set(['containers', 'initContainers', 'env', 'volumes', 'volumeMounts'])
/** Strategic merge: lists the API marks atomic (no patch strategy), replaced whole. */
const ATOMIC_LISTS = new Set(['args', 'command', 'tolerations', 'hosts'])
const REPLICATED_KINDS = new Set(['Deployment', 'StatefulSet'])

export function render(dir: string): K8sObject[] {
  const kustomization = readYaml(path.join(dir, 'kustomization.yaml'))
  if (kustomization.length !== 1) throw new Error(`${dir}: kustomization.yaml must hold one document`)
  const k = asMap(kustomization[0], `${dir}/kustomization.yaml`)
  for (const key of Object.keys(k)) {
    if (!KNOWN_KEYS.has(key)) throw new Error(`${dir}/kustomization.yaml: "${key}" is not supported here`)
  }
  let objects: K8sObject[] = []
  for (const entry of asList(k['resources'] ?? [], 'resources')) {
    const target = path.resolve(dir, asString(entry, 'resources[]'))
    objects.push(...(statSync(target).isDirectory() ? render(target) : readObjects(target)))
  }
  for (const [i, p] of asList(k['patches'] ?? [], 'patches').entries()) {
    const patch = asMap(p, `patches[${i}]`)
    for (const key of Object.keys(patch)) {
      if (key !== 'path' && key !== 'patch') throw new Error(`patches[${i}]: "${key}" is not supported here`)
    }
    const docs =
      patch['path'] !== undefined
        ? readYaml(path.resolve(dir, asString(patch['path'], 'path')))
        : parseYaml(asString(patch['patch'], 'patch'), `patches[${i}]`)
    for (const doc of docs) objects = applyPatch(objects, asObject(doc, `patches[${i}]`))
  }
  if (k['namespace'] !== undefined) {
    const namespace = asString(k['namespace'], 'namespace')
    for (const o of objects) if (!CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace = namespace
  }
  for (const [i, r] of asList(k['replicas'] ?? [], 'replicas').entries()) {
    const { name, count } = asMap(r, `replicas[${i}]`)
    if (typeof count !== 'number') throw new Error(`replicas[${i}]: count must be a number`)
    const hits = objects.filter((o) => REPLICATED_KINDS.has(o.kind) && o.metadata.name === name)
    if (hits.length === 0)
      throw new Error(`replicas[${i}]: no Deployment or StatefulSet named ${String(name)}`)
    for (const o of hits) asMap(o['spec'] as Json, `${o.kind}/${o.metadata.name}.spec`)['replicas'] = count
  }
  for (const [i, img] of asList(k['images'] ?? [], 'images').entries()) {
    setImage(objects, asMap(img, `images[${i}]`))
  }
  return objects
}

function applyPatch(objects: K8sObject[], patch: K8sObject): K8sObject[] {
  const id = `${patch.kind}/${patch.metadata.name}`
  const hits = objects.filter((o) => o.kind === patch.kind && o.metadata.name === patch.metadata.name)
  if (hits.length !== 1) throw new Error(`patch ${id}: ${hits.length} objects match, want 1`)
  return objects.map((o) => (o === hits[0] ? (merge(o as JsonMap, patch as JsonMap, id) as K8sObject) : o))
}

/** Strategic merge of `patch` into `base`: a new value, neither argument changed. */
function merge(base: JsonMap, patch: JsonMap, where: string): JsonMap {
  const out: JsonMap = { ...base }
  for (const [key, value] of Object.entries(patch)) {
    const at = `${where}.${key}`
    const old = out[key]
    if (value === null) delete out[key]
    else if (Array.isArray(value)) out[key] = mergeList(key, Array.isArray(old) ? old : [], value, at)
    else if (isMap(value) && isMap(old)) out[key] = merge(old, value, at)
    else out[key] = value
  }
  return out
}

function mergeList(key: string, base: Json[], patch: Json[], where: string): Json[] {
  if (ATOMIC_LISTS.has(key)) return patch
  if (!MERGE_BY_NAME.has(key)) throw new Error(`${where}: how kustomize merges "${key}" is not known here`)
  const nameOf = (item: Json): string => {
    const name = asMap(item, where)['name']
    if (typeof name !== 'string') throw new Error(`${where}: an element has no name`)
    return name
  }
  // kustomize's order: the patch's elements first (each merged into its namesake), then the
  // base's other elements in their order. Order matters: env may refer to earlier $(VARS).
  const byName = new Map(base.map((item) => [nameOf(item), item]))
  const out = patch.map((item) => {
    const old = byName.get(nameOf(item))
    return old === undefined ? item : merge(old as JsonMap, item as JsonMap, `${where}[${nameOf(item)}]`)
  })
  const patched = new Set(patch.map(nameOf))
  return [...out, ...base.filter((item) => !patched.has(nameOf(item)))]
}

function setImage(objects: K8sObject[], rule: JsonMap): void {
  const name = asString(rule['name'], 'images[].name')
  for (const o of objects) {
    const pod = podSpec(o)
    if (pod === undefined) continue
    const containers = asList(pod['containers'] ?? [], 'containers')
    for (const c of [...containers, ...asList(pod['initContainers'] ?? [], 'initContainers')]) {
      const container = asMap(c, 'container')
      const image = asString(container['image'], 'image')
      const ref = parseImage(image)
      if (ref.name !== name) continue
      const newName = typeof rule['newName'] === 'string' ? rule['newName'] : ref.name
      if (typeof rule['digest'] === 'string') container['image'] = `${newName}@${rule['digest']}`
      else if (typeof rule['newTag'] === 'string') container['image'] = `${newName}:${rule['newTag']}`
      else container['image'] = `${newName}${ref.suffix}`
    }
  }
}

/** `registry:5000/repo:tag@sha256:...` -> name `registry:5000/repo` and the rest. */
function parseImage(image: string): { name: string; suffix: string } {
  const at = image.indexOf('@')
  const beforeDigest = at < 0 ? image : image.slice(0, at)
  const colon = beforeDigest.lastIndexOf(':')
  const end = colon > beforeDigest.lastIndexOf('/') ? colon : beforeDigest.length
  return { name: image.slice(0, end), suffix: image.slice(end) }
}

/** The pod spec of a workload (Deployment, DaemonSet, StatefulSet, Job) or of a Pod. */
export function podSpec(o: K8sObject): JsonMap | undefined {
  if (o.kind === 'Pod') return o['spec'] as JsonMap
  const spec = o['spec'] as JsonMap | undefined
  const template = spec?.['template']
  return isMap(template) && isMap(template['spec']) ? template['spec'] : undefined
}

function readObjects(file: string): K8sObject[] {
  return readYaml(file).map((doc, i) => asObject(doc, `${file} document ${i + 1}`))
}

function readYaml(file: string): Json[] {
  return parseYaml(readFileSync(file, 'utf8'), file)
}

function parseYaml(text: string, where: string): Json[] {
  const out: Json[] = []
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`${where}: ${doc.errors[0]?.message ?? 'invalid YAML'}`)
    const value = doc.toJS() as Json
    if (value !== null) out.push(value)
  }
  return out
}

function asObject(v: Json | undefined, where: string): K8sObject {
  const m = asMap(v, where)
  const meta = m['metadata']
  if (typeof m['apiVersion'] !== 'string' || typeof m['kind'] !== 'string' || !isMap(meta)) {
    throw new Error(`${where}: not a Kubernetes object (apiVersion, kind, metadata)`)
  }
  if (typeof meta['name'] !== 'string') throw new Error(`${where}: metadata.name missing`)
  return m as K8sObject
}

function isMap(v: Json | undefined): v is JsonMap {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function asMap(v: Json | undefined, where: string): JsonMap {
  if (!isMap(v)) throw new Error(`${where}: expected a map`)
  return v
}

function asList(v: Json | undefined, where: string): Json[] {
  if (!Array.isArray(v)) throw new Error(`${where}: expected a list`)
  return v
}

function asString(v: Json | undefined, where: string): string {
  if (typeof v !== 'string') throw new Error(`${where}: expected a string`)
  return v
}
