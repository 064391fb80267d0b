// The `lowlevel` FUSE transport: libfuse 3's low-level API driven from the Node event loop.
//
// Why this shape (docs/ARCHITECTURE.md, "FUSE transports"): fuse-native runs libfuse 2's
// multi-threaded loop and hops every request thread -> uv_async -> JS -> semaphore -> thread,
// 60-150 us each. Here the session fd is non-blocking and watched with uv_poll on the loop
// thread; when it is readable we drain it until EAGAIN and hand each request to one JS
// dispatcher synchronously. JS answers later (any time, any order) by request id through the
// reply functions below. No thread, no lock, no copy but the one of names and written data.
//
// One exception: kernel cache invalidations (notify_inval_inode/entry, notify_delete) go through
// a dedicated thread. The kernel may hold a directory's lock while it waits for our answer to a
// request in that directory, and a notify for the same directory waits for that lock: written
// from the loop thread, it would wait for a reply only the loop thread can send (libfuse's
// documented deadlock).
//
// Numbers cross in one shared Float64Array (`scratch`) instead of objects: JS fills it and calls
// a reply at once (nothing runs in between), and the setattr request puts its values there
// before the dispatcher runs. Inode numbers and sizes are below 2^53; times go as seconds and
// nanoseconds.
#define _GNU_SOURCE
#define FUSE_USE_VERSION 35
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <node_api.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <uv.h>

// ---- request kinds (same numbers in src/fuse/lowlevel-addon.ts) -----------------------------
enum {
  OP_LOOKUP = 1, OP_FORGET, OP_GETATTR, OP_SETATTR, OP_READLINK, OP_MKNOD, OP_MKDIR, OP_UNLINK,
  OP_RMDIR, OP_SYMLINK, OP_RENAME, OP_LINK, OP_OPEN, OP_READ, OP_WRITE, OP_FLUSH, OP_RELEASE,
  OP_FSYNC, OP_OPENDIR, OP_READDIR, OP_RELEASEDIR, OP_FSYNCDIR, OP_STATFS, OP_SETXATTR,
  OP_GETXATTR, OP_LISTXATTR, OP_REMOVEXATTR, OP_CREATE, OP_READDIRPLUS, OP_CLOSED, OP_SETTLED
};

// scratch layout (Float64Array)
enum {
  A_INO, A_MODE, A_NLINK, A_UID, A_GID, A_RDEV, A_SIZE, A_BLOCKS, A_ATIME_S, A_ATIME_NS,
  A_MTIME_S, A_MTIME_NS, A_CTIME_S, A_CTIME_NS, A_BLKSIZE, A_GENERATION, A_COUNT
};
#define S_SET 16 // setattr input: mode uid gid size atime_s atime_ns mtime_s mtime_ns
#define SCRATCH_MIN (S_SET + 8)
#define DIR_STRIDE 17 // readdir entries: off, then an attr (A_COUNT numbers)

// open reply flags (bits of the JS `flags` argument)
#define OPEN_KEEP_CACHE 1
#define OPEN_NOFLUSH 4

typedef struct notice {
  struct notice *next;
  int kind; // 1 inval_inode, 2 inval_entry, 4 barrier (a = its number)
  uint64_t a, b;
  int64_t off, len;
  size_t namelen;
  char name[];
} notice_t;

typedef struct session {
  napi_env env;
  struct fuse_session *se;
  uv_poll_t poll;
  // The notifier thread wakes the loop with it when it passed a barrier (JS awaits those).
  uv_async_t settled;
  uint64_t barrier_done;
  int fd;
  int closed; // no more requests will be dispatched; replies are ignored
  int uv_handles, js_gone; // the struct is freed once libuv (both handles) and JS let go
  napi_ref dispatch;
  napi_ref scratch_ref;
  napi_ref resource;
  napi_async_context async;
  double *scratch;
  struct fuse_buf buf;
  // requests awaiting JS: id -> req (free slots chained through `next_free`)
  fuse_req_t *reqs;
  uint32_t *next_free;
  uint32_t cap, free_head, outstanding;
  // init options
  unsigned max_write, max_background;
  int writeback, readdirplus;
  // notifier thread
  pthread_t notifier;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  notice_t *head, *tail;
  int stop;
} session_t;

#define NO_SLOT UINT32_MAX

static void fatal(const char *what) { napi_fatal_error("s0_fuse3", NAPI_AUTO_LENGTH, what, NAPI_AUTO_LENGTH); }

// ---- request table ---------------------------------------------------------------------------

