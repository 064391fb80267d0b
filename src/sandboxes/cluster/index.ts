// The cluster: nodes (agents), placement, and the dead-node reaper (docs/DEPLOY.md).
export {
  liveNodes,
  listNodes,
  NodeMembership,
  type NodeCapacity,
  type NodeRow,
  type NodeSpec,
  type NodeUsage,
} from './nodes.js'
export { claimDemand, NO_DEMAND, sandboxDemand, type Demand } from './demand.js'
export {
  ownerNode,
  place,
  reserveOn,
  releasePlacement,
  volumeWriterNode,
  type Placement,
  type PlacementRequest,
} from './placement.js'
export { NodeReaper, reapDeadNodes, type ReapedNode } from './reaper.js'
