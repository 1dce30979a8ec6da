/*
 * zomg's btrfs ioctls, in process: a read-only (or writable) snapshot, the deletion of a
 * subvolume with nothing nested in it, and `send --no-data` streamed to JavaScript in
 * 64 KiB blocks. The same ioctls `btrfs` makes, without starting `btrfs` (and `dd`) for
 * each: see src/storage/btrfs-ioctl.ts, which loads this and falls back to btrfs-progs
 * when it is absent.
 *
 * Every failure is reported as a positive errno; ENOTSUBVOL and ENOTREADONLY below are
 * zomg's own codes for checks btrfs-progs also makes before it calls the kernel.
 *
 * Built by scripts/native.sh: cc -O2 -shared -fPIC -I<node>/include/node.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <node_api.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define ENOTSUBVOL 100001   /* the path is not the root directory of a subvolume */
#define ENOTREADONLY 100002 /* send needs read-only subvolumes on both sides */
#define EBADCRC 100003      /* a command of the send stream does not match its crc32c */
#define SUBVOLUME_ROOT_INO 256
#define BLOCK (64 * 1024)

#define CHECK(call)                                                                       \
  do {                                                                                    \
    if ((call) != napi_ok) {                                                              \
      napi_throw_error(env, "ZOMG_NATIVE", "N-API call failed: " #call);                  \
      return NULL;                                                                        \
    }                                                                                     \
  } while (0)

/* A JavaScript string argument as a malloc'ed C string; NULL (with an exception) when it is
 * not a string or holds a NUL byte. */
static char *string_arg(napi_env env, napi_value value, const char *what) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &len) != napi_ok) {
    napi_throw_type_error(env, "ZOMG_NATIVE", what);
    return NULL;
  }
  char *s = malloc(len + 1);
  if (s == NULL) {
    napi_throw_error(env, "ZOMG_NATIVE", "out of memory");
    return NULL;
  }
  napi_get_value_string_utf8(env, value, s, len + 1, &len);
  if (strlen(s) != len) {
    free(s);
    napi_throw_type_error(env, "ZOMG_NATIVE", what);
    return NULL;
  }
  return s;
}

/* Opens the root directory of a subvolume; -errno, or -ENOTSUBVOL when `path` is some other
 * directory (the send ioctl would otherwise send the whole subvolume that holds it). */
static int open_subvolume(const char *path) {
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -errno;
  struct stat st;
  if (fstat(fd, &st) < 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  if (st.st_ino != SUBVOLUME_ROOT_INO) {
    close(fd);
    return -ENOTSUBVOL;
  }
  return fd;
}

static int require_read_only(int fd) {
  uint64_t flags = 0;
  if (ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, &flags) < 0) return errno;
  return (flags & BTRFS_SUBVOL_RDONLY) ? 0 : ENOTREADONLY;
}

/* --- snapshot(source, dir, name, readOnly) and destroy(dir, name): Promise<0 | errno> ---- */

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char *source; /* NULL for destroy */
  char *dir;
  char *name;
  int read_only;
  int err;
} subvol_job;

