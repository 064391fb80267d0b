// Registry references: normalised as docker does, refused with invalid_request when malformed.
import { describe, expect, it } from 'vitest'
import { isS0Error } from '../../src/core/errors.js'
import { formatImageRef, isInsecureRegistry, parseImageRef } from '../../src/runtime/image-ref.js'

const D = 'sha256:' + 'ab'.repeat(32)

describe('parseImageRef', () => {
  it.each([
    ['python:3.12-slim', 'docker.io/library/python:3.12-slim'],
    ['python', 'docker.io/library/python:latest'],
    ['org/app', 'docker.io/org/app:latest'],
    ['index.docker.io/org/app:1', 'docker.io/org/app:1'],
    ['ghcr.io/org/app:1.4', 'ghcr.io/org/app:1.4'],
    ['127.0.0.1:5000/x:tag', '127.0.0.1:5000/x:tag'],
    ['localhost/x/y', 'localhost/x/y:latest'],
    [`ghcr.io/org/app@${D}`, `ghcr.io/org/app@${D}`],
    [`ghcr.io/org/app:1@${D}`, `ghcr.io/org/app:1@${D}`],
    ['Registry.Example.com:443/a/b_c__d-e.f:T_1', 'registry.example.com:443/a/b_c__d-e.f:T_1'],
  ])('%s → %s', (text, canonical) => {
    expect(formatImageRef(parseImageRef(text))).toBe(canonical)
  })

  it.each([
    '',
    'UPPER/case',
    'a:b:c',
    'repo@sha256:abc',
    `repo@md5:${'a'.repeat(32)}`,
    'ghcr.io/org/app:',
    'a b',
    'x/-y',
    'host:99999/x',
    `x:${'t'.repeat(129)}`,
    `r/${'a'.repeat(300)}`,
  ])('refuses %j', (text) => {
    let err: unknown
    try {
      parseImageRef(text)
    } catch (e) {
      err = e
    }
    expect(isS0Error(err, 'invalid_request')).toBe(true)
  })

  it('allows http only for loopback and listed registries', () => {
    expect(isInsecureRegistry('127.0.0.1:5000', [])).toBe(true)
    expect(isInsecureRegistry('localhost:5000', [])).toBe(true)
    expect(isInsecureRegistry('ghcr.io', [])).toBe(false)
    expect(isInsecureRegistry('reg.lan:5000', ['reg.lan'])).toBe(true)
    expect(isInsecureRegistry('reg.lan:5000', ['reg.lan:5001'])).toBe(false)
    expect(isInsecureRegistry('127.evil.com', [])).toBe(false)
  })
})
