/*
** engine.c: bearer.Engine, the transfer engine: one libcurl multi handle
** per Lua state (so one per process, one per nginx worker and one per
** nginx pool thread, each driven by a single thread), running every
** transfer of every client of that state.
**
** It owns the connection cache: connections are kept alive and reused
** across the clients that use the engine, and HTTP/2 streams are
** multiplexed on one connection where a server offers it over TLS. TLS
** sessions are shared through a share handle the engine owns.
**
** Three ways to drive it:
** - inline (plain Lua): step() runs libcurl in the caller's thread until
**   something happened or the timeout passed; the Lua scheduler
**   (bearer.gather) resumes the coroutines whose transfers are done.
** - on nginx's loop (inside a worker, engine_nginx(), the default there):
**   the worker's event loop watches libcurl's sockets and timeout and
**   calls bearer_engine_act; a finished transfer posts the semaphore its
**   handler waits on (engine_nginx.c).
** - threaded (inside nginx where the loop cannot be used, engine_thread()):
**   a thread of the engine's own
**   runs libcurl; the worker's event loop must never block, and Lua has no
**   way to wait on a file descriptor but a cosocket, so the engine thread
**   also serves a unix socket. The worker's reader connects and subscribes
**   (a line "s"): the engine writes the token of every finished transfer
**   to it as a line, in one write per loop, and the reader wakes the
**   handler waiting for that token (an ngx.semaphore). No OS thread is
**   held per call in flight, and nothing polls. The thread sleeps in
**   epoll_wait on libcurl's sockets (socket_action: a loop costs work for
**   what is ready, not for every transfer in flight), the engine socket
**   and an eventfd; a start writes that eventfd only when the thread is
**   about to sleep, so the calls of one busy moment cost one wakeup.
** In no way does Lua run while libcurl is on the stack; the engine never
** calls Lua at all.
**
** Ownership: the engine keeps a list of its running transfers (C pointers,
** no Lua references: a transfer nobody holds is collected and its __gc
** takes it out). The registry anchors the engine until the state closes;
** then whichever of an engine and its transfers is finalised first
** unlinks the other. Threaded, a running transfer is the engine thread's
** until its state reads done (the last thing that thread writes to it):
** the worker's thread neither frees it nor trusts its engine field before.
** A forked child abandons the parent's multi handle (its connections are
** the parent's) and fails the transfers the parent had in flight.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bearer.h"

/* Connections to the engine socket served at once: a worker has one
** reader; more stand only while a restarted reader replaces its last. */
#define ENGINE_MAX_CONNS 64

/* What an epoll event of the engine thread is for: the tag in the high
** bits of its data, the fd in the low 32. */
#define ENGINE_EV_CURL   ((uint64_t)0 << 32)
#define ENGINE_EV_WAKE   ((uint64_t)1 << 32)
#define ENGINE_EV_LISTEN ((uint64_t)2 << 32)
#define ENGINE_EV_CONN   ((uint64_t)3 << 32)
#define ENGINE_EV_MASK   ((uint64_t)0xffffffff << 32)

struct bearer_engine {
  CURLM *multi;
  CURLSH *share;            /* TLS sessions */
  pid_t pid;
  int closed;
  bearer_transfer *running; /* doubly linked through t->next / t->prev */
  size_t n_running;
  long max_conns;           /* the connection cache's size: a high-water mark */
  uint64_t next_token;
  bearer_nginx *nginx;      /* on an nginx worker's event loop (engine_nginx.c), or NULL */
  /* threaded mode: everything below the mutex guards is shared */
  int threaded, stop;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t done_cv;   /* a transfer finished (blocking waits) */
  bearer_transfer *queue;   /* started, not yet on the multi (guarded) */
  int woken;                /* the engine thread is awake or woken (guarded): a start
                            ** writes the eventfd only when it is about to sleep */
  int cancels;              /* some transfer is to be aborted (guarded when threaded) */
  int *unref;               /* refs of finished transfers (guarded) */
  size_t n_unref, cap_unref;
  size_t n_anchored;        /* refs taken, not yet released: worker's thread only */
  int listen_fd;
  int epfd, wake_fd;        /* the engine thread's epoll set and its eventfd */
  double timer_at;          /* when libcurl wants its timeout run (monotonic s), or < 0 */
  char dir[96], path[128];  /* the socket's private directory and path */
  int conns[ENGINE_MAX_CONNS];   /* accepted connections: engine thread only */
  size_t n_conns;
  int subscriber;           /* fd of the connection that gets every token, -1 */
  double last_out;          /* when it was last written to (monotonic s) */
  char *out;                /* tokens not yet written to it */
  size_t n_out, cap_out;
};

