// The UDP relay's conntrack lookup: the original destination of a redirected flow, from the
// kernel's table text (the end-to-end tests run it against the real table).
import { describe, expect, it } from 'vitest'
import { findOriginalUdpDestination } from '../../src/egress/proxy/udp-relay.js'

const TABLE = [
  'ipv4     2 tcp      6 431999 ESTABLISHED src=10.9.0.2 dst=198.18.1.4 sport=40000 dport=80 src=10.9.0.1 dst=10.9.0.2 sport=3128 dport=40000 [ASSURED] mark=0 zone=0 use=2',
  'ipv4     2 udp      17 29 src=10.9.0.6 dst=198.18.1.4 sport=40000 dport=9000 [UNREPLIED] src=10.9.0.5 dst=10.9.0.6 sport=5555 dport=40000 mark=0 zone=0 use=2',
  'ipv4     2 udp      17 29 src=10.9.0.2 dst=198.18.1.5 sport=40001 dport=53 src=10.9.0.1 dst=10.9.0.2 sport=5353 dport=40001 mark=0 zone=0 use=2',
  'ipv4     2 udp      17 29 src=10.9.0.2 dst=198.18.1.4 sport=40000 dport=9001 [UNREPLIED] src=10.9.0.1 dst=10.9.0.2 sport=5555 dport=40000 mark=0 zone=0 use=2',
  'ipv6     10 udp      17 29 src=fe80::1 dst=ff02::1 sport=1 dport=2 [UNREPLIED] src=ff02::1 dst=fe80::1 sport=2 dport=1 mark=0 zone=0 use=2',
  '',
].join('\n')

describe('findOriginalUdpDestination', () => {
  it('finds the flow redirected to the relay by its source address and port', () => {
    expect(findOriginalUdpDestination(TABLE, { address: '10.9.0.2', port: 40000 }, 5555)).toEqual({
      address: '198.18.1.4',
      port: 9001,
    })
    expect(findOriginalUdpDestination(TABLE, { address: '10.9.0.6', port: 40000 }, 5555)).toEqual({
      address: '198.18.1.4',
      port: 9000,
    })
  })

  it('ignores TCP, flows redirected elsewhere (DNS), other sources and ports', () => {
    expect(findOriginalUdpDestination(TABLE, { address: '10.9.0.2', port: 40001 }, 5555)).toBeUndefined()
    expect(findOriginalUdpDestination(TABLE, { address: '10.9.0.2', port: 40000 }, 3128)).toBeUndefined()
    expect(findOriginalUdpDestination(TABLE, { address: '10.9.0.3', port: 40000 }, 5555)).toBeUndefined()
    expect(findOriginalUdpDestination('', { address: '10.9.0.2', port: 40000 }, 5555)).toBeUndefined()
  })
})
