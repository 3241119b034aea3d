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

BEARER_INTERNAL void bearer_vault_open(lua_State *L);
/* Borrows entry id's bytes until bearer_vault_release; 0 if there is none. */
BEARER_INTERNAL int bearer_vault_acquire(size_t id, bearer_secret *out);
BEARER_INTERNAL void bearer_vault_release(size_t id);
/* core.vault_put(key) -> id */
BEARER_INTERNAL int bearer_vault_put_lua(lua_State *L);

/* }====================================================== */

#endif