static uint32_t req_put(session_t *s, fuse_req_t req) {
  if (s->free_head == NO_SLOT) {
    uint32_t cap = s->cap ? s->cap * 2 : 256;
    fuse_req_t *reqs = realloc(s->reqs, cap * sizeof *reqs);
    uint32_t *next = realloc(s->next_free, cap * sizeof *next);
    if (!reqs || !next) fatal("out of memory for the request table");
    s->reqs = reqs;
    s->next_free = next;
    for (uint32_t i = s->cap; i < cap; i++) {
      s->reqs[i] = NULL;
      s->next_free[i] = i + 1 < cap ? i + 1 : NO_SLOT;
    }
    s->free_head = s->cap;
    s->cap = cap;
  }
  uint32_t id = s->free_head;
  s->free_head = s->next_free[id];
  s->reqs[id] = req;
  s->outstanding++;
  return id;
}

// The request `id` names, removed from the table; NULL after close (a late reply is dropped).
// A reply to an id that is not waiting is a bug in the JS side: it throws.
static fuse_req_t req_take(napi_env env, session_t *s, uint32_t id) {
  if (s->closed) return NULL;
  if (id >= s->cap || !s->reqs[id]) {
    napi_throw_error(env, "ERR_S0_FUSE_REPLY", "s0_fuse3: reply to a request that is not waiting");
    return NULL;
  }
  fuse_req_t req = s->reqs[id];
  s->reqs[id] = NULL;
  s->next_free[id] = s->free_head;
  s->free_head = id;
  s->outstanding--;
  return req;
}

// ---- calling JS ------------------------------------------------------------------------------

static session_t *sess(fuse_req_t req) { return (session_t *)fuse_req_userdata(req); }

static void call_js(session_t *s, int argc, napi_value *argv) {
  napi_env env = s->env;
  napi_value fn, global;
  napi_get_reference_value(env, s->dispatch, &fn);
  napi_get_global(env, &global);
  napi_status st = napi_call_function(env, global, fn, (size_t)argc, argv, NULL);
  if (st == napi_pending_exception) {
    // The dispatcher never throws on purpose: this is a bug, and it crashes loudly.
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  } else if (st != napi_ok) {
    fatal("calling the FUSE dispatcher failed");
  }
}