static void subvol_execute(napi_env env, void *data) {
  (void)env;
  subvol_job *job = data;
  int dfd = open(job->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    job->err = errno;
    return;
  }
  if (job->source != NULL) {
    int sfd = open_subvolume(job->source);
    if (sfd < 0) {
      job->err = -sfd;
    } else {
      struct btrfs_ioctl_vol_args_v2 args;
      memset(&args, 0, sizeof args);
      args.fd = sfd;
      args.flags = job->read_only ? BTRFS_SUBVOL_RDONLY : 0;
      strncpy(args.name, job->name, BTRFS_SUBVOL_NAME_MAX);
      if (ioctl(dfd, BTRFS_IOC_SNAP_CREATE_V2, &args) < 0) job->err = errno;
      close(sfd);
    }
  } else {
    /* Only a subvolume: the ioctl would also remove an empty plain directory. */
    struct stat st;
    if (fstatat(dfd, job->name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
      job->err = errno;
      close(dfd);
      return;
    }
    if (!S_ISDIR(st.st_mode) || st.st_ino != SUBVOLUME_ROOT_INO) {
      job->err = ENOTSUBVOL;
      close(dfd);
      return;
    }
    struct btrfs_ioctl_vol_args args;
    memset(&args, 0, sizeof args);
    strncpy(args.name, job->name, BTRFS_PATH_NAME_MAX);
    if (ioctl(dfd, BTRFS_IOC_SNAP_DESTROY, &args) < 0) job->err = errno;
  }
  close(dfd);
}

/* NULL, for a caller's `return`. */
static napi_value subvol_job_free(subvol_job *job) {
  free(job->source);
  free(job->dir);
  free(job->name);
  free(job);
  return NULL;
}

static void subvol_complete(napi_env env, napi_status status, void *data) {
  subvol_job *job = data;
  napi_value result;
  if (status != napi_ok && job->err == 0) job->err = ECANCELED;
  napi_create_int32(env, job->err, &result);
  napi_resolve_deferred(env, job->deferred, result);
  napi_delete_async_work(env, job->work);
  subvol_job_free(job);
}

static napi_value subvol_start(napi_env env, subvol_job *job) {
  napi_value promise, resource_name;
  if (strlen(job->name) == 0 || strlen(job->name) > BTRFS_SUBVOL_NAME_MAX || strchr(job->name, '/') != NULL) {
    napi_throw_range_error(env, "ZOMG_NATIVE", "a subvolume name is 1 to 4039 bytes without '/'");
    return subvol_job_free(job);
  }
  CHECK(napi_create_promise(env, &job->deferred, &promise));
  CHECK(napi_create_string_utf8(env, "zomg.btrfs", NAPI_AUTO_LENGTH, &resource_name));
  CHECK(napi_create_async_work(env, NULL, resource_name, subvol_execute, subvol_complete, job, &job->work));
  CHECK(napi_queue_async_work(env, job->work));
  return promise;
}

/* The job of snapshot(source, dir, name, readOnly) or, without a source, destroy(dir, name);
 * NULL, with an exception pending, for arguments that are not those. */
static subvol_job *subvol_job_new(napi_env env, napi_callback_info info, int with_source) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    napi_throw_error(env, "ZOMG_NATIVE", "N-API call failed: napi_get_cb_info");
    return NULL;
  }
  subvol_job *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, "ZOMG_NATIVE", "out of memory");
    return NULL;
  }
  size_t i = 0;
  bool read_only = false;
  if ((with_source && (job->source = string_arg(env, argv[i++], "source must be a path")) == NULL) ||
      (job->dir = string_arg(env, argv[i++], "dir must be a path")) == NULL ||
      (job->name = string_arg(env, argv[i++], "name must be a string")) == NULL) {
    subvol_job_free(job);
    return NULL;
  }
  if (with_source && napi_get_value_bool(env, argv[i], &read_only) != napi_ok) {
    napi_throw_type_error(env, "ZOMG_NATIVE", "readOnly must be a boolean");
    subvol_job_free(job);
    return NULL;
  }
  job->read_only = read_only;
  return job;
}

static napi_value snapshot(napi_env env, napi_callback_info info) {
  subvol_job *job = subvol_job_new(env, info, 1);
  return job == NULL ? NULL : subvol_start(env, job);
}

static napi_value destroy(napi_env env, napi_callback_info info) {
  subvol_job *job = subvol_job_new(env, info, 0);
  return job == NULL ? NULL : subvol_start(env, job);
}

/* --- the send stream's checksums ------------------------------------------------------- *
 * The reader checks each command's crc32c as the bytes pass (btrfs' crc32c: seed 0, no
 * inversion, over the 10-byte header with its crc field zeroed, then the payload), so that
 * JavaScript need not: a mismatch ends the send with EBADCRC. The framing is v1's:
 *   "btrfs-stream\0" u32le(version) then per command u32le(len) u16le(cmd) u32le(crc) payload
 * Whether the stream is otherwise well formed (magic, version, truncation) is the parser's
 * concern (src/storage/sendstream.ts); this only needs the lengths to find the checksums. */

#define STREAM_HEADER_LEN 17
#define CMD_HEADER_LEN 10

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    crc_table[n] = c;
  }
}

static uint32_t crc32c_raw(uint32_t c, const unsigned char *p, size_t n) {
  while (n--) c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
  return c;
}