static const char engine_key = 'e';   /* registry[&engine_key]: this state's engine */

/* {====================================================== the running list */

static void engine_link(bearer_engine *e, bearer_transfer *t) {
  t->engine = e;
  t->next = e->running;
  t->prev = NULL;
  if (e->running != NULL) e->running->prev = t;
  e->running = t;
  e->n_running++;
}

/* libcurl's own cache size follows the handles added at each moment, so a
** dip in load closes connections a moment later reopened; it only grows
** here, idle ones still age out (CURLMOPT_MAXAGE_CONN). */
static void engine_size_cache(bearer_engine *e) {
  long want = (long)e->n_running * 4;
  if (want <= e->max_conns) return;
  e->max_conns = want < 64 ? 64 : want;
  curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, e->max_conns);
}

/* Takes t off engine e; `ours`: e's multi handle belongs to this process
** (a forked child leaves the parent's alone). */
static void engine_unlink(bearer_engine *e, bearer_transfer *t, int ours) {
  if (ours && t->easy != NULL) curl_multi_remove_handle(e->multi, t->easy);
  if (t->prev != NULL) t->prev->next = t->next;
  else e->running = t->next;
  if (t->next != NULL) t->next->prev = t->prev;
  t->next = t->prev = NULL;
  __atomic_store_n(&t->engine, NULL, __ATOMIC_RELEASE);   /* bearer_engine_cancel reads it */
  e->n_running--;
}

/* Takes t off its engine (close, __gc); idempotent. In threaded mode only
** the engine thread gets here for a running transfer. */
BEARER_INTERNAL void bearer_engine_detach(bearer_transfer *t) {
  bearer_engine *e = t->engine;
  if (e != NULL) engine_unlink(e, t, e->pid == bearer_pid());
}

static void engine_notify(bearer_engine *e, uint64_t token);

/* t is done with rc: it gets its outcome, and in threaded mode its Lua
** anchor is queued for release and whoever waits for it is woken. The
** transfer's fields are read before it is marked done: after that the
** worker's thread may free it. */
static void engine_finished(bearer_engine *e, bearer_transfer *t, CURLcode rc) {
  int ref = t->ref;
  uint64_t token = t->token;
  void *waiter = t->waiter;
  bearer_transfer_complete(t, rc);
  if (waiter != NULL) bearer_nginx_waiter_wake(waiter);
  if (!e->threaded) return;
  pthread_mutex_lock(&e->mu);
  if (ref > 0 && e->n_unref < e->cap_unref) e->unref[e->n_unref++] = ref;
  pthread_cond_broadcast(&e->done_cv);
  pthread_mutex_unlock(&e->mu);
  engine_notify(e, token);
}

/* Fails every transfer still linked or queued, cleaning their handles up
** or (a forked child: they are the parent's) leaving them. */
static void engine_fail_all(bearer_engine *e, CURLcode rc, int cleanup) {
  bearer_transfer *q = e->queue;
  e->queue = NULL;
  while (q != NULL) {
    bearer_transfer *t = q;
    q = t->next;
    t->next = NULL;
    engine_link(e, t);
  }
  while (e->running != NULL) {
    bearer_transfer *t = e->running;
    if (!cleanup) t->easy = NULL;
    engine_unlink(e, t, cleanup);
    engine_finished(e, t, rc);
  }
}

/* }====================================================== */

/* {====================================================== set-up */