static napi_value num(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

static napi_value name_buf(napi_env env, const char *name) {
  napi_value out;
  napi_create_buffer_copy(env, strlen(name), name, NULL, &out);
  return out;
}

// dispatch(op, id, ino, a, b, c, d, e)
static void dispatch(fuse_req_t req, int op, uint64_t ino, int n, napi_value *rest) {
  session_t *s = sess(req);
  napi_env env = s->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value argv[10];
  uint32_t id = req_put(s, req);
  argv[0] = num(env, op);
  argv[1] = num(env, id);
  argv[2] = num(env, (double)ino);
  for (int i = 0; i < n; i++) argv[3 + i] = rest[i];
  call_js(s, 3 + n, argv);
  napi_close_handle_scope(env, scope);
}

static void caller(napi_env env, fuse_req_t req, napi_value *uid, napi_value *gid) {
  const struct fuse_ctx *c = fuse_req_ctx(req);
  *uid = num(env, c->uid);
  *gid = num(env, c->gid);
}

// ---- the low-level operations ----------------------------------------------------------------

static void ll_init(void *userdata, struct fuse_conn_info *conn) {
  session_t *s = userdata;
  conn->max_write = s->max_write;
  conn->max_background = s->max_background;
  conn->congestion_threshold = s->max_background * 3 / 4;
  conn->time_gran = 1;
  // Pages stay valid until we say otherwise (we notify on every change not made through this
  // mount): no invalidation merely because an attribute reply shows a new mtime.
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  // O_TRUNC arrives as a setattr of size 0 before open, as for FUSE 2.
  conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  if (s->readdirplus && (conn->capable & FUSE_CAP_READDIRPLUS)) {
    conn->want |= FUSE_CAP_READDIRPLUS;
    conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  } else {
    conn->want &= ~(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
  }
  if (s->writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  else conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  napi_env env = sess(req)->env;
  napi_value a[1] = {name_buf(env, name)};
  dispatch(req, OP_LOOKUP, parent, 1, a);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  session_t *s = sess(req);
  napi_env env = s->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value argv[4] = {num(env, OP_FORGET), num(env, -1), num(env, (double)ino), num(env, (double)nlookup)};
  call_js(s, 4, argv);
  napi_close_handle_scope(env, scope);
  fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  session_t *s = sess(req);
  napi_env env = s->env;
  for (size_t i = 0; i < count; i++) {
    napi_handle_scope scope;
    napi_open_handle_scope(env, &scope);
    napi_value argv[4] = {num(env, OP_FORGET), num(env, -1), num(env, (double)forgets[i].ino),
                          num(env, (double)forgets[i].nlookup)};
    call_js(s, 4, argv);
    napi_close_handle_scope(env, scope);
  }
  fuse_reply_none(req);
}

static double fh_of(struct fuse_file_info *fi) { return fi ? (double)fi->fh : -1; }

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  napi_value a[1] = {num(sess(req)->env, fh_of(fi))};
  dispatch(req, OP_GETATTR, ino, 1, a);
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  session_t *s = sess(req);
  double *x = s->scratch + S_SET;
  x[0] = attr->st_mode;
  x[1] = attr->st_uid;
  x[2] = attr->st_gid;
  x[3] = (double)attr->st_size;
  x[4] = (double)attr->st_atim.tv_sec;
  x[5] = (double)attr->st_atim.tv_nsec;
  x[6] = (double)attr->st_mtim.tv_sec;
  x[7] = (double)attr->st_mtim.tv_nsec;
  napi_value a[2] = {num(s->env, to_set), num(s->env, fh_of(fi))};
  dispatch(req, OP_SETATTR, ino, 2, a);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino) { dispatch(req, OP_READLINK, ino, 0, NULL); }

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  napi_env env = sess(req)->env;
  napi_value a[5] = {name_buf(env, name), num(env, mode), num(env, (double)rdev)};
  caller(env, req, &a[3], &a[4]);
  dispatch(req, OP_MKNOD, parent, 5, a);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  napi_env env = sess(req)->env;
  napi_value a[4] = {name_buf(env, name), num(env, mode)};
  caller(env, req, &a[2], &a[3]);
  dispatch(req, OP_MKDIR, parent, 4, a);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  napi_value a[1] = {name_buf(sess(req)->env, name)};
  dispatch(req, OP_UNLINK, parent, 1, a);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  napi_value a[1] = {name_buf(sess(req)->env, name)};
  dispatch(req, OP_RMDIR, parent, 1, a);
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  napi_env env = sess(req)->env;
  napi_value a[4] = {name_buf(env, name), name_buf(env, link)};
  caller(env, req, &a[2], &a[3]);
  dispatch(req, OP_SYMLINK, parent, 4, a);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags) {
  napi_env env = sess(req)->env;
  napi_value a[4] = {name_buf(env, name), num(env, (double)newparent), name_buf(env, newname), num(env, flags)};
  dispatch(req, OP_RENAME, parent, 4, a);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  napi_env env = sess(req)->env;
  napi_value a[2] = {num(env, (double)newparent), name_buf(env, newname)};
  dispatch(req, OP_LINK, ino, 2, a);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  napi_value a[1] = {num(sess(req)->env, fi->flags)};
  dispatch(req, OP_OPEN, ino, 1, a);
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  napi_env env = sess(req)->env;
  napi_value a[3] = {num(env, fh_of(fi)), num(env, (double)size), num(env, (double)off)};
  dispatch(req, OP_READ, ino, 3, a);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi) {
  napi_env env = sess(req)->env;
  napi_value data;
  // A copy: libfuse reuses its buffer for the next request, and the write is answered later.
  napi_create_buffer_copy(env, size, buf, NULL, &data);
  napi_value a[3] = {num(env, fh_of(fi)), data, num(env, (double)off)};
  dispatch(req, OP_WRITE, ino, 3, a);
}

static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  napi_value a[1] = {num(sess(req)->env, fh_of(fi))};
  dispatch(req, OP_FLUSH, ino, 1, a);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  napi_value a[1] = {num(sess(req)->env, fh_of(fi))};
  dispatch(req, OP_RELEASE, ino, 1, a);
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  napi_env env = sess(req)->env;
  napi_value a[2] = {num(env, fh_of(fi)), num(env, datasync)};
  dispatch(req, OP_FSYNC, ino, 2, a);
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  napi_value a[1] = {num(sess(req)->env, fi->flags)};
  dispatch(req, OP_OPENDIR, ino, 1, a);
}

static void ll_readdir_any(fuse_req_t req, int op, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  napi_env env = sess(req)->env;
  napi_value a[3] = {num(env, fh_of(fi)), num(env, (double)size), num(env, (double)off)};
  dispatch(req, op, ino, 3, a);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  ll_readdir_any(req, OP_READDIR, ino, size, off, fi);
}

static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  ll_readdir_any(req, OP_READDIRPLUS, ino, size, off, fi);
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  napi_value a[1] = {num(sess(req)->env, fh_of(fi))};
  dispatch(req, OP_RELEASEDIR, ino, 1, a);
}

static void ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  napi_env env = sess(req)->env;
  napi_value a[2] = {num(env, fh_of(fi)), num(env, datasync)};
  dispatch(req, OP_FSYNCDIR, ino, 2, a);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) { dispatch(req, OP_STATFS, ino, 0, NULL); }

static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags) {
  napi_env env = sess(req)->env;
  napi_value v;
  napi_create_buffer_copy(env, size, value, NULL, &v);
  napi_value a[3] = {name_buf(env, name), v, num(env, flags)};
  dispatch(req, OP_SETXATTR, ino, 3, a);
}