typedef struct {
  uint64_t seen;         /* bytes of the stream so far */
  unsigned char hdr[CMD_HEADER_LEN];
  size_t hdr_len;        /* bytes of the current command's header so far */
  uint32_t remaining;    /* payload bytes of the current command still to come */
  uint32_t crc, want;
} crc_check;

/* Feeds `n` more bytes of the stream; 0, or EBADCRC at the first command that does not match. */
static int crc_feed(crc_check *st, const unsigned char *p, size_t n) {
  while (n > 0) {
    if (st->seen < STREAM_HEADER_LEN) {
      size_t skip = STREAM_HEADER_LEN - st->seen;
      if (skip > n) skip = n;
      st->seen += skip;
      p += skip;
      n -= skip;
      continue;
    }
    if (st->hdr_len < CMD_HEADER_LEN) {
      size_t take = CMD_HEADER_LEN - st->hdr_len;
      if (take > n) take = n;
      memcpy(st->hdr + st->hdr_len, p, take);
      st->hdr_len += take;
      st->seen += take;
      p += take;
      n -= take;
      if (st->hdr_len < CMD_HEADER_LEN) return 0;
      const unsigned char *h = st->hdr;
      st->remaining = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
      st->want = (uint32_t)h[6] | (uint32_t)h[7] << 8 | (uint32_t)h[8] << 16 | (uint32_t)h[9] << 24;
      static const unsigned char zero[4] = {0, 0, 0, 0};
      st->crc = crc32c_raw(crc32c_raw(0, h, 6), zero, 4);
    } else {
      size_t take = st->remaining < n ? st->remaining : n;
      st->crc = crc32c_raw(st->crc, p, take);
      st->remaining -= (uint32_t)take;
      st->seen += take;
      p += take;
      n -= take;
    }
    if (st->remaining == 0) {
      if (st->crc != st->want) return EBADCRC;
      st->hdr_len = 0;
    }
  }
  return 0;
}

/* checkSendStream(buffer, piece): the reader's check over a stream in memory, fed `piece`
 * bytes at a time as reads would (for tests): 0, or EBADCRC. */
static napi_value check_send_stream(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  void *data = NULL;
  size_t len = 0;
  uint32_t piece = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok || napi_get_value_uint32(env, argv[1], &piece) != napi_ok || piece == 0) {
    napi_throw_type_error(env, "ZOMG_NATIVE", "a Buffer and a piece size above 0 are expected");
    return NULL;
  }
  pthread_once(&crc_once, crc_init);
  crc_check st;
  memset(&st, 0, sizeof st);
  int err = 0;
  for (size_t at = 0; at < len && err == 0; at += piece) err = crc_feed(&st, (unsigned char *)data + at, len - at < piece ? len - at : piece);
  CHECK(napi_create_int32(env, err, &result));
  return result;
}

/* --- sendNoData(child, parent, onChunk, onEnd): {flow(on), cancel()} -------------------- *
 * A thread runs the send ioctl into a pipe; another reads the pipe and hands full 64 KiB
 * blocks (and the last, shorter one) to onChunk(buffer) through a thread-safe function,
 * then onEnd(errno). flow(false) holds the reader (and so, once the pipe is full, the
 * kernel) until flow(true); cancel() stops the reader, whose closing of the pipe ends the
 * ioctl with EPIPE, and onEnd still comes, once. The handle and the threads share the job,
 * freed by whichever lets go of it last. */

typedef struct {
  char *child;
  char *parent;
  napi_threadsafe_function tsfn;
  napi_ref callbacks; /* [onChunk, onEnd] */
  int cancel_fd; /* eventfd; closed by the reader when it is done (-1 then), under lock */
  int pipe_r, pipe_w;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int paused;
  int cancelled;
  int send_err;
  atomic_int refs;
  pthread_t reader;
  int has_reader; /* set on the JS thread, read by the finalizer there */
} send_job;

typedef struct {
  char *data; /* NULL: the end, with err */
  size_t len;
  int err;
} send_msg;

