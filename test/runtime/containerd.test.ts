// The driver contract against real runc and runsc containers driven through our own containerd
// (src/runtime/containerd/): runc under containerd's runc v2 shim, runsc under the same shim as
// its BinaryName.
import { driverContract } from './driver.contract.js'

driverContract('runc', { via: 'containerd' })
driverContract('runsc', { via: 'containerd' })