static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  napi_env env = sess(req)->env;
  napi_value a[2] = {name_buf(env, name), num(env, (double)size)};
  dispatch(req, OP_GETXATTR, ino, 2, a);
}

static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  napi_value a[1] = {num(sess(req)->env, (double)size)};
  dispatch(req, OP_LISTXATTR, ino, 1, a);
}

static void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  napi_value a[1] = {name_buf(sess(req)->env, name)};
  dispatch(req, OP_REMOVEXATTR, ino, 1, a);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  napi_env env = sess(req)->env;
  napi_value a[5] = {name_buf(env, name), num(env, mode), num(env, fi->flags)};
  caller(env, req, &a[3], &a[4]);
  dispatch(req, OP_CREATE, parent, 5, a);
}

static const struct fuse_lowlevel_ops OPS = {
    .init = ll_init,
    .lookup = ll_lookup,
    .forget = ll_forget,
    .forget_multi = ll_forget_multi,
    .getattr = ll_getattr,
    .setattr = ll_setattr,
    .readlink = ll_readlink,
    .mknod = ll_mknod,
    .mkdir = ll_mkdir,
    .unlink = ll_unlink,
    .rmdir = ll_rmdir,
    .symlink = ll_symlink,
    .rename = ll_rename,
    .link = ll_link,
    .open = ll_open,
    .read = ll_read,
    .write = ll_write,
    .flush = ll_flush,
    .release = ll_release,
    .fsync = ll_fsync,
    .opendir = ll_opendir,
    .readdir = ll_readdir,
    .readdirplus = ll_readdirplus,
    .releasedir = ll_releasedir,
    .fsyncdir = ll_fsyncdir,
    .statfs = ll_statfs,
    .setxattr = ll_setxattr,
    .getxattr = ll_getxattr,
    .listxattr = ll_listxattr,
    .removexattr = ll_removexattr,
    .create = ll_create,
};

// ---- the notifier thread ---------------------------------------------------------------------

static void *notifier_main(void *arg) {
  session_t *s = arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL); // no Node signal handler may run here
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (!s->head && !s->stop) pthread_cond_wait(&s->cv, &s->mu);
    if (!s->head) break; // stopping, queue empty
    notice_t *n = s->head;
    s->head = n->next;
    if (!s->head) s->tail = NULL;
    int stopping = s->stop;
    pthread_mutex_unlock(&s->mu);
    if (!stopping) {
      // Failures need no answer: ENOENT means the kernel has no such inode or name cached, and
      // ENODEV/EBADF an unmount racing us (nothing is cached any more).
      if (n->kind == 1) fuse_lowlevel_notify_inval_inode(s->se, n->a, n->off, n->len);
      else if (n->kind == 2) fuse_lowlevel_notify_inval_entry(s->se, n->a, n->name, n->namelen);
    }
    int barrier = n->kind == 4;
    uint64_t number = n->a;
    free(n);
    pthread_mutex_lock(&s->mu);
    if (barrier) {
      s->barrier_done = number;
      uv_async_send(&s->settled);
    }
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

// ---- session lifecycle -----------------------------------------------------------------------

// After uv_close. The JS external may still refer to the struct (every call through it sees
// `closed`): it is freed when the external is collected too.
static void free_session(uv_handle_t *h) {
  session_t *s = h->data;
  if (--s->uv_handles > 0) return;
  napi_env env = s->env;
  napi_delete_reference(env, s->dispatch);
  napi_delete_reference(env, s->scratch_ref);
  napi_delete_reference(env, s->resource);
  napi_async_destroy(env, s->async);
  free(s->reqs);
  s->reqs = NULL;
  free(s->next_free);
  s->next_free = NULL;
  s->cap = 0;
  if (s->js_gone) free(s);
}

static void finalize_session(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  session_t *s = data;
  // A mount whose JS object is gone without an unmount stays mounted and served (the
  // dispatcher holds everything it needs): only a closed session's struct can go.
  s->js_gone = 1;
  if (s->closed && s->uv_handles == 0) free(s);
}


// Stops reading, answers what JS still owes with EIO (frees libfuse's requests), unmounts,
// destroys the session. Idempotent. Late replies from JS are then dropped by req_take.
static void close_session(session_t *s, int unmount) {
  if (s->closed) return;
  s->closed = 1;
  uv_poll_stop(&s->poll);
  for (uint32_t i = 0; i < s->cap; i++) {
    if (s->reqs[i]) {
      fuse_reply_err(s->reqs[i], EIO);
      s->reqs[i] = NULL;
    }
  }
  s->outstanding = 0;
  pthread_mutex_lock(&s->mu);
  s->stop = 1;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->notifier, NULL);
  if (unmount) fuse_session_unmount(s->se);
  fuse_session_destroy(s->se);
  s->se = NULL;
  free(s->buf.mem);
  s->buf.mem = NULL;
  // Barriers still queued were dropped with the notices: JS settles them on OP_CLOSED.
  uv_close((uv_handle_t *)&s->poll, free_session);
  uv_close((uv_handle_t *)&s->settled, free_session);
}

