// The workloads tests (workloads.test.ts, on the default lowlevel transport) on the fuse-native one.
import { useTransport } from './support.js'
import './workloads.test.js'

useTransport('fuse-native')
