/*
** client.c: bearer.Client, one transfer at a time over a connection cache
** the client keeps between transfers.
**
** C does exactly one attempt per perform(); the retry policy, JSON and the
** API error mapping live in lua/bearer/client.lua, because waiting between
** attempts must be able to yield (ngx.sleep) and C must never call Lua that
** might. No Lua code runs while libcurl is on the stack: callbacks only
** append to buffers the client owns, and everything is pushed after
** curl_easy_perform has returned.
**
** Each transfer gets an easy handle of its own, made for it and cleaned up
** after it; the connections, DNS answers and TLS sessions live in the
** client's share handle, so keep-alive holds across transfers. A handle is
** never reused because per-handle state can outlive a transfer: libcurl
** 7.87-8.0 (Debian 12 ships 7.88.1) keeps a pointer to the previous
** response's last header, freed since, and a response whose first header
** line is folded makes it free that block again (curl issue 11101).
**
** Ownership: everything a transfer holds (easy handle, header list with the
** credential line, multipart body, sink file, borrowed vault entry) hangs
** off the client, and client_end_transfer releases all of it; every exit of
** perform after its first allocation takes that one path, and a longjmp out
** of a lua_push* leaves the rest to the next perform or to close.
** The userdata's user value is a table of two slots: [1] the Lua layer's
** settings (core.client_state hands it out) and [2] the key, which no Lua
** code can reach, so nothing done to the settings can unanchor the key.
*/
#define _GNU_SOURCE
#include <arpa/inet.h>
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

/* Response header bytes we accept: below libcurl's own limit (300 KiB in
** 7.88), so an oversized block is ours to report, as too_large. */
#define CLIENT_HEAD_MAX   (256 * 1024)
#define CLIENT_KEEP_BYTES (1024 * 1024)   /* scratch kept between transfers */

typedef enum { CLIENT_AUTH_BEARER, CLIENT_AUTH_X_API_KEY } client_auth;
static const char *const client_auth_names[] = { "bearer", "x-api-key", NULL };

/* Why a callback stopped the transfer; decides the error's kind. */
typedef enum {
  CLIENT_OK, CLIENT_TOO_LARGE, CLIENT_HEAD_TOO_LARGE, CLIENT_NO_MEMORY, CLIENT_MALFORMED,
  CLIENT_NOT_LOOPBACK
} client_stop;

typedef struct client_buf {
  char *p;
  size_t n, cap;
} client_buf;

typedef struct bearer_client {
  CURLSH *share;            /* connections, DNS, TLS sessions; made lazily */
  pid_t pid;                /* the process that made share: a fork makes its own */
  int closed;
  client_auth auth;
  long timeout_ms, connect_timeout_ms;
  curl_off_t max_response;  /* default cap on body bytes */
  char *user_agent, *ca_file, *proxy;   /* malloc'd copies, owned */
  /* this transfer's; released by client_end_transfer */
  CURL *easy;
  curl_off_t limit;         /* cap on body bytes */
  curl_off_t received;      /* body bytes, wherever they went */
  client_stop stop;
  int loopback_only;        /* a credential over plain http: connect check */
  FILE *sink;               /* the 2xx body goes here, not to memory */
  curl_off_t sunk;          /* bytes written to sink */
  int sink_errno;
  curl_mime *form;          /* multipart body */
  struct curl_slist *headers;           /* secret lines wiped on release */
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
    c->stop = CLIENT_TOO_LARGE;
    return 0;
  }
  if (c->sink != NULL) {
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
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
    c->stop = CLIENT_NO_MEMORY;
    return 0;
  }
  return n;
}

/* One header line as libcurl hands it over: only a final CRLF or LF may
** end it. A bare CR inside it, a NUL, or a line that starts with a space or
** tab (obsolete folding, RFC 9112 5.2) is refused: no API or storage host
** sends them, and libcurl's unfolding is where 7.88's crashes live, so the
** transfer stops before libcurl reads another line of that response. */
static int client_header_line_ok(const char *p, size_t n) {
  if (n > 0 && (p[0] == ' ' || p[0] == '\t')) return 0;
  if (n > 0 && p[n - 1] == '\n') n--;
  if (n > 0 && p[n - 1] == '\r') n--;
  return memchr(p, '\r', n) == NULL && memchr(p, '\0', n) == NULL;
}

