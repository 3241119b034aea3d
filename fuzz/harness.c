/*
** harness.c: the one libFuzzer entry point of every fuzz target.
**
** Built once per target (make fuzz: -DFUZZ_TARGET="name") and linked with
** the objects of src/ built with -fsanitize=fuzzer-no-link,address,undefined,
** so coverage and the sanitizers see bearer's C. One lua_State lives for the
** whole run with bearer.core preloaded (luaopen_bearer_core, linked in) and
** the Lua layer from lua/. fuzz/targets/<name>.lua returns the function that
** feeds one input to bearer: all of a target's calls into bearer are there,
** so this file never changes when the Lua API does.
**
** A target function that raises is a finding: bearer must turn bad bytes
** into an error object, never into an internal Lua error. The harness then
** aborts with the message, and libFuzzer saves the input.
**
** For the response-header target this file also runs a loopback HTTP
** responder on a thread of its own (fuzz.respond): a real libcurl transfer
** parses the bytes, as it would from a hostile server. The thread never
** touches Lua; it only writes bytes the Lua side copied to it beforehand.
*/
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <openssl/evp.h>

#ifndef FUZZ_TARGET
#error "build with -DFUZZ_TARGET=\"name\" (fuzz/targets/name.lua)"
#endif

int luaopen_bearer_core(lua_State *L);

static lua_State *fuzz_L;
static int fuzz_target_ref = LUA_NOREF;

/* {====================================================== loopback responder */

#define FUZZ_MAX_RESPONSES 4

/* The responses the next connection gets, one per request read; the
** connection is closed after the last. Guarded by fuzz_lock. */
static pthread_mutex_t fuzz_lock = PTHREAD_MUTEX_INITIALIZER;
static char *fuzz_resp[FUZZ_MAX_RESPONSES];
static size_t fuzz_resp_len[FUZZ_MAX_RESPONSES];
static int fuzz_resp_count;
static int fuzz_listen_fd = -1;
static int fuzz_port;

/* Reads one request head (through the blank line); 0 when it came. The
** client only sends GETs, so there is no body to read. Reading it all
** matters: closing a socket with unread bytes sends a reset, and the
** client could lose the response it was about to read. */
static int fuzz_read_request(int fd) {
  char buf[8192];
  size_t seen = 0;
  const char *tail = "\r\n\r\n";
  for (;;) {
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r <= 0) return -1;
    for (ssize_t i = 0; i < r; i++) {
      seen = (buf[i] == tail[seen]) ? seen + 1 : (buf[i] == '\r' ? 1 : 0);
      if (seen == 4) return 0;
    }
  }
}

static void fuzz_write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

static void *fuzz_responder(void *unused) {
  (void)unused;
  for (;;) {
    int fd = accept(fuzz_listen_fd, NULL, NULL);
    if (fd < 0) continue;
    struct timeval tv = { 2, 0 };   /* a client that went away does not stall us */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (int i = 0;; i++) {
      if (fuzz_read_request(fd) != 0) break;
      pthread_mutex_lock(&fuzz_lock);
      int last = i >= fuzz_resp_count - 1;
      if (i < fuzz_resp_count) fuzz_write_all(fd, fuzz_resp[i], fuzz_resp_len[i]);
      pthread_mutex_unlock(&fuzz_lock);
      if (last) break;
    }
    shutdown(fd, SHUT_WR);
    close(fd);
  }
  return NULL;
}

/* fuzz.respond(r1 [, r2 ...]): what the next connection is answered with. */
static int fuzz_respond(lua_State *L) {
  int n = lua_gettop(L);
  if (n < 1 || n > FUZZ_MAX_RESPONSES) return luaL_error(L, "1 to %d responses", FUZZ_MAX_RESPONSES);
  pthread_mutex_lock(&fuzz_lock);
  for (int i = 0; i < fuzz_resp_count; i++) free(fuzz_resp[i]);
  fuzz_resp_count = 0;
  for (int i = 0; i < n; i++) {
    size_t len;
    const char *s = luaL_checklstring(L, i + 1, &len);
    fuzz_resp[i] = malloc(len ? len : 1);
    if (fuzz_resp[i] == NULL) abort();
    memcpy(fuzz_resp[i], s, len);
    fuzz_resp_len[i] = len;
    fuzz_resp_count = i + 1;
  }
  pthread_mutex_unlock(&fuzz_lock);
  return 0;
}

