/*
** client.c: bearer.Client, one libcurl easy handle and one transfer at a time.
**
** C does exactly one attempt per perform(); the retry policy, JSON and the
** API error mapping live in lua/bearer/client.lua, because waiting between
** attempts must be able to yield (ngx.sleep) and C must never call Lua that
** might. No Lua code runs while libcurl is on the stack: callbacks only
** append to buffers the client owns, and everything is pushed after
** curl_easy_perform has returned.
**
** Ownership: the client owns its handle, its scratch buffers and this
** transfer's header list; a longjmp out of a later lua_push* leaves them
** with the client, which frees them on the next perform or on close.
** The userdata's user value is a table of two slots: [1] the Lua layer's
** settings (core.client_state hands it out) and [2] the key, which no Lua
** code can reach, so nothing done to the settings can unanchor the key.
*/
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "bearer.h"

#define CLIENT_CURL_VER_GE(maj, min, pat) \
  (LIBCURL_VERSION_NUM >= (((maj) << 16) | ((min) << 8) | (pat)))

#define CLIENT_HEAD_MAX   (1024 * 1024)   /* response header bytes we accept */
#define CLIENT_KEEP_BYTES (1024 * 1024)   /* scratch kept between transfers */

typedef enum { CLIENT_AUTH_BEARER, CLIENT_AUTH_X_API_KEY } client_auth;
static const char *const client_auth_names[] = { "bearer", "x-api-key", NULL };

typedef struct client_buf {
  char *p;
  size_t n, cap;
} client_buf;

typedef struct bearer_client {
  CURL *curl;               /* created lazily by the process that uses it */
  pid_t pid;                /* that process: a fork gets a handle of its own */
  int closed;
  client_auth auth;
  long timeout_ms, connect_timeout_ms;
  curl_off_t max_response;  /* default cap on body bytes */
  curl_off_t limit;         /* this transfer's cap */
  curl_off_t received;      /* body bytes of this transfer, wherever they went */
  int too_large;            /* the body ran past limit: abort, not a short read */
  int out_of_memory;
  FILE *sink;               /* this transfer's 2xx body goes here, not to memory */
  curl_off_t sunk;          /* bytes written to sink */
  int sink_errno;
  curl_mime *form;          /* this transfer's multipart body, owned */
  char *user_agent, *ca_file, *proxy;   /* malloc'd copies, owned */
  struct curl_slist *headers;           /* this transfer's; secret lines wiped */
  client_buf body, head, trace_out, trace_in;
  char errbuf[CURL_ERROR_SIZE];
  bearer_key *key;          /* anchored in uservalue.key, NULL: no credential */
  bearer_secret cred;       /* this transfer's credential bytes (key or vault) */
  size_t vault_id;          /* vault entry this transfer holds, 0: none */
  size_t shared_id;         /* vault entry of key put by share_key, 0: none */
} bearer_client;

/* {====================================================== buffers */

static int client_buf_add(client_buf *b, const char *p, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < b->n + n) cap *= 2;
    /* No realloc: the old block may hold response secrets, wipe it first. */
    char *q = malloc(cap);
    if (q == NULL) return -1;
    if (b->n) memcpy(q, b->p, b->n);
    if (b->p) {
      bearer_cleanse(b->p, b->n);
      free(b->p);
    }
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, p, n);
  b->n += n;
  return 0;
}

/* Wipes what the buffer held; drops the block if it grew past keep bytes. */
static void client_buf_reset(client_buf *b, size_t keep) {
  if (b->p) bearer_cleanse(b->p, b->n);
  b->n = 0;
  if (b->cap > keep) {
    free(b->p);
    b->p = NULL;
    b->cap = 0;
  }
}

/* Closes this transfer's sink; 0 or the errno of a failed write/close. */
static int client_close_sink(bearer_client *c) {
  int err = c->sink_errno;
  if (c->sink != NULL && fclose(c->sink) != 0 && err == 0) err = errno;
  c->sink = NULL;
  return err;
}

static void client_free_form(bearer_client *c) {
  curl_mime_free(c->form);
  c->form = NULL;
}

static void client_free_headers(bearer_client *c) {
  for (struct curl_slist *h = c->headers; h != NULL; h = h->next)
    bearer_cleanse(h->data, strlen(h->data));
  curl_slist_free_all(c->headers);
  c->headers = NULL;
}

/* }====================================================== */