static int engine_setup(bearer_engine *e) {
  e->multi = curl_multi_init();
  e->share = curl_share_init();
  e->pid = bearer_pid();
  e->threaded = 0;
  e->nginx = NULL;
  e->listen_fd = e->epfd = e->wake_fd = -1;
  e->subscriber = -1;
  e->max_conns = 0;
  if (e->multi == NULL || e->share == NULL) return -1;
  curl_share_setopt(e->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  curl_multi_setopt(e->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  return 0;
}

/* The engine, made fresh in a forked child: the parent's multi handle,
** its connections and its thread (which the child does not have) stay
** the parent's; by design one small leak per fork. */
static bearer_engine *engine_ready(lua_State *L, bearer_engine *e) {
  if (e->closed) luaL_error(L, "attempt to use a closed bearer.Engine");
  if (e->pid != bearer_pid()) {
    e->threaded = 0;
    e->nginx = NULL;   /* the parent's nginx connections: left, as its multi handle */
    engine_fail_all(e, CURLE_ABORTED_BY_CALLBACK, 0);
    e->multi = NULL;
    e->share = NULL;
    e->n_conns = 0;   /* the parent's fds: left open, as its multi handle */
    e->unref = NULL;
    e->n_unref = e->cap_unref = e->n_anchored = 0;   /* the parent's refs, never released here */
    e->out = NULL;
    e->n_out = e->cap_out = 0;
    if (engine_setup(e) != 0) luaL_error(L, "out of memory (libcurl multi handle)");
  }
  return e;
}

/* Releases the anchors of transfers the engine thread finished. */
static void engine_drain(lua_State *L, bearer_engine *e) {
  if (!e->threaded) return;
  int refs[256];
  for (;;) {
    size_t n = 0;
    pthread_mutex_lock(&e->mu);
    while (n < 256 && e->n_unref > 0) refs[n++] = e->unref[--e->n_unref];
    pthread_mutex_unlock(&e->mu);
    for (size_t i = 0; i < n; i++) luaL_unref(L, LUA_REGISTRYINDEX, refs[i]);
    e->n_anchored -= n;
    if (n < 256) return;
  }
}

/* Pushes this state's engine, making it on first use. */
BEARER_INTERNAL bearer_engine *bearer_engine_push(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&engine_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  bearer_engine *e = luaL_testudata(L, -1, BEARER_ENGINE_MT);
  if (e != NULL && !e->closed) {
    engine_ready(L, e);
    engine_drain(L, e);
    return e;
  }
  lua_pop(L, 1);
  e = lua_newuserdatauv(L, sizeof(*e), 0);
  memset(e, 0, sizeof(*e));
  e->closed = 1;   /* until set up: __gc then frees halves */
  e->listen_fd = -1;
  luaL_setmetatable(L, BEARER_ENGINE_MT);
  if (engine_setup(e) != 0) luaL_error(L, "out of memory (libcurl multi handle)");
  e->closed = 0;
  lua_pushlightuserdata(L, (void *)&engine_key);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return e;
}

/* }====================================================== */

/* {====================================================== running transfers */

/* Wakes the engine thread (new work, a cancel, stop). */
static void engine_wake(bearer_engine *e) {
  uint64_t one = 1;
  ssize_t n = write(e->wake_fd, &one, sizeof(one));
  (void)n;   /* EAGAIN: the counter is full, so a wakeup is pending anyway */
}

/* Starts the transfer at idx (its easy handle set up) on engine e; 0 or
** -1 when libcurl refused it or the unref list is full (threaded). In
** threaded mode the transfer is anchored in the registry until the engine
** thread has finished with it, so no collection can free it under libcurl. */
BEARER_INTERNAL int bearer_engine_add(lua_State *L, bearer_engine *e, bearer_transfer *t,
                                      int idx) {
  t->token = ++e->next_token;
  if (!e->threaded) {
    if (e->nginx != NULL && t->waiter == NULL && (t->waiter = bearer_nginx_waiter_new()) == NULL)
      return -1;
    curl_easy_setopt(t->easy, CURLOPT_SHARE, e->share);
    if (curl_multi_add_handle(e->multi, t->easy) != CURLM_OK) return -1;
    engine_link(e, t);
    engine_size_cache(e);
    t->state = BEARER_T_RUNNING;
    return 0;
  }
  if (e->n_anchored + 1 > e->cap_unref) {   /* room to queue every anchor */
    size_t cap = e->cap_unref ? e->cap_unref * 2 : 1024;
    pthread_mutex_lock(&e->mu);
    int *u = realloc(e->unref, cap * sizeof(int));
    if (u != NULL) {
      e->unref = u;
      e->cap_unref = cap;
    }
    pthread_mutex_unlock(&e->mu);
    if (u == NULL) return -1;
  }
  lua_pushvalue(L, idx);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  e->n_anchored++;
  t->engine = e;
  t->state = BEARER_T_RUNNING;
  pthread_mutex_lock(&e->mu);
  t->next = e->queue;
  e->queue = t;
  int wake = !e->woken;
  e->woken = 1;
  pthread_mutex_unlock(&e->mu);
  if (wake) engine_wake(e);
  return 0;
}

/* Hands each transfer libcurl finished its outcome. */
static void engine_collect(bearer_engine *e) {
  int left;
  CURLMsg *m;
  while ((m = curl_multi_info_read(e->multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE) continue;
    bearer_transfer *t = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
    CURLcode rc = m->data.result;   /* m is invalid once the handle is removed */
    if (t != NULL) {
      engine_unlink(e, t, 1);
      engine_finished(e, t, rc);
    }
  }
}

/* Aborts the running transfers marked to be (close() in threaded mode, a
** socket nginx could not watch). */
static void engine_abort_marked(bearer_engine *e) {
  for (bearer_transfer *t = e->running, *next; t != NULL; t = next) {
    next = t->next;
    if (__atomic_load_n(&t->cancel, __ATOMIC_ACQUIRE)) {
      engine_unlink(e, t, 1);
      engine_finished(e, t, CURLE_ABORTED_BY_CALLBACK);
    }
  }
}

/* nginx's loop saw socket fd ready (mask), or libcurl's timeout came
** (CURL_SOCKET_TIMEOUT): libcurl runs what is ready, and each finished
** transfer gets its outcome and wakes its handler. */
BEARER_INTERNAL void bearer_engine_act(bearer_engine *e, curl_socket_t fd, int mask) {
  int still;
  curl_multi_socket_action(e->multi, fd, mask, &still);
  engine_collect(e);
  if (e->cancels) {
    e->cancels = 0;
    engine_abort_marked(e);
  }
}

/* From libcurl's socket callback on nginx's loop: easy's socket cannot be
** watched (the worker's connections all in use), so its transfer fails
** once socket_action returns; a callback may not take a handle off. */
BEARER_INTERNAL void bearer_engine_refuse(bearer_engine *e, CURL *easy) {
  bearer_transfer *t = NULL;
  curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
  if (t == NULL) return;
  t->stop = BEARER_STOP_NO_CONNECTION;
  t->cancel = 1;
  e->cancels = 1;
}

/* Runs libcurl once, then hands each finished transfer its outcome. */
static int engine_perform(bearer_engine *e) {
  int still = 0;
  curl_multi_perform(e->multi, &still);
  size_t before = e->n_running;
  engine_collect(e);   /* perform runs in the owning process only */
  return (int)(before - e->n_running);
}

/* Waits at most ms for activity and runs what is ready (inline mode); the
** number of transfers that finished. Never runs Lua. */
BEARER_INTERNAL int bearer_engine_step(bearer_engine *e, int ms) {
  if (e->nginx != NULL) return 0;   /* nginx's loop runs it */
  int done = engine_perform(e);
  if (done > 0 || e->n_running == 0) return done;
  long want = -1;
  curl_multi_timeout(e->multi, &want);
  if (want >= 0 && want < ms) ms = (int)want;
  curl_multi_poll(e->multi, NULL, 0, ms < 0 ? 0 : ms, NULL);
  return engine_perform(e);
}

static int engine_is_done(bearer_transfer *t) {
  return __atomic_load_n(&t->state, __ATOMIC_ACQUIRE) != BEARER_T_RUNNING;
}

/* Runs the engine until t is done (a call outside any scheduler): inline,
** other transfers progress meanwhile; threaded, the caller blocks (nginx
** phases that cannot yield, where the user allowed blocking). e is the
** engine t was added to, never t->engine: a threaded engine may have
** finished t, and taken it off, before the caller gets here. */
BEARER_INTERNAL void bearer_engine_finish(bearer_engine *e, bearer_transfer *t) {
  if (e->nginx != NULL) {
    /* the loop is this thread, blocked here: the call runs alone, on its
    ** own handle (libcurl has not touched it on the multi handle yet) */
    if (t->state != BEARER_T_RUNNING) return;
    engine_unlink(e, t, 1);
    engine_finished(e, t, curl_easy_perform(t->easy));
    return;
  }
  if (!e->threaded) {
    while (t->state == BEARER_T_RUNNING) bearer_engine_step(e, 1000);
    return;
  }
  pthread_mutex_lock(&e->mu);
  while (!engine_is_done(t)) pthread_cond_wait(&e->done_cv, &e->mu);
  pthread_mutex_unlock(&e->mu);
}

/* Whether t has finished; safe from the worker's thread while the engine
** thread runs it. */
BEARER_INTERNAL int bearer_engine_done(bearer_transfer *t) {
  return engine_is_done(t);
}

/* t:close() on a running transfer: inline, taken off at once (1 returned
** to say the caller may release); threaded, the engine thread is asked
** to abort it (0: it is still the engine's). A threaded transfer (it holds
** a registry ref) is the caller's again only once done: its engine field
** goes NULL before that, while the engine thread still cleans it up. */
BEARER_INTERNAL int bearer_engine_cancel(bearer_transfer *t) {
  if (t->ref == 0 || engine_is_done(t)) return 1;
  __atomic_store_n(&t->cancel, 1, __ATOMIC_RELEASE);
  bearer_engine *e = __atomic_load_n(&t->engine, __ATOMIC_ACQUIRE);
  if (e != NULL) {
    pthread_mutex_lock(&e->mu);
    e->cancels = 1;
    pthread_mutex_unlock(&e->mu);
    engine_wake(e);
  }
  return 0;
}

/* }====================================================== */

/* {====================================================== the engine thread */

static void engine_conn_drop(bearer_engine *e, size_t i) {
  if (e->conns[i] == e->subscriber) {
    e->subscriber = -1;
    e->n_out = 0;
  }
  close(e->conns[i]);
  e->conns[i] = e->conns[--e->n_conns];
}

/* Queues token for the subscriber, written at the end of the loop. */
static void engine_publish(bearer_engine *e, uint64_t token) {
  if (e->n_out + 24 > e->cap_out) {
    size_t cap = e->cap_out ? e->cap_out * 2 : 4096;
    char *p = realloc(e->out, cap);
    if (p == NULL) return;   /* each waiter's bounded wait looks by itself */
    e->out = p;
    e->cap_out = cap;
  }
  e->n_out += (size_t)snprintf(e->out + e->n_out, 24, "%llu\n", (unsigned long long)token);
}

static double engine_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sends to the subscriber without SIGPIPE (a reader gone is an error
** return, not a signal: a host need not ignore SIGPIPE as nginx does);
** a reader gone loses its connection. */
static ssize_t engine_send(bearer_engine *e, const char *p, size_t n) {
  ssize_t k = send(e->subscriber, p, n, MSG_NOSIGNAL);
  if (k < 0 && errno != EAGAIN && errno != EINTR)
    for (size_t i = 0; i < e->n_conns; i++)
      if (e->conns[i] == e->subscriber) {
        engine_conn_drop(e, i);
        break;
      }
  return k;
}

/* Writes what the subscriber has not got yet; a short write keeps the
** rest for the next loop (the socket is non-blocking). An empty line goes
** out when a second passed without any: the reader's read never times out
** (nginx would log each timeout) and it still looks, every second, whether
** its worker is exiting. */
static void engine_flush(bearer_engine *e) {
  if (e->subscriber < 0) return;
  double now = engine_now();
  if (e->n_out == 0) {
    if (now - e->last_out >= 1.0 && engine_send(e, "\n", 1) == 1) e->last_out = now;
    return;
  }
  e->last_out = now;
  ssize_t n = engine_send(e, e->out, e->n_out);
  if (n <= 0) return;
  memmove(e->out, e->out + n, e->n_out - (size_t)n);
  e->n_out -= (size_t)n;
}

/* Tells the subscribed reader that token's transfer finished. */
static void engine_notify(bearer_engine *e, uint64_t token) {
  if (e->subscriber >= 0) engine_publish(e, token);
}

/* Reads what connection i sent: "s\n" makes it the subscriber (a newer one
** replaces an older: a restarted reader); EOF, an error or anything else
** closes it. */
static void engine_conn_read(bearer_engine *e, size_t i) {
  char buf[64];
  ssize_t n = read(e->conns[i], buf, sizeof(buf));
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  for (ssize_t k = 0; k < n; k++) {
    if (buf[k] == 's') {
      e->subscriber = e->conns[i];
      e->n_out = 0;
    } else if (buf[k] != '\n') {
      n = 0;
      break;
    }
  }
  if (n <= 0) engine_conn_drop(e, i);
}

static void engine_accept(bearer_engine *e) {
  for (;;) {
    int fd = accept4(e->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = ENGINE_EV_CONN | (uint32_t)fd };
    if (e->n_conns >= ENGINE_MAX_CONNS || epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
      close(fd);
    else e->conns[e->n_conns++] = fd;
  }
}

/* Moves started transfers onto the multi handle and aborts cancelled ones. */
static int engine_take_queue(bearer_engine *e) {
  pthread_mutex_lock(&e->mu);
  bearer_transfer *q = e->queue;
  e->queue = NULL;
  int stop = e->stop, cancels = e->cancels;
  e->cancels = 0;
  pthread_mutex_unlock(&e->mu);
  while (q != NULL) {
    bearer_transfer *t = q;
    q = t->next;
    t->next = NULL;
    engine_link(e, t);
    curl_easy_setopt(t->easy, CURLOPT_SHARE, e->share);   /* the share is this thread's */
    if (curl_multi_add_handle(e->multi, t->easy) != CURLM_OK) {
      engine_unlink(e, t, 1);
      engine_finished(e, t, CURLE_FAILED_INIT);
    }
  }
  engine_size_cache(e);
  if (cancels) engine_abort_marked(e);
  return stop;
}

/* libcurl's socket callback (engine thread, inside socket_action): keeps
** the epoll set in step with the sockets libcurl wants watched. */
static int engine_socket_cb(CURL *easy, curl_socket_t fd, int what, void *ud, void *sockp) {
  bearer_engine *e = ud;
  (void)easy;
  (void)sockp;
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(e->epfd, EPOLL_CTL_DEL, fd, NULL);   /* fails if already closed: fine */
    return 0;
  }
  struct epoll_event ev = { .events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u)
                                      | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u),
                            .data.u64 = ENGINE_EV_CURL | (uint32_t)fd };
  /* libcurl says REMOVE whenever a connection goes idle into its cache, so
  ** most calls here are a socket's first: add, and change only if known */
  if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST)
    epoll_ctl(e->epfd, EPOLL_CTL_MOD, fd, &ev);
  return 0;
}

