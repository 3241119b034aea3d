/*
** key.c: bearer.Key, a secret that lives in C memory the key owns.
**
** The secret is copied once into pages of its own (mmap), kept out of core
** dumps (MADV_DONTDUMP) and, where the limits allow, out of swap (mlock).
** It becomes a Lua string only through key:reveal(). close, __gc and
** __close share one closer that wipes the pages before unmapping them.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "bearer.h"

#define KEY_MAX_BYTES 65536   /* a bearer token this long is a wrong file */

static const char *const key_scheme_names[] = {
  "overten", "optiverse", "firebase", "webhook", "token", NULL
};

/* {====================================================== memory */

static void key_wipe(bearer_key *k) {
  if (k->secret != NULL) {
    bearer_cleanse(k->secret, k->map_len);
    munlock(k->secret, k->map_len);
    munmap(k->secret, k->map_len);
    k->secret = NULL;
    k->len = 0;
    k->map_len = 0;
  }
}

/* Maps pages for n secret bytes; 0 on success. The key stays closed
** (secret == NULL) on failure, so __gc has nothing to undo. */
static int key_alloc(bearer_key *k, size_t n) {
  long page = sysconf(_SC_PAGESIZE);
  size_t len = ((n + 1 + (size_t)page - 1) / (size_t)page) * (size_t)page;
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return -1;
#ifdef MADV_DONTDUMP
  madvise(p, len, MADV_DONTDUMP);      /* best effort: core dumps */
#endif
  mlock(p, len);                       /* best effort: RLIMIT_MEMLOCK may say no */
  k->secret = p;
  k->map_len = len;
  k->len = 0;
  return 0;
}

/* A new closed key userdata on the stack; the closer is armed from here on. */
static bearer_key *key_push_new(lua_State *L) {
  bearer_key *k = lua_newuserdatauv(L, sizeof(*k), 0);
  memset(k, 0, sizeof(*k));
  k->expires_at = -1;
  luaL_setmetatable(L, BEARER_KEY_MT);
  return k;
}

/* }====================================================== */

/* {====================================================== validation */

static int key_is_alnum(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* RFC 3986 unreserved: what "URL-safe token" means for Optiverse keys. */
static int key_is_urlsafe(unsigned char c) {
  return key_is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static int key_is_b64url(unsigned char c) {
  return key_is_alnum(c) || c == '-' || c == '_';
}

/* RFC 6750 b64token: webhook secrets are often standard base64. */
static int key_is_b64token(unsigned char c) {
  return key_is_urlsafe(c) || c == '+' || c == '/' || c == '=';
}

static int key_all(const unsigned char *s, size_t n, int (*ok)(unsigned char)) {
  for (size_t i = 0; i < n; i++)
    if (!ok(s[i])) return 0;
  return 1;
}

static int key_starts(const unsigned char *s, size_t n, const char *pre) {
  size_t m = strlen(pre);
  return n >= m && memcmp(s, pre, m) == 0;
}

static int key_b64url_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

/* Decodes unpadded base64url; out holds at least n*3/4+1 bytes. */
static size_t key_b64url_decode(const unsigned char *in, size_t n, unsigned char *out) {
  unsigned acc = 0;
  int bits = 0;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    acc = (acc << 6) | (unsigned)key_b64url_value(in[i]);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
    }
  }
  return o;
}

/* {------------------------------------------------------ JWT claims
** Just enough JSON to find the top-level "exp" of a JWT payload without
** trusting it: strings with escapes, nested values skipped by depth. */

