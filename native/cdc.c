// FastCDC cut points in C (N-API), the same algorithm and constants as src/blockstore/chunker.ts
// cutPoint(): the gear loop is the write path's hottest code and runs ~3x faster here than in
// JavaScript. A test checks that both produce identical boundaries.
#include <node_api.h>
#include <stdint.h>
#include <string.h>

static size_t cut_point(const uint8_t *buf, size_t start, size_t end, size_t min, size_t avg, size_t max,
                        const int32_t *gear, uint32_t hard, uint32_t easy) {
  size_t len = end - start;
  if (len > max) len = max;
  if (len <= min) return start + len;
  size_t normal_end = start + (avg < len ? avg : len);
  size_t stop = start + len;
  uint32_t h = 0;
  size_t i = start + min;
  for (; i < normal_end; i++) {
    h = (h << 1) + (uint32_t)gear[buf[i]];
    if ((h & hard) == 0) return i + 1;
  }
  for (; i < stop; i++) {
    h = (h << 1) + (uint32_t)gear[buf[i]];
    if ((h & easy) == 0) return i + 1;
  }
  return stop;
}

#define CHECK(call)                                                    \
  do {                                                                 \
    if ((call) != napi_ok) {                                           \
      napi_throw_error(env, NULL, "s0_native: bad arguments to cuts"); \
      return NULL;                                                     \
    }                                                                  \
  } while (0)

// cuts(buf, used, final, min, avg, max, gear, hard, easy, out) -> number of cut ends written to
// `out` (exclusive chunk ends, in order). Without `final`, a chunk is cut only when a full
// max-size window is visible (as the JavaScript StreamingChunker does).
static napi_value cuts(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 10) {
    napi_throw_error(env, NULL, "s0_native: cuts takes 10 arguments");
    return NULL;
  }
  void *data;
  size_t buf_len;
  napi_typedarray_type type;
  size_t length;
  napi_value ab;
  size_t offset;
  CHECK(napi_get_typedarray_info(env, argv[0], &type, &length, &data, &ab, &offset));
  buf_len = length;
  const uint8_t *buf = (const uint8_t *)data;
  int64_t used, min, avg, max;
  uint32_t hard, easy;
  bool final;
  CHECK(napi_get_value_int64(env, argv[1], &used));
  CHECK(napi_get_value_bool(env, argv[2], &final));
  CHECK(napi_get_value_int64(env, argv[3], &min));
  CHECK(napi_get_value_int64(env, argv[4], &avg));
  CHECK(napi_get_value_int64(env, argv[5], &max));
  void *gear_data;
  size_t gear_len;
  CHECK(napi_get_typedarray_info(env, argv[6], &type, &gear_len, &gear_data, &ab, &offset));
  if (type != napi_int32_array || gear_len != 256) {
    napi_throw_error(env, NULL, "s0_native: gear must be an Int32Array of 256");
    return NULL;
  }
  int32_t hard_i, easy_i;
  CHECK(napi_get_value_int32(env, argv[7], &hard_i));
  CHECK(napi_get_value_int32(env, argv[8], &easy_i));
  hard = (uint32_t)hard_i;
  easy = (uint32_t)easy_i;
  void *out_data;
  size_t out_len;
  CHECK(napi_get_typedarray_info(env, argv[9], &type, &out_len, &out_data, &ab, &offset));
  if (type != napi_uint32_array) {
    napi_throw_error(env, NULL, "s0_native: out must be a Uint32Array");
    return NULL;
  }
  if (used < 0 || (size_t)used > buf_len || min <= 0 || avg <= min || max <= avg) {
    napi_throw_range_error(env, NULL, "s0_native: bad sizes");
    return NULL;
  }
  uint32_t *out = (uint32_t *)out_data;
  size_t n = 0;
  size_t start = 0;
  while (start < (size_t)used && (final || (size_t)used - start >= (size_t)max) && n < out_len) {
    size_t end = cut_point(buf, start, (size_t)used, (size_t)min, (size_t)avg, (size_t)max, (const int32_t *)gear_data, hard, easy);
    out[n++] = (uint32_t)end;
    start = end;
  }
  napi_value result;
  CHECK(napi_create_uint32(env, (uint32_t)n, &result));
  return result;
}

napi_value s0_xattr_init(napi_env env, napi_value exports);
napi_value s0_netfilter_init(napi_env env, napi_value exports);

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "cuts", NAPI_AUTO_LENGTH, cuts, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "cuts", fn) != napi_ok) return NULL;
  if (s0_xattr_init(env, exports) == NULL) return NULL;
  return s0_netfilter_init(env, exports);
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
