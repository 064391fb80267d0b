// The conformance table (conformance.test.ts) on the fuse-native transport.
import { useTransport } from './support.js'
import './conformance.test.js'

useTransport('fuse-native')
