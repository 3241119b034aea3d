/*
** engine_nginx.c: an engine's libcurl sockets and timer on the event loop
** of the nginx worker it runs in (bearer.ngx.engine's way inside nginx).
**
** Why: with libcurl in a thread of its own, each call crossed threads
** twice (the start, then the finished token through a unix socket), two
** context switches a call, and a worker spent about 3x proxy_pass's CPU
** on a call to a fast upstream. Here libcurl's sockets sit in the
** worker's own epoll set like proxy_pass's upstream connections, its
** timeouts in nginx's timer tree, and a finished transfer posts the
** ngx.semaphore its handler waits on: no thread, no extra socket.
**
** How it links: nginx exports its own symbols to the modules it loads
** (that is how dynamic modules link), and loads lua-nginx-module with
** RTLD_GLOBAL (lua-resty-core's FFI calls rely on that). Every nginx
** symbol used here is declared weak, so the same core.so still loads in a
** plain Lua, where they are all NULL and this way is simply unavailable.
**
** Layouts: the structs come from Debian's nginx-dev headers, configured
** with the flags Debian built its nginx with (the Makefile does that).
** They are used only when the running nginx's core module carries the
** same version and module signature: what nginx's load_module checks
** before it lets a dynamic module touch those structs.
**
** Ownership: the engine owns one bearer_nginx (its sockets' nginx
** connections and its timer) and frees it on close. A connection is
** taken from nginx's pool when libcurl first asks to watch a socket and
** given back when libcurl removes it; the fd stays libcurl's (it opens
** and closes it). libcurl runs only from the event handlers below (or a
** call from Lua into C); no Lua runs while it is on the stack, and the
** semaphore post only queues an nginx event that resumes the handler
** later.
**
** Without nginx's headers at build time (a luarocks build) this file
** only says the way is unavailable.
*/
#ifdef BEARER_NGINX
/* nginx's config header first: it sets the feature macros its structs need */
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#endif
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bearer.h"

#ifndef BEARER_NGINX

BEARER_INTERNAL const char *bearer_nginx_unavailable(void) {
  return "bearer was built without nginx's headers (Debian's nginx-dev)";
}
BEARER_INTERNAL bearer_nginx *bearer_nginx_attach(bearer_engine *e, CURLM *multi) {
  (void)e;
  (void)multi;
  return NULL;
}
BEARER_INTERNAL void bearer_nginx_free(bearer_nginx *n) { (void)n; }
BEARER_INTERNAL void *bearer_nginx_waiter_new(void) { return NULL; }
BEARER_INTERNAL void bearer_nginx_waiter_wake(void *w) { (void)w; }
BEARER_INTERNAL void bearer_nginx_waiter_free(void *w) { (void)w; }

#else

/* lua-nginx-module's semaphore, as lua-resty-core's ngx.semaphore calls it */
int ngx_http_lua_ffi_sema_new(void **psem, int n, char **errmsg);
int ngx_http_lua_ffi_sema_post(void *sem, int n);
void ngx_http_lua_ffi_sema_gc(void *sem);

#pragma weak ngx_core_module
#pragma weak ngx_cycle
#pragma weak ngx_process
#pragma weak ngx_event_flags
#pragma weak ngx_event_actions
#pragma weak ngx_current_msec
#pragma weak ngx_event_timer_rbtree
#pragma weak ngx_rbtree_insert
#pragma weak ngx_rbtree_delete
#pragma weak ngx_get_connection
#pragma weak ngx_free_connection
#pragma weak ngx_log_error_core
#pragma weak ngx_http_lua_ffi_sema_new
#pragma weak ngx_http_lua_ffi_sema_post
#pragma weak ngx_http_lua_ffi_sema_gc

struct bearer_nginx {
  bearer_engine *engine;
  CURLM *multi;
  ngx_cycle_t *cycle;           /* the worker's cycle: another one means exiting */
  ngx_event_t timer;            /* libcurl's timeout */
  ngx_connection_t timer_conn;  /* the timer's data: nginx's debug log reads an fd there */
};