/* {====================================================== libcurl callbacks
** They run inside curl_easy_perform: no Lua, no longjmp, just bytes. */

/* With a sink, a 2xx body streams to the file; any other body (an error
** document) is kept in memory for the error object. */
static size_t client_on_body(char *p, size_t size, size_t nmemb, void *ud) {
  bearer_client *c = ud;
  size_t n = size * nmemb;
  c->received += (curl_off_t)n;
  if (c->received > c->limit) {
    c->too_large = 1;
    return 0;
  }
  if (c->sink != NULL) {
    long status = 0;
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) {
      if (fwrite(p, 1, n, c->sink) != n) {
        c->sink_errno = errno ? errno : EIO;
        return 0;
      }
      c->sunk += (curl_off_t)n;
      return n;
    }
  }
  if (client_buf_add(&c->body, p, n) != 0) {
    c->out_of_memory = 1;
    return 0;
  }
  return n;
}

static size_t client_on_header(char *p, size_t size, size_t nmemb, void *ud) {
  bearer_client *c = ud;
  size_t n = size * nmemb;
  if (c->head.n + n > CLIENT_HEAD_MAX) {
    c->too_large = 1;
    return 0;
  }
  if (client_buf_add(&c->head, p, n) != 0) {
    c->out_of_memory = 1;
    return 0;
  }
  return n;
}

static int client_on_debug(CURL *h, curl_infotype type, char *p, size_t n, void *ud) {
  bearer_client *c = ud;
  (void)h;
  if (type == CURLINFO_HEADER_OUT) client_buf_add(&c->trace_out, p, n);
  else if (type == CURLINFO_HEADER_IN) client_buf_add(&c->trace_in, p, n);
  return 0;
}

/* }====================================================== */

/* {====================================================== transport errors */

/* How each libcurl failure reads to a user: kind, code. */
#define CLIENT_CURL_ERRORS(X)                                            \
  X(CURLE_UNSUPPORTED_PROTOCOL,     "config",     "unsupported_protocol") \
  X(CURLE_URL_MALFORMAT,            "config",     "bad_url")             \
  X(CURLE_COULDNT_RESOLVE_PROXY,    "connection", "proxy_dns_failed")    \
  X(CURLE_COULDNT_RESOLVE_HOST,     "connection", "dns_failed")          \
  X(CURLE_COULDNT_CONNECT,          "connection", "connect_failed")      \
  X(CURLE_PARTIAL_FILE,             "connection", "partial_body")        \
  X(CURLE_OPERATION_TIMEDOUT,       "timeout",    "timeout")             \
  X(CURLE_GOT_NOTHING,              "connection", "empty_reply")         \
  X(CURLE_SEND_ERROR,               "connection", "send_failed")         \
  X(CURLE_RECV_ERROR,               "connection", "recv_failed")         \
  X(CURLE_FILESIZE_EXCEEDED,        "too_large",  "response_too_large")  \
  X(CURLE_SSL_CONNECT_ERROR,        "tls",        "tls_handshake_failed") \
  X(CURLE_PEER_FAILED_VERIFICATION, "tls",        "tls_verify_failed")   \
  X(CURLE_SSL_CERTPROBLEM,          "tls",        "tls_client_cert")     \
  X(CURLE_SSL_CIPHER,               "tls",        "tls_cipher")          \
  X(CURLE_SSL_CACERT_BADFILE,       "tls",        "tls_ca_file")         \
  X(CURLE_BAD_CONTENT_ENCODING,     "decode",     "bad_content_encoding")

static void client_classify(CURLcode rc, const char **kind, const char **code) {
  switch (rc) {
#define CLIENT_CASE(e, k, c) case e: *kind = k; *code = c; return;
    CLIENT_CURL_ERRORS(CLIENT_CASE)
#undef CLIENT_CASE
    default:
      *kind = "connection";
      *code = "transport_error";
  }
}

/* }====================================================== */

/* {====================================================== helpers */

enum { CLIENT_SETTINGS = 1, CLIENT_KEY = 2 };   /* slots of the user value */

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

static char *client_strdup_opt(lua_State *L, int opts, const char *name) {
  lua_getfield(L, opts, name);
  char *s = NULL;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "bad option '%s' to 'client' (string expected, got %s)",
                 name, luaL_typename(L, -1));
    s = strdup(lua_tostring(L, -1));
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
** the traffic never leaves the machine. */
static int client_is_loopback(const char *host) {
  if (strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0
      || strcmp(host, "::1") == 0)
    return 1;
  if (strncmp(host, "127.", 4) != 0) return 0;
  int dots = 0;
  for (const char *p = host; *p; p++) {
    if (*p == '.') dots++;
    else if (!isdigit((unsigned char)*p)) return 0;
  }
  return dots == 3;
}