static const char *key_json_ws(const char *p, const char *e) {
  while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

static const char *key_json_string_end(const char *p, const char *e) {
  for (p++; p < e; p++) {
    if (*p == '\\') p++;
    else if (*p == '"') return p + 1;
  }
  return NULL;
}

static const char *key_json_skip_value(const char *p, const char *e) {
  int depth = 0;
  while (p < e) {
    if (*p == '"') {
      p = key_json_string_end(p, e);
      if (p == NULL) return NULL;
      if (depth == 0) return p;
      continue;
    }
    if (*p == '{' || *p == '[') depth++;
    else if (*p == '}' || *p == ']') {
      if (depth == 0) return p;        /* end of the enclosing object */
      if (--depth == 0) return p + 1;
    } else if (depth == 0 && (*p == ',')) return p;
    p++;
  }
  return depth == 0 ? p : NULL;
}

/* 0 and *exp set (or left at -1) when the payload is a JSON object. */
static int key_jwt_exp(const char *p, const char *e, double *exp) {
  p = key_json_ws(p, e);
  if (p >= e || *p != '{') return -1;
  p = key_json_ws(p + 1, e);
  while (p < e && *p != '}') {
    if (*p != '"') return -1;
    const char *name = p + 1;
    const char *end = key_json_string_end(p, e);
    if (end == NULL) return -1;
    int is_exp = (end - name - 1 == 3) && memcmp(name, "exp", 3) == 0;
    p = key_json_ws(end, e);
    if (p >= e || *p != ':') return -1;
    p = key_json_ws(p + 1, e);
    if (is_exp && p < e && (*p == '-' || (*p >= '0' && *p <= '9'))) {
      char num[32];
      size_t n = 0;
      while (p + n < e && n < sizeof(num) - 1 && strchr("+-.eE0123456789", p[n])) {
        num[n] = p[n];
        n++;
      }
      num[n] = '\0';
      *exp = strtod(num, NULL);
    }
    p = key_json_skip_value(p, e);
    if (p == NULL) return -1;
    p = key_json_ws(p, e);
    if (p < e && *p == ',') p = key_json_ws(p + 1, e);
  }
  return (p < e) ? 0 : -1;
}

/* }------------------------------------------------------ */

static int key_check_jwt(bearer_key *k, char *why, size_t whylen) {
  const unsigned char *s = k->secret;
  const unsigned char *dot1 = memchr(s, '.', k->len);
  const unsigned char *dot2 = dot1 ? memchr(dot1 + 1, '.', k->len - (size_t)(dot1 + 1 - s)) : NULL;
  if (dot2 == NULL || dot1 == s || dot2 == dot1 + 1 || dot2 + 1 == s + k->len
      || !key_all(s, (size_t)(dot1 - s), key_is_b64url)
      || !key_all(dot1 + 1, (size_t)(dot2 - dot1 - 1), key_is_b64url)
      || !key_all(dot2 + 1, k->len - (size_t)(dot2 + 1 - s), key_is_b64url)) {
    snprintf(why, whylen, "expected a JWT: three non-empty base64url parts joined by '.'");
    return -1;
  }
  /* The payload is not secret by itself, but it is decoded into scratch
  ** memory we wipe, since it was part of the credential. */
  size_t n = (size_t)(dot2 - dot1 - 1);
  unsigned char *buf = malloc(n * 3 / 4 + 2);
  if (buf == NULL) {
    snprintf(why, whylen, "out of memory");
    return -1;
  }
  size_t m = key_b64url_decode(dot1 + 1, n, buf);
  int rc = key_jwt_exp((const char *)buf, (const char *)buf + m, &k->expires_at);
  bearer_cleanse(buf, n * 3 / 4 + 2);
  free(buf);
  if (rc != 0) {
    snprintf(why, whylen, "the JWT payload is not a JSON object");
    return -1;
  }
  return 0;
}

static bearer_scheme key_detect(const unsigned char *s, size_t n) {
  if (key_starts(s, n, "sk_live_")) return BEARER_SCHEME_OVERTEN;
  if (key_starts(s, n, "optiuser_v1_")) return BEARER_SCHEME_OPTIVERSE;
  if (key_starts(s, n, "whsec_")) return BEARER_SCHEME_WEBHOOK;
  if (key_starts(s, n, "eyJ") && memchr(s, '.', n) != NULL) return BEARER_SCHEME_FIREBASE;
  return BEARER_SCHEME_TOKEN;
}

/* The schemes made of a literal prefix and a run of allowed characters:
** exactly `rest` of them, or one or more when rest is 0. */
typedef struct key_rule {
  const char *literal;
  size_t rest;
  int (*allowed)(unsigned char);
  const char *expect;      /* the rule in words, for the error message */
} key_rule;

static const key_rule key_rules[] = {
  [BEARER_SCHEME_OVERTEN] = { "sk_live_", 28, key_is_alnum,
                              "'sk_live_' followed by exactly 28 letters or digits" },
  [BEARER_SCHEME_OPTIVERSE] = { "optiuser_v1_", 0, key_is_urlsafe,
                                "'optiuser_v1_' followed by URL-safe characters" },
  [BEARER_SCHEME_WEBHOOK] = { "whsec_", 0, key_is_b64token,
                              "'whsec_' followed by token characters" },
};

/* Shows the literal prefix plus 4 characters, but only where at least 16
** characters of the secret stay hidden. */
static void key_set_prefix(bearer_key *k, const char *literal) {
  size_t m = strlen(literal);
  size_t show = (k->len >= m + 4 + 16) ? m + 4 : m;
  memcpy(k->prefix, k->secret, show);
  k->prefix[show] = '\0';
}

/*
** Checks k->secret against its scheme; 0 on success, else -1 with a reason
** in why. A reason names the rule that failed and never the secret's bytes.
*/
static int key_validate(bearer_key *k, char *why, size_t whylen) {
  const unsigned char *s = k->secret;
  size_t n = k->len;
  if (n == 0) {
    snprintf(why, whylen, "the secret is empty");
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    if (s[i] <= 0x20 || s[i] >= 0x7f) {
      snprintf(why, whylen, "the secret holds a space, control or non-ASCII "
               "character at byte %zu (refused: it would end up in a header)", i + 1);
      return -1;
    }
  }
  if (k->scheme == BEARER_SCHEME_FIREBASE) return key_check_jwt(k, why, whylen);
  if (k->scheme == BEARER_SCHEME_TOKEN) return 0;
  const key_rule *r = &key_rules[k->scheme];
  size_t m = strlen(r->literal);
  if (n <= m || !key_starts(s, n, r->literal) || !key_all(s + m, n - m, r->allowed)
      || (r->rest != 0 && n - m != r->rest)) {
    snprintf(why, whylen, "expected %s (got %zu characters)", r->expect, n);
    return -1;
  }
  key_set_prefix(k, r->literal);
  return 0;
}

/* The scheme named by opts.scheme at idx, or -1 to detect it. */
static int key_opt_scheme(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return -1;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "scheme");
  int scheme = -1;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_argerror(L, idx, "option 'scheme' must be a string");
    scheme = luaL_checkoption(L, -1, NULL, key_scheme_names);
  }
  lua_pop(L, 1);
  return scheme;
}