// Entering JS from a libuv callback: a handle scope and a callback scope. Promise jobs and
// nextTicks queued inside run when the callback scope closes, once per wake-up.
typedef struct {
  napi_handle_scope hs;
  napi_callback_scope cs;
} js_scope_t;

static void enter_js(session_t *s, js_scope_t *j) {
  napi_open_handle_scope(s->env, &j->hs);
  napi_value resource;
  napi_get_reference_value(s->env, s->resource, &resource);
  napi_open_callback_scope(s->env, resource, s->async, &j->cs);
}

static void leave_js(session_t *s, js_scope_t *j) {
  napi_close_callback_scope(s->env, j->cs);
  napi_close_handle_scope(s->env, j->hs);
}

// The notifier passed one or more barriers: tell JS the highest number passed.
static void on_settled(uv_async_t *h) {
  session_t *s = h->data;
  if (s->closed) return;
  napi_env env = s->env;
  pthread_mutex_lock(&s->mu);
  double done = (double)s->barrier_done;
  pthread_mutex_unlock(&s->mu);
  js_scope_t j;
  enter_js(s, &j);
  napi_value argv[3] = {num(env, OP_SETTLED), num(env, -1), num(env, done)};
  call_js(s, 3, argv);
  leave_js(s, &j);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)events;
  session_t *s = h->data;
  napi_env env = s->env;
  // One scope for the whole drain, not one per request.
  js_scope_t j;
  enter_js(s, &j);
  int gone = status < 0;
  while (!gone && !s->closed) {
    int res = fuse_session_receive_buf(s->se, &s->buf);
    if (res == -EINTR) continue;
    if (res == -EAGAIN) break;
    if (res <= 0) { // 0: unmounted (ENODEV); <0: the device failed
      gone = 1;
      break;
    }
    fuse_session_process_buf(s->se, &s->buf);
    if (fuse_session_exited(s->se)) gone = 1;
  }
  if (gone && !s->closed) {
    // Unmounted from outside (umount, fusermount -u) or the connection was aborted: tell JS.
    napi_value fn, global, argv[2];
    napi_get_reference_value(env, s->dispatch, &fn);
    napi_get_global(env, &global);
    argv[0] = num(env, OP_CLOSED);
    argv[1] = num(env, -1);
    close_session(s, 0);
    napi_call_function(env, global, fn, 2, argv, NULL);
  }
  leave_js(s, &j);
}

// ---- exported functions ----------------------------------------------------------------------

#define ARGS(n)                                                                 \
  size_t argc = n;                                                              \
  napi_value argv[n];                                                           \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);                         \
  if (argc < n) {                                                               \
    napi_throw_type_error(env, NULL, "s0_fuse3: missing arguments");            \
    return NULL;                                                                \
  }

static session_t *session_arg(napi_env env, napi_value v) {
  session_t *s = NULL;
  if (napi_get_value_external(env, v, (void **)&s) != napi_ok || !s) {
    napi_throw_type_error(env, NULL, "s0_fuse3: not a session");
    return NULL;
  }
  return s;
}

static double dbl(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

static void throw_errno(napi_env env, const char *what, int err) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, m, e;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_error(env, NULL, m, &e);
  napi_create_int32(env, err, &code);
  napi_set_named_property(env, e, "errno", code);
  napi_throw(env, e);
}

