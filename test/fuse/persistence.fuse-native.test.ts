// The persistence tests (persistence.test.ts, on the default lowlevel transport) on the fuse-native one.
import { useTransport } from './support.js'
import './persistence.test.js'

useTransport('fuse-native')