static void send_job_release(send_job *job) {
  if (atomic_fetch_sub(&job->refs, 1) != 1) return;
  pthread_mutex_destroy(&job->lock);
  pthread_cond_destroy(&job->cond);
  free(job->child);
  free(job->parent);
  free(job);
}

static void *send_ioctl_thread(void *data) {
  send_job *job = data;
  int err = 0;
  int cfd = open_subvolume(job->child);
  int pfd = cfd < 0 ? -1 : open_subvolume(job->parent);
  if (cfd < 0) err = -cfd;
  else if (pfd < 0) err = -pfd;
  if (err == 0) err = require_read_only(cfd);
  if (err == 0) err = require_read_only(pfd);
  __u64 parent_root = 0;
  if (err == 0) {
    struct btrfs_ioctl_ino_lookup_args lookup;
    memset(&lookup, 0, sizeof lookup);
    lookup.objectid = SUBVOLUME_ROOT_INO;
    if (ioctl(pfd, BTRFS_IOC_INO_LOOKUP, &lookup) < 0) err = errno;
    parent_root = lookup.treeid;
  }
  if (err == 0) {
    struct btrfs_ioctl_send_args args;
    memset(&args, 0, sizeof args);
    args.send_fd = job->pipe_w;
    args.parent_root = parent_root;
    args.clone_sources = &parent_root;
    args.clone_sources_count = 1;
    args.flags = BTRFS_SEND_FLAG_NO_FILE_DATA;
    if (ioctl(cfd, BTRFS_IOC_SEND, &args) < 0) err = errno;
  }
  if (pfd >= 0) close(pfd);
  if (cfd >= 0) close(cfd);
  job->send_err = err;
  close(job->pipe_w); /* the reader sees the end of the stream */
  return NULL;
}

/* Waits while paused; 1 when cancelled. */
static int wait_flow(send_job *job) {
  pthread_mutex_lock(&job->lock);
  while (job->paused && !job->cancelled) pthread_cond_wait(&job->cond, &job->lock);
  int cancelled = job->cancelled;
  pthread_mutex_unlock(&job->lock);
  return cancelled;
}

static void *send_reader_thread(void *data) {
  send_job *job = data;
  pthread_t sender;
  int err = pthread_create(&sender, NULL, send_ioctl_thread, job);
  if (err != 0) close(job->pipe_w);
  char *block = malloc(BLOCK);
  size_t filled = 0;
  int cancelled = 0;
  int read_err = block == NULL ? ENOMEM : 0;
  crc_check crc;
  memset(&crc, 0, sizeof crc);
  pthread_once(&crc_once, crc_init);
  int tsfn_gone = 0; /* napi_closing: the tsfn is released for us and must not be touched */
  /* The kernel writes each command (~100 bytes) on its own. Woken for each (poll, or a
   * blocking read), this thread took ~8,000 wakeups for a 700 KB stream, and the send ran
   * ~10% longer beside them; reading what has come every millisecond instead is ~300. So the
   * read end does not block, and the wait between reads is on the cancel descriptor. */
  if (fcntl(job->pipe_r, F_SETFL, O_NONBLOCK) < 0) read_err = errno;
  struct pollfd cancel = {.fd = job->cancel_fd, .events = POLLIN};
  while (read_err == 0 && !cancelled) {
    ssize_t n = read(job->pipe_r, block + filled, BLOCK - filled);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) {
        read_err = errno;
        break;
      }
      int ready = poll(&cancel, 1, 1);
      if (ready < 0 && errno != EINTR) read_err = errno;
      if (ready > 0) cancelled = 1;
      continue;
    }
    if (n > 0 && (read_err = crc_feed(&crc, (unsigned char *)block + filled, (size_t)n)) != 0) break;
    filled += (size_t)n;
    if (n > 0 && filled < BLOCK) continue;
    if (filled > 0) {
      if (wait_flow(job)) {
        cancelled = 1;
        break;
      }
      send_msg *msg = malloc(sizeof *msg);
      if (msg == NULL) {
        read_err = ENOMEM;
        break;
      }
      msg->data = block;
      msg->len = filled;
      msg->err = 0;
      napi_status st = napi_call_threadsafe_function(job->tsfn, msg, napi_tsfn_blocking);
      if (st != napi_ok) {
        free(msg);
        tsfn_gone = st == napi_closing;
        cancelled = 1;
        break;
      }
      block = malloc(BLOCK);
      filled = 0;
      if (block == NULL) read_err = ENOMEM;
    }
    if (n == 0) break; /* end of stream */
  }
  /* Closing the read end ends a send still writing (EPIPE; Node ignores SIGPIPE). */
  close(job->pipe_r);
  if (err == 0) pthread_join(sender, NULL);
  /* Nothing is left to cancel: the descriptor goes now, not when the handle is collected. */
  pthread_mutex_lock(&job->lock);
  close(job->cancel_fd);
  job->cancel_fd = -1;
  pthread_mutex_unlock(&job->lock);
  free(block);
  send_msg *end = tsfn_gone ? NULL : malloc(sizeof *end);
  if (end != NULL) {
    end->data = NULL;
    end->len = 0;
    end->err = err != 0 ? err : read_err != 0 ? read_err : cancelled ? ECANCELED : job->send_err;
    napi_status st = napi_call_threadsafe_function(job->tsfn, end, napi_tsfn_blocking);
    if (st != napi_ok) free(end);
    tsfn_gone = st == napi_closing;
  }
  if (!tsfn_gone) napi_release_threadsafe_function(job->tsfn, napi_tsfn_release);
  send_job_release(job);
  return NULL;
}