static size_t client_on_header(char *p, size_t size, size_t nmemb, void *ud) {
  bearer_client *c = ud;
  size_t n = size * nmemb;
  if (!client_header_line_ok(p, n)) {
    c->stop = CLIENT_MALFORMED;
    return 0;
  }
  if (c->head.n + n > CLIENT_HEAD_MAX) {
    c->stop = CLIENT_HEAD_TOO_LARGE;
    return 0;
  }
  if (client_buf_add(&c->head, p, n) != 0) {
    c->stop = CLIENT_NO_MEMORY;
    return 0;
  }
  return n;
}

/* 127.0.0.0/8, ::1, or an IPv4-mapped 127.x: the address libcurl actually
** connected to, in the text form it reports. */
static int client_ip_is_loopback(const char *ip) {
  unsigned char a[16];
  if (inet_pton(AF_INET, ip, a) == 1) return a[0] == 127;
  if (inet_pton(AF_INET6, ip, a) != 1) return 0;
  static const unsigned char v4mapped[12] = { 0,0,0,0, 0,0,0,0, 0,0,0xff,0xff };
  if (memcmp(a, v4mapped, 12) == 0) return a[12] == 127;
  for (int i = 0; i < 15; i++)
    if (a[i] != 0) return 0;
  return a[15] == 1;
}

#if CLIENT_CURL_VER_GE(7, 80, 0)
/* Runs once a connection stands and before any request byte goes out: a
** credential over plain http goes only where the host's spelling promised,
** whatever the resolver made of it. */
static int client_on_connected(void *ud, char *primary_ip, char *local_ip,
                               int primary_port, int local_port) {
  bearer_client *c = ud;
  (void)local_ip; (void)primary_port; (void)local_port;
  if (c->loopback_only && !client_ip_is_loopback(primary_ip)) {
    c->stop = CLIENT_NOT_LOOPBACK;
    return CURL_PREREQFUNC_ABORT;
  }
  return CURL_PREREQFUNC_OK;
}
#endif

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
  X(CURLE_WEIRD_SERVER_REPLY,       "server",     "malformed_response")  \
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