static int client_header_name_ok(const char *s, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (!(isalnum(ch) || strchr("!#$%&'*+-.^_`|~", ch))) return 0;
  }
  return 1;
}

static int client_header_value_ok(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '\r' || ch == '\n' || ch == '\0') return 0;
  }
  return 1;
}

static int client_is_auth_header(const char *name) {
  return strcasecmp(name, "authorization") == 0 || strcasecmp(name, "x-api-key") == 0;
}

static int client_append(bearer_client *c, const char *line) {
  struct curl_slist *h = curl_slist_append(c->headers, line);
  if (h == NULL) return -1;
  c->headers = h;
  return 0;
}

/*
** Builds this transfer's header list from the Lua table at idx. Caller
** mistakes raise (the list stays owned by the client, so nothing leaks).
** A caller's own Authorization/X-API-Key is dropped when with_key.
*/
static void client_build_headers(lua_State *L, bearer_client *c, int idx, int with_key) {
  client_free_headers(c);
  if (client_append(c, "Expect:") != 0) luaL_error(L, "out of memory");
  if (!lua_isnil(L, idx)) {
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
      if (lua_type(L, -2) != LUA_TSTRING)
        luaL_error(L, "bad header name (string expected, got %s)", luaL_typename(L, -2));
      size_t nn, vn;
      const char *name = lua_tolstring(L, -2, &nn);
      if (!client_header_name_ok(name, nn))
        luaL_error(L, "bad header name '%s' (not an HTTP token)", name);
      int t = lua_type(L, -1);
      if (t != LUA_TSTRING && t != LUA_TNUMBER)
        luaL_error(L, "bad value for header '%s' (string expected, got %s)",
                   name, luaL_typename(L, -1));
      lua_pushvalue(L, -1);   /* tolstring on a copy: lua_next needs the key intact */
      const char *value = lua_tolstring(L, -1, &vn);
      if (!client_header_value_ok(value, vn))
        luaL_error(L, "bad value for header '%s' (CR, LF and NUL are refused: "
                   "header injection)", name);
      if (!(with_key && client_is_auth_header(name))) {
        lua_pushfstring(L, "%s: %s", name, value);
        if (client_append(c, lua_tostring(L, -1)) != 0) luaL_error(L, "out of memory");
        lua_pop(L, 1);
      }
      lua_pop(L, 2);
    }
  }
}

/* Adds the credential line for c->cred; 0, or -1 when out of memory. It is
** composed in a scratch block wiped at once; curl's copy is wiped after
** perform (client_free_headers). Raises nothing: a vault entry may be held. */
static int client_add_credential(bearer_client *c) {
  const char *pre = c->auth == CLIENT_AUTH_BEARER ? "Authorization: Bearer " : "X-API-Key: ";
  size_t pn = strlen(pre), n = pn + c->cred.len + 1;
  char *line = malloc(n);
  if (line == NULL) return -1;
  memcpy(line, pre, pn);
  memcpy(line + pn, c->cred.bytes, c->cred.len);
  line[n - 1] = '\0';
  int rc = client_append(c, line);
  bearer_cleanse(line, n);
  free(line);
  return rc;
}

/* Drops the vault entry share_key made. */
static void client_unshare(bearer_client *c) {
  if (c->shared_id != 0) bearer_vault_release(c->shared_id);
  c->shared_id = 0;
}

/* Lets go of the vault entry the last transfer borrowed, if any. */
static void client_release_cred(bearer_client *c) {
  if (c->vault_id != 0) bearer_vault_release(c->vault_id);
  c->vault_id = 0;
  c->cred.bytes = NULL;
  c->cred.len = 0;
}

