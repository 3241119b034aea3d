/*
** bearer.h: what the C files of bearer/core.so share with each other.
**
** Only luaopen_bearer_core leaves the shared object. Everything declared
** here is hidden (BEARER_INTERNAL) so that a symbol of ours can never clash
** with one of the host (nginx, LuaJIT, another rock) at load time.
*/
#ifndef BEARER_H
#define BEARER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <curl/curl.h>
#include "compat.h"

#define BEARER_VERSION "0.1.0"

#define BEARER_INTERNAL __attribute__((visibility("hidden")))
#define BEARER_EXPORT __attribute__((visibility("default")))

#define BEARER_KEY_MT    "bearer.Key"
#define BEARER_CLIENT_MT "bearer.Client"
#define BEARER_ERROR_MT  "bearer.Error"

/* Bytes of a credential borrowed for one transfer or one redaction. */
typedef struct bearer_secret {
  const unsigned char *bytes;   /* NULL: no credential */
  size_t len;
} bearer_secret;

/* {====================================================== keys (key.c) */

typedef struct bearer_key {
  unsigned char *secret;     /* own pages (mmap), NULL once closed */
  size_t len;                /* bytes of secret, no terminator counted */
  size_t map_len;            /* bytes mapped, a multiple of the page size */
  char scheme[24];           /* the scheme's name (rules come from Lua: key.c) */
  double expires_at;         /* firebase 'exp' claim, or -1 when absent */
  char prefix[24];           /* public part shown by tostring; never secret */
} bearer_key;

BEARER_INTERNAL void bearer_key_open(lua_State *L);
/* The key at idx, raising if it is not a key or is closed. */
BEARER_INTERNAL bearer_key *bearer_key_check(lua_State *L, int idx);
/* The key at idx or NULL when it is not a key (closed keys included). */
BEARER_INTERNAL bearer_key *bearer_key_test(lua_State *L, int idx);
/* The secret of k, or no secret when k is NULL or closed. */
BEARER_INTERNAL bearer_secret bearer_key_secret(const bearer_key *k);

/* }====================================================== */

/* {====================================================== clients (client.c) */

BEARER_INTERNAL void bearer_client_open(lua_State *L);

/* The transport settings a client hands each transfer it starts. */
typedef struct bearer_transport {
  long connect_timeout_ms;
  /* owned by the client; the user agent as its whole header line, which
  ** goes in the header list (libcurl would format CURLOPT_USERAGENT's line
  ** again for every transfer) */
  const char *user_agent_line, *ca_file, *proxy;
} bearer_transport;

/* How user_agent_line starts; the user agent itself follows. */
#define BEARER_USER_AGENT_PREFIX "User-Agent: "

/* One perform's or start's arguments, read once; the strings are anchored
** by the Lua stack for the length of that call (libcurl copies them). */
typedef struct bearer_request {
  const char *method, *url, *body, *sink;
  size_t blen;
  long timeout_ms;
  int with_key, trace, fresh, form, plain;
  lua_Integer vault;
} bearer_request;

/* }====================================================== */

/* {====================================================== transfers (transfer.c) */

#define BEARER_TRANSFER_MT "bearer.Transfer"

typedef struct bearer_buf {
  char *p;
  size_t n, cap;
} bearer_buf;

/* Why a libcurl callback stopped a transfer; decides the error's kind. */
typedef enum {
  BEARER_STOP_NONE, BEARER_STOP_TOO_LARGE, BEARER_STOP_HEAD_TOO_LARGE,
  BEARER_STOP_NO_MEMORY, BEARER_STOP_MALFORMED, BEARER_STOP_NOT_LOOPBACK,
  BEARER_STOP_NO_CONNECTION
} bearer_stop;

typedef enum { BEARER_T_BUILDING, BEARER_T_RUNNING, BEARER_T_DONE, BEARER_T_CLOSED } bearer_tstate;

typedef struct bearer_engine bearer_engine;

typedef struct bearer_transfer {
  CURL *easy;               /* until completion */
  bearer_tstate state;      /* threaded engine: written there, read atomically */
  int consumed;             /* result() was taken */
  int cancel;               /* close() asked a threaded engine to abort it */
  int ref;                  /* registry anchor while a threaded engine runs it */
  void *waiter;             /* on nginx's loop: the semaphore its handler waits on (owned) */
  uint64_t token;           /* names it to the engine's waiting handlers */
  bearer_engine *engine;    /* while running */
  struct bearer_transfer *next, *prev;   /* the engine's running list */
  CURLcode rc;
  long status, request_size;
  double seconds;
  curl_off_t limit, received, sunk;      /* body bytes: cap, seen, to the sink */
  curl_off_t dl_now, dl_total, ul_now, ul_total;   /* progress */
  bearer_stop stop;
  int loopback_only;        /* a credential over plain http: connect check */
  FILE *sink;               /* a 2xx body goes here, not to memory */
  char *sink_path;
  int sink_errno;
  curl_mime *form;
  struct curl_slist *headers;   /* with the credential line: wiped on release */
  bearer_buf body, head, trace_out, trace_in;
  char errbuf[CURL_ERROR_SIZE];
  bearer_key *key;          /* whose secret cred borrows (anchored), or NULL */
  bearer_secret cred;       /* borrowed until the result is pushed */
  size_t vault_id;          /* vault entry held, 0: none */
} bearer_transfer;

