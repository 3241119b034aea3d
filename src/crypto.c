/*
** crypto.c: SHA-256, HMAC-SHA256 and constant-time comparison, all from
** OpenSSL's libcrypto (libcurl already pulls it in). A bearer.Key may be
** used as an HMAC key without its secret becoming a Lua string.
*/
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <strings.h>

#include "bearer.h"

BEARER_INTERNAL void bearer_hex(const unsigned char *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

BEARER_INTERNAL void bearer_cleanse(void *p, size_t n) {
  OPENSSL_cleanse(p, n);
}

/* core.sha256_hex(data) -> lower-case hex digest */
static int crypto_sha256_hex(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  if (!EVP_Digest(s, n, md, &mdlen, EVP_sha256(), NULL))
    return luaL_error(L, "SHA-256 failed");
  bearer_hex(md, mdlen, hex);
  lua_pushstring(L, hex);
  return 1;
}

/* The HMAC secret at idx: an open bearer.Key's bytes, or a string's. */
static const void *crypto_secret(lua_State *L, int idx, size_t *len) {
  bearer_key *k = bearer_key_test(L, idx);
  if (k != NULL) {
    *len = k->len;
    return k->secret;
  }
  if (lua_type(L, idx) == LUA_TSTRING) return lua_tolstring(L, idx, len);
  luaL_argerror(L, idx, "bearer.Key (open) or string expected");
  return NULL;
}

/* HMAC-SHA256 of data as lower-case hex into hex (65 bytes). */
static void crypto_hmac_hex(lua_State *L, const void *secret, size_t secret_len,
                            const char *data, size_t n, char *hex) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)data, n,
           md, &mdlen) == NULL)
    luaL_error(L, "HMAC-SHA256 failed");
  bearer_hex(md, mdlen, hex);
}

/* core.hmac_sha256_hex(key, data) -> lower-case hex; key is a bearer.Key or
** a string. */
static int crypto_hmac_sha256_hex(lua_State *L) {
  size_t secret_len, n;
  const void *secret = crypto_secret(L, 1, &secret_len);
  const char *data = luaL_checklstring(L, 2, &n);
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  crypto_hmac_hex(L, secret, secret_len, data, n, hex);
  lua_pushstring(L, hex);
  return 1;
}

/* {====================================================== webhook signatures
** Overten signs "{timestamp}.{raw_body}" with HMAC-SHA256 under the
** secret as given (whsec_ prefix included) and sends X-Overten-Signature:
** sha256=<hex> and X-Overten-Timestamp: <unix seconds>. The separator is
** inferred from the docs (cut off there); README says so. */

/* Pushes "{timestamp}.{body}" */
static void crypto_signed_string(lua_State *L, const char *ts, size_t tn,
                                 const char *body, size_t bn) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, ts, tn);
  luaL_addchar(&b, '.');
  luaL_addlstring(&b, body, bn);
  luaL_pushresult(&b);
}

/* core.webhook_sign(secret, timestamp, body) -> "sha256=<hex>" */
static int crypto_webhook_sign(lua_State *L) {
  size_t secret_len, tn, bn, n;
  const void *secret = crypto_secret(L, 1, &secret_len);
  const char *ts = luaL_checklstring(L, 2, &tn);
  const char *body = luaL_checklstring(L, 3, &bn);
  crypto_signed_string(L, ts, tn, body, bn);
  const char *msg = lua_tolstring(L, -1, &n);
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  crypto_hmac_hex(L, secret, secret_len, msg, n, hex);
  lua_pushfstring(L, "sha256=%s", hex);
  return 1;
}

static int crypto_verify_fail(lua_State *L, const char *code, const char *msg) {
  luaL_pushfail(L);
  bearer_error_push(L, "signature", code, "%s", msg);
  return 2;
}