/*
** Builds c->form from the array at idx, each part {name=, value=} or
** {name=, file=, filename=, type=}. Wrong types raise; a file that cannot
** be read returns 1 with a message pushed (the caller returns nil, err).
** libcurl reads files while sending: nothing is loaded into memory here.
*/
static int client_build_form(lua_State *L, bearer_client *c, CURL *h, int idx) {
  client_free_form(c);
  c->form = curl_mime_init(h);
  if (c->form == NULL) return luaL_error(L, "out of memory");
  int n = (int)lua_rawlen(L, idx);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    if (!lua_istable(L, -1))
      return luaL_error(L, "bad form part #%d (table expected, got %s)", i, luaL_typename(L, -1));
    int part = lua_gettop(L);
    lua_getfield(L, part, "name");
    lua_getfield(L, part, "value");
    lua_getfield(L, part, "file");
    lua_getfield(L, part, "filename");
    lua_getfield(L, part, "type");
    if (lua_type(L, part + 1) != LUA_TSTRING)
      return luaL_error(L, "bad form part #%d (string 'name' expected)", i);
    const char *name = lua_tostring(L, part + 1);
    int has_value = lua_type(L, part + 2) == LUA_TSTRING || lua_type(L, part + 2) == LUA_TNUMBER;
    int has_file = lua_type(L, part + 3) == LUA_TSTRING;
    if (has_value == has_file)
      return luaL_error(L, "bad form part '%s' (exactly one of 'value' or 'file' expected)", name);
    for (int f = part + 4; f <= part + 5; f++)
      if (!lua_isnil(L, f) && lua_type(L, f) != LUA_TSTRING)
        return luaL_error(L, "bad form part '%s' (%s must be a string)", name,
                          f == part + 4 ? "'filename'" : "'type'");
    curl_mimepart *mp = curl_mime_addpart(c->form);
    if (mp == NULL) return luaL_error(L, "out of memory");
    curl_mime_name(mp, name);
    if (has_file) {
      const char *path = lua_tostring(L, part + 3);
      if (access(path, R_OK) != 0) {
        lua_pushfstring(L, "cannot read %s: %s", path, strerror(errno));
        return 1;
      }
      curl_mime_filedata(mp, path);
    } else {
      size_t vn;
      const char *v = lua_tolstring(L, part + 2, &vn);
      curl_mime_data(mp, v, vn);
    }
    if (lua_isstring(L, part + 4)) curl_mime_filename(mp, lua_tostring(L, part + 4));
    if (lua_isstring(L, part + 5)) curl_mime_type(mp, lua_tostring(L, part + 5));
    lua_settop(L, part - 1);
  }
  return 0;
}

/* The handle for this process: a forked child must not drive the parent's
** connections (a TLS close_notify would break them), so it abandons the
** copy it inherited (by design, one small leak per fork) and starts anew. */
static CURL *client_handle(bearer_client *c) {
  pid_t pid = getpid();
  if (c->curl != NULL && c->pid != pid) c->curl = NULL;
  if (c->curl == NULL) {
    c->curl = curl_easy_init();
    c->pid = pid;
  }
  return c->curl;
}

/* Pushes the response headers table parsed from c->head; only the last
** block counts (a 100 Continue or a proxy's CONNECT answer come first). */
static void client_push_headers(lua_State *L, bearer_client *c) {
  lua_newtable(L);
  size_t i = 0;
  while (i < c->head.n) {
    const char *s = c->head.p + i;
    const char *nl = memchr(s, '\n', c->head.n - i);
    size_t len = nl ? (size_t)(nl - s) : c->head.n - i;
    i += len + 1;
    while (len > 0 && (s[len - 1] == '\r' || s[len - 1] == '\n')) len--;
    if (len >= 5 && memcmp(s, "HTTP/", 5) == 0) {
      lua_pop(L, 1);
      lua_newtable(L);
      continue;
    }
    const char *colon = memchr(s, ':', len);
    if (colon == NULL || colon == s) continue;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (const char *p = s; p < colon; p++) luaL_addchar(&b, (char)tolower((unsigned char)*p));
    luaL_pushresult(&b);
    const char *v = colon + 1, *e = s + len;
    while (v < e && (*v == ' ' || *v == '\t')) v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushlstring(L, v, (size_t)(e - v));
    } else {   /* repeated header: join as HTTP allows */
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, v, (size_t)(e - v));
      lua_concat(L, 3);
    }
    lua_rawset(L, -3);
  }
}

/* Sets t.trace_request / t.trace_response (t on top) when tracing. */
static void client_set_trace(lua_State *L, bearer_client *c) {
  if (c->trace_out.n > 0) {
    bearer_redact_push(L, c->trace_out.p, c->trace_out.n, c->cred);
    lua_setfield(L, -2, "trace_request");
  }
  if (c->trace_in.n > 0) {
    bearer_redact_push(L, c->trace_in.p, c->trace_in.n, c->cred);
    lua_setfield(L, -2, "trace_response");
  }
}