// mount(mountpoint, fuseArgs[], dispatch, scratch, maxWrite, maxBackground, writeback, readdirplus)
static napi_value js_mount(napi_env env, napi_callback_info info) {
  ARGS(8)
  char mnt[4096];
  size_t len;
  if (napi_get_value_string_utf8(env, argv[0], mnt, sizeof mnt, &len) != napi_ok || len >= sizeof mnt - 1) {
    napi_throw_type_error(env, NULL, "s0_fuse3: mount point must be a string");
    return NULL;
  }
  uint32_t nargs = 0;
  napi_get_array_length(env, argv[1], &nargs);
  char **fargv = calloc(nargs + 2, sizeof *fargv);
  fargv[0] = strdup("s0");
  for (uint32_t i = 0; i < nargs; i++) {
    napi_value v;
    napi_get_element(env, argv[1], i, &v);
    char tmp[4096];
    napi_get_value_string_utf8(env, v, tmp, sizeof tmp, &len);
    fargv[i + 1] = strdup(tmp);
  }
  session_t *s = calloc(1, sizeof *s);
  s->env = env;
  s->free_head = NO_SLOT;
  s->max_write = (unsigned)dbl(env, argv[4]);
  s->max_background = (unsigned)dbl(env, argv[5]);
  bool b = false;
  napi_get_value_bool(env, argv[6], &b);
  s->writeback = b;
  napi_get_value_bool(env, argv[7], &b);
  s->readdirplus = b;
  napi_typedarray_type tt;
  size_t n;
  void *data;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, argv[3], &tt, &n, &data, &ab, &off) != napi_ok || tt != napi_float64_array ||
      n < SCRATCH_MIN) {
    free(s);
    napi_throw_type_error(env, NULL, "s0_fuse3: scratch must be a Float64Array of at least 24");
    return NULL;
  }
  s->scratch = data;
  struct fuse_args args = FUSE_ARGS_INIT((int)nargs + 1, fargv);
  s->se = fuse_session_new(&args, &OPS, sizeof OPS, s);
  fuse_opt_free_args(&args);
  for (uint32_t i = 0; i <= nargs; i++) free(fargv[i]);
  free(fargv);
  if (!s->se) {
    free(s);
    throw_errno(env, "fuse_session_new failed (bad options?)", EINVAL);
    return NULL;
  }
  if (fuse_session_mount(s->se, mnt) != 0) {
    fuse_session_destroy(s->se);
    free(s);
    throw_errno(env, "fuse_session_mount failed", errno ? errno : EIO);
    return NULL;
  }
  s->fd = fuse_session_fd(s->se);
  fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK);
  napi_create_reference(env, argv[2], 1, &s->dispatch);
  napi_create_reference(env, argv[3], 1, &s->scratch_ref);
  napi_value resource, rname;
  napi_create_object(env, &resource);
  napi_create_reference(env, resource, 1, &s->resource);
  napi_create_string_utf8(env, "s0.fuse3", NAPI_AUTO_LENGTH, &rname);
  napi_async_init(env, resource, rname, &s->async);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  if (pthread_create(&s->notifier, NULL, notifier_main, s) != 0) fatal("cannot start the notifier thread");
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  uv_poll_init(loop, &s->poll, s->fd);
  s->poll.data = s;
  uv_async_init(loop, &s->settled, on_settled);
  s->settled.data = s;
  // Barriers are awaited only while a change is acknowledged: the handle must not keep the
  // process alive on its own.
  uv_unref((uv_handle_t *)&s->settled);
  s->uv_handles = 2;
  uv_poll_start(&s->poll, UV_READABLE, on_readable);
  napi_value out;
  napi_create_external(env, s, finalize_session, NULL, &out);
  return out;
}

static napi_value js_unmount(napi_env env, napi_callback_info info) {
  ARGS(1)
  session_t *s = session_arg(env, argv[0]);
  if (s) close_session(s, 1);
  return NULL;
}

static void fill_stat(const double *x, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_ino = (ino_t)x[A_INO];
  st->st_mode = (mode_t)x[A_MODE];
  st->st_nlink = (nlink_t)x[A_NLINK];
  st->st_uid = (uid_t)x[A_UID];
  st->st_gid = (gid_t)x[A_GID];
  st->st_rdev = (dev_t)x[A_RDEV];
  st->st_size = (off_t)x[A_SIZE];
  st->st_blocks = (blkcnt_t)x[A_BLOCKS];
  st->st_blksize = (blksize_t)x[A_BLKSIZE];
  st->st_atim.tv_sec = (time_t)x[A_ATIME_S];
  st->st_atim.tv_nsec = (long)x[A_ATIME_NS];
  st->st_mtim.tv_sec = (time_t)x[A_MTIME_S];
  st->st_mtim.tv_nsec = (long)x[A_MTIME_NS];
  st->st_ctim.tv_sec = (time_t)x[A_CTIME_S];
  st->st_ctim.tv_nsec = (long)x[A_CTIME_NS];
}

static void fill_entry(const double *x, double entry_t, double attr_t, struct fuse_entry_param *e) {
  memset(e, 0, sizeof *e);
  e->ino = (fuse_ino_t)x[A_INO];
  e->generation = (uint64_t)x[A_GENERATION];
  e->entry_timeout = entry_t;
  e->attr_timeout = attr_t;
  if (e->ino) fill_stat(x, &e->attr);
}

#define REQ(idx)                                                        \
  session_t *s = session_arg(env, argv[0]);                             \
  if (!s) return NULL;                                                  \
  fuse_req_t req = req_take(env, s, (uint32_t)dbl(env, argv[idx]));     \
  if (!req) return NULL;

static napi_value js_reply_err(napi_env env, napi_callback_info info) {
  ARGS(3)
  REQ(1)
  fuse_reply_err(req, (int)dbl(env, argv[2]));
  return NULL;
}

// replyEntry(s, id, entryTimeout, attrTimeout): the attr in scratch; ino 0 = negative entry
static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  ARGS(4)
  REQ(1)
  struct fuse_entry_param e;
  fill_entry(s->scratch, dbl(env, argv[2]), dbl(env, argv[3]), &e);
  fuse_reply_entry(req, &e);
  return NULL;
}

