{
  "targets": [
    {
      "target_name": "s0_native",
      "sources": ["native/cdc.c", "native/xattr.c", "native/netfilter.c"],
      "cflags": ["-O3", "-std=c11"]
    }
  ]
}
