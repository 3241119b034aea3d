/*
** client.c: bearer.Client, what a client holds between transfers: its key,
** its auth style, its timeouts and transport settings, and the Lua layer's
** settings table.
**
** C does exactly one attempt per transfer; the retry policy, JSON and the
** API error mapping live in lua/bearer/client.lua, because waiting between
** attempts must be able to yield (ngx.sleep, a gather coroutine) and C must
** never call Lua that might. A call is built here (arguments, URL and
** credential rules, header list, form, credential, sink) into a
** bearer.Transfer (transfer.c) that this state's engine runs (engine.c):
** perform() waits for it, start() hands it back to be waited for by a
** scheduler, so many transfers can be in flight at once.
**
** The userdata's user value is a table whose one slot anchors the key; no
** Lua code can reach it, so nothing in the Lua layer can unanchor the key.
** A transfer anchors the client and the key for as long as it lives.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "bearer.h"

typedef enum { CLIENT_AUTH_BEARER, CLIENT_AUTH_X_API_KEY } client_auth;
static const char *const client_auth_names[] = { "bearer", "x-api-key", NULL };
static const char *const client_auth_prefix[] = { "Authorization: Bearer ", "X-API-Key: " };

typedef struct bearer_client {
  int closed;
  client_auth auth;
  long timeout_ms;
  curl_off_t max_response;  /* default cap on body bytes */
  bearer_transport tp;      /* its strings are malloc'd copies, owned */
  bearer_key *key;          /* anchored in uservalue.key, NULL: no credential */
  size_t shared_id;         /* vault entry of key put by share_key, 0: none */
  /* The "scheme://authority" of the last URL client_check_url parsed and
  ** passed, with its verdicts: a client calls one origin, and parsing its
  ** URL again on every call was 7 % of a small call's instructions. */
  char origin[128];
  size_t origin_len;        /* 0: none cached */
  int origin_plain, origin_loopback;
} bearer_client;

/* {====================================================== helpers */

enum { CLIENT_KEY = 1 };   /* the slot of the user value */

/* Pushes slot `slot` of the client at idx. */
static void client_push_slot(lua_State *L, int idx, int slot) {
  lua_getiuservalue(L, idx, 1);
  lua_rawgeti(L, -1, slot);
  lua_remove(L, -2);
}

/* Anchors the value on top (a key or nil) to the client at idx; pops it. */
static void client_anchor_key(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_getiuservalue(L, idx, 1);
  lua_insert(L, -2);
  lua_rawseti(L, -2, CLIENT_KEY);
  lua_pop(L, 1);
}

static bearer_client *client_check(lua_State *L, int idx) {
  bearer_client *c = luaL_checkudata(L, idx, BEARER_CLIENT_MT);
  if (c->closed) luaL_error(L, "attempt to use a closed bearer.Client");
  return c;
}

/* A string option copied to C; `header` options go into a header line, so
** CR, LF and NUL are refused there as in every other header value. */
static char *client_strdup_opt(lua_State *L, int opts, const char *name, int header) {
  lua_getfield(L, opts, name);
  char *s = NULL;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "bad option '%s' to 'client' (string expected, got %s)",
                 name, luaL_typename(L, -1));
    size_t n;
    const char *v = lua_tolstring(L, -1, &n);
    if (header ? !bearer_header_value_ok(v, n) : memchr(v, '\0', n) != NULL)
      luaL_error(L, "bad option '%s' to 'client' (CR, LF and NUL are refused%s)", name,
                 header ? ": header injection" : "");
    s = strdup(v);
    if (s == NULL) luaL_error(L, "out of memory");
  }
  lua_pop(L, 1);
  return s;
}

/* A positive number of seconds as milliseconds, or def. */
static long client_ms_opt(lua_State *L, int opts, const char *name, long def) {
  lua_getfield(L, opts, name);
  long ms = def;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) > 0))
      luaL_error(L, "bad option '%s' (positive number of seconds expected, got %s)",
                 name, lua_type(L, -1) == LUA_TNUMBER ? "a non-positive number"
                                                      : luaL_typename(L, -1));
    double s = lua_tonumber(L, -1);
    ms = s > 86400.0 * 365 ? 86400L * 365 * 1000 : (long)(s * 1000.0 + 0.5);
    if (ms < 1) ms = 1;
  }
  lua_pop(L, 1);
  return ms;
}

