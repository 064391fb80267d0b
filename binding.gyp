{
  "targets": [
    {
      "target_name": "s0_native",
      "sources": ["native/cdc.c"],
      "cflags": ["-O3", "-std=c11"]
    }
  ]
}
