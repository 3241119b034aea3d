/*
** crypto.c: SHA-256, HMAC-SHA256 and constant-time comparison, all from
** OpenSSL's libcrypto (libcurl already pulls it in). A bearer.Key may be
** used as an HMAC key without its secret becoming a Lua string.
*/
#define _DEFAULT_SOURCE   /* explicit_bzero */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "bearer.h"

BEARER_INTERNAL void bearer_hex(const unsigned char *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

/* Wipes n bytes the compiler may not optimise away. glibc's explicit_bzero
** is its vectorised memset behind a barrier; OPENSSL_cleanse writes through
** a volatile pointer a byte at a time, which cost a tenth of every call's
** instructions once every libcurl block was wiped on free (core.c). */
BEARER_INTERNAL void bearer_cleanse(void *p, size_t n) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 25))
  explicit_bzero(p, n);
#else
  OPENSSL_cleanse(p, n);
#endif
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

/*
** core.hmac_sha256_matches(key, data, candidates) -> boolean
** Whether any string of the array `candidates` is the lower-case hex
** HMAC-SHA256 of data under key (a bearer.Key or a string). The digest
** never leaves C, and every candidate is compared in full, in constant
** time, so neither the result's timing nor a Lua string tells the right
** digest. What is signed, and how signatures travel, is the API module's
** business (bearer.overten.webhook).
*/
static int crypto_hmac_sha256_matches(lua_State *L) {
  size_t secret_len, n;
  const void *secret = crypto_secret(L, 1, &secret_len);
  const char *data = luaL_checklstring(L, 2, &n);
  luaL_checktype(L, 3, LUA_TTABLE);
  char want[2 * EVP_MAX_MD_SIZE + 1];
  crypto_hmac_hex(L, secret, secret_len, data, n, want);
  size_t want_len = strlen(want);
  int match = 0;
  for (lua_Integer i = 1;; i++) {
    lua_rawgeti(L, 3, i);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      break;
    }
    size_t cn = 0;
    const char *cand = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &cn) : NULL;
    if (cand != NULL && cn == want_len)
      match |= CRYPTO_memcmp(cand, want, want_len) == 0;
    lua_pop(L, 1);
  }
  bearer_cleanse(want, sizeof want);
  lua_pushboolean(L, match);
  return 1;
}

static const luaL_Reg crypto_functions[] = {
  {"sha256_hex", crypto_sha256_hex},
  {"hmac_sha256_hex", crypto_hmac_sha256_hex},
  {"hmac_sha256_matches", crypto_hmac_sha256_matches},
  {NULL, NULL}
};

BEARER_INTERNAL void bearer_crypto_open(lua_State *L) {
  luaL_setfuncs(L, crypto_functions, 0);
}