BEARER_INTERNAL void bearer_transfer_open(lua_State *L);
BEARER_INTERNAL bearer_transfer *bearer_transfer_new(lua_State *L, int client_idx);
BEARER_INTERNAL void bearer_transfer_headers(lua_State *L, bearer_transfer *t, int idx,
                                             int with_key, const char *user_agent_line);
BEARER_INTERNAL int bearer_transfer_credential(bearer_transfer *t, const char *prefix);
BEARER_INTERNAL int bearer_transfer_form(lua_State *L, bearer_transfer *t, int idx);
BEARER_INTERNAL int bearer_transfer_sink(bearer_transfer *t, const char *path);
BEARER_INTERNAL void bearer_transfer_setup(bearer_transfer *t, const bearer_request *rq,
                                           const bearer_transport *tp);
BEARER_INTERNAL void bearer_transfer_complete(bearer_transfer *t, CURLcode rc);
BEARER_INTERNAL void bearer_transfer_release(bearer_transfer *t);
BEARER_INTERNAL int bearer_transfer_push_result(lua_State *L, bearer_transfer *t);
BEARER_INTERNAL int bearer_header_value_ok(const char *s, size_t n);
BEARER_INTERNAL int bearer_ip_is_loopback(const char *ip);

/* }====================================================== */

/* {====================================================== the engine (engine.c) */

#define BEARER_ENGINE_MT "bearer.Engine"

BEARER_INTERNAL void bearer_engine_open(lua_State *L);
BEARER_INTERNAL bearer_engine *bearer_engine_push(lua_State *L);
BEARER_INTERNAL int bearer_engine_add(lua_State *L, bearer_engine *e, bearer_transfer *t,
                                      int idx);
BEARER_INTERNAL int bearer_engine_done(bearer_transfer *t);
BEARER_INTERNAL int bearer_engine_cancel(bearer_transfer *t);
BEARER_INTERNAL void bearer_engine_detach(bearer_transfer *t);
BEARER_INTERNAL int bearer_engine_step(bearer_engine *e, int ms);
BEARER_INTERNAL void bearer_engine_finish(bearer_engine *e, bearer_transfer *t);
BEARER_INTERNAL void bearer_engine_act(bearer_engine *e, curl_socket_t fd, int mask);
BEARER_INTERNAL void bearer_engine_refuse(bearer_engine *e, CURL *easy);

/* }====================================================== */

/* {====================================================== on nginx's loop (engine_nginx.c) */

typedef struct bearer_nginx bearer_nginx;

BEARER_INTERNAL const char *bearer_nginx_unavailable(void);
BEARER_INTERNAL bearer_nginx *bearer_nginx_attach(bearer_engine *e, CURLM *multi);
BEARER_INTERNAL void bearer_nginx_free(bearer_nginx *n);
BEARER_INTERNAL void *bearer_nginx_waiter_new(void);
BEARER_INTERNAL void bearer_nginx_waiter_wake(void *w);
BEARER_INTERNAL void bearer_nginx_waiter_free(void *w);

/* }====================================================== */

/* {====================================================== errors (error.c) */

BEARER_INTERNAL void bearer_error_open(lua_State *L);
/* Pushes a new error object {kind=, code=, message=}. */
BEARER_INTERNAL void bearer_error_push(lua_State *L, const char *kind,
                                       const char *code, const char *fmt, ...);

/* }====================================================== */

/* {====================================================== crypto (crypto.c) */

BEARER_INTERNAL void bearer_crypto_open(lua_State *L);
/* Lower-case hex of n bytes into out (2n+1 bytes, NUL-terminated). */
BEARER_INTERNAL void bearer_hex(const unsigned char *in, size_t n, char *out);
BEARER_INTERNAL void bearer_cleanse(void *p, size_t n);

/* }====================================================== */

/* {====================================================== redaction (redact.c) */

/*
** The one path every trace line and every server-supplied error text takes
** before it reaches Lua: values of credential-bearing headers become
** "[REDACTED]" and so does any occurrence of the secret's bytes. Pushes the
** redacted copy of s[0..len) onto the stack.
*/
BEARER_INTERNAL void bearer_redact_push(lua_State *L, const char *s, size_t len,
                                        bearer_secret secret);
BEARER_INTERNAL void bearer_redact_open(lua_State *L);

/* }====================================================== */

/* {====================================================== vault (vault.c) */

/* Borrows entry id's bytes until bearer_vault_release; 0 if there is none. */
BEARER_INTERNAL int bearer_vault_acquire(size_t id, bearer_secret *out);
BEARER_INTERNAL void bearer_vault_release(size_t id);
/* Puts k's bytes in the vault (a client's share_key); the id, 0 when out
** of memory. */
BEARER_INTERNAL size_t bearer_vault_put(const bearer_key *k);

/* }====================================================== */

/* {====================================================== JSON (json.c) */

/* core.json_decode: the reader behind bearer.json.decode. */
BEARER_INTERNAL void bearer_json_open(lua_State *L);

/* }====================================================== */

/* {====================================================== process (core.c) */

/* This process's pid, kept across fork() without a system call per read. */
BEARER_INTERNAL pid_t bearer_pid(void);

/* }====================================================== */

/* {====================================================== redis (redis.c) */

/* core.redis (whether hiredis is built in) and, with it, its functions. */
BEARER_INTERNAL void bearer_redis_open(lua_State *L);

/* }====================================================== */

#endif