/* libcurl's timer callback: when to run its timeouts (-1: none). */
static int engine_timer_cb(CURLM *multi, long ms, void *ud) {
  bearer_engine *e = ud;
  (void)multi;
  e->timer_at = ms < 0 ? -1.0 : engine_now() + (double)ms / 1000.0;
  return 0;
}

/* The engine thread: libcurl driven by socket_action on an epoll set that
** also holds the wake eventfd and the engine socket's connections, so a
** loop costs work only for what is ready (curl_multi_perform and
** curl_multi_poll walk every transfer in flight, each loop). */
/* Whether the engine thread may block in epoll_wait: nothing queued since
** it last looked. From here on a start wakes it. */
static int engine_may_sleep(bearer_engine *e) {
  pthread_mutex_lock(&e->mu);
  int idle = e->queue == NULL && !e->cancels && !e->stop;
  if (idle) e->woken = 0;
  pthread_mutex_unlock(&e->mu);
  return idle;
}

static void *engine_thread_main(void *ud) {
  bearer_engine *e = ud;
  struct epoll_event evs[64];
  int still;
  for (;;) {
    int wait = 1000;
    if (!engine_may_sleep(e)) wait = 0;
    else if (e->timer_at >= 0) {
      double ms = (e->timer_at - engine_now()) * 1000.0;
      wait = ms <= 0 ? 0 : ms >= 1000 ? 1000 : (int)ms + 1;
    }
    int n = epoll_wait(e->epfd, evs, 64, wait);
    for (int i = 0; i < n; i++) {
      uint64_t tag = evs[i].data.u64 & ENGINE_EV_MASK;
      int fd = (int)(uint32_t)evs[i].data.u64;
      uint32_t ev = evs[i].events;
      if (tag == ENGINE_EV_CURL) {
        int mask = ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) ? CURL_CSELECT_IN : 0)
                   | ((ev & EPOLLOUT) ? CURL_CSELECT_OUT : 0)
                   | ((ev & EPOLLERR) ? CURL_CSELECT_ERR : 0);
        curl_multi_socket_action(e->multi, fd, mask, &still);
      } else if (tag == ENGINE_EV_WAKE) {
        uint64_t v;
        ssize_t r = read(e->wake_fd, &v, sizeof(v));
        (void)r;
      } else if (tag == ENGINE_EV_LISTEN) {
        engine_accept(e);
      } else {
        for (size_t k = 0; k < e->n_conns; k++)
          if (e->conns[k] == fd) {
            engine_conn_read(e, k);
            break;
          }
      }
    }
    if (engine_take_queue(e)) break;
    if (e->timer_at >= 0 && engine_now() >= e->timer_at) {
      e->timer_at = -1.0;   /* before the call: libcurl may set the next one */
      curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &still);
    }
    engine_collect(e);
    engine_flush(e);
  }
  return NULL;
}