/* Loopback hosts are the only ones a credential may reach over plain http:
** the traffic never leaves the machine. An address literal counts only in
** its canonical form (127.0.0.99999 is a name to the resolver, not an
** address); "localhost" libcurl resolves to loopback itself. The address
** connected to is checked again before sending (transfer.c). */
static int client_is_loopback(const char *host) {
  if (strcasecmp(host, "localhost") == 0) return 1;
  size_t n = strlen(host);
  if (n > 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < 64) {
    char ip[64];
    memcpy(ip, host + 1, n - 2);
    ip[n - 2] = '\0';
    return bearer_ip_is_loopback(ip);
  }
  return bearer_ip_is_loopback(host);
}

/* Drops the vault entry share_key made. */
static void client_unshare(bearer_client *c) {
  if (c->shared_id != 0) bearer_vault_release(c->shared_id);
  c->shared_id = 0;
}

/* }====================================================== */

/* {====================================================== starting a transfer */

/* Step 1: reads the arguments (self, method, url, headers, body, opts);
** caller mistakes raise. */
static void client_parse(lua_State *L, bearer_client *c, bearer_request *rq,
                         curl_off_t *limit) {
  memset(rq, 0, sizeof(*rq));
  rq->method = luaL_checkstring(L, 2);
  rq->url = luaL_checkstring(L, 3);
  rq->body = luaL_optlstring(L, 5, NULL, &rq->blen);
  if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
  if (!lua_isnoneornil(L, 6)) luaL_checktype(L, 6, LUA_TTABLE);
  lua_settop(L, 6);

  size_t mlen = strlen(rq->method);
  if (mlen == 0 || mlen > 16 || strspn(rq->method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != mlen)
    luaL_argerror(L, 2, "HTTP method must be upper-case letters");

  rq->timeout_ms = c->timeout_ms;
  rq->with_key = c->key != NULL;
  *limit = c->max_response;
  if (!lua_isnil(L, 6)) {
    lua_getfield(L, 6, "vault");
    if (!lua_isnil(L, -1)) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) <= 0)
        luaL_argerror(L, 6, "'vault' must be an id from share_key");
      rq->vault = lua_tointeger(L, -1);
      rq->with_key = 1;
    }
    lua_pop(L, 1);
    rq->timeout_ms = client_ms_opt(L, 6, "timeout", rq->timeout_ms);
    lua_getfield(L, 6, "credentials");
    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) rq->with_key = 0;
    lua_getfield(L, 6, "trace");
    rq->trace = lua_toboolean(L, -1);
    lua_getfield(L, 6, "fresh_connect");
    rq->fresh = lua_toboolean(L, -1);
    lua_pop(L, 3);
    lua_getfield(L, 6, "max_bytes");
    if (!lua_isnil(L, -1)) {
      lua_Number mb = lua_tonumber(L, -1);
      if (lua_type(L, -1) != LUA_TNUMBER || !(mb >= 0 && mb <= 9007199254740992.0))
        luaL_argerror(L, 6, "'max_bytes' must be a byte count");
      *limit = (curl_off_t)mb;
    }
    lua_pop(L, 1);
    lua_getfield(L, 6, "sink");   /* anchored by opts, which stays on the stack */
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, 6, "'sink' must be a path");
      rq->sink = lua_tostring(L, -1);
    }
    lua_pop(L, 1);
    lua_getfield(L, 6, "form");
    if (!lua_isnil(L, -1)) {
      if (!lua_istable(L, -1)) luaL_argerror(L, 6, "'form' must be a table of parts");
      if (rq->body != NULL) luaL_argerror(L, 6, "'form' and a body exclude each other");
      rq->form = 1;
    }
    lua_pop(L, 1);
  }
  if (rq->with_key && rq->vault == 0 && c->key->secret == NULL)
    luaL_error(L, "attempt to use a closed bearer.Key (the client's key was closed)");
}

/* Whether url is on the origin c->origin holds, with a rest that libcurl's
** URL parser (7.88's junkscan) takes as it is: the authority ends at the
** first '/', '?' or '#', so a URL beginning with the same characters up to
** that one names the same scheme and host; a space, a control byte or a
** URL near libcurl's 8 MB input cap goes through the full parse instead. */
static int client_same_origin(const bearer_client *c, const char *url) {
  if (c->origin_len == 0 || strncmp(url, c->origin, c->origin_len) != 0) return 0;
  const char *rest = url + c->origin_len;
  if (*rest != '/' && *rest != '?' && *rest != '#') return 0;
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)rest; *p; p++, n++)
    if (*p <= 0x20 || *p == 0x7f || n > 1000000) return 0;
  return 1;
}

