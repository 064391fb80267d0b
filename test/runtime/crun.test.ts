// The driver contract against real crun containers.
import { driverContract } from './driver.contract.js'

driverContract('crun')