/* Whether an engine still listens on the socket in directory fd: a pid
** that names no process here may be one of another pid namespace sharing
** TMPDIR. Only a refused connection says no; a probe sends nothing, so the
** engine drops it at its EOF. */
static int engine_listened(int fd) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/engine.sock", fd);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) return 1;
  int refused = connect(s, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno == ECONNREFUSED;
  close(s);
  return !refused;
}

/* A worker killed by a signal never removes its engine's directory. Each
** new engine thread removes those left by processes that are gone: named
** for their pid, this user's, a real directory holding at most the socket,
** which nothing listens on (anything else in it and rmdir leaves it be).
** Best effort, no errors. */
static void engine_sweep(const char *tmp) {
  DIR *d = opendir(tmp);
  if (d == NULL) return;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    long pid = 0;
    int end = 0;
    if (sscanf(de->d_name, "bearer-engine-%ld-%*6[A-Za-z0-9]%n", &pid, &end) != 1
        || end == 0 || de->d_name[end] != '\0' || pid <= 0 || pid == (long)bearer_pid())
      continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;   /* alive, or not ours */
    struct stat st;
    if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)
        || st.st_uid != geteuid())
      continue;
    int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) continue;
    if (fstatat(fd, "engine.sock", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISSOCK(st.st_mode)) {
      if (engine_listened(fd)) {
        close(fd);
        continue;
      }
      unlinkat(fd, "engine.sock", 0);
    }
    close(fd);
    unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
  }
  closedir(d);
}