/* Runs on the JavaScript thread. */
static void send_call_js(napi_env env, napi_value unused, void *context, void *data) {
  (void)unused;
  send_job *job = context;
  send_msg *msg = data;
  if (env != NULL) {
    napi_value undefined, fn, arg, js_callbacks;
    napi_get_undefined(env, &undefined);
    napi_get_reference_value(env, job->callbacks, &js_callbacks);
    if (msg->data != NULL) {
      napi_get_element(env, js_callbacks, 0, &fn);
      napi_create_buffer_copy(env, msg->len, msg->data, NULL, &arg);
    } else {
      napi_get_element(env, js_callbacks, 1, &fn);
      napi_create_int32(env, msg->err, &arg);
    }
    napi_call_function(env, undefined, fn, 1, &arg, NULL);
  }
  free(msg->data);
  free(msg);
}

/* Asks the reader to stop: it wakes from a pause or from its wait between reads. */
static void stop_send(send_job *job) {
  pthread_mutex_lock(&job->lock);
  job->cancelled = 1;
  pthread_cond_broadcast(&job->cond);
  if (job->cancel_fd >= 0) {
    uint64_t one = 1;
    ssize_t ignored = write(job->cancel_fd, &one, sizeof one);
    (void)ignored;
  }
  pthread_mutex_unlock(&job->lock);
}

/* When the thread-safe function is gone: the callbacks go with it. */
static void send_tsfn_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  send_job *job = data;
  /* Also runs when the environment tears down with the reader still going: stop it and wait,
   * so that no thread touches the tsfn (or this library) after it is gone. */
  stop_send(job);
  if (job->has_reader) pthread_join(job->reader, NULL);
  napi_delete_reference(env, job->callbacks);
  send_job_release(job);
}

/* A handle collected with its send still held (paused, never read): end the send. */
static void send_handle_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  send_job *job = data;
  stop_send(job);
  send_job_release(job);
}

static send_job *send_job_of(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *data = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok || napi_unwrap(env, self, &data) != napi_ok) {
    napi_throw_error(env, "ZOMG_NATIVE", "not a send handle");
    return NULL;
  }
  return data;
}

static napi_value send_flow(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  send_job *job = send_job_of(env, info, &argc, argv);
  if (job == NULL) return NULL; /* send_job_of threw */
  bool on = true;
  napi_get_value_bool(env, argv[0], &on);
  pthread_mutex_lock(&job->lock);
  job->paused = !on;
  pthread_cond_broadcast(&job->cond);
  pthread_mutex_unlock(&job->lock);
  return NULL;
}

static napi_value send_cancel(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  send_job *job = send_job_of(env, info, &argc, NULL);
  if (job == NULL) return NULL; /* send_job_of threw */
  stop_send(job);
  return NULL;
}

