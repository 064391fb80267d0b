// The driver contract against real runc containers.
import { driverContract } from './driver.contract.js'

driverContract('runc')