/* }====================================================== */

/* {====================================================== perform */

static void client_set_method(CURL *h, const char *method, const char *body, size_t blen,
                              int has_body, curl_mime *form) {
  if (form != NULL) {
    curl_easy_setopt(h, CURLOPT_MIMEPOST, form);
    if (strcmp(method, "POST") != 0) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    return;
  }
  if (strcmp(method, "GET") == 0 && !has_body) {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    return;
  }
  if (strcmp(method, "HEAD") == 0) {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    return;
  }
  /* POST semantics carry a body (even an empty one, so Content-Length: 0
  ** goes out); DELETE without a body stays body-less. */
  if (has_body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0
      || strcmp(method, "PATCH") == 0) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, has_body ? body : "");
  }
  if (strcmp(method, "POST") != 0) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
}

/*
** c:perform(method, url, headers, body, opts) -> response | nil, err
**   opts: timeout (s), credentials (default true), trace (bool), max_bytes,
**         form (multipart parts, instead of body), sink (a path that must
**         not exist yet: a 2xx body streams there, created 0644, O_EXCL),
**         vault (an id from core.vault_put: the credential, for a client
**         in an nginx worker thread, which cannot be handed the key),
**         fresh_connect (a new connection: libcurl then never resends the
**         request on its own, as it does when a reused one dies).
**   response: {status=, headers=, body=, time=, bytes= (with a sink),
**              trace_request=, trace_response=}
**   err: a bearer error object with sent = whether any request byte left.
** Caller mistakes (bad method, bad header) raise; a failed transfer returns.
*/
static int client_perform(lua_State *L) {
  bearer_client *c = client_check(L, 1);
  const char *method = luaL_checkstring(L, 2);
  const char *url = luaL_checkstring(L, 3);
  size_t blen = 0;
  const char *body = luaL_optlstring(L, 5, NULL, &blen);
  if (!lua_isnoneornil(L, 6)) luaL_checktype(L, 6, LUA_TTABLE);
  lua_settop(L, 6);

  size_t mlen = strlen(method);
  if (mlen == 0 || mlen > 16 || strspn(method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != mlen)
    return luaL_argerror(L, 2, "HTTP method must be upper-case letters");

  client_release_cred(c);   /* a transfer cut short by an error kept it */
  long timeout_ms = c->timeout_ms;
  int with_key = c->key != NULL, trace = 0, form = 0, fresh = 0;
  lua_Integer vault = 0;
  const char *sink = NULL;
  c->limit = c->max_response;
  if (!lua_isnil(L, 6)) {
    lua_getfield(L, 6, "vault");
    if (!lua_isnil(L, -1)) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) <= 0)
        return luaL_argerror(L, 6, "'vault' must be an id from vault_put");
      vault = lua_tointeger(L, -1);
      with_key = 1;
    }
    lua_pop(L, 1);
    timeout_ms = client_ms_opt(L, 6, "timeout", timeout_ms);
    lua_getfield(L, 6, "credentials");
    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) with_key = 0;
    lua_getfield(L, 6, "trace");
    trace = lua_toboolean(L, -1);
    lua_getfield(L, 6, "fresh_connect");
    fresh = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 6, "max_bytes");
    if (!lua_isnil(L, -1)) {
      lua_Number mb = lua_tonumber(L, -1);
      if (lua_type(L, -1) != LUA_TNUMBER || !(mb >= 0 && mb <= 9007199254740992.0))
        return luaL_argerror(L, 6, "'max_bytes' must be a byte count");
      c->limit = (curl_off_t)mb;
    }
    lua_pop(L, 3);
    lua_getfield(L, 6, "sink");   /* anchored by opts, which stays on the stack */
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TSTRING) return luaL_argerror(L, 6, "'sink' must be a path");
      sink = lua_tostring(L, -1);
    }
    lua_pop(L, 1);
    lua_getfield(L, 6, "form");
    if (!lua_isnil(L, -1)) {
      if (!lua_istable(L, -1)) return luaL_argerror(L, 6, "'form' must be a table of parts");
      if (body != NULL) return luaL_argerror(L, 6, "'form' and a body exclude each other");
      form = 1;
    }
    lua_pop(L, 1);
  }
  if (with_key && vault == 0 && c->key->secret == NULL)
    return luaL_error(L, "attempt to use a closed bearer.Key (the client's key was closed)");

  /* Where the credential would go decides whether it may go at all. */
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL;
  int bad_url = u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK
                || curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK
                || curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK;
  int plain = !bad_url && strcmp(scheme, "http") == 0;
  int other = !bad_url && !plain && strcmp(scheme, "https") != 0;
  int loopback = !bad_url && client_is_loopback(host);
  if (!bad_url && !other) lua_pushstring(L, host);
  curl_free(scheme);
  curl_free(host);
  curl_url_cleanup(u);
  if (bad_url || other) {
    luaL_pushfail(L);
    if (bad_url) bearer_error_push(L, "config", "bad_url", "not a valid URL: %s", url);
    else bearer_error_push(L, "config", "unsupported_protocol",
                           "only http and https URLs are allowed: %s", url);
    return 2;
  }
  if (plain && with_key && !loopback) {
    luaL_pushfail(L);
    bearer_error_push(L, "config", "insecure_transport",
                      "refusing to send credentials over plain http to %s "
                      "(use https; plain http is allowed only to loopback)",
                      lua_tostring(L, -2));
    return 2;
  }
  lua_pop(L, 1);

  CURL *h = client_handle(c);
  if (h == NULL) return luaL_error(L, "curl_easy_init failed");
  client_build_headers(L, c, 4, with_key);
  client_free_form(c);
  if (form) {
    lua_getfield(L, 6, "form");
    if (client_build_form(L, c, h, lua_gettop(L)) != 0) {
      luaL_pushfail(L);
      bearer_error_push(L, "config", "file_unreadable", "%s", lua_tostring(L, -2));
      return 2;
    }
    lua_pop(L, 1);
  }
  /* From here on nothing raises until perform returns: the credential
  ** (maybe a vault entry) is borrowed and the sink opened. */
  if (with_key) {
    if (vault != 0) {
      if (!bearer_vault_acquire((size_t)vault, &c->cred)) {
        luaL_pushfail(L);
        bearer_error_push(L, "config", "vault_missing", "the shared key was dropped");
        return 2;
      }
      c->vault_id = (size_t)vault;
    } else {
      c->cred = bearer_key_secret(c->key);
    }
    if (client_add_credential(c) != 0) {
      client_release_cred(c);
      return luaL_error(L, "out of memory");
    }
  }
  if (sink != NULL) {
    int fd = open(sink, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    c->sink = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (c->sink == NULL) {
      int err = errno;
      if (fd >= 0) close(fd);
      client_release_cred(c);
      luaL_pushfail(L);
      bearer_error_push(L, "config", "write_failed", "cannot create %s: %s", sink, strerror(err));
      return 2;
    }
  }

  client_buf_reset(&c->body, CLIENT_KEEP_BYTES);
  client_buf_reset(&c->head, CLIENT_KEEP_BYTES);
  client_buf_reset(&c->trace_out, CLIENT_KEEP_BYTES);
  client_buf_reset(&c->trace_in, CLIENT_KEEP_BYTES);
  c->too_large = c->out_of_memory = 0;
  c->received = c->sunk = 0;
  c->sink_errno = 0;
  c->errbuf[0] = '\0';

  /* A fresh option set each time: nothing of the last request (a body, a
  ** custom method) can leak into this one; connections and DNS stay. */
  curl_easy_reset(h);
  curl_easy_setopt(h, CURLOPT_URL, url);
#if CLIENT_CURL_VER_GE(7, 85, 0)
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, fresh ? 1L : 0L);
  /* A credential over plain http goes to the loopback host itself, never
  ** through a proxy (the proxy option or http_proxy), which would read it. */
  if (plain && with_key) curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
  curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, c->limit);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, client_on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, client_on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
  if (c->user_agent) curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
  if (c->ca_file) curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
  if (c->proxy) curl_easy_setopt(h, CURLOPT_PROXY, c->proxy);
  if (trace) {
    curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, client_on_debug);
    curl_easy_setopt(h, CURLOPT_DEBUGDATA, c);
    curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
  }
  client_set_method(h, method, body, blen, body != NULL, c->form);

  CURLcode rc = curl_easy_perform(h);

  client_free_headers(c);   /* wipes curl's copy of the credential line */
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);   /* the body is Lua's */
  curl_easy_setopt(h, CURLOPT_MIMEPOST, NULL);
  client_free_form(c);
  int sink_err = client_close_sink(c);
  long status = 0, request_size = 0;
  double seconds = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &request_size);
  curl_easy_getinfo(h, CURLINFO_TOTAL_TIME, &seconds);

  if (sink_err != 0) {
    client_release_cred(c);
    luaL_pushfail(L);
    bearer_error_push(L, "config", "write_failed", "cannot write %s: %s", sink, strerror(sink_err));
    return 2;
  }
  if (rc != CURLE_OK) {
    const char *kind, *code;
    client_classify(rc, &kind, &code);
    if (c->too_large) {
      kind = "too_large";
      code = "response_too_large";
    } else if (c->out_of_memory) {
      kind = "connection";
      code = "out_of_memory";
    } else if (rc == CURLE_OPERATION_TIMEDOUT && request_size == 0) {
      code = "connect_timeout";
    }
    const char *detail = c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc);
    if (c->too_large)
      lua_pushfstring(L, "response larger than %f bytes; cut off", (lua_Number)c->limit);
    else
      bearer_redact_push(L, detail, strlen(detail), c->cred);
    luaL_pushfail(L);
    bearer_error_push(L, kind, code, "%s", lua_tostring(L, -2));
    lua_pushboolean(L, request_size > 0);
    lua_setfield(L, -2, "sent");
    lua_pushinteger(L, (lua_Integer)rc);
    lua_setfield(L, -2, "curl_code");
    client_set_trace(L, c);
    client_release_cred(c);
    return 2;
  }

  lua_createtable(L, 0, 6);
  lua_pushinteger(L, (lua_Integer)status);
  lua_setfield(L, -2, "status");
  client_push_headers(L, c);
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, c->body.p ? c->body.p : "", c->body.n);
  lua_setfield(L, -2, "body");
  lua_pushnumber(L, seconds);
  lua_setfield(L, -2, "time");
  if (sink != NULL) {
    lua_pushnumber(L, (lua_Number)c->sunk);
    lua_setfield(L, -2, "bytes");
  }
  client_set_trace(L, c);
  client_release_cred(c);
  return 1;
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

  lua_createtable(L, 2, 0);   /* uservalue: { settings, key } */
  lua_createtable(L, 0, 8);
  lua_rawseti(L, -2, CLIENT_SETTINGS);
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
  c->connect_timeout_ms = client_ms_opt(L, 1, "connect_timeout", 5000);
  lua_getfield(L, 1, "max_response_bytes");
  c->max_response = 64 * 1024 * 1024;
  if (!lua_isnil(L, -1)) {
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) <= 0)
      return luaL_error(L, "bad option 'max_response_bytes' to 'client' "
                        "(positive integer expected)");
    c->max_response = (curl_off_t)lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
  c->user_agent = client_strdup_opt(L, 1, "user_agent");
  c->ca_file = client_strdup_opt(L, 1, "ca_file");
  c->proxy = client_strdup_opt(L, 1, "proxy");
  c->closed = 0;
  return 1;
}

