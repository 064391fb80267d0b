// FastCDC cut points in C (N-API), the same algorithm and constants as src/blockstore/chunker.ts
// cutPoint(): the gear loop is the write path's hottest code and runs ~3x faster here than in
// JavaScript. A test checks that both produce identical boundaries. Also BLAKE3 (vendored in
// native/blake3) with one call per chunk or per buffer of chunks.
#include <node_api.h>
#include <stdbool.h>
#include "blake3/blake3.h"
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

// The arguments cuts() and cutAndHash() share, checked once.
typedef struct {
  const uint8_t *buf;
  size_t used;
  bool final;
  size_t min, avg, max;
  const int32_t *gear;
  uint32_t hard, easy;
  uint32_t *out;
  size_t out_len;
} cut_args;

// Parses argv[0..9] into `a`; on a bad argument throws and returns false.
static bool parse_cut_args(napi_env env, napi_value *argv, cut_args *a) {
#define PCHECK(call)                                                   \
  do {                                                                 \
    if ((call) != napi_ok) {                                           \
      napi_throw_error(env, NULL, "s0_native: bad arguments to cuts"); \
      return false;                                                    \
    }                                                                  \
  } while (0)
  void *data;
  napi_typedarray_type type;
  size_t length;
  napi_value ab;
  size_t offset;
  PCHECK(napi_get_typedarray_info(env, argv[0], &type, &length, &data, &ab, &offset));
  a->buf = (const uint8_t *)data;
  int64_t used, min, avg, max;
  PCHECK(napi_get_value_int64(env, argv[1], &used));
  PCHECK(napi_get_value_bool(env, argv[2], &a->final));
  PCHECK(napi_get_value_int64(env, argv[3], &min));
  PCHECK(napi_get_value_int64(env, argv[4], &avg));
  PCHECK(napi_get_value_int64(env, argv[5], &max));
  void *gear_data;
  size_t gear_len;
  PCHECK(napi_get_typedarray_info(env, argv[6], &type, &gear_len, &gear_data, &ab, &offset));
  if (type != napi_int32_array || gear_len != 256) {
    napi_throw_error(env, NULL, "s0_native: gear must be an Int32Array of 256");
    return false;
  }
  a->gear = (const int32_t *)gear_data;
  int32_t hard_i, easy_i;
  PCHECK(napi_get_value_int32(env, argv[7], &hard_i));
  PCHECK(napi_get_value_int32(env, argv[8], &easy_i));
  a->hard = (uint32_t)hard_i;
  a->easy = (uint32_t)easy_i;
  void *out_data;
  PCHECK(napi_get_typedarray_info(env, argv[9], &type, &a->out_len, &out_data, &ab, &offset));
  if (type != napi_uint32_array) {
    napi_throw_error(env, NULL, "s0_native: out must be a Uint32Array");
    return false;
  }
  a->out = (uint32_t *)out_data;
  if (used < 0 || (size_t)used > length || min <= 0 || avg <= min || max <= avg) {
    napi_throw_range_error(env, NULL, "s0_native: bad sizes");
    return false;
  }
  a->used = (size_t)used;
  a->min = (size_t)min;
  a->avg = (size_t)avg;
  a->max = (size_t)max;
  return true;
#undef PCHECK
}

// The cut ends of a->buf[0, used), written to a->out; when `hashes` is not NULL, the BLAKE3-256
// of each chunk too (32 bytes each, at most hashes_len / 32 chunks). Returns how many.
static size_t cut_all(const cut_args *a, uint8_t *hashes, size_t hashes_len) {
  size_t cap = a->out_len;
  if (hashes != NULL && hashes_len / BLAKE3_OUT_LEN < cap) cap = hashes_len / BLAKE3_OUT_LEN;
  size_t n = 0;
  size_t start = 0;
  while (start < a->used && (a->final || a->used - start >= a->max) && n < cap) {
    size_t end = cut_point(a->buf, start, a->used, a->min, a->avg, a->max, a->gear, a->hard, a->easy);
    if (hashes != NULL) {
      blake3_hasher h;
      blake3_hasher_init(&h);
      blake3_hasher_update(&h, a->buf + start, end - start);
      blake3_hasher_finalize(&h, hashes + n * BLAKE3_OUT_LEN, BLAKE3_OUT_LEN);
    }
    a->out[n++] = (uint32_t)end;
    start = end;
  }
  return n;
}

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
  cut_args a;
  if (!parse_cut_args(env, argv, &a)) return NULL;
  napi_value result;
  CHECK(napi_create_uint32(env, (uint32_t)cut_all(&a, NULL, 0), &result));
  return result;
}

// cutAndHash(buf, used, final, min, avg, max, gear, hard, easy, out, hashes) -> as cuts(), and
// the BLAKE3-256 of chunk k written to hashes[32k, 32k+32). One call per staging buffer: the
// hash pool's workers (src/blockstore/hash-pool.ts) cut and hash without a JavaScript step
// per chunk.
static napi_value cut_and_hash(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 11) {
    napi_throw_error(env, NULL, "s0_native: cutAndHash takes 11 arguments");
    return NULL;
  }
  cut_args a;
  if (!parse_cut_args(env, argv, &a)) return NULL;
  void *hashes;
  size_t hashes_len;
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  CHECK(napi_get_typedarray_info(env, argv[10], &type, &hashes_len, &hashes, &ab, &offset));
  if (type != napi_uint8_array) {
    napi_throw_error(env, NULL, "s0_native: hashes must be a Uint8Array");
    return NULL;
  }
  napi_value result;
  CHECK(napi_create_uint32(env, (uint32_t)cut_all(&a, (uint8_t *)hashes, hashes_len), &result));
  return result;
}

// hashInto(data, out, at): the BLAKE3-256 of `data` written to out[at, at+32). One N-API call
// and no allocation: the npm blake3 wrapper builds a stream.Transform per hash (~10 µs), which
// dominated hashing of small files.
static napi_value hash_into(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 3) {
    napi_throw_error(env, NULL, "s0_native: hashInto takes 3 arguments");
    return NULL;
  }
  void *data;
  size_t len;
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  CHECK(napi_get_typedarray_info(env, argv[0], &type, &len, &data, &ab, &offset));
  if (type != napi_uint8_array) {
    napi_throw_error(env, NULL, "s0_native: data must be a Uint8Array");
    return NULL;
  }
  void *out;
  size_t out_len;
  CHECK(napi_get_typedarray_info(env, argv[1], &type, &out_len, &out, &ab, &offset));
  int64_t at;
  CHECK(napi_get_value_int64(env, argv[2], &at));
  if (type != napi_uint8_array || at < 0 || (size_t)at + BLAKE3_OUT_LEN > out_len) {
    napi_throw_range_error(env, NULL, "s0_native: hashInto out of range");
    return NULL;
  }
  blake3_hasher h;
  blake3_hasher_init(&h);
  blake3_hasher_update(&h, data, len);
  blake3_hasher_finalize(&h, (uint8_t *)out + at, BLAKE3_OUT_LEN);
  return NULL;
}

napi_value s0_xattr_init(napi_env env, napi_value exports);
napi_value s0_netfilter_init(napi_env env, napi_value exports);

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "cuts", NAPI_AUTO_LENGTH, cuts, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "cuts", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "cutAndHash", NAPI_AUTO_LENGTH, cut_and_hash, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "cutAndHash", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "hashInto", NAPI_AUTO_LENGTH, hash_into, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "hashInto", fn) != napi_ok) return NULL;
  if (s0_xattr_init(env, exports) == NULL) return NULL;
  return s0_netfilter_init(env, exports);
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