static int client_header_value_ok(const char *s, size_t n);

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
    if (header ? !client_header_value_ok(v, n) : memchr(v, '\0', n) != NULL)
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
** connected to is checked again before sending (client_on_connected). */
static int client_is_loopback(const char *host) {
  if (strcasecmp(host, "localhost") == 0) return 1;
  size_t n = strlen(host);
  if (n > 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < 64) {
    char ip[64];
    memcpy(ip, host + 1, n - 2);
    ip[n - 2] = '\0';
    return client_ip_is_loopback(ip);
  }
  return client_ip_is_loopback(host);
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
** {name=, file=, filename=, type=}. Wrong types and strings that would
** break out of the part's header lines raise; a file that cannot be read
** returns 1 with a message pushed (the caller returns nil, err).
** libcurl reads files while sending: nothing is loaded into memory here.
*/
static int client_build_form(lua_State *L, bearer_client *c, int idx) {
  static const char *const fields[] = { "name", "value", "file", "filename", "type" };
  c->form = curl_mime_init(c->easy);
  if (c->form == NULL) return luaL_error(L, "out of memory");
  int n = (int)lua_rawlen(L, idx);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    if (!lua_istable(L, -1))
      return luaL_error(L, "bad form part #%d (table expected, got %s)", i, luaL_typename(L, -1));
    int part = lua_gettop(L);
    for (int f = 0; f < 5; f++) lua_getfield(L, part, fields[f]);
    if (lua_type(L, part + 1) != LUA_TSTRING)
      return luaL_error(L, "bad form part #%d (string 'name' expected)", i);
    const char *name = lua_tostring(L, part + 1);
    int has_value = lua_type(L, part + 2) == LUA_TSTRING || lua_type(L, part + 2) == LUA_TNUMBER;
    int has_file = lua_type(L, part + 3) == LUA_TSTRING;
    if (has_value == has_file)
      return luaL_error(L, "bad form part '%s' (exactly one of 'value' or 'file' expected)", name);
    for (int f = part + 4; f <= part + 5; f++)
      if (!lua_isnil(L, f) && lua_type(L, f) != LUA_TSTRING)
        return luaL_error(L, "bad form part '%s' ('%s' must be a string)", name,
                          fields[f - part - 1]);
    /* name, filename and type go into the part's header lines */
    for (int f = part + 1; f <= part + 5; f++) {
      size_t fn;
      const char *v = (f == part + 2 || f == part + 3) ? NULL : lua_tolstring(L, f, &fn);
      if (v != NULL && !client_header_value_ok(v, fn))
        return luaL_error(L, "bad form part '%s' ('%s': CR, LF and NUL are refused: "
                          "header injection)", name, fields[f - part - 1]);
    }
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

/* The client's connection cache for this process: a forked child must not
** drive the parent's connections (a TLS close_notify would break them), so
** it abandons the share it inherited (by design, one small leak per fork)
** and starts anew. NULL when out of memory. */
static CURLSH *client_share(bearer_client *c) {
  pid_t pid = getpid();
  if (c->share != NULL && c->pid != pid) c->share = NULL;
  if (c->share == NULL) {
    CURLSH *sh = curl_share_init();
    if (sh == NULL) return NULL;
    curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    c->share = sh;
    c->pid = pid;
  }
  return c->share;
}

/* Releases everything this transfer held: the one cleanup path of perform.
** The credential line is wiped before the list goes. */
static void client_end_transfer(bearer_client *c) {
  if (c->easy != NULL) {
    curl_easy_cleanup(c->easy);   /* the connection stays in the share */
    c->easy = NULL;
  }
  client_free_headers(c);
  client_free_form(c);
  client_release_cred(c);
  c->sink_errno = client_close_sink(c);
}

/* Pushes the response headers table parsed from c->head; only the last
** block counts (a 100 Continue or a proxy's CONNECT answer come first). A
** repeated header's values are joined with ", " as HTTP allows, in one
** pass over a list per name (no concatenation per repeat). */
static void client_push_headers(lua_State *L, bearer_client *c) {
  lua_newtable(L);   /* name -> value, or name -> { values } while repeated */
  int t = lua_gettop(L), repeated = 0;
  size_t i = 0;
  while (i < c->head.n) {
    const char *s = c->head.p + i;
    const char *nl = memchr(s, '\n', c->head.n - i);
    size_t len = nl ? (size_t)(nl - s) : c->head.n - i;
    i += len + 1;
    while (len > 0 && (s[len - 1] == '\r' || s[len - 1] == '\n')) len--;
    if (len >= 5 && memcmp(s, "HTTP/", 5) == 0) {
      lua_newtable(L);
      lua_replace(L, t);
      repeated = 0;
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
    lua_rawget(L, t);
    int seen = lua_type(L, -1);
    if (seen == LUA_TNIL) {
      lua_pop(L, 1);
      lua_pushlstring(L, v, (size_t)(e - v));
      lua_rawset(L, t);
      continue;
    }
    if (seen == LUA_TSTRING) {   /* second value: start the name's list */
      lua_createtable(L, 4, 0);
      lua_insert(L, -2);
      lua_rawseti(L, -2, 1);
      lua_pushvalue(L, -2);
      lua_pushvalue(L, -2);
      lua_rawset(L, t);
      repeated = 1;
    }
    lua_pushlstring(L, v, (size_t)(e - v));
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 2);
  }
  if (!repeated) return;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    if (lua_istable(L, -1)) {
      luaL_Buffer b;
      int n = (int)lua_rawlen(L, -1), list = lua_gettop(L);
      luaL_buffinit(L, &b);
      for (int k = 1; k <= n; k++) {
        if (k > 1) luaL_addlstring(&b, ", ", 2);
        lua_rawgeti(L, list, k);
        luaL_addvalue(&b);
      }
      luaL_pushresult(&b);
      lua_pushvalue(L, list - 1);
      lua_insert(L, -2);
      lua_rawset(L, t);   /* replacing an existing key's value: next stays valid */
    }
    lua_pop(L, 1);
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

/* One perform's arguments, read once; the strings are anchored by the
** Lua stack for the whole call. */
typedef struct client_request {
  const char *method, *url, *body, *sink;
  size_t blen;
  long timeout_ms;
  int with_key, trace, fresh, form, plain;
  lua_Integer vault;
} client_request;

/* Step 1: reads the arguments; caller mistakes raise. */
static void client_parse(lua_State *L, bearer_client *c, client_request *rq) {
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
  c->limit = c->max_response;
  if (!lua_isnil(L, 6)) {
    lua_getfield(L, 6, "vault");
    if (!lua_isnil(L, -1)) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) <= 0)
        luaL_argerror(L, 6, "'vault' must be an id from vault_put");
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
      c->limit = (curl_off_t)mb;
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

/* Step 2: where the credential would go decides whether it may go at all.
** 0, or pushes nil, err and returns 2. Nothing is held yet. */
static int client_check_url(lua_State *L, client_request *rq) {
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL;
  int bad_url = u == NULL || curl_url_set(u, CURLUPART_URL, rq->url, 0) != CURLUE_OK
                || curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK
                || curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK;
  rq->plain = !bad_url && strcmp(scheme, "http") == 0;
  int other = !bad_url && !rq->plain && strcmp(scheme, "https") != 0;
  int refused = !bad_url && rq->plain && rq->with_key && !client_is_loopback(host);
  if (refused) lua_pushstring(L, host);
  curl_free(scheme);
  curl_free(host);
  curl_url_cleanup(u);
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

/* Step 3: the transfer's easy handle, headers and multipart body (caller
** mistakes raise: all of it is owned by the client), then the credential
** and the sink, after which nothing raises until client_end_transfer.
** 0, or pushes nil, err and returns 2 with everything released. */
static int client_prepare(lua_State *L, bearer_client *c, client_request *rq) {
  client_end_transfer(c);   /* a transfer cut short by a raise left these */
  CURLSH *share = client_share(c);
  c->easy = share != NULL ? curl_easy_init() : NULL;
  if (c->easy == NULL) return luaL_error(L, "out of memory (libcurl handle)");
  client_build_headers(L, c, 4, rq->with_key);
  const char *why = NULL;
  if (rq->form) {
    lua_getfield(L, 6, "form");
    if (client_build_form(L, c, lua_gettop(L)) != 0) why = lua_tostring(L, -1);
    else lua_pop(L, 1);
  }
  if (why == NULL && rq->with_key) {
    if (rq->vault != 0) {
      if (bearer_vault_acquire((size_t)rq->vault, &c->cred)) c->vault_id = (size_t)rq->vault;
      else why = "";
    } else {
      c->cred = bearer_key_secret(c->key);
    }
    if (why == NULL && client_add_credential(c) != 0) {
      client_end_transfer(c);
      return luaL_error(L, "out of memory");
    }
  }
  int sink_err = 0;
  if (why == NULL && rq->sink != NULL) {
    int fd = open(rq->sink, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    c->sink = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (c->sink == NULL) {
      sink_err = errno;
      if (fd >= 0) close(fd);
    }
  }
  if (why == NULL && sink_err == 0) return 0;
  client_end_transfer(c);
  luaL_pushfail(L);
  if (sink_err != 0)
    bearer_error_push(L, "config", "write_failed", "cannot create %s: %s", rq->sink,
                      strerror(sink_err));
  else if (*why == '\0')
    bearer_error_push(L, "config", "vault_missing", "the shared key was dropped");
  else
    bearer_error_push(L, "config", "file_unreadable", "%s", why);
  return 2;
}

static void client_set_method(CURL *h, const client_request *rq, curl_mime *form) {
  const char *method = rq->method;
  if (form != NULL) {
    curl_easy_setopt(h, CURLOPT_MIMEPOST, form);
    if (strcmp(method, "POST") != 0) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    return;
  }
  if (strcmp(method, "GET") == 0 && rq->body == NULL) {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    return;
  }
  if (strcmp(method, "HEAD") == 0) {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    return;
  }
  /* POST semantics carry a body (even an empty one, so Content-Length: 0
  ** goes out); DELETE without a body stays body-less. */
  if (rq->body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0
      || strcmp(method, "PATCH") == 0) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->blen);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body != NULL ? rq->body : "");
  }
  if (strcmp(method, "POST") != 0) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
}

/* Step 4: sets the handle up and runs the transfer; never raises. */
static CURLcode client_run(bearer_client *c, const client_request *rq) {
  CURL *h = c->easy;
  client_buf_reset(&c->body, CLIENT_KEEP_BYTES);
  client_buf_reset(&c->head, CLIENT_KEEP_BYTES);
  client_buf_reset(&c->trace_out, CLIENT_KEEP_BYTES);
  client_buf_reset(&c->trace_in, CLIENT_KEEP_BYTES);
  c->stop = CLIENT_OK;
  c->received = c->sunk = 0;
  c->sink_errno = 0;
  c->errbuf[0] = '\0';
  c->loopback_only = rq->plain && rq->with_key;

  curl_easy_setopt(h, CURLOPT_SHARE, c->share);
  curl_easy_setopt(h, CURLOPT_URL, rq->url);
#if CLIENT_CURL_VER_GE(7, 85, 0)
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, rq->fresh ? 1L : 0L);
  /* A credential over plain http goes to the loopback host itself, never
  ** through a proxy (the proxy option or http_proxy), which would read it. */
  if (c->loopback_only) curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
#if CLIENT_CURL_VER_GE(7, 80, 0)
  curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, client_on_connected);
  curl_easy_setopt(h, CURLOPT_PREREQDATA, c);
#endif
  curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, rq->timeout_ms);
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
  if (rq->trace) {
    curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, client_on_debug);
    curl_easy_setopt(h, CURLOPT_DEBUGDATA, c);
    curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
  }
  client_set_method(h, rq, c->form);
  return curl_easy_perform(h);
}

