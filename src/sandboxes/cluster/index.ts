// The cluster: nodes (agents), placement, and the dead-node reaper (docs/DEPLOY.md).
export {
  liveNodes,
  listNodes,
  NodeMembership,
  type NodeCapacity,
  type NodeRow,
  type NodeSpec,
} from './nodes.js'
export { ownerNode, place, releasePlacement, volumeWriterNode, type Placement } from './placement.js'
export { NodeReaper, reapDeadNodes, type ReapedNode } from './reaper.js'
