/*
** key.c: bearer.Key, a secret that lives in C memory the key owns.
**
** The secret is copied once into pages of its own (mmap), kept out of core
** dumps (MADV_DONTDUMP) and, where the limits allow, out of swap (mlock).
** It becomes a Lua string only through key:reveal(). close, __gc and
** __close share one closer that wipes the pages before unmapping them.
**
** Schemes are data from the Lua layer (each API module declares its own):
** a name, a literal prefix, an alphabet for the rest, an exact length, or
** the JWT form. This file knows how to check such a rule, not which
** schemes exist.
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

#define KEY_NAME_MAX 23        /* scheme names and prefixes: short words */

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

/* A scheme's rule, read from its Lua table (see key_read_rule). */
typedef struct key_rule {
  char name[KEY_NAME_MAX + 1];
  char prefix[KEY_NAME_MAX + 1];   /* literal start; "" for none */
  int (*allowed)(unsigned char);   /* the rest's characters; NULL: any printable */
  size_t length;                   /* exact length of the rest; 0: one or more */
  int jwt;                         /* three base64url parts, a JSON payload */
  char expect[96];                 /* the rule in words, for the error message */
} key_rule;

static const struct { const char *name; int (*allowed)(unsigned char); } key_alphabets[] = {
  {"alnum", key_is_alnum}, {"urlsafe", key_is_urlsafe}, {"b64url", key_is_b64url},
  {"b64token", key_is_b64token}, {NULL, NULL}
};

/* A short string field of the rule table at idx into out; "" when absent. */
static void key_rule_string(lua_State *L, int idx, const char *field, char *out, size_t max,
                            int arg) {
  lua_getfield(L, idx, field);
  size_t n = 0;
  const char *v = lua_tolstring(L, -1, &n);
  if (lua_isnil(L, -1)) v = "";
  else if (lua_type(L, -1) != LUA_TSTRING || n > max)
    luaL_argerror(L, arg, lua_pushfstring(L, "scheme field '%s' must be a string of at most %d bytes",
                                          field, (int)max));
  memcpy(out, v, n);
  out[n] = '\0';
  lua_pop(L, 1);
}

/* Reads the rule table at idx (argument arg, for errors) into r:
** { name =, prefix =, alphabet =, length =, jwt =, expect = }. */
static void key_read_rule(lua_State *L, int idx, int arg, key_rule *r) {
  idx = lua_absindex(L, idx);
  memset(r, 0, sizeof(*r));
  if (lua_type(L, idx) != LUA_TTABLE) luaL_argerror(L, arg, "scheme must be a table");
  key_rule_string(L, idx, "name", r->name, KEY_NAME_MAX, arg);
  if (r->name[0] == '\0') luaL_argerror(L, arg, "scheme needs a name");
  key_rule_string(L, idx, "prefix", r->prefix, KEY_NAME_MAX, arg);
  key_rule_string(L, idx, "expect", r->expect, sizeof(r->expect) - 1, arg);
  lua_getfield(L, idx, "alphabet");
  if (!lua_isnil(L, -1)) {
    const char *a = lua_tostring(L, -1);
    for (int i = 0; a != NULL && key_alphabets[i].name != NULL; i++)
      if (strcmp(a, key_alphabets[i].name) == 0) r->allowed = key_alphabets[i].allowed;
    if (r->allowed == NULL)
      luaL_argerror(L, arg, "scheme alphabet must be alnum, urlsafe, b64url or b64token");
  }
  lua_pop(L, 1);
  lua_getfield(L, idx, "length");
  if (!lua_isnil(L, -1)) {
    lua_Number len = lua_tonumber(L, -1);
    if (!lua_isnumber(L, -1) || len < 1 || len > KEY_MAX_BYTES || len != (lua_Number)(size_t)len)
      luaL_argerror(L, arg, "scheme length must be a positive integer");
    r->length = (size_t)len;
  }
  lua_pop(L, 1);
  lua_getfield(L, idx, "jwt");
  r->jwt = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (r->expect[0] == '\0')
    snprintf(r->expect, sizeof r->expect, "a %s key%s%s%s", r->name,
             r->prefix[0] ? " starting '" : "", r->prefix, r->prefix[0] ? "'" : "");
}

/* Whether the secret looks like rule r's (its prefix; a JWT's dots). */
static int key_rule_matches(const key_rule *r, const unsigned char *s, size_t n) {
  if (r->prefix[0] == '\0' || !key_starts(s, n, r->prefix)) return 0;
  return !r->jwt || memchr(s, '.', n) != NULL;
}

/* Shows the literal prefix plus 4 characters, but only where at least 16
** characters of the secret stay hidden. */
static void key_set_prefix(bearer_key *k, const char *literal) {
  size_t m = strlen(literal);
  size_t show = (k->len >= m + 4 + 16) ? m + 4 : m;
  memcpy(k->prefix, k->secret, show);
  k->prefix[show] = '\0';
}