static int client_close(lua_State *L) {
  bearer_client *c = luaL_checkudata(L, 1, BEARER_CLIENT_MT);
  if (c->curl != NULL && c->pid == getpid()) curl_easy_cleanup(c->curl);
  c->curl = NULL;
  client_close_sink(c);
  client_free_form(c);
  client_free_headers(c);
  client_buf_reset(&c->body, 0);
  client_buf_reset(&c->head, 0);
  client_buf_reset(&c->trace_out, 0);
  client_buf_reset(&c->trace_in, 0);
  free(c->user_agent);
  free(c->ca_file);
  free(c->proxy);
  c->user_agent = c->ca_file = c->proxy = NULL;
  client_release_cred(c);
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

/* core.client_state(c) -> the table anchored to the client, where the Lua
** layer keeps its per-client settings. */
static int client_state(lua_State *L) {
  client_check(L, 1);
  client_push_slot(L, 1, CLIENT_SETTINGS);
  return 1;
}

static int client_is_closed(lua_State *L) {
  lua_pushboolean(L, ((bearer_client *)luaL_checkudata(L, 1, BEARER_CLIENT_MT))->closed);
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
    lua_pushcfunction(L, bearer_vault_put_lua);
    client_push_slot(L, 1, CLIENT_KEY);
    lua_call(L, 1, 1);   /* raises for a closed key: use after close */
    c->shared_id = (size_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
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
  {"close", client_close},
  {"is_closed", client_is_closed},
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
  {"client_state", client_state},
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