static napi_value send_no_data(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], callbacks, handle, resource_name, fn;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  send_job *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, "ZOMG_NATIVE", "out of memory");
    return NULL;
  }
  job->cancel_fd = -1;
  if ((job->child = string_arg(env, argv[0], "child must be a path")) == NULL ||
      (job->parent = string_arg(env, argv[1], "parent must be a path")) == NULL) {
    free(job->child);
    free(job->parent);
    free(job);
    return NULL;
  }
  int fds[2];
  job->cancel_fd = eventfd(0, EFD_CLOEXEC);
  if (job->cancel_fd < 0 || pipe2(fds, O_CLOEXEC) < 0) {
    int e = errno;
    if (job->cancel_fd >= 0) close(job->cancel_fd);
    free(job->child);
    free(job->parent);
    free(job);
    napi_throw_error(env, "ZOMG_NATIVE", strerror(e));
    return NULL;
  }
  job->pipe_r = fds[0];
  job->pipe_w = fds[1];
  pthread_mutex_init(&job->lock, NULL);
  pthread_cond_init(&job->cond, NULL);
  atomic_init(&job->refs, 3); /* the handle, the reader thread, the thread-safe function */
  /* 1 MiB of the kernel's small writes wait in the pipe before it blocks. */
  fcntl(job->pipe_w, F_SETPIPE_SZ, 1 << 20);
  CHECK(napi_create_array_with_length(env, 2, &callbacks));
  CHECK(napi_set_element(env, callbacks, 0, argv[2]));
  CHECK(napi_set_element(env, callbacks, 1, argv[3]));
  CHECK(napi_create_string_utf8(env, "zomg.btrfs.send", NAPI_AUTO_LENGTH, &resource_name));
  /* 4 blocks queued for JavaScript at most: the reader then waits. */
  CHECK(napi_create_reference(env, callbacks, 1, &job->callbacks));
  CHECK(napi_create_threadsafe_function(env, NULL, NULL, resource_name, 4, 1, job, send_tsfn_finalize, job, send_call_js, &job->tsfn));
  CHECK(napi_create_object(env, &handle));
  CHECK(napi_create_function(env, "flow", NAPI_AUTO_LENGTH, send_flow, NULL, &fn));
  CHECK(napi_set_named_property(env, handle, "flow", fn));
  CHECK(napi_create_function(env, "cancel", NAPI_AUTO_LENGTH, send_cancel, NULL, &fn));
  CHECK(napi_set_named_property(env, handle, "cancel", fn));
  CHECK(napi_wrap(env, handle, job, send_handle_finalize, NULL, NULL));
  int err = pthread_create(&job->reader, NULL, send_reader_thread, job);
  if (err != 0) {
    close(job->cancel_fd);
    job->cancel_fd = -1;
    close(job->pipe_r);
    close(job->pipe_w);
    napi_release_threadsafe_function(job->tsfn, napi_tsfn_abort);
    send_job_release(job);
    napi_throw_error(env, "ZOMG_NATIVE", strerror(err));
    return NULL;
  }
  job->has_reader = 1;
  return handle;
}

/* --- treeSearch, inoLookup, treeId: what the tree comparison reads (synchronous) ----- */

/* A u64 argument: a BigInt, or a Number (-1 is UINT64_MAX). */
static int u64_arg(napi_env env, napi_value value, uint64_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, value, &t) != napi_ok) return 0;
  if (t == napi_bigint) {
    bool lossless;
    return napi_get_value_bigint_uint64(env, value, out, &lossless) == napi_ok && lossless;
  }
  if (t != napi_number) return 0;
  double d;
  if (napi_get_value_double(env, value, &d) != napi_ok) return 0;
  if (d == -1) *out = UINT64_MAX;
  else if (d >= 0 && d <= 9007199254740991.0 && d == (double)(uint64_t)d) *out = (uint64_t)d;
  else return 0;
  return 1;
}

static int fd_arg(napi_env env, napi_value value, int *out) {
  int32_t fd;
  if (napi_get_value_int32(env, value, &fd) != napi_ok || fd < 0) return 0;
  *out = fd;
  return 1;
}

static napi_value errno_value(napi_env env, int err) {
  napi_value v;
  CHECK(napi_create_int32(env, err, &v));
  return v;
}