BEARER_INTERNAL const char *bearer_nginx_unavailable(void) {
  if (&ngx_core_module == NULL || &ngx_get_connection == NULL || &ngx_cycle == NULL
      || &ngx_event_actions == NULL || &ngx_event_timer_rbtree == NULL)
    return "not inside an nginx process";
  if (&ngx_http_lua_ffi_sema_new == NULL || &ngx_http_lua_ffi_sema_post == NULL
      || &ngx_http_lua_ffi_sema_gc == NULL)
    return "lua-nginx-module's semaphore is not loaded";
  if (ngx_core_module.version != nginx_version || ngx_core_module.signature == NULL
      || strcmp(ngx_core_module.signature, NGX_MODULE_SIGNATURE) != 0)
    return "this nginx is not the one bearer was built against (version or module signature)";
  if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE)
    return "not in an nginx worker";
  /* a thread pool's Lua VM is in the worker too, but nginx's loop is the
  ** worker's initial thread's alone */
  if (gettid() != getpid()) return "not on the nginx worker's own thread";
  if (!(ngx_event_flags & NGX_USE_EPOLL_EVENT)) return "nginx's event method is not epoll";
  return NULL;
}

/* Whether nginx's loop still runs: at exit nginx swaps ngx_cycle for a
** static one before it frees the pools (and closes Lua with them), and
** then nothing of nginx's may be touched. */
static int nginx_live(bearer_nginx *n) {
  return ngx_cycle == n->cycle;
}

static void nginx_on_socket(ngx_event_t *ev) {
  ngx_connection_t *c = ev->data;
  bearer_nginx *n = c->data;
  /* EPOLLERR and EPOLLHUP reach both handlers; IN lets libcurl read the error */
  bearer_engine_act(n->engine, c->fd, ev->write ? CURL_CSELECT_OUT : CURL_CSELECT_IN);
}

static void nginx_on_timer(ngx_event_t *ev) {
  bearer_nginx *n = (bearer_nginx *)((char *)ev - offsetof(bearer_nginx, timer));
  bearer_engine_act(n->engine, CURL_SOCKET_TIMEOUT, 0);
}

/* Stops watching c's socket and gives c back to nginx's pool; the fd is
** libcurl's to close. libcurl 7.88 closes a socket still connecting (a
** connect timeout, a call given up) before it says CURL_POLL_REMOVE: epoll
** dropped that fd with its close, so only the events' flags are cleared
** (NGX_CLOSE_EVENT): an epoll_ctl on it fails, and nginx logs an alert.
** An event of c already queued in this loop's batch is dropped: fd -1 is
** how nginx's epoll loop tells a stale event. */
static void nginx_unwatch(ngx_connection_t *c) {
  ngx_uint_t gone = fcntl(c->fd, F_GETFD) == -1 ? NGX_CLOSE_EVENT : 0;
  if (c->read->active) ngx_del_event(c->read, NGX_READ_EVENT, gone);
  if (c->write->active) ngx_del_event(c->write, NGX_WRITE_EVENT, gone);
  /* braces: nginx's macro is two statements */
  if (c->read->posted) {
    ngx_delete_posted_event(c->read);
  }
  if (c->write->posted) {
    ngx_delete_posted_event(c->write);
  }
  ngx_free_connection(c);
  c->fd = (ngx_socket_t)-1;
}

/* Takes an nginx connection for libcurl's socket fd; NULL when the
** worker's connections are all in use (nginx logs that). */
static ngx_connection_t *nginx_watch(bearer_nginx *n, curl_socket_t fd) {
  ngx_connection_t *c = ngx_get_connection(fd, ngx_cycle->log);
  if (c == NULL) return NULL;
  c->data = n;
  c->read->handler = nginx_on_socket;
  c->write->handler = nginx_on_socket;
  c->read->log = c->log;
  c->write->log = c->log;
  /* like the resolver's sockets, the engine's own: a worker exiting with
  ** calls in flight leaves them to the engine, which lua_close closes
  ** (nginx would log an alert for each, and worker_shutdown_timeout would
  ** hand each to the read handler to close) */
  c->read->resolver = 1;
  return c;
}

/* Makes ev's interest match want, level-triggered: libcurl may leave
** bytes unread in a pass, and expects to be told again. */
static int nginx_want(ngx_event_t *ev, ngx_int_t event, int want) {
  if (want && !ev->active) return ngx_add_event(ev, event, NGX_LEVEL_EVENT) == NGX_OK;
  if (!want && ev->active) return ngx_del_event(ev, event, 0) == NGX_OK;
  return 1;
}