/* fuzz.setenv(name, value): for targets that read the environment, which
** Lua alone cannot write. */
static int fuzz_setenv(lua_State *L) {
  if (setenv(luaL_checkstring(L, 1), luaL_checkstring(L, 2), 1) != 0)
    return luaL_error(L, "setenv failed");
  return 0;
}

/* fuzz.b64url(s): unpadded base64url, for targets that build a JWT around
** the bytes they are given (libcrypto's encoder, then the URL alphabet). */
static int fuzz_b64url(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  unsigned char *out = malloc(4 * ((n + 2) / 3) + 1);
  if (out == NULL) abort();
  int m = EVP_EncodeBlock(out, (const unsigned char *)s, (int)n);
  while (m > 0 && out[m - 1] == '=') m--;
  for (int i = 0; i < m; i++) {
    if (out[i] == '+') out[i] = '-';
    else if (out[i] == '/') out[i] = '_';
  }
  lua_pushlstring(L, (const char *)out, (size_t)m);
  free(out);
  return 1;
}

/* Starts the responder; its port goes to fuzz.port. */
static void fuzz_start_responder(void) {
  struct sockaddr_in a;
  socklen_t alen = sizeof a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  fuzz_listen_fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fuzz_listen_fd < 0 || bind(fuzz_listen_fd, (struct sockaddr *)&a, sizeof a) != 0
      || listen(fuzz_listen_fd, 16) != 0
      || getsockname(fuzz_listen_fd, (struct sockaddr *)&a, &alen) != 0) {
    perror("fuzz: loopback responder");
    exit(1);
  }
  fuzz_port = ntohs(a.sin_port);
  pthread_t t;
  if (pthread_create(&t, NULL, fuzz_responder, NULL) != 0) {
    perror("fuzz: responder thread");
    exit(1);
  }
  pthread_detach(t);
}

/* }====================================================== */

static int fuzz_traceback(lua_State *L) {
  const char *msg = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  signal(SIGPIPE, SIG_IGN);
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  /* Run from the checkout's root (make fuzz does): the Lua layer and the
  ** targets load from there, never from an installed copy. */
  lua_getglobal(L, "package");
  lua_pushliteral(L, "lua/?.lua;lua/?/init.lua;fuzz/?.lua");
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_bearer_core);
  lua_setfield(L, -2, "bearer.core");
  lua_pop(L, 2);

  fuzz_start_responder();
  static const luaL_Reg fuzz_functions[] = {
    {"respond", fuzz_respond}, {"setenv", fuzz_setenv}, {"b64url", fuzz_b64url}, {NULL, NULL}
  };
  luaL_newlib(L, fuzz_functions);
  lua_pushinteger(L, fuzz_port);
  lua_setfield(L, -2, "port");
  lua_setglobal(L, "fuzz");

  lua_pushcfunction(L, fuzz_traceback);
  if (luaL_loadfile(L, "fuzz/targets/" FUZZ_TARGET ".lua") != LUA_OK
      || lua_pcall(L, 0, 1, -2) != LUA_OK || !lua_isfunction(L, -1)) {
    fprintf(stderr, "fuzz: cannot load fuzz/targets/%s.lua (run from the checkout's root): %s\n",
            FUZZ_TARGET, lua_isstring(L, -1) ? lua_tostring(L, -1) : "no function returned");
    exit(1);
  }
  fuzz_target_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  fuzz_L = L;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_L;
  lua_pushcfunction(L, fuzz_traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, fuzz_target_ref);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, -3) != LUA_OK) {
    fprintf(stderr, "fuzz: target %s raised: %s\n", FUZZ_TARGET, lua_tostring(L, -1));
    abort();
  }
  lua_pop(L, 1);
  /* What this input made becomes garbage now, not some inputs later: then
  ** libFuzzer's malloc/free balance points at real leaks (its leak check
  ** runs LeakSanitizer whenever an input ends unbalanced, which is slow). */
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
