// The differential tests (differential.test.ts, on the default lowlevel transport) on the fuse-native one.
import { useTransport } from './support.js'
import './differential.test.js'

useTransport('fuse-native')