/* Past the key (objectid, type, offset): 0 when it was the last key there is. */
static int next_key(struct btrfs_ioctl_search_key *k, uint64_t objectid, uint32_t type, uint64_t offset) {
  k->min_objectid = objectid;
  k->min_type = type;
  k->min_offset = offset;
  if (k->min_offset < UINT64_MAX) {
    k->min_offset++;
  } else if (k->min_type < 255) {
    k->min_type++;
    k->min_offset = 0;
  } else if (k->min_objectid < UINT64_MAX) {
    k->min_objectid++;
    k->min_type = 0;
    k->min_offset = 0;
  } else {
    return 0;
  }
  return 1;
}

#define SEARCH_BUF (256 * 1024)

/* treeSearch(fd, treeId, minObjectid, minType, minOffset, maxObjectid, maxType, maxOffset,
 * minTransid, limitBytes, types): every item of the tree in the key range that is in a leaf
 * written at minTransid or later (and, with `types`, a Buffer of 32 bytes, whose type's bit
 * is set there), as the kernel's search headers (transid, objectid, offset, type, len) each
 * followed by its item, in key order; or errno (a Number), E2BIG when they would take more
 * than limitBytes. */
static napi_value tree_search(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  uint64_t v[9];
  const uint8_t *types = NULL;
  if (argc < 10 || !fd_arg(env, argv[0], &fd)) {
    napi_throw_type_error(env, "ZOMG_NATIVE", "treeSearch(fd, treeId, min key, max key, minTransid, limitBytes)");
    return NULL;
  }
  for (int i = 0; i < 9; i++) {
    if (!u64_arg(env, argv[i + 1], &v[i])) {
      napi_throw_type_error(env, "ZOMG_NATIVE", "treeSearch: a key part is not a u64");
      return NULL;
    }
  }
  if (v[2] > 255 || v[5] > 255) {
    napi_throw_type_error(env, "ZOMG_NATIVE", "treeSearch: a key type is above 255");
    return NULL;
  }
  if (argc > 10) {
    napi_valuetype t;
    CHECK(napi_typeof(env, argv[10], &t));
    if (t != napi_undefined && t != napi_null) {
      bool is_buffer = false;
      size_t len = 0;
      void *data = NULL;
      CHECK(napi_is_buffer(env, argv[10], &is_buffer));
      if (is_buffer) CHECK(napi_get_buffer_info(env, argv[10], &data, &len));
      if (!is_buffer || len != 32) {
        napi_throw_type_error(env, "ZOMG_NATIVE", "treeSearch: types is a Buffer of 32 bytes");
        return NULL;
      }
      types = data;
    }
  }
  struct btrfs_ioctl_search_args_v2 *args = malloc(sizeof *args + SEARCH_BUF);
  if (args == NULL) return errno_value(env, ENOMEM);
  memset(args, 0, sizeof *args);
  struct btrfs_ioctl_search_key *k = &args->key;
  k->tree_id = v[0];
  k->min_objectid = v[1];
  k->min_type = (uint32_t)v[2];
  k->min_offset = v[3];
  k->max_objectid = v[4];
  k->max_type = (uint32_t)v[5];
  k->max_offset = v[6];
  k->min_transid = v[7];
  k->max_transid = UINT64_MAX;
  uint64_t limit = v[8];
  char *out = NULL;
  size_t used = 0, cap = 0;
  int err = 0;
  for (;;) {
    k->nr_items = UINT32_MAX;
    args->buf_size = SEARCH_BUF;
    if (ioctl(fd, BTRFS_IOC_TREE_SEARCH_V2, args) < 0) {
      err = errno;
      break;
    }
    if (k->nr_items == 0) break;
    const char *p = (const char *)args->buf;
    struct btrfs_ioctl_search_header h;
    size_t at = 0;
    for (uint32_t i = 0; i < k->nr_items; i++) {
      memcpy(&h, p + at, sizeof h);
      size_t item = sizeof h + h.len;
      if (types == NULL || (h.type < 256 && (types[h.type >> 3] >> (h.type & 7)) & 1)) {
        if (used + item > limit) {
          err = E2BIG;
          break;
        }
        if (used + item > cap) {
          size_t want = cap == 0 ? SEARCH_BUF : cap * 2;
          while (want < used + item) want *= 2;
          char *grown = realloc(out, want);
          if (grown == NULL) {
            err = ENOMEM;
            break;
          }
          out = grown;
          cap = want;
        }
        memcpy(out + used, p + at, item);
        used += item;
      }
      at += item;
    }
    if (err != 0) break;
    if (!next_key(k, h.objectid, h.type, h.offset)) break;
    if (k->min_objectid > k->max_objectid ||
        (k->min_objectid == k->max_objectid &&
         (k->min_type > k->max_type || (k->min_type == k->max_type && k->min_offset > k->max_offset))))
      break;
  }
  free(args);
  if (err != 0) {
    free(out);
    return errno_value(env, err);
  }
  napi_value buf;
  void *data;
  napi_status st = napi_create_buffer_copy(env, used, used == 0 ? "" : out, &data, &buf);
  free(out);
  CHECK(st);
  return buf;
}