/*
** Checks k->secret against rule r (NULL: a plain token, only the header
** rules); 0 on success, else -1 with a reason in why. A reason names the
** rule that failed and never the secret's bytes.
*/
static int key_validate(bearer_key *k, const key_rule *r, char *why, size_t whylen) {
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
  if (r == NULL) return 0;
  if (r->jwt) return key_check_jwt(k, why, whylen);
  size_t m = strlen(r->prefix);
  if (n <= m || !key_starts(s, n, r->prefix)
      || (r->allowed != NULL && !key_all(s + m, n - m, r->allowed))
      || (r->length != 0 && n - m != r->length)) {
    snprintf(why, whylen, "expected %s (got %zu characters)", r->expect, n);
    return -1;
  }
  if (m > 0) key_set_prefix(k, r->prefix);
  return 0;
}

/* The rule opts (at idx) asks for: opts.scheme, a rule table; else the
** first of the array opts.detect whose prefix the secret has; else none
** (a plain token). Reads into *r; returns r or NULL. */
static const key_rule *key_pick_rule(lua_State *L, int idx, const bearer_key *k, key_rule *r) {
  if (lua_isnoneornil(L, idx)) return NULL;
  lua_getfield(L, idx, "scheme");
  if (!lua_isnil(L, -1)) {
    key_read_rule(L, -1, idx, r);
    lua_pop(L, 1);
    return r;
  }
  lua_pop(L, 1);
  lua_getfield(L, idx, "detect");
  const key_rule *found = NULL;
  if (lua_type(L, -1) == LUA_TTABLE) {
    for (lua_Integer i = 1; found == NULL; i++) {
      lua_rawgeti(L, -1, i);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        break;
      }
      key_read_rule(L, -1, idx, r);
      if (key_rule_matches(r, k->secret, k->len)) found = r;
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, -1)) {
    luaL_argerror(L, idx, "option 'detect' must be an array of schemes");
  }
  lua_pop(L, 1);
  return found;
}

/* Checks the options table at idx before any secret is copied. */
static void key_check_opts(lua_State *L, int idx) {
  if (!lua_isnoneornil(L, idx)) luaL_checktype(L, idx, LUA_TTABLE);
}

/*
** Validates the filled key on top of the stack. Returns 1 with the key
** there, or 0 with an error object in its place (the key is wiped first).
*/
static int key_finish(lua_State *L, bearer_key *k, int opts, const char *origin) {
  char why[160];
  key_rule rule;
  const key_rule *r = key_pick_rule(L, opts, k, &rule);
  snprintf(k->scheme, sizeof k->scheme, "%s", r != NULL ? r->name : "token");
  if (key_validate(k, r, why, sizeof why) == 0) return 1;
  key_wipe(k);
  lua_pop(L, 1);
  bearer_error_push(L, "config", "invalid_key", "invalid %s key%s%s: %s",
                    k->scheme, origin ? " from " : "", origin ? origin : "", why);
  return 0;
}

/* }====================================================== */

/* {====================================================== constructors */

/* core.key_new(secret [, {scheme = rule} | {detect = {rule, ...}}]) -> key;
** raises an error object when the secret breaks its scheme's rule (the
** caller handed it to us directly). bearer.key (init.lua) finds the rules. */
static int key_new(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  key_check_opts(L, 2);
  if (n > KEY_MAX_BYTES) return luaL_argerror(L, 1, "secret too long");
  bearer_key *k = key_push_new(L);
  if (key_alloc(k, n) != 0) return luaL_error(L, "cannot map memory for a key");
  memcpy(k->secret, s, n);
  k->len = n;
  if (!key_finish(L, k, 2, NULL)) return lua_error(L);
  return 1;
}

/* bearer.key.from_env(VAR [, opts]) -> key | nil, err. getenv's bytes are
** copied straight into the key's pages: no Lua string of the secret. */
static int key_from_env(lua_State *L) {
  const char *var = luaL_checkstring(L, 1);
  key_check_opts(L, 2);
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
  int ok = key_finish(L, k, 2, lua_tostring(L, -2));
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
  key_check_opts(L, 2);
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
  int ok = key_finish(L, k, 2, lua_tostring(L, -2));
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
    lua_pushfstring(L, "bearer.Key(%s %s...)", k->scheme, k->prefix);
  else lua_pushfstring(L, "bearer.Key(%s)", k->scheme);
  return 1;
}

static int key_prefix(lua_State *L) {
  lua_pushstring(L, bearer_key_check(L, 1)->prefix);
  return 1;
}

static int key_scheme(lua_State *L) {
  lua_pushstring(L, bearer_key_check(L, 1)->scheme);
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