/* Remembers the origin of a URL that just parsed and passed. */
static void client_keep_origin(bearer_client *c, const char *url, int plain, int loopback) {
  const char *sep = strstr(url, "://");
  c->origin_len = 0;
  if (sep == NULL) return;
  size_t n = (size_t)(sep + 3 - url) + strcspn(sep + 3, "/?#");
  if (n >= sizeof c->origin || url[n] == '\0') return;
  memcpy(c->origin, url, n);
  c->origin[n] = '\0';
  c->origin_len = n;
  c->origin_plain = plain;
  c->origin_loopback = loopback;
}

/* Step 2: where the credential would go decides whether it may go at all.
** 0, or pushes nil, err and returns 2. Nothing is held yet. */
static int client_check_url(lua_State *L, bearer_client *c, bearer_request *rq) {
  if (client_same_origin(c, rq->url)) {
    rq->plain = c->origin_plain;
    if (!(rq->plain && rq->with_key && !c->origin_loopback)) return 0;
  }
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL;
  int bad_url = u == NULL || curl_url_set(u, CURLUPART_URL, rq->url, 0) != CURLUE_OK
                || curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK
                || curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK;
  rq->plain = !bad_url && strcmp(scheme, "http") == 0;
  int other = !bad_url && !rq->plain && strcmp(scheme, "https") != 0;
  int loopback = !bad_url && rq->plain && client_is_loopback(host);
  int refused = !bad_url && rq->plain && rq->with_key && !loopback;
  if (refused) lua_pushstring(L, host);
  curl_free(scheme);
  curl_free(host);
  curl_url_cleanup(u);
  if (!bad_url && !other) client_keep_origin(c, rq->url, rq->plain, loopback);
  if (!bad_url && !other && !refused) return 0;
  const char *h = refused ? lua_tostring(L, -1) : NULL;
  luaL_pushfail(L);
  if (bad_url) bearer_error_push(L, "config", "bad_url", "not a valid URL: %s", rq->url);
  else if (other) bearer_error_push(L, "config", "unsupported_protocol",
                                    "only http and https URLs are allowed: %s", rq->url);
  else bearer_error_push(L, "config", "insecure_transport",
                         "refusing to send credentials over plain http to %s "
                         "(use https; plain http is allowed only to loopback)", h);
  return 2;
}

/* Step 3: a transfer with its easy handle, headers and multipart body
** (caller mistakes raise: the transfer owns all of it and its __gc frees
** it), then the credential and the sink, after which nothing raises.
** Leaves the transfer on the stack and returns it, or pushes nil, err
** (everything released) and returns NULL. */
static bearer_transfer *client_prepare(lua_State *L, bearer_client *c, bearer_request *rq,
                                       curl_off_t limit) {
  client_push_slot(L, 1, CLIENT_KEY);
  bearer_transfer *t = bearer_transfer_new(L, 1);
  int tidx = lua_gettop(L);
  t->limit = limit;
  t->easy = curl_easy_init();
  if (t->easy == NULL) luaL_error(L, "out of memory (libcurl handle)");
  bearer_transfer_headers(L, t, 4, rq->with_key, c->tp.user_agent_line);
  const char *why = NULL;
  if (rq->form) {
    lua_getfield(L, 6, "form");
    if (bearer_transfer_form(L, t, lua_gettop(L)) != 0) why = lua_tostring(L, -1);
    else lua_pop(L, 1);
  }
  if (why == NULL && rq->with_key) {
    if (rq->vault != 0) {
      if (bearer_vault_acquire((size_t)rq->vault, &t->cred)) t->vault_id = (size_t)rq->vault;
      else why = "";
    } else {
      t->key = c->key;   /* anchored by the transfer */
      t->cred = bearer_key_secret(c->key);
    }
    if (why == NULL && bearer_transfer_credential(t, client_auth_prefix[c->auth]) != 0)
      return luaL_error(L, "out of memory"), NULL;
  }
  int sink_err = why == NULL && rq->sink != NULL ? bearer_transfer_sink(t, rq->sink) : 0;
  if (why == NULL && sink_err == 0) {
    lua_settop(L, tidx);
    bearer_transfer_setup(t, rq, &c->tp);
    return t;
  }
  lua_settop(L, tidx);
  lua_pushvalue(L, tidx);
  lua_pushnil(L);
  lua_replace(L, tidx);   /* the transfer goes with __gc; its request now */
  bearer_transfer_release(t);
  if (t->vault_id != 0) bearer_vault_release(t->vault_id);
  t->vault_id = 0;
  t->cred.bytes = NULL;
  t->cred.len = 0;
  lua_pop(L, 1);
  luaL_pushfail(L);
  if (sink_err != 0)
    bearer_error_push(L, "config", "write_failed", "cannot create %s: %s", rq->sink,
                      strerror(sink_err));
  else if (*why == '\0')
    bearer_error_push(L, "config", "vault_missing", "the shared key was dropped");
  else
    bearer_error_push(L, "config", "file_unreadable", "%s", why);
  return NULL;
}