static void fill_fi(struct fuse_file_info *fi, double fh, int flags) {
  memset(fi, 0, sizeof *fi);
  fi->fh = (uint64_t)fh;
  fi->keep_cache = !!(flags & OPEN_KEEP_CACHE);
  fi->noflush = !!(flags & OPEN_NOFLUSH);
}

// replyCreate(s, id, entryTimeout, attrTimeout, fh, openFlags)
static napi_value js_reply_create(napi_env env, napi_callback_info info) {
  ARGS(6)
  REQ(1)
  struct fuse_entry_param e;
  fill_entry(s->scratch, dbl(env, argv[2]), dbl(env, argv[3]), &e);
  struct fuse_file_info fi;
  fill_fi(&fi, dbl(env, argv[4]), (int)dbl(env, argv[5]));
  fuse_reply_create(req, &e, &fi);
  return NULL;
}

// replyAttr(s, id, attrTimeout)
static napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  ARGS(3)
  REQ(1)
  struct stat st;
  fill_stat(s->scratch, &st);
  fuse_reply_attr(req, &st, dbl(env, argv[2]));
  return NULL;
}

// replyOpen(s, id, fh, openFlags)
static napi_value js_reply_open(napi_env env, napi_callback_info info) {
  ARGS(4)
  REQ(1)
  struct fuse_file_info fi;
  fill_fi(&fi, dbl(env, argv[2]), (int)dbl(env, argv[3]));
  fuse_reply_open(req, &fi);
  return NULL;
}

static napi_value js_reply_write(napi_env env, napi_callback_info info) {
  ARGS(3)
  REQ(1)
  fuse_reply_write(req, (size_t)dbl(env, argv[2]));
  return NULL;
}

static int buffer_arg(napi_env env, napi_value v, void **data, size_t *len) {
  bool isbuf = false;
  napi_is_buffer(env, v, &isbuf);
  if (!isbuf) {
    napi_throw_type_error(env, NULL, "s0_fuse3: expected a Buffer");
    return 0;
  }
  napi_get_buffer_info(env, v, data, len);
  return 1;
}

// replyBuf(s, id, buffer): read data (an empty buffer is end of file)
static napi_value js_reply_buf(napi_env env, napi_callback_info info) {
  ARGS(3)
  void *data;
  size_t len;
  if (!buffer_arg(env, argv[2], &data, &len)) return NULL;
  REQ(1)
  fuse_reply_buf(req, data, len);
  return NULL;
}

static napi_value js_reply_readlink(napi_env env, napi_callback_info info) {
  ARGS(3)
  void *data;
  size_t len;
  if (!buffer_arg(env, argv[2], &data, &len)) return NULL;
  REQ(1)
  char *z = malloc(len + 1);
  memcpy(z, data, len);
  z[len] = 0;
  fuse_reply_readlink(req, z);
  free(z);
  return NULL;
}

// replyXattr(s, id, size, buffer): size 0 asks for the length; too small a buffer is ERANGE
static napi_value js_reply_xattr(napi_env env, napi_callback_info info) {
  ARGS(4)
  void *data;
  size_t len;
  if (!buffer_arg(env, argv[3], &data, &len)) return NULL;
  REQ(1)
  size_t size = (size_t)dbl(env, argv[2]);
  if (size == 0) fuse_reply_xattr(req, len);
  else if (len > size) fuse_reply_err(req, ERANGE);
  else fuse_reply_buf(req, data, len);
  return NULL;
}

// replyStatfs(s, id): scratch = bsize frsize blocks bfree bavail files ffree favail namemax
static napi_value js_reply_statfs(napi_env env, napi_callback_info info) {
  ARGS(2)
  REQ(1)
  const double *x = s->scratch;
  struct statvfs st;
  memset(&st, 0, sizeof st);
  st.f_bsize = (unsigned long)x[0];
  st.f_frsize = (unsigned long)x[1];
  st.f_blocks = (fsblkcnt_t)x[2];
  st.f_bfree = (fsblkcnt_t)x[3];
  st.f_bavail = (fsblkcnt_t)x[4];
  st.f_files = (fsfilcnt_t)x[5];
  st.f_ffree = (fsfilcnt_t)x[6];
  st.f_favail = (fsfilcnt_t)x[7];
  st.f_namemax = (unsigned long)x[8];
  fuse_reply_statfs(req, &st);
  return NULL;
}

