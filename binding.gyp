{
  "targets": [
    {
      "target_name": "s0_native",
      "sources": [
        "native/cdc.c",
        "native/xattr.c",
        "native/netfilter.c",
        "native/blake3/blake3.c",
        "native/blake3/blake3_dispatch.c",
        "native/blake3/blake3_portable.c"
      ],
      "cflags": ["-O3", "-std=c11"],
      "conditions": [
        [
          "target_arch=='x64'",
          {
            "sources": [
              "native/blake3/blake3_sse2_x86-64_unix.S",
              "native/blake3/blake3_sse41_x86-64_unix.S",
              "native/blake3/blake3_avx2_x86-64_unix.S",
              "native/blake3/blake3_avx512_x86-64_unix.S"
            ]
          },
          {
            "defines": ["BLAKE3_NO_SSE2", "BLAKE3_NO_SSE41", "BLAKE3_NO_AVX2", "BLAKE3_NO_AVX512"]
          }
        ]
      ]
    },
    {
      "target_name": "s0_fuse3",
      "sources": ["native/fuse3.c"],
      "cflags": [
        "-O2",
        "-std=gnu11",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter",
        "-Wno-missing-field-initializers",
        "<!@(pkg-config --cflags fuse3)"
      ],
      "libraries": ["<!@(pkg-config --libs fuse3)"]
    }
  ]
}
