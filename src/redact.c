/*
** redact.c: the single path that makes text safe to show.
**
** Trace lines (BEARER_LOG, the log option) and any server-supplied text
** that ends up in an error message pass through bearer_redact_push. Two
** rules: the value of a credential-bearing header line becomes
** "[REDACTED]", and every occurrence of the key's bytes does too, wherever
** it stands (a URL, a body echoed back by a server, a header of any name).
*/
#include <string.h>
#include <strings.h>

#include "bearer.h"

static const char *const redact_headers[] = {
  "authorization", "proxy-authorization", "x-api-key", "cookie", "set-cookie", NULL
};

static int redact_is_secret_header(const char *name, size_t n) {
  while (n > 0 && (name[n - 1] == ' ' || name[n - 1] == '\t')) n--;
  for (int i = 0; redact_headers[i] != NULL; i++)
    if (strlen(redact_headers[i]) == n && strncasecmp(name, redact_headers[i], n) == 0)
      return 1;
  return 0;
}

static int redact_hexval(unsigned char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* Length of the secret's occurrence at s[0..n), or 0. Each secret byte may
** stand as itself or percent-encoded (%2B, %2f, ...), in any mix: that is how
** a key with '+', '/' or '=' looks once a URL encoder put it in a query. */
static size_t redact_match(const char *s, size_t n, bearer_secret secret) {
  size_t p = 0;
  for (size_t j = 0; j < secret.len; j++) {
    unsigned char want = secret.bytes[j];
    if (p < n && (unsigned char)s[p] == want) {
      p++;
    } else if (p + 2 < n && s[p] == '%') {
      int hi = redact_hexval((unsigned char)s[p + 1]), lo = redact_hexval((unsigned char)s[p + 2]);
      if (hi < 0 || lo < 0 || (unsigned char)(hi * 16 + lo) != want) return 0;
      p += 3;
    } else {
      return 0;
    }
  }
  return p;
}

/* Adds s[0..n) with each occurrence of the secret replaced. */
static void redact_add_span(luaL_Buffer *b, const char *s, size_t n,
                            bearer_secret secret) {
  size_t klen = secret.bytes ? secret.len : 0;
  size_t i = 0;
  while (i < n) {
    size_t m = klen > 0 ? redact_match(s + i, n - i, secret) : 0;
    if (m > 0) {
      luaL_addstring(b, "[REDACTED]");
      i += m;
    } else {
      luaL_addchar(b, s[i]);
      i++;
    }
  }
}

BEARER_INTERNAL void bearer_redact_push(lua_State *L, const char *s, size_t len,
                                        bearer_secret secret) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t i = 0;
  while (i < len) {
    const char *nl = memchr(s + i, '\n', len - i);
    size_t end = nl ? (size_t)(nl - s) + 1 : len;
    const char *colon = memchr(s + i, ':', end - i);
    if (colon != NULL && redact_is_secret_header(s + i, (size_t)(colon - (s + i)))) {
      luaL_addlstring(&b, s + i, (size_t)(colon - (s + i)) + 1);
      luaL_addstring(&b, " [REDACTED]");
      if (nl != NULL) {
        if (nl > s + i && nl[-1] == '\r') luaL_addchar(&b, '\r');
        luaL_addchar(&b, '\n');
      }
    } else {
      redact_add_span(&b, s + i, end - i, secret);
    }
    i = end;
  }
  luaL_pushresult(&b);
}

/* core.redact(text [, key]) -> text with header values and key bytes hidden */
static int redact_text(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  if (!lua_isnoneornil(L, 2) && luaL_testudata(L, 2, BEARER_KEY_MT) == NULL)
    return luaL_argerror(L, 2, "bearer.Key expected");
  bearer_redact_push(L, s, n, bearer_key_secret(bearer_key_test(L, 2)));
  return 1;
}

BEARER_INTERNAL void bearer_redact_open(lua_State *L) {
  lua_pushcfunction(L, redact_text);
  lua_setfield(L, -2, "redact");
}