/* Whether s[0..n) is one "sha256=<64 hex>" entry; its hex lower-cased into out. */
static int crypto_parse_entry(const char *s, size_t n, char *out) {
  while (n > 0 && isspace((unsigned char)*s)) { s++; n--; }
  while (n > 0 && isspace((unsigned char)s[n - 1])) n--;
  if (n != 7 + 64 || strncasecmp(s, "sha256=", 7) != 0) return 0;
  for (size_t i = 0; i < 64; i++) {
    unsigned char ch = (unsigned char)s[7 + i];
    if (!isxdigit(ch)) return 0;
    out[i] = (char)tolower(ch);
  }
  out[64] = '\0';
  return 1;
}

/*
** core.webhook_verify(secret, body, signature, timestamp, tolerance, now)
**   -> true | nil, err (kind "signature"; code malformed, bad_signature or
**      stale_timestamp). The signature header may list several entries
**      separated by commas (a secret being rotated); any match is enough.
*/
static int crypto_webhook_verify(lua_State *L) {
  size_t secret_len, bn, sn = 0, tn = 0;
  const void *secret = crypto_secret(L, 1, &secret_len);
  const char *body = luaL_checklstring(L, 2, &bn);
  const char *sig = lua_type(L, 3) == LUA_TSTRING ? lua_tolstring(L, 3, &sn) : NULL;
  const char *ts = lua_type(L, 4) == LUA_TSTRING ? lua_tolstring(L, 4, &tn) : NULL;
  lua_Number tolerance = luaL_checknumber(L, 5);
  lua_Number now = luaL_checknumber(L, 6);
  if (sig == NULL || sn == 0) return crypto_verify_fail(L, "malformed", "no signature header");
  if (ts == NULL || tn == 0 || tn > 15 || strspn(ts, "0123456789") != tn)
    return crypto_verify_fail(L, "malformed", "timestamp header missing or not unix seconds");

  crypto_signed_string(L, ts, tn, body, bn);
  size_t mn;
  const char *msg = lua_tolstring(L, -1, &mn);
  char want[2 * EVP_MAX_MD_SIZE + 1], got[65];
  crypto_hmac_hex(L, secret, secret_len, msg, mn, want);
  int entries = 0, match = 0;
  const char *p = sig, *end = sig + sn;
  while (p < end) {
    const char *comma = memchr(p, ',', (size_t)(end - p));
    const char *stop = comma ? comma : end;
    if (crypto_parse_entry(p, (size_t)(stop - p), got)) {
      entries++;
      match |= CRYPTO_memcmp(got, want, 64) == 0;   /* every entry is compared */
    }
    p = stop + 1;
  }
  bearer_cleanse(want, sizeof want);
  if (entries == 0) return crypto_verify_fail(L, "malformed", "signature is not sha256=<hex>");
  if (!match) return crypto_verify_fail(L, "bad_signature", "signature does not match the body");
  lua_Number age = now - strtod(ts, NULL);
  if (age > tolerance)
    return crypto_verify_fail(L, "stale_timestamp", "timestamp is older than the tolerance");
  if (-age > tolerance)
    return crypto_verify_fail(L, "stale_timestamp", "timestamp is too far in the future");
  lua_pushboolean(L, 1);
  return 1;
}

/* }====================================================== */

/* core.constant_time_equal(a, b) -> boolean; time depends only on lengths. */
static int crypto_constant_time_equal(lua_State *L) {
  size_t na, nb;
  const char *a = luaL_checklstring(L, 1, &na);
  const char *b = luaL_checklstring(L, 2, &nb);
  lua_pushboolean(L, na == nb && CRYPTO_memcmp(a, b, na) == 0);
  return 1;
}

static const luaL_Reg crypto_functions[] = {
  {"sha256_hex", crypto_sha256_hex},
  {"hmac_sha256_hex", crypto_hmac_sha256_hex},
  {"constant_time_equal", crypto_constant_time_equal},
  {"webhook_sign", crypto_webhook_sign},
  {"webhook_verify", crypto_webhook_verify},
  {NULL, NULL}
};

BEARER_INTERNAL void bearer_crypto_open(lua_State *L) {
  luaL_setfuncs(L, crypto_functions, 0);
}
