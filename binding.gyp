{
  "targets": [
    {
      "target_name": "s0_native",
      "sources": ["native/cdc.c", "native/xattr.c", "native/netfilter.c"],
      "cflags": ["-O3", "-std=c11"]
    },
    {
      "target_name": "s0_fuse3",
      "sources": ["native/fuse3.c"],
      "cflags": ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers", "<!@(pkg-config --cflags fuse3)"],
      "libraries": ["<!@(pkg-config --libs fuse3)"]
    }
  ]
}