/* inoLookup(fd, treeId, objectid): the path of a directory inode from the root of its
 * subvolume, with a trailing slash ("" for the root), as a Buffer; or errno. */
static napi_value ino_lookup(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  uint64_t tree, objectid;
  if (argc < 3 || !fd_arg(env, argv[0], &fd) || !u64_arg(env, argv[1], &tree) || !u64_arg(env, argv[2], &objectid)) {
    napi_throw_type_error(env, "ZOMG_NATIVE", "inoLookup(fd, treeId, objectid)");
    return NULL;
  }
  struct btrfs_ioctl_ino_lookup_args args;
  memset(&args, 0, sizeof args);
  args.treeid = tree;
  args.objectid = objectid;
  if (ioctl(fd, BTRFS_IOC_INO_LOOKUP, &args) < 0) return errno_value(env, errno);
  napi_value buf;
  void *data;
  size_t len = strnlen(args.name, sizeof args.name);
  CHECK(napi_create_buffer_copy(env, len, len == 0 ? "" : args.name, &data, &buf));
  return buf;
}

/* treeId(fd): the id of the subvolume that holds the open directory (a Number); or -errno. */
static napi_value tree_id(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  if (argc < 1 || !fd_arg(env, argv[0], &fd)) {
    napi_throw_type_error(env, "ZOMG_NATIVE", "treeId(fd)");
    return NULL;
  }
  struct btrfs_ioctl_ino_lookup_args args;
  memset(&args, 0, sizeof args);
  args.objectid = SUBVOLUME_ROOT_INO;
  if (ioctl(fd, BTRFS_IOC_INO_LOOKUP, &args) < 0) return errno_value(env, -errno);
  napi_value v;
  CHECK(napi_create_double(env, (double)args.treeid, &v));
  return v;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn, num;
  CHECK(napi_create_function(env, "snapshot", NAPI_AUTO_LENGTH, snapshot, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "snapshot", fn));
  CHECK(napi_create_function(env, "destroy", NAPI_AUTO_LENGTH, destroy, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "destroy", fn));
  CHECK(napi_create_function(env, "sendNoData", NAPI_AUTO_LENGTH, send_no_data, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "sendNoData", fn));
  CHECK(napi_create_int32(env, ENOTSUBVOL, &num));
  CHECK(napi_set_named_property(env, exports, "ENOTSUBVOL", num));
  CHECK(napi_create_int32(env, ENOTREADONLY, &num));
  CHECK(napi_set_named_property(env, exports, "ENOTREADONLY", num));
  CHECK(napi_create_int32(env, EBADCRC, &num));
  CHECK(napi_set_named_property(env, exports, "EBADCRC", num));
  CHECK(napi_create_function(env, "checkSendStream", NAPI_AUTO_LENGTH, check_send_stream, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "checkSendStream", fn));
  CHECK(napi_create_function(env, "treeSearch", NAPI_AUTO_LENGTH, tree_search, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "treeSearch", fn));
  CHECK(napi_create_function(env, "inoLookup", NAPI_AUTO_LENGTH, ino_lookup, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "inoLookup", fn));
  CHECK(napi_create_function(env, "treeId", NAPI_AUTO_LENGTH, tree_id, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "treeId", fn));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