/*
** Validates the filled key on top of the stack. Returns 1 with the key
** there, or 0 with an error object in its place (the key is wiped first).
*/
static int key_finish(lua_State *L, bearer_key *k, int scheme, const char *origin) {
  char why[160];
  k->scheme = scheme >= 0 ? (bearer_scheme)scheme : key_detect(k->secret, k->len);
  if (key_validate(k, why, sizeof why) == 0) return 1;
  key_wipe(k);
  lua_pop(L, 1);
  bearer_error_push(L, "config", "invalid_key", "invalid %s key%s%s: %s",
                    key_scheme_names[k->scheme], origin ? " from " : "",
                    origin ? origin : "", why);
  return 0;
}

/* }====================================================== */

/* {====================================================== constructors */

/* bearer.key(secret [, {scheme=}]) -> key; raises an error object when the
** secret breaks its scheme's rules (the caller handed it to us directly). */
static int key_new(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  int scheme = key_opt_scheme(L, 2);
  if (n > KEY_MAX_BYTES) return luaL_argerror(L, 1, "secret too long");
  bearer_key *k = key_push_new(L);
  if (key_alloc(k, n) != 0) return luaL_error(L, "cannot map memory for a key");
  memcpy(k->secret, s, n);
  k->len = n;
  if (!key_finish(L, k, scheme, NULL)) return lua_error(L);
  return 1;
}

