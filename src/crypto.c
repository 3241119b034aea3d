/*
** crypto.c: SHA-256, HMAC-SHA256 and constant-time comparison, all from
** OpenSSL's libcrypto (libcurl already pulls it in). A bearer.Key may be
** used as an HMAC key without its secret becoming a Lua string.
*/
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

/* core.hmac_sha256_hex(key, data) -> lower-case hex; key is a bearer.Key or
** a string. */
static int crypto_hmac_sha256_hex(lua_State *L) {
  const void *secret;
  size_t secret_len;
  bearer_key *k = bearer_key_test(L, 1);
  if (k != NULL) {
    secret = k->secret;
    secret_len = k->len;
  } else if (lua_type(L, 1) == LUA_TSTRING) {
    secret = lua_tolstring(L, 1, &secret_len);
  } else {
    return luaL_argerror(L, 1, "bearer.Key (open) or string expected");
  }
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  if (HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)data, n,
           md, &mdlen) == NULL)
    return luaL_error(L, "HMAC-SHA256 failed");
  bearer_hex(md, mdlen, hex);
  lua_pushstring(L, hex);
  return 1;
}

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
  {NULL, NULL}
};

BEARER_INTERNAL void bearer_crypto_open(lua_State *L) {
  luaL_setfuncs(L, crypto_functions, 0);
}