// replyDir(s, id, size, plus, names[], count, nums, entryTimeout, attrTimeout) -> entries added.
// nums holds DIR_STRIDE numbers per entry: the offset of the entry after it, then its attr.
// With `plus`, every entry added but "." and ".." counts as a lookup (the caller adds them).
static napi_value js_reply_dir(napi_env env, napi_callback_info info) {
  ARGS(9)
  session_t *s = session_arg(env, argv[0]);
  if (!s) return NULL;
  size_t size = (size_t)dbl(env, argv[2]);
  bool plus = false;
  napi_get_value_bool(env, argv[3], &plus);
  uint32_t count = (uint32_t)dbl(env, argv[5]);
  napi_typedarray_type tt;
  size_t n;
  void *data;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, argv[6], &tt, &n, &data, &ab, &off) != napi_ok || tt != napi_float64_array ||
      n < (size_t)count * DIR_STRIDE) {
    napi_throw_type_error(env, NULL, "s0_fuse3: nums must be a Float64Array of count * 17");
    return NULL;
  }
  double *nums = data;
  double entry_t = dbl(env, argv[7]), attr_t = dbl(env, argv[8]);
  fuse_req_t req = req_take(env, s, (uint32_t)dbl(env, argv[1]));
  if (!req) return NULL;
  char *buf = malloc(size ? size : 1);
  size_t used = 0;
  uint32_t added = 0;
  char name[256];
  for (uint32_t i = 0; i < count; i++) {
    napi_value v;
    napi_get_element(env, argv[4], i, &v);
    void *nd;
    size_t nl;
    if (napi_get_buffer_info(env, v, &nd, &nl) != napi_ok || nl == 0 || nl > 255) {
      free(buf);
      fuse_reply_err(req, EIO);
      napi_throw_type_error(env, NULL, "s0_fuse3: a directory entry name must be a Buffer of 1..255 bytes");
      return NULL;
    }
    memcpy(name, nd, nl);
    name[nl] = 0;
    const double *x = nums + (size_t)i * DIR_STRIDE;
    size_t need;
    if (plus) {
      struct fuse_entry_param e;
      fill_entry(x + 1, entry_t, attr_t, &e);
      need = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, (off_t)x[0]);
    } else {
      struct stat st;
      memset(&st, 0, sizeof st);
      st.st_ino = (ino_t)x[1 + A_INO];
      st.st_mode = (mode_t)x[1 + A_MODE];
      need = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)x[0]);
    }
    if (need > size - used) break;
    used += need;
    added++;
  }
  fuse_reply_buf(req, buf, used);
  free(buf);
  return num(env, added);
}

// notify(s, kind, a, b, name|null, off, len): queued for the notifier thread
static napi_value js_notify(napi_env env, napi_callback_info info) {
  ARGS(7)
  session_t *s = session_arg(env, argv[0]);
  if (!s || s->closed) return NULL;
  void *nd = NULL;
  size_t nl = 0;
  napi_valuetype t;
  napi_typeof(env, argv[4], &t);
  if (t != napi_null && !buffer_arg(env, argv[4], &nd, &nl)) return NULL;
  notice_t *n = malloc(sizeof *n + nl + 1);
  n->next = NULL;
  n->kind = (int)dbl(env, argv[1]);
  n->a = (uint64_t)dbl(env, argv[2]);
  n->b = (uint64_t)dbl(env, argv[3]);
  n->off = (int64_t)dbl(env, argv[5]);
  n->len = (int64_t)dbl(env, argv[6]);
  n->namelen = nl;
  if (nl) memcpy(n->name, nd, nl);
  n->name[nl] = 0;
  pthread_mutex_lock(&s->mu);
  if (s->tail) s->tail->next = n;
  else s->head = n;
  s->tail = n;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"mount", NULL, js_mount, NULL, NULL, NULL, napi_default, NULL},
      {"unmount", NULL, js_unmount, NULL, NULL, NULL, napi_default, NULL},
      {"replyErr", NULL, js_reply_err, NULL, NULL, NULL, napi_default, NULL},
      {"replyEntry", NULL, js_reply_entry, NULL, NULL, NULL, napi_default, NULL},
      {"replyCreate", NULL, js_reply_create, NULL, NULL, NULL, napi_default, NULL},
      {"replyAttr", NULL, js_reply_attr, NULL, NULL, NULL, napi_default, NULL},
      {"replyOpen", NULL, js_reply_open, NULL, NULL, NULL, napi_default, NULL},
      {"replyWrite", NULL, js_reply_write, NULL, NULL, NULL, napi_default, NULL},
      {"replyBuf", NULL, js_reply_buf, NULL, NULL, NULL, napi_default, NULL},
      {"replyReadlink", NULL, js_reply_readlink, NULL, NULL, NULL, napi_default, NULL},
      {"replyXattr", NULL, js_reply_xattr, NULL, NULL, NULL, napi_default, NULL},
      {"replyStatfs", NULL, js_reply_statfs, NULL, NULL, NULL, napi_default, NULL},
      {"replyDir", NULL, js_reply_dir, NULL, NULL, NULL, napi_default, NULL},
      {"notify", NULL, js_notify, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof *props, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
