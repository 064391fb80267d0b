// Extended attributes of a path without following symlinks (llistxattr / lgetxattr), which
// Node has no API for. The root-filesystem capture reads them from overlayfs upper layers:
// trusted.overlay.opaque marks a directory that hides the layers below, and file xattrs
// (security.capability, user.*) belong to the files. Synchronous: local disk only, microseconds.
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#define PATH_BYTES_MAX 4096
#define XATTR_LIST_BYTES_MAX 65536
#define XATTR_VALUE_BYTES_MAX 65536

// A path as a string or as a Buffer (names need not be UTF-8), NUL-terminated into `out`.
static int path_arg(napi_env env, napi_value v, char *out) {
  bool is_buffer = false;
  napi_is_buffer(env, v, &is_buffer);
  if (is_buffer) {
    void *data;
    size_t len;
    if (napi_get_buffer_info(env, v, &data, &len) == napi_ok && len < PATH_BYTES_MAX && !memchr(data, 0, len)) {
      memcpy(out, data, len);
      out[len] = 0;
      return 1;
    }
  } else {
    size_t len;
    if (napi_get_value_string_utf8(env, v, out, PATH_BYTES_MAX, &len) == napi_ok && len < PATH_BYTES_MAX - 1)
      return 1;
  }
  napi_throw_type_error(env, NULL, "s0_native: path must be a string or Buffer shorter than 4095 bytes");
  return 0;
}

static void throw_errno(napi_env env, const char *what, int err) {
  napi_value code, msg, error;
  napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &msg);
  napi_create_int32(env, err, &code);
  napi_create_error(env, NULL, msg, &error);
  napi_set_named_property(env, error, "errno", code);
  napi_value syscall;
  napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &syscall);
  napi_set_named_property(env, error, "syscall", syscall);
  napi_throw(env, error);
}

// listXattrs(path) -> string[] (names; [] where the file system has none or no support)
static napi_value list_xattrs(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1) return NULL;
  char path[PATH_BYTES_MAX];
  if (!path_arg(env, argv[0], path)) return NULL;
  char *buf = malloc(XATTR_LIST_BYTES_MAX);
  if (!buf) {
    napi_throw_error(env, NULL, "s0_native: out of memory");
    return NULL;
  }
  ssize_t n = llistxattr(path, buf, XATTR_LIST_BYTES_MAX);
  int err = errno;
  napi_value arr;
  napi_create_array(env, &arr);
  if (n < 0) {
    free(buf);
    if (err == ENOTSUP) return arr;
    throw_errno(env, "llistxattr", err);
    return NULL;
  }
  uint32_t i = 0;
  for (ssize_t at = 0; at < n;) {
    size_t len = strnlen(buf + at, (size_t)(n - at));
    napi_value name;
    napi_create_string_utf8(env, buf + at, len, &name);
    napi_set_element(env, arr, i++, name);
    at += (ssize_t)len + 1;
  }
  free(buf);
  return arr;
}

// getXattr(path, name) -> Buffer, or null when the attribute is absent
static napi_value get_xattr(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2) return NULL;
  char path[PATH_BYTES_MAX];
  char name[256];
  size_t name_len;
  if (!path_arg(env, argv[0], path)) return NULL;
  if (napi_get_value_string_utf8(env, argv[1], name, sizeof name, &name_len) != napi_ok ||
      name_len >= sizeof name - 1) {
    napi_throw_type_error(env, NULL, "s0_native: xattr name must be a string of at most 254 bytes");
    return NULL;
  }
  char *value = malloc(XATTR_VALUE_BYTES_MAX);
  if (!value) {
    napi_throw_error(env, NULL, "s0_native: out of memory");
    return NULL;
  }
  ssize_t n = lgetxattr(path, name, value, XATTR_VALUE_BYTES_MAX);
  int err = errno;
  napi_value result;
  if (n < 0) {
    free(value);
    if (err == ENODATA || err == ENOTSUP) {
      napi_get_null(env, &result);
      return result;
    }
    throw_errno(env, "lgetxattr", err);
    return NULL;
  }
  void *data;
  napi_create_buffer_copy(env, (size_t)n, value, &data, &result);
  free(value);
  return result;
}

napi_value s0_xattr_init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "listXattrs", NAPI_AUTO_LENGTH, list_xattrs, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "listXattrs", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "getXattr", NAPI_AUTO_LENGTH, get_xattr, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "getXattr", fn) != napi_ok) return NULL;
  return exports;
}