/* bearer.key.from_env(VAR [, opts]) -> key | nil, err. getenv's bytes are
** copied straight into the key's pages: no Lua string of the secret. */
static int key_from_env(lua_State *L) {
  const char *var = luaL_checkstring(L, 1);
  int scheme = key_opt_scheme(L, 2);
  const char *v = getenv(var);
  if (v == NULL || *v == '\0') {
    luaL_pushfail(L);
    bearer_error_push(L, "config", "missing_key",
                      "environment variable %s is not set or empty", var);
    return 2;
  }
  size_t n = strlen(v);
  if (n > KEY_MAX_BYTES) {
    luaL_pushfail(L);
    bearer_error_push(L, "config", "invalid_key", "environment variable %s is too long", var);
    return 2;
  }
  bearer_key *k = key_push_new(L);
  if (key_alloc(k, n) != 0) return luaL_error(L, "cannot map memory for a key");
  memcpy(k->secret, v, n);
  k->len = n;
  lua_pushfstring(L, "environment variable %s", var);
  lua_insert(L, -2);
  int ok = key_finish(L, k, scheme, lua_tostring(L, -2));
  lua_remove(L, -2);
  if (ok) return 1;
  luaL_pushfail(L);
  lua_insert(L, -2);
  return 2;
}

/* Reads the whole file at fd into the key's pages; 0 or an errno. */
static int key_read_fd(int fd, bearer_key *k, size_t size) {
  while (k->len < size) {
    ssize_t r = read(fd, k->secret + k->len, size - k->len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    if (r == 0) break;
    k->len += (size_t)r;
  }
  return 0;
}

/* bearer.key.from_file(PATH [, opts]) -> key | nil, err. Refuses a file
** that group or others may read: such a secret is already exposed. */
static int key_from_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int scheme = key_opt_scheme(L, 2);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  struct stat st;
  const char *problem = NULL;
  int err = 0;
  if (fd < 0) err = errno;
  else if (fstat(fd, &st) != 0) err = errno;
  else if (!S_ISREG(st.st_mode)) problem = "is not a regular file";
  else if (st.st_mode & (S_IRGRP | S_IROTH | S_IWGRP | S_IWOTH))
    problem = "is readable or writable by group or others (chmod 600 it)";
  else if (st.st_size > KEY_MAX_BYTES) problem = "is too large for a key";
  if (err != 0 || problem != NULL) {
    if (fd >= 0) close(fd);
    luaL_pushfail(L);
    if (err != 0)
      bearer_error_push(L, "config", "key_file", "cannot read key file %s: %s", path, strerror(err));
    else
      bearer_error_push(L, "config", "key_file", "key file %s %s", path, problem);
    return 2;
  }
  bearer_key *k = key_push_new(L);
  if (key_alloc(k, (size_t)st.st_size) != 0) {
    close(fd);
    return luaL_error(L, "cannot map memory for a key");
  }
  err = key_read_fd(fd, k, (size_t)st.st_size);
  close(fd);
  if (err != 0) {
    key_wipe(k);
    luaL_pushfail(L);
    bearer_error_push(L, "config", "key_file", "cannot read key file %s: %s", path, strerror(err));
    return 2;
  }
  /* One trailing newline (LF or CRLF) is how editors and echo end files. */
  if (k->len > 0 && k->secret[k->len - 1] == '\n') k->len--;
  if (k->len > 0 && k->secret[k->len - 1] == '\r') k->len--;
  lua_pushfstring(L, "file %s", path);
  lua_insert(L, -2);
  int ok = key_finish(L, k, scheme, lua_tostring(L, -2));
  lua_remove(L, -2);
  if (ok) return 1;
  luaL_pushfail(L);
  lua_insert(L, -2);
  return 2;
}

/* }====================================================== */

/* {====================================================== methods */

BEARER_INTERNAL bearer_key *bearer_key_test(lua_State *L, int idx) {
  bearer_key *k = luaL_testudata(L, idx, BEARER_KEY_MT);
  return (k != NULL && k->secret != NULL) ? k : NULL;
}

BEARER_INTERNAL bearer_secret bearer_key_secret(const bearer_key *k) {
  bearer_secret s = { NULL, 0 };
  if (k != NULL && k->secret != NULL) {
    s.bytes = k->secret;
    s.len = k->len;
  }
  return s;
}

BEARER_INTERNAL bearer_key *bearer_key_check(lua_State *L, int idx) {
  bearer_key *k = luaL_checkudata(L, idx, BEARER_KEY_MT);
  if (k->secret == NULL) luaL_error(L, "attempt to use a closed bearer.Key");
  return k;
}