/* libcurl's socket callback. It never returns -1: on 7.88 that marks the
** whole multi handle dead. A socket nginx cannot watch fails its own
** transfer instead, once libcurl is off the stack. */
static int nginx_socket_cb(CURL *easy, curl_socket_t fd, int what, void *ud, void *sockp) {
  bearer_nginx *n = ud;
  ngx_connection_t *c = sockp;
  if (!nginx_live(n)) return 0;
  if (what == CURL_POLL_REMOVE) {
    if (c != NULL) nginx_unwatch(c);
    curl_multi_assign(n->multi, fd, NULL);
    return 0;
  }
  if (c == NULL) {
    c = nginx_watch(n, fd);
    if (c == NULL) {
      bearer_engine_refuse(n->engine, easy);
      return 0;
    }
    curl_multi_assign(n->multi, fd, c);
  }
  if (!nginx_want(c->read, NGX_READ_EVENT, (what & CURL_POLL_IN) != 0)
      || !nginx_want(c->write, NGX_WRITE_EVENT, (what & CURL_POLL_OUT) != 0))
    bearer_engine_refuse(n->engine, easy);
  return 0;
}

/* libcurl's timer callback: -1 none, else run its timeouts in ms. nginx's
** lazy timer (an old one within 300 ms is kept) would hold back a 0 ms
** request, so the timer is set again each time. */
static int nginx_timer_cb(CURLM *multi, long ms, void *ud) {
  bearer_nginx *n = ud;
  (void)multi;
  if (!nginx_live(n)) return 0;
  if (n->timer.timer_set) ngx_del_timer(&n->timer);
  if (ms >= 0) ngx_add_timer(&n->timer, (ngx_msec_t)ms);
  return 0;
}

BEARER_INTERNAL bearer_nginx *bearer_nginx_attach(bearer_engine *e, CURLM *multi) {
  bearer_nginx *n = calloc(1, sizeof(*n));
  if (n == NULL) return NULL;
  n->engine = e;
  n->multi = multi;
  n->cycle = (ngx_cycle_t *)ngx_cycle;
  n->timer_conn.fd = (ngx_socket_t)-1;
  n->timer.data = &n->timer_conn;
  n->timer.handler = nginx_on_timer;
  n->timer.log = ngx_cycle->log;
  n->timer.cancelable = 1;   /* a graceful exit does not wait for it */
  curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, nginx_socket_cb);
  curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, n);
  curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, nginx_timer_cb);
  curl_multi_setopt(multi, CURLMOPT_TIMERDATA, n);
  return n;
}

/* The engine closes: its multi handle's callbacks are taken off first (by
** the engine), so libcurl's cleanup, which closes the sockets, calls
** nothing here. While nginx runs, the timer and the connections go back
** to it; the connections are found in nginx's own array (its handler and
** this engine as data), not listed here, so a transfer's sockets cost no
** bookkeeping of ours. At exit they are left as they are. */
BEARER_INTERNAL void bearer_nginx_free(bearer_nginx *n) {
  if (n == NULL) return;
  if (nginx_live(n)) {
    if (n->timer.timer_set) ngx_del_timer(&n->timer);
    ngx_connection_t *c = n->cycle->connections;
    for (ngx_uint_t i = 0; i < n->cycle->connection_n; i++)
      if (c[i].fd != (ngx_socket_t)-1 && c[i].read->handler == nginx_on_socket
          && c[i].data == n)
        nginx_unwatch(&c[i]);
  }
  free(n);
}

/* A transfer's waiter: the semaphore its handler waits on, posted once it
** is done. The transfer owns it (bearer_nginx_waiter_free on close), so a
** post never reaches a semaphore the collector freed. */
BEARER_INTERNAL void *bearer_nginx_waiter_new(void) {
  void *sem = NULL;
  char *err = NULL;
  if (ngx_http_lua_ffi_sema_new(&sem, 0, &err) != NGX_OK) return NULL;
  return sem;
}

BEARER_INTERNAL void bearer_nginx_waiter_wake(void *w) {
  ngx_http_lua_ffi_sema_post(w, 1);
}

BEARER_INTERNAL void bearer_nginx_waiter_free(void *w) {
  ngx_http_lua_ffi_sema_gc(w);
}

#endif