/* Steps 1-4: the transfer running on this state's engine *ep, on top of
** the stack; or NULL with nil, err pushed. The engine comes back apart
** from t->engine: a threaded engine may finish the transfer (and clear
** that field) before this returns. */
static bearer_transfer *client_start_transfer(lua_State *L, bearer_client *c,
                                              bearer_engine **ep) {
  bearer_request rq;
  curl_off_t limit;
  client_parse(L, c, &rq, &limit);
  if (client_check_url(L, c, &rq) != 0) return NULL;
  bearer_engine *e = *ep = bearer_engine_push(L);
  lua_pop(L, 1);   /* the registry anchors the engine */
  bearer_transfer *t = client_prepare(L, c, &rq, limit);
  if (t == NULL) return NULL;
  if (bearer_engine_add(L, e, t, lua_gettop(L)) != 0) {
    bearer_transfer_release(t);
    return luaL_error(L, "could not start a transfer (out of memory, or libcurl's "
                         "curl_multi_add_handle refused it)"), NULL;
  }
  return t;
}

/*
** c:perform(method, url, headers, body, opts) -> response | nil, err
**   opts: timeout (s), credentials (default true), trace (bool), max_bytes,
**         form (multipart parts, instead of body), sink (a path that must
**         not exist yet: a 2xx body streams there, created 0644, O_EXCL),
**         vault (an id from share_key: the credential, for a client
**         in an nginx worker thread, which cannot be handed the key),
**         fresh_connect (a new connection: libcurl then never resends the
**         request on its own, as it does when a reused one dies).
**   response: {status=, headers=, body=, time=, bytes= (with a sink),
**              trace_request=, trace_response=}
**   err: a bearer error object with sent = whether any request byte left.
** Caller mistakes (bad method, bad header) raise; a failed transfer returns.
** The engine runs until this transfer is done; others in flight progress.
*/
static int client_perform(lua_State *L) {
  bearer_client *c = client_check(L, 1);
  bearer_engine *e;
  bearer_transfer *t = client_start_transfer(L, c, &e);
  if (t == NULL) return 2;
  bearer_engine_finish(e, t);
  t->consumed = 1;
  return bearer_transfer_push_result(L, t);
}

/* c:start(method, url, headers, body, opts) -> transfer | nil, err: the
** same call as perform, left running on the engine. The caller steps the
** engine (core.engine():step()) until transfer:done(), then takes
** transfer:result(), which is what perform would have returned. */
static int client_start(lua_State *L) {
  bearer_client *c = client_check(L, 1);
  bearer_engine *e;
  return client_start_transfer(L, c, &e) != NULL ? 1 : 2;
}

/* }====================================================== */

/* {====================================================== life cycle */

/* core.client_new(opts) -> client. Reads the transport options; the Lua
** layer reads the policy ones (retries, clock, sleep, log). */
static int client_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  bearer_client *c = lua_newuserdatauv(L, sizeof(*c), 1);
  memset(c, 0, sizeof(*c));
  c->closed = 1;            /* until every option is read: __gc frees halves */
  luaL_setmetatable(L, BEARER_CLIENT_MT);

  lua_createtable(L, 1, 0);   /* uservalue: { key } */
  lua_setiuservalue(L, 2, 1);
  lua_getfield(L, 1, "key");
  if (!lua_isnil(L, -1)) {
    if (luaL_testudata(L, -1, BEARER_KEY_MT) == NULL)
      return luaL_error(L, "bad option 'key' to 'client' (bearer.Key expected, got %s)",
                        luaL_typename(L, -1));
    c->key = bearer_key_check(L, -1);
  }
  client_anchor_key(L, 2);

  lua_getfield(L, 1, "auth");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_error(L, "bad option 'auth' to 'client' (string expected, got %s)",
                        luaL_typename(L, -1));
    c->auth = (client_auth)luaL_checkoption(L, -1, NULL, client_auth_names);
  }
  lua_pop(L, 1);
  c->timeout_ms = client_ms_opt(L, 1, "timeout", 60000);
  c->tp.connect_timeout_ms = client_ms_opt(L, 1, "connect_timeout", 5000);
  lua_getfield(L, 1, "max_response_bytes");
  c->max_response = 64 * 1024 * 1024;
  if (!lua_isnil(L, -1)) {
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) <= 0)
      return luaL_error(L, "bad option 'max_response_bytes' to 'client' "
                        "(positive integer expected)");
    c->max_response = (curl_off_t)lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
  char *ua = client_strdup_opt(L, 1, "user_agent", 1);
  if (ua != NULL) {
    size_t n = strlen(ua) + sizeof BEARER_USER_AGENT_PREFIX;
    char *line = malloc(n);
    if (line != NULL) snprintf(line, n, BEARER_USER_AGENT_PREFIX "%s", ua);
    free(ua);
    if (line == NULL) return luaL_error(L, "out of memory");
    c->tp.user_agent_line = line;
  }
  c->tp.ca_file = client_strdup_opt(L, 1, "ca_file", 0);
  c->tp.proxy = client_strdup_opt(L, 1, "proxy", 0);
  c->closed = 0;
  return 1;
}