/* Pushes nil, err for a failed transfer (c->easy still there for info). */
static void client_push_failure(lua_State *L, bearer_client *c, CURLcode rc,
                                long request_size) {
  const char *kind, *code;
  client_classify(rc, &kind, &code);
  /* libcurl's header parser refusing a line it was handed (a folded first
  ** header line): the response's fault, not the call's */
  if (c->stop == CLIENT_OK && rc == CURLE_BAD_FUNCTION_ARGUMENT && c->head.n > 0)
    c->stop = CLIENT_MALFORMED;
  /* libcurl refuses a single header line past its own limit (100 KiB) as
  ** out of memory, before our callback sees it */
  if (c->stop == CLIENT_OK && rc == CURLE_OUT_OF_MEMORY && c->received == 0)
    c->stop = CLIENT_HEAD_TOO_LARGE;
  switch (c->stop) {
    case CLIENT_TOO_LARGE:
    case CLIENT_HEAD_TOO_LARGE: kind = "too_large"; code = "response_too_large"; break;
    case CLIENT_NO_MEMORY: kind = "connection"; code = "out_of_memory"; break;
    case CLIENT_MALFORMED: kind = "server"; code = "malformed_response"; break;
    case CLIENT_NOT_LOOPBACK: kind = "config"; code = "insecure_transport"; break;
    case CLIENT_OK:
      if (rc == CURLE_OPERATION_TIMEDOUT && request_size == 0) code = "connect_timeout";
      break;
  }
  const char *detail = c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc);
  if (c->stop == CLIENT_TOO_LARGE)
    lua_pushfstring(L, "response larger than %f bytes; cut off", (lua_Number)c->limit);
  else if (c->stop == CLIENT_HEAD_TOO_LARGE)
    lua_pushfstring(L, "response headers larger than %d bytes, or one line past "
                    "libcurl's 100 KiB; cut off", CLIENT_HEAD_MAX);
  else if (c->stop == CLIENT_MALFORMED)
    lua_pushliteral(L, "malformed response header (bare CR, NUL or folded line); "
                       "connection dropped");
  else if (c->stop == CLIENT_NOT_LOOPBACK)
    lua_pushliteral(L, "refusing to send credentials over plain http: the host "
                       "resolved to an address that is not loopback");
  else
    bearer_redact_push(L, detail, strlen(detail), c->cred);
  luaL_pushfail(L);
  bearer_error_push(L, kind, code, "%s", lua_tostring(L, -2));
  lua_pushboolean(L, request_size > 0);
  lua_setfield(L, -2, "sent");
  lua_pushinteger(L, (lua_Integer)rc);
  lua_setfield(L, -2, "curl_code");
  client_set_trace(L, c);
}

