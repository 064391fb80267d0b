// The mount tests (mount.test.ts, on the default lowlevel transport) on the fuse-native one.
import { useTransport } from './support.js'
import './mount.test.js'

useTransport('fuse-native')
