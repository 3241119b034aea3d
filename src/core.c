/*
** core.c: luaopen_bearer_core, the only symbol bearer/core.so exports, and
** the clock and sleep the Lua layer uses by default outside nginx.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "bearer.h"

/* {====================================================== libcurl's memory
** libcurl copies the credential line into blocks of its own (the request
** buffer, header lists, connection state) and frees them without wiping.
** When bearer is the first to initialise libcurl in the process, it hands
** libcurl allocation functions that wipe every block before giving it back,
** so no copy of a key outlives its transfer in freed heap. Best effort: if
** another library initialised libcurl first, its functions stay in place
** (libcurl ignores a second curl_global_init_mem) and core.curl_wipes_memory
** says false. malloc_usable_size is glibc's: the wipe covers the block. */

static int core_curl_ours;   /* a call reached core_curl_*: they are in place */

static void *core_curl_malloc(size_t n) {
  core_curl_ours = 1;
  return malloc(n);
}

static void core_curl_free(void *p) {
  if (p == NULL) return;
  bearer_cleanse(p, malloc_usable_size(p));
  free(p);
}

/* Always moves, so the old block is wiped like any freed one. */
static void *core_curl_realloc(void *p, size_t n) {
  if (p == NULL) return core_curl_malloc(n);
  size_t old = malloc_usable_size(p);
  void *q = malloc(n ? n : 1);
  if (q == NULL) return NULL;
  memcpy(q, p, old < n ? old : n);
  core_curl_free(p);
  return q;
}

static char *core_curl_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = core_curl_malloc(n);
  if (p != NULL) memcpy(p, s, n);
  return p;
}

static void *core_curl_calloc(size_t count, size_t size) {
  core_curl_ours = 1;
  return calloc(count, size);
}

static pthread_once_t core_curl_once = PTHREAD_ONCE_INIT;
static CURLcode core_curl_init_rc;

/* }====================================================== */

/* {====================================================== this process
** The engine checks on every call that it belongs to the calling process (a
** forked child must leave its parent's multi handle alone). glibc stopped
** caching getpid in 2.25, so asking the kernel was a system call per API
** call; the pid is kept here and set again in the child of every fork()
** (glibc drops the handler when this library is unloaded). A child made by
** vfork or a raw clone runs no handler: it may only exec, never call Lua. */

static volatile pid_t core_pid;

static void core_pid_child(void) { core_pid = getpid(); }

/* This process's pid, without a system call. */
BEARER_INTERNAL pid_t bearer_pid(void) { return core_pid; }

/* }====================================================== */

/* Once per process, whichever thread (nginx pool threads) gets here first:
** libcurl's allocator and the pid kept for bearer_pid. */
static void core_curl_init(void) {
  core_pid = getpid();
  pthread_atfork(NULL, NULL, core_pid_child);
  core_curl_init_rc = curl_global_init_mem(CURL_GLOBAL_DEFAULT, core_curl_malloc,
                                           core_curl_free, core_curl_realloc,
                                           core_curl_strdup, core_curl_calloc);
  if (core_curl_init_rc != CURLE_OK) return;
  struct curl_slist *probe = curl_slist_append(NULL, "probe");
  curl_slist_free_all(probe);
}

/* }====================================================== */

/* core.now() -> wall-clock seconds (fractional): for Retry-After dates. */
static int core_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.monotime() -> seconds from an arbitrary origin that never jumps:
** for spacing requests (backoff, rate limits). */
static int core_monotime(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.sleep(seconds): blocks the thread; the nginx layer uses ngx.sleep. */
static int core_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  if (s <= 0) return 0;
  struct timespec ts;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
  return 0;
}

/* core.parse_http_date(s) -> epoch seconds | nil (RFC 7231 dates, as in
** Retry-After; libcurl's parser accepts all three historic forms). */
static int core_parse_http_date(lua_State *L) {
  time_t t = curl_getdate(luaL_checkstring(L, 1), NULL);
  if (t == (time_t)-1) luaL_pushfail(L);
  else lua_pushnumber(L, (lua_Number)t);
  return 1;
}

/* Found in the file by lua/bearer/init.lua when dlopen fails, to tell a core
** built for another Lua from a symbol this Lua lacks; "used": never read
** from C. */
__attribute__((used)) static const char core_built_for[] =
  "bearer-core-built-for=" BEARER_LUA_ABI ";";

static const luaL_Reg core_functions[] = {
  {"now", core_now},
  {"monotime", core_monotime},
  {"sleep", core_sleep},
  {"parse_http_date", core_parse_http_date},
  {NULL, NULL}
};

BEARER_EXPORT int luaopen_bearer_core(lua_State *L) {
  pthread_once(&core_curl_once, core_curl_init);
  if (core_curl_init_rc != CURLE_OK) return luaL_error(L, "curl_global_init failed");
  luaL_newlib(L, core_functions);
  lua_pushliteral(L, BEARER_VERSION);
  lua_setfield(L, -2, "_VERSION");
  lua_pushboolean(L, core_curl_ours);
  lua_setfield(L, -2, "curl_wipes_memory");
  lua_pushliteral(L, BEARER_LUA_ABI);
  lua_setfield(L, -2, "_LUA");
  bearer_error_open(L);
  bearer_key_open(L);
  bearer_client_open(L);
  bearer_transfer_open(L);
  bearer_engine_open(L);
  bearer_crypto_open(L);
  bearer_redact_open(L);
  bearer_json_open(L);
  bearer_redis_open(L);
  return 1;
}