/* core.engine_thread() -> socket path: this state's engine runs in a
** thread of its own from now on (nginx workers), its reader subscribed
** through a unix socket in a private directory; the same path on later calls in
** this process. Must come before the state's first transfer. */
static int engine_thread_lua(lua_State *L) {
  bearer_engine *e = bearer_engine_push(L);
  if (e->threaded) {
    lua_pushstring(L, e->path);
    return 1;
  }
  if (e->nginx != NULL)
    return luaL_error(L, "engine_thread: the engine runs on nginx's event loop");
  if (e->n_running > 0)
    return luaL_error(L, "engine_thread: transfers are already running inline");
  const char *tmp = getenv("TMPDIR");
  if (tmp == NULL || *tmp == '\0' || strlen(tmp) >= 60) tmp = "/tmp";
  engine_sweep(tmp);
  snprintf(e->dir, sizeof(e->dir), "%s/bearer-engine-%ld-XXXXXX", tmp, (long)bearer_pid());
  if (mkdtemp(e->dir) == NULL) return luaL_error(L, "engine_thread: mkdtemp: %s", strerror(errno));
  snprintf(e->path, sizeof(e->path), "%s/engine.sock", e->dir);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, e->path, strlen(e->path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 1024) != 0) {
    int err = errno;
    if (fd >= 0) close(fd);
    rmdir(e->dir);
    return luaL_error(L, "engine_thread: unix socket %s: %s", e->path, strerror(err));
  }
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  struct epoll_event ev_wake = { .events = EPOLLIN, .data.u64 = ENGINE_EV_WAKE | (uint32_t)wake_fd };
  struct epoll_event ev_listen = { .events = EPOLLIN, .data.u64 = ENGINE_EV_LISTEN | (uint32_t)fd };
  if (epfd < 0 || wake_fd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, wake_fd, &ev_wake) != 0
      || epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev_listen) != 0) {
    int err = errno;
    if (epfd >= 0) close(epfd);
    if (wake_fd >= 0) close(wake_fd);
    close(fd);
    unlink(e->path);
    rmdir(e->dir);
    return luaL_error(L, "engine_thread: epoll: %s", strerror(err));
  }
  e->epfd = epfd;
  e->wake_fd = wake_fd;
  e->timer_at = -1.0;
  curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, engine_socket_cb);
  curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
  curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, engine_timer_cb);
  curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
  e->subscriber = -1;
  e->n_conns = 0;
  e->listen_fd = fd;
  pthread_mutex_init(&e->mu, NULL);
  pthread_cond_init(&e->done_cv, NULL);
  e->stop = 0;
  e->threaded = 1;
  /* The thread starts with every signal blocked: a signal for the process
  ** (nginx's own when sent by kill, SIGCHLD, SIGALRM) must run nginx's
  ** handler on the worker's thread, whose event loop it interrupts, never
  ** on this one, concurrently with the worker. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int started = pthread_create(&e->thread, NULL, engine_thread_main, e) == 0;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (!started) {
    e->threaded = 0;
    close(fd);
    close(epfd);
    close(wake_fd);
    e->listen_fd = e->epfd = e->wake_fd = -1;
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, NULL);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, NULL);
    unlink(e->path);
    rmdir(e->dir);
    return luaL_error(L, "engine_thread: pthread_create failed");
  }
  lua_pushstring(L, e->path);
  return 1;
}

/* core.engine_nginx() -> true | false, why: this state's engine runs on
** its nginx worker's own event loop from now on (engine_nginx.c); false
** and why where it cannot, and the caller takes engine_thread() instead.
** Like that one, it must come before the state's first transfer. */
static int engine_nginx_lua(lua_State *L) {
  bearer_engine *e = bearer_engine_push(L);
  if (e->nginx != NULL) {
    lua_pushboolean(L, 1);
    return 1;
  }
  const char *why = e->threaded ? "the engine already runs in a thread of its own"
                  : e->n_running > 0 ? "transfers are already running inline"
                  : bearer_nginx_unavailable();
  if (why != NULL) {
    lua_pushboolean(L, 0);
    lua_pushstring(L, why);
    return 2;
  }
  e->nginx = bearer_nginx_attach(e, e->multi);
  if (e->nginx == NULL) return luaL_error(L, "engine_nginx: out of memory");
  lua_pushboolean(L, 1);
  return 1;
}

