// The original destination of a TCP connection that nftables redirected to us (getsockopt
// SOL_IP SO_ORIGINAL_DST, answered from the connection's conntrack entry): the egress proxy
// needs it after the sandbox network's `redirect`, and Node has no API for it. IPv4 only: the
// sandbox network drops IPv6. Synchronous: one getsockopt, microseconds.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <node_api.h>
#include <string.h>
#include <sys/socket.h>

static void throw_errno(napi_env env, const char *what, int err) {
  napi_value code, msg, error, syscall;
  napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &msg);
  napi_create_int32(env, err, &code);
  napi_create_error(env, NULL, msg, &error);
  napi_set_named_property(env, error, "errno", code);
  napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &syscall);
  napi_set_named_property(env, error, "syscall", syscall);
  napi_throw(env, error);
}

// originalDst(fd) -> { address: string, port: number }: the destination of the connection's
// conntrack entry in its original direction (for a connection that was not NATed, the local
// address itself). Throws with `errno`: ENOENT when conntrack has no entry for it,
// ENOPROTOOPT for a socket that is not TCP/IPv4, EBADF/ENOTSOCK for a bad fd.
static napi_value original_dst(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1) {
    napi_throw_type_error(env, NULL, "s0_native: originalDst(fd) takes one argument");
    return NULL;
  }
  int32_t fd;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, NULL, "s0_native: fd must be a non-negative integer");
    return NULL;
  }
  struct sockaddr_in dst;
  socklen_t len = sizeof dst;
  memset(&dst, 0, sizeof dst);
  if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len) != 0) {
    throw_errno(env, "getsockopt(SO_ORIGINAL_DST)", errno);
    return NULL;
  }
  char text[INET_ADDRSTRLEN];
  if (dst.sin_family != AF_INET || !inet_ntop(AF_INET, &dst.sin_addr, text, sizeof text)) {
    throw_errno(env, "getsockopt(SO_ORIGINAL_DST)", EAFNOSUPPORT);
    return NULL;
  }
  napi_value result, address, port;
  if (napi_create_object(env, &result) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &address) != napi_ok) return NULL;
  if (napi_create_uint32(env, ntohs(dst.sin_port), &port) != napi_ok) return NULL;
  if (napi_set_named_property(env, result, "address", address) != napi_ok) return NULL;
  if (napi_set_named_property(env, result, "port", port) != napi_ok) return NULL;
  return result;
}

napi_value s0_netfilter_init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "originalDst", NAPI_AUTO_LENGTH, original_dst, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "originalDst", fn) != napi_ok) return NULL;
  return exports;
}
