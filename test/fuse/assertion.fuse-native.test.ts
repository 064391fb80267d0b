// The assertion tests (assertion.test.ts, on the default lowlevel transport) on the fuse-native one.
import { useTransport } from './support.js'
import './assertion.test.js'

useTransport('fuse-native')