/* Stops the engine thread (ours, not a forked parent's) and closes its
** socket; transfers still running are failed after. */
static void engine_stop_thread(bearer_engine *e) {
  if (!e->threaded) return;
  if (e->pid == bearer_pid()) {
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    pthread_mutex_unlock(&e->mu);
    engine_wake(e);
    pthread_join(e->thread, NULL);
    while (e->n_conns > 0) engine_conn_drop(e, e->n_conns - 1);
    close(e->listen_fd);
    close(e->epfd);
    close(e->wake_fd);
    unlink(e->path);
    rmdir(e->dir);
  }
  e->listen_fd = e->epfd = e->wake_fd = -1;
  e->subscriber = -1;
  e->n_conns = 0;
  free(e->out);
  e->out = NULL;
  e->n_out = e->cap_out = 0;
}

/* }====================================================== */

/* {====================================================== Lua methods */

static bearer_engine *engine_check(lua_State *L) {
  return engine_ready(L, luaL_checkudata(L, 1, BEARER_ENGINE_MT));
}

/* core.engine() -> this Lua state's engine */
static int engine_get(lua_State *L) {
  bearer_engine_push(L);
  return 1;
}

/* e:step([seconds]) -> finished, running: waits at most seconds (default
** 0: no wait) for activity, runs what is ready, and says how many transfers
** finished and how many are still running. Threaded, the engine thread
** does the running: step only releases finished transfers' anchors. */
static int engine_step_lua(lua_State *L) {
  bearer_engine *e = engine_check(L);
  lua_Number s = luaL_optnumber(L, 2, 0);
  luaL_argcheck(L, s >= 0 && s <= 86400, 2, "seconds between 0 and 86400 expected");
  int done = 0;
  if (e->threaded) engine_drain(L, e);
  else done = bearer_engine_step(e, (int)(s * 1000.0 + 0.5));
  lua_pushinteger(L, done);
  lua_pushinteger(L, (lua_Integer)e->n_running);
  return 2;
}