static int key_close(lua_State *L) {
  key_wipe(luaL_checkudata(L, 1, BEARER_KEY_MT));
  return 0;
}

static int key_tostring(lua_State *L) {
  bearer_key *k = luaL_checkudata(L, 1, BEARER_KEY_MT);
  if (k->secret == NULL) lua_pushliteral(L, "bearer.Key(closed)");
  else if (k->prefix[0] != '\0')
    lua_pushfstring(L, "bearer.Key(%s %s...)", key_scheme_names[k->scheme], k->prefix);
  else lua_pushfstring(L, "bearer.Key(%s)", key_scheme_names[k->scheme]);
  return 1;
}

static int key_prefix(lua_State *L) {
  lua_pushstring(L, bearer_key_check(L, 1)->prefix);
  return 1;
}

static int key_scheme(lua_State *L) {
  lua_pushstring(L, key_scheme_names[bearer_key_check(L, 1)->scheme]);
  return 1;
}

static int key_reveal(lua_State *L) {
  bearer_key *k = bearer_key_check(L, 1);
  lua_pushlstring(L, (const char *)k->secret, k->len);
  return 1;
}

static int key_fingerprint(lua_State *L) {
  bearer_key *k = bearer_key_check(L, 1);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  if (!EVP_Digest(k->secret, k->len, md, &mdlen, EVP_sha256(), NULL))
    return luaL_error(L, "SHA-256 failed");
  bearer_hex(md, mdlen, hex);
  lua_pushstring(L, hex);
  return 1;
}

static int key_expires_at(lua_State *L) {
  bearer_key *k = bearer_key_check(L, 1);
  if (k->expires_at < 0) luaL_pushfail(L);
  else lua_pushnumber(L, k->expires_at);
  return 1;
}

/* core.key_is(x) -> whether x is a bearer.Key (open or closed) */
static int key_is(lua_State *L) {
  lua_pushboolean(L, luaL_testudata(L, 1, BEARER_KEY_MT) != NULL);
  return 1;
}

static int key_is_closed(lua_State *L) {
  lua_pushboolean(L, ((bearer_key *)luaL_checkudata(L, 1, BEARER_KEY_MT))->secret == NULL);
  return 1;
}

/* Constant time over the secret's bytes; lengths are not secret. */
/* __eq runs for any pair of userdata with a key among them (5.4) and must
** answer, not raise: a closed key or another type is simply not equal. */
static int key_eq(lua_State *L) {
  bearer_key *a = bearer_key_test(L, 1);
  bearer_key *b = bearer_key_test(L, 2);
  lua_pushboolean(L, a != NULL && b != NULL && a->len == b->len
                     && CRYPTO_memcmp(a->secret, b->secret, a->len) == 0);
  return 1;
}

/* }====================================================== */

static const luaL_Reg key_methods[] = {
  {"close", key_close},
  {"prefix", key_prefix},
  {"scheme", key_scheme},
  {"reveal", key_reveal},
  {"fingerprint", key_fingerprint},
  {"expires_at", key_expires_at},
  {"is_closed", key_is_closed},
  {NULL, NULL}
};

static const luaL_Reg key_meta[] = {
  {"__gc", key_close},
  {"__close", key_close},
  {"__tostring", key_tostring},
  {"__eq", key_eq},
  {NULL, NULL}
};

static const luaL_Reg key_functions[] = {
  {"key_new", key_new},
  {"key_from_env", key_from_env},
  {"key_from_file", key_from_file},
  {"key_is", key_is},
  {NULL, NULL}
};

/* Adds the key functions to the core table on top of the stack. */
BEARER_INTERNAL void bearer_key_open(lua_State *L) {
  luaL_newmetatable(L, BEARER_KEY_MT);
  luaL_setfuncs(L, key_meta, 0);
  luaL_newlib(L, key_methods);
  lua_setfield(L, -2, "__index");   /* metatable.__index = method table */
  lua_pushliteral(L, "bearer.Key is locked");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
  luaL_setfuncs(L, key_functions, 0);
}