/* Pushes the response table of a completed transfer. */
static void client_push_response(lua_State *L, bearer_client *c, const client_request *rq,
                                 long status, double seconds) {
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, (lua_Integer)status);
  lua_setfield(L, -2, "status");
  client_push_headers(L, c);
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, c->body.p ? c->body.p : "", c->body.n);
  lua_setfield(L, -2, "body");
  lua_pushnumber(L, seconds);
  lua_setfield(L, -2, "time");
  if (rq->sink != NULL) {
    lua_pushnumber(L, (lua_Number)c->sunk);
    lua_setfield(L, -2, "bytes");
  }
  client_set_trace(L, c);
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
** Steps: parse (may raise) -> check the URL and credential rules ->
** prepare (may raise, holds nothing it cannot release) -> run (never
** raises) -> client_end_transfer, the one cleanup, then the result.
*/
static int client_perform(lua_State *L) {
  bearer_client *c = client_check(L, 1);
  client_request rq;
  client_parse(L, c, &rq);
  if (client_check_url(L, &rq) != 0) return 2;
  if (client_prepare(L, c, &rq) != 0) return 2;

  CURLcode rc = client_run(c, &rq);

  long status = 0, request_size = 0;
  double seconds = 0;
  curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(c->easy, CURLINFO_REQUEST_SIZE, &request_size);
  curl_easy_getinfo(c->easy, CURLINFO_TOTAL_TIME, &seconds);
  /* the credential stays borrowed for redaction until the result is pushed */
  bearer_secret cred = c->cred;
  size_t vault_id = c->vault_id;
  c->vault_id = 0;
  client_end_transfer(c);
  c->cred = cred;
  c->vault_id = vault_id;
  int sink_err = c->sink_errno;
  if (sink_err != 0) {
    luaL_pushfail(L);
    bearer_error_push(L, "config", "write_failed", "cannot write %s: %s", rq.sink,
                      strerror(sink_err));
  } else if (rc != CURLE_OK) {
    client_push_failure(L, c, rc, request_size);
  } else {
    client_push_response(L, c, &rq, status, seconds);
  }
  client_release_cred(c);
  return rc == CURLE_OK && sink_err == 0 ? 1 : 2;
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
  c->user_agent = client_strdup_opt(L, 1, "user_agent", 1);
  c->ca_file = client_strdup_opt(L, 1, "ca_file", 0);
  c->proxy = client_strdup_opt(L, 1, "proxy", 0);
  c->closed = 0;
  return 1;
}

static int client_close(lua_State *L) {
  bearer_client *c = luaL_checkudata(L, 1, BEARER_CLIENT_MT);
  client_end_transfer(c);
  if (c->share != NULL && c->pid == getpid()) curl_share_cleanup(c->share);
  c->share = NULL;
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