static int client_close(lua_State *L) {
  bearer_client *c = luaL_checkudata(L, 1, BEARER_CLIENT_MT);
  /* transfers in flight copied what they need: they go on */
  free((char *)c->tp.user_agent_line);
  free((char *)c->tp.ca_file);
  free((char *)c->tp.proxy);
  c->tp.user_agent_line = c->tp.ca_file = c->tp.proxy = NULL;
  client_unshare(c);
  c->key = NULL;
  c->closed = 1;
  return 0;
}

static int client_tostring(lua_State *L) {
  bearer_client *c = luaL_checkudata(L, 1, BEARER_CLIENT_MT);
  if (c->closed) lua_pushliteral(L, "bearer.Client(closed)");
  else lua_pushfstring(L, "bearer.Client(%s)", c->key ? c->key->prefix : "no key");
  return 1;
}

/* c:share_key() -> vault id | nil: the client's key put in the vault once,
** for transfers in other Lua VMs of this process (nginx worker threads).
** The client drops the entry on close and when its key changes. */
static int client_share_key(lua_State *L) {
  bearer_client *c = client_check(L, 1);
  if (c->key == NULL) {
    luaL_pushfail(L);
    return 1;
  }
  if (c->shared_id == 0) {
    if (c->key->secret == NULL)
      return luaL_error(L, "attempt to use a closed bearer.Key (the client's key was closed)");
    c->shared_id = bearer_vault_put(c->key);
    if (c->shared_id == 0) return luaL_error(L, "cannot map memory for the vault");
  }
  lua_pushinteger(L, (lua_Integer)c->shared_id);
  return 1;
}

/* c:set_key(key | nil): the credential of the next transfers (a refreshed
** token); the old key is no longer anchored by the client, not closed. */
static int client_set_key(lua_State *L) {
  bearer_client *c = client_check(L, 1);
  bearer_key *k = lua_isnil(L, 2) ? NULL : bearer_key_check(L, 2);
  lua_settop(L, 2);
  client_unshare(c);
  client_anchor_key(L, 1);   /* pops the key (argument 2) */
  c->key = k;
  return 0;
}

/* c:key() -> the client's key or nil */
static int client_key(lua_State *L) {
  client_check(L, 1);
  client_push_slot(L, 1, CLIENT_KEY);
  return 1;
}

/* c:redact(text) -> text with header values and this client's key hidden */
static int client_redact(lua_State *L) {
  bearer_client *c = client_check(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  bearer_redact_push(L, s, n, bearer_key_secret(c->key));
  return 1;
}

/* }====================================================== */

static const luaL_Reg client_methods[] = {
  {"perform", client_perform},
  {"start", client_start},
  {"close", client_close},
  {"redact", client_redact},
  {"set_key", client_set_key},
  {"share_key", client_share_key},
  {"key", client_key},
  {NULL, NULL}
};

static const luaL_Reg client_meta[] = {
  {"__gc", client_close},
  {"__close", client_close},
  {"__tostring", client_tostring},
  {NULL, NULL}
};

static const luaL_Reg client_functions[] = {
  {"client_new", client_new},
  {NULL, NULL}
};

/* Adds the client functions to the core table on top of the stack, and
** core.client_methods: the method table the Lua layer extends (request). */
BEARER_INTERNAL void bearer_client_open(lua_State *L) {
  luaL_newmetatable(L, BEARER_CLIENT_MT);
  luaL_setfuncs(L, client_meta, 0);
  luaL_newlib(L, client_methods);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__index");   /* metatable.__index = method table */
  lua_setfield(L, -3, "client_methods");
  lua_pop(L, 1);
  luaL_setfuncs(L, client_functions, 0);
  lua_pushstring(L, curl_version_info(CURLVERSION_NOW)->version);
  lua_setfield(L, -2, "curl_version");
}
