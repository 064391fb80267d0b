// The driver contract against real runsc containers.
import { driverContract } from './driver.contract.js'

driverContract('runsc')