/* e:running() -> transfers in flight */
static int engine_running(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)engine_check(L)->n_running);
  return 1;
}

static int engine_gc(lua_State *L) {
  bearer_engine *e = luaL_checkudata(L, 1, BEARER_ENGINE_MT);
  int ours = e->pid == bearer_pid();
  engine_stop_thread(e);
  if (e->nginx != NULL && ours) {   /* libcurl's cleanup below calls it no more */
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, NULL);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, NULL);
    bearer_nginx_free(e->nginx);
  }
  e->nginx = NULL;
  int threaded = e->threaded;
  e->threaded = 0;   /* from here on this thread alone */
  if (e->multi != NULL) engine_fail_all(e, CURLE_ABORTED_BY_CALLBACK, ours);
  if (ours && e->multi != NULL) curl_multi_cleanup(e->multi);
  if (ours && e->share != NULL) curl_share_cleanup(e->share);
  if (threaded && ours) {
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->done_cv);
  }
  free(e->unref);
  e->unref = NULL;
  e->n_unref = e->cap_unref = 0;
  e->multi = NULL;
  e->share = NULL;
  e->closed = 1;
  return 0;
}

static int engine_tostring(lua_State *L) {
  bearer_engine *e = luaL_checkudata(L, 1, BEARER_ENGINE_MT);
  if (e->closed) lua_pushliteral(L, "bearer.Engine(closed)");
  else lua_pushfstring(L, "bearer.Engine(%s, %d running)",
                       e->threaded ? "threaded" : e->nginx != NULL ? "nginx" : "inline",
                       (int)e->n_running);
  return 1;
}

/* }====================================================== */

static const luaL_Reg engine_methods[] = {
  {"step", engine_step_lua},
  {"running", engine_running},
  {NULL, NULL}
};

static const luaL_Reg engine_meta[] = {
  {"__gc", engine_gc},
  {"__tostring", engine_tostring},
  {NULL, NULL}
};

static const luaL_Reg engine_functions[] = {
  {"engine", engine_get},
  {"engine_thread", engine_thread_lua},
  {"engine_nginx", engine_nginx_lua},
  {NULL, NULL}
};

BEARER_INTERNAL void bearer_engine_open(lua_State *L) {
  luaL_newmetatable(L, BEARER_ENGINE_MT);
  luaL_setfuncs(L, engine_meta, 0);
  luaL_newlib(L, engine_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_setfuncs(L, engine_functions, 0);
}
