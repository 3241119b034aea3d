/*
** transfer.c: bearer.Transfer, one HTTP exchange: its libcurl easy handle,
** its request (header list with the credential line, multipart body, sink
** file, borrowed credential) and what came back (status, headers, body,
** trace, progress).
**
** A client builds a transfer (client.c), the engine runs it with others on
** its multi handle (engine.c), and the transfer turns the outcome into the
** response table or the error object. The callbacks here run inside
** libcurl: no Lua, no longjmp, only bytes into buffers the transfer owns.
**
** Each transfer gets an easy handle of its own, made for it and cleaned up
** when it completes; connections, DNS answers and TLS sessions stay with the
** engine. A handle is never reused because per-handle state can outlive a
** transfer: libcurl 7.87-8.0 (Debian 12 ships 7.88.1) keeps a pointer to
** the previous response's last header, freed since, and a response whose
** first header line is folded makes it free that block again (curl issue
** 11101).
**
** Ownership: the transfer owns everything above; transfer_release gives
** back what the request held (handle, header list wiped, form, sink, vault
** entry) and runs on completion, on close and on __gc, so a longjmp out of
** a later lua_push* leaks nothing. The user value anchors the client and
** the key for as long as the transfer lives.
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

#include "bearer.h"

#define TRANSFER_CURL_VER_GE(maj, min, pat) \
  (LIBCURL_VERSION_NUM >= (((maj) << 16) | ((min) << 8) | (pat)))

/* Response header bytes we accept: below libcurl's own limit (300 KiB in
** 7.88), so an oversized block is ours to report, as too_large. */
#define TRANSFER_HEAD_MAX (256 * 1024)
/* The most a declared Content-Length reserves for a body before it comes. */
#define TRANSFER_RESERVE_MAX (4 * 1024 * 1024)

/* {====================================================== buffers */

static int transfer_buf_add(bearer_buf *b, const char *p, size_t n) {
  if (b->n + n > b->cap) {
    /* First block sized for what came, at least a typical header block:
    ** most API answers fit in one, and a fixed 16 KiB per buffer was most
    ** of a small call's heap churn. */
    size_t cap = b->cap ? b->cap : n > 1024 ? n : 1024;
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

/* Room for cap bytes before the first add (the buffer is empty). */
static int transfer_buf_reserve(bearer_buf *b, size_t cap) {
  if (b->p != NULL || cap == 0) return 0;
  b->p = malloc(cap);
  if (b->p == NULL) return -1;
  b->cap = cap;
  return 0;
}

static void transfer_buf_free(bearer_buf *b) {
  if (b->p) bearer_cleanse(b->p, b->n);
  free(b->p);
  b->p = NULL;
  b->n = b->cap = 0;
}

/* }====================================================== */

/* {====================================================== libcurl callbacks */

/* With a sink, a 2xx body streams to the file; any other body (an error
** document) is kept in memory for the error object. */
static size_t transfer_on_body(char *p, size_t size, size_t nmemb, void *ud) {
  bearer_transfer *t = ud;
  size_t n = size * nmemb;
  t->received += (curl_off_t)n;
  if (t->received > t->limit) {
    t->stop = BEARER_STOP_TOO_LARGE;
    return 0;
  }
  if (t->sink != NULL) {
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) {
      if (fwrite(p, 1, n, t->sink) != n) {
        t->sink_errno = errno ? errno : EIO;
        return 0;
      }
      t->sunk += (curl_off_t)n;
      return n;
    }
  }
  if (t->body.p == NULL) {
    /* A declared length sizes the body's buffer at once: a 34 KB page grown
    ** by doubling was copied and wiped three times over. Only up to the
    ** cap on what may come and TRANSFER_RESERVE_MAX, so a length a server
    ** claims and never sends costs little. */
    curl_off_t cl = -1;
    curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    if (cl > (curl_off_t)n && cl <= t->limit && cl <= TRANSFER_RESERVE_MAX &&
        transfer_buf_reserve(&t->body, (size_t)cl) != 0) {
      t->stop = BEARER_STOP_NO_MEMORY;
      return 0;
    }
  }
  if (transfer_buf_add(&t->body, p, n) != 0) {
    t->stop = BEARER_STOP_NO_MEMORY;
    return 0;
  }
  return n;
}

/* One header line as libcurl hands it over: only a final CRLF or LF may
** end it. A bare CR inside it, a NUL, or a line that starts with a space or
** tab (obsolete folding, RFC 9112 5.2) is refused: no API or storage host
** sends them, and libcurl's unfolding is where 7.88's crashes live, so the
** transfer stops before libcurl reads another line of that response. */
static int transfer_header_line_ok(const char *p, size_t n) {
  if (n > 0 && (p[0] == ' ' || p[0] == '\t')) return 0;
  if (n > 0 && p[n - 1] == '\n') n--;
  if (n > 0 && p[n - 1] == '\r') n--;
  return memchr(p, '\r', n) == NULL && memchr(p, '\0', n) == NULL;
}

static size_t transfer_on_header(char *p, size_t size, size_t nmemb, void *ud) {
  bearer_transfer *t = ud;
  size_t n = size * nmemb;
  if (!transfer_header_line_ok(p, n)) {
    t->stop = BEARER_STOP_MALFORMED;
    return 0;
  }
  if (t->head.n + n > TRANSFER_HEAD_MAX) {
    t->stop = BEARER_STOP_HEAD_TOO_LARGE;
    return 0;
  }
  if (transfer_buf_add(&t->head, p, n) != 0) {
    t->stop = BEARER_STOP_NO_MEMORY;
    return 0;
  }
  return n;
}

static int transfer_on_debug(CURL *h, curl_infotype type, char *p, size_t n, void *ud) {
  bearer_transfer *t = ud;
  (void)h;
  if (type == CURLINFO_HEADER_OUT) transfer_buf_add(&t->trace_out, p, n);
  else if (type == CURLINFO_HEADER_IN) transfer_buf_add(&t->trace_in, p, n);
  return 0;
}

/* Progress is only recorded here; the Lua layer reads it between engine
** steps (transfer:progress()), never from inside libcurl. */
static int transfer_on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow,
                                curl_off_t ultotal, curl_off_t ulnow) {
  bearer_transfer *t = ud;
  t->dl_total = dltotal;
  t->dl_now = dlnow;
  t->ul_total = ultotal;
  t->ul_now = ulnow;
  return 0;
}

/* 127.0.0.0/8, ::1, or an IPv4-mapped 127.x, in text form. */
BEARER_INTERNAL int bearer_ip_is_loopback(const char *ip) {
  unsigned char a[16];
  if (inet_pton(AF_INET, ip, a) == 1) return a[0] == 127;
  if (inet_pton(AF_INET6, ip, a) != 1) return 0;
  static const unsigned char v4mapped[12] = { 0,0,0,0, 0,0,0,0, 0,0,0xff,0xff };
  if (memcmp(a, v4mapped, 12) == 0) return a[12] == 127;
  for (int i = 0; i < 15; i++)
    if (a[i] != 0) return 0;
  return a[15] == 1;
}

#if TRANSFER_CURL_VER_GE(7, 80, 0)
/* Runs once a connection stands and before any request byte goes out: a
** credential over plain http goes only where the host's spelling promised,
** whatever the resolver made of it. */
static int transfer_on_connected(void *ud, char *primary_ip, char *local_ip,
                                 int primary_port, int local_port) {
  bearer_transfer *t = ud;
  (void)local_ip; (void)primary_port; (void)local_port;
  if (t->loopback_only && !bearer_ip_is_loopback(primary_ip)) {
    t->stop = BEARER_STOP_NOT_LOOPBACK;
    return CURL_PREREQFUNC_ABORT;
  }
  return CURL_PREREQFUNC_OK;
}
#endif

/* }====================================================== */

/* {====================================================== building the request */

static int transfer_header_name_ok(const char *s, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (!(isalnum(ch) || strchr("!#$%&'*+-.^_`|~", ch))) return 0;
  }
  return 1;
}

BEARER_INTERNAL int bearer_header_value_ok(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '\r' || ch == '\n' || ch == '\0') return 0;
  }
  return 1;
}

static int transfer_is_auth_header(const char *name) {
  return strcasecmp(name, "authorization") == 0 || strcasecmp(name, "x-api-key") == 0;
}

static int transfer_append(bearer_transfer *t, const char *line) {
  struct curl_slist *h = curl_slist_append(t->headers, line);
  if (h == NULL) return -1;
  t->headers = h;
  return 0;
}

static void transfer_free_headers(bearer_transfer *t) {
  for (struct curl_slist *h = t->headers; h != NULL; h = h->next)
    bearer_cleanse(h->data, strlen(h->data));
  curl_slist_free_all(t->headers);
  t->headers = NULL;
}

/*
** Builds the header list from the Lua table at idx. Caller mistakes raise
** (the list stays owned by the transfer, so nothing leaks). A caller's own
** Authorization/X-API-Key is dropped when with_key.
*/
/* Appends "name: value"; composed on the C stack when it fits (a Lua
** string per line was garbage on every call). */
static int transfer_append_header(bearer_transfer *t, const char *name, size_t nn,
                                  const char *value, size_t vn) {
  char small[512];
  size_t n = nn + 2 + vn + 1;
  char *line = n <= sizeof small ? small : malloc(n);
  if (line == NULL) return -1;
  memcpy(line, name, nn);
  memcpy(line + nn, ": ", 2);
  memcpy(line + nn + 2, value, vn);
  line[n - 1] = '\0';
  int rc = transfer_append(t, line);
  if (line != small) free(line);
  return rc;
}

/* The caller's header lines from the table at idx (names and values
** checked: a caller's mistake raises); whether one is a User-Agent. */
static int transfer_caller_headers(lua_State *L, bearer_transfer *t, int idx, int with_key) {
  int own_agent = 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "bad header name (string expected, got %s)", luaL_typename(L, -2));
    size_t nn, vn;
    const char *name = lua_tolstring(L, -2, &nn);
    if (!transfer_header_name_ok(name, nn))
      luaL_error(L, "bad header name '%s' (not an HTTP token)", name);
    int ty = lua_type(L, -1);
    if (ty != LUA_TSTRING && ty != LUA_TNUMBER)
      luaL_error(L, "bad value for header '%s' (string expected, got %s)",
                 name, luaL_typename(L, -1));
    lua_pushvalue(L, -1);   /* tolstring on a copy: lua_next needs the key intact */
    const char *value = lua_tolstring(L, -1, &vn);
    if (!bearer_header_value_ok(value, vn))
      luaL_error(L, "bad value for header '%s' (CR, LF and NUL are refused: "
                 "header injection)", name);
    if (!(with_key && transfer_is_auth_header(name))) {
      if (transfer_append_header(t, name, nn, value, vn) != 0) luaL_error(L, "out of memory");
      if (strcasecmp(name, "user-agent") == 0) own_agent = 1;
    }
    lua_pop(L, 2);
  }
  return own_agent;
}

/* The request's header lines: the caller's (table at idx, or nil), then
** the client's User-Agent line unless the caller named one. */
BEARER_INTERNAL void bearer_transfer_headers(lua_State *L, bearer_transfer *t, int idx,
                                             int with_key, const char *user_agent_line) {
  if (transfer_append(t, "Expect:") != 0) luaL_error(L, "out of memory");
  int own_agent = !lua_isnil(L, idx) && transfer_caller_headers(L, t, idx, with_key);
  if (user_agent_line != NULL && !own_agent && transfer_append(t, user_agent_line) != 0)
    luaL_error(L, "out of memory");
}

/* Adds the credential line for t->cred; 0, or -1 when out of memory. It is
** composed in a scratch block wiped at once; curl's copy is wiped when the
** list goes (transfer_free_headers). Raises nothing: a vault entry may be
** held. */
BEARER_INTERNAL int bearer_transfer_credential(bearer_transfer *t, const char *prefix) {
  size_t pn = strlen(prefix), n = pn + t->cred.len + 1;
  char *line = malloc(n);
  if (line == NULL) return -1;
  memcpy(line, prefix, pn);
  memcpy(line + pn, t->cred.bytes, t->cred.len);
  line[n - 1] = '\0';
  int rc = transfer_append(t, line);
  bearer_cleanse(line, n);
  free(line);
  return rc;
}

/*
** Builds t->form from the array at idx, each part {name=, value=} or
** {name=, file=, filename=, type=}. Wrong types and strings that would
** break out of the part's header lines raise; a file that cannot be read
** returns 1 with a message pushed (the caller returns nil, err).
** libcurl reads files while sending: nothing is loaded into memory here.
*/
BEARER_INTERNAL int bearer_transfer_form(lua_State *L, bearer_transfer *t, int idx) {
  static const char *const fields[] = { "name", "value", "file", "filename", "type" };
  t->form = curl_mime_init(t->easy);
  if (t->form == NULL) return luaL_error(L, "out of memory");
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
      if (v != NULL && !bearer_header_value_ok(v, fn))
        return luaL_error(L, "bad form part '%s' ('%s': CR, LF and NUL are refused: "
                          "header injection)", name, fields[f - part - 1]);
    }
    curl_mimepart *mp = curl_mime_addpart(t->form);
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

/* Creates the sink file (it must not exist); 0 or an errno. */
BEARER_INTERNAL int bearer_transfer_sink(bearer_transfer *t, const char *path) {
  t->sink_path = strdup(path);
  if (t->sink_path == NULL) return ENOMEM;
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  t->sink = fd >= 0 ? fdopen(fd, "wb") : NULL;
  if (t->sink != NULL) return 0;
  int err = errno;
  if (fd >= 0) close(fd);
  return err;
}

static void transfer_set_method(CURL *h, const bearer_request *rq, curl_mime *form) {
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
  ** goes out); DELETE without a body stays body-less. The body is copied:
  ** the transfer may outlive the Lua call that started it. */
  if (rq->body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0
      || strcmp(method, "PATCH") == 0) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->blen);
    curl_easy_setopt(h, CURLOPT_COPYPOSTFIELDS, rq->body != NULL ? rq->body : "");
  }
  if (strcmp(method, "POST") != 0) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
}

/* Sets every option of the easy handle for this request; raises nothing.
** libcurl copies the strings it is given (URL, method, user agent). */
BEARER_INTERNAL void bearer_transfer_setup(bearer_transfer *t, const bearer_request *rq,
                                           const bearer_transport *tp) {
  CURL *h = t->easy;
  t->loopback_only = rq->plain && rq->with_key;
  curl_easy_setopt(h, CURLOPT_PRIVATE, t);
  curl_easy_setopt(h, CURLOPT_URL, rq->url);
#if TRANSFER_CURL_VER_GE(7, 85, 0)
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
  if (t->loopback_only) curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
#if TRANSFER_CURL_VER_GE(7, 80, 0)
  curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, transfer_on_connected);
  curl_easy_setopt(h, CURLOPT_PREREQDATA, t);
#endif
  curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, rq->timeout_ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, tp->connect_timeout_ms);
  curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, t->limit);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, t->headers);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, t->errbuf);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, transfer_on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, transfer_on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, t);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, transfer_on_progress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, t);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  if (tp->ca_file) curl_easy_setopt(h, CURLOPT_CAINFO, tp->ca_file);
  if (tp->proxy) curl_easy_setopt(h, CURLOPT_PROXY, tp->proxy);
  /* The header list never goes to a proxy (libcurl's CURLHEADER_SEPARATE),
  ** so a CONNECT names the client only through CURLOPT_USERAGENT; the API's
  ** request leaves this one out, since the list names a User-Agent. */
  if (tp->user_agent_line && !t->loopback_only)
    curl_easy_setopt(h, CURLOPT_USERAGENT,
                     tp->user_agent_line + sizeof BEARER_USER_AGENT_PREFIX - 1);
  if (rq->trace) {
    curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, transfer_on_debug);
    curl_easy_setopt(h, CURLOPT_DEBUGDATA, t);
    curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
  }
  transfer_set_method(h, rq, t->form);
}

/* }====================================================== */

/* {====================================================== life cycle */

/* Pushes a new, empty transfer; its user value anchors the client at
** client_idx and the key (or nil) on top of the stack, which it pops. */
BEARER_INTERNAL bearer_transfer *bearer_transfer_new(lua_State *L, int client_idx) {
  client_idx = lua_absindex(L, client_idx);
  bearer_transfer *t = lua_newuserdatauv(L, sizeof(*t), 1);
  memset(t, 0, sizeof(*t));
  t->state = BEARER_T_BUILDING;
  luaL_setmetatable(L, BEARER_TRANSFER_MT);
  lua_createtable(L, 3, 0);
  lua_pushvalue(L, client_idx);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, -3);   /* the key */
  lua_rawseti(L, -2, 2);
  lua_setiuservalue(L, -2, 1);
  lua_remove(L, -2);      /* the key */
  return t;
}

/* Gives back what the request held; idempotent. Called on completion
** (t->easy already detached from the engine), on close and on __gc. */
BEARER_INTERNAL void bearer_transfer_release(bearer_transfer *t) {
  if (t->easy != NULL) {
    bearer_engine_detach(t);
    curl_easy_cleanup(t->easy);   /* the connection stays with the engine */
    t->easy = NULL;
  }
  transfer_free_headers(t);
  curl_mime_free(t->form);
  t->form = NULL;
  if (t->sink != NULL && fclose(t->sink) != 0 && t->sink_errno == 0) t->sink_errno = errno;
  t->sink = NULL;
}

/* The credential's borrow ends: after the result is pushed, or on close. */
static void transfer_release_cred(bearer_transfer *t) {
  if (t->vault_id != 0) bearer_vault_release(t->vault_id);
  t->vault_id = 0;
  t->cred.bytes = NULL;
  t->cred.len = 0;
}

/* The engine calls this when libcurl reports the transfer done. */
BEARER_INTERNAL void bearer_transfer_complete(bearer_transfer *t, CURLcode rc) {
  t->rc = rc;
  if (t->easy != NULL) {   /* NULL: failed by a closing or forked engine */
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
    curl_easy_getinfo(t->easy, CURLINFO_REQUEST_SIZE, &t->request_size);
    curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME, &t->seconds);
  }
  bearer_transfer_release(t);
  /* last: a threaded engine's worker may take the result from here on */
  __atomic_store_n(&t->state, BEARER_T_DONE, __ATOMIC_RELEASE);
}

/* What came back, once it is in Lua strings (the result is pushed) or the
** transfer goes. Not left to __gc: Lua's collector counts only the small
** userdata, so a loop of calls would pile up these blocks between cycles
** (the peak-RSS row of make bench). */
static void transfer_free_buffers(bearer_transfer *t) {
  transfer_buf_free(&t->body);
  transfer_buf_free(&t->head);
  transfer_buf_free(&t->trace_out);
  transfer_buf_free(&t->trace_in);
}

static int transfer_gc(lua_State *L) {
  bearer_transfer *t = luaL_checkudata(L, 1, BEARER_TRANSFER_MT);
  /* acquire: a threaded engine's writes to t come before its done */
  bearer_tstate state = __atomic_load_n(&t->state, __ATOMIC_ACQUIRE);
  if (state == BEARER_T_CLOSED) return 0;
  if (state == BEARER_T_RUNNING && !bearer_engine_cancel(t))
    return 0;   /* a threaded engine aborts it; it is freed once done */
  bearer_transfer_release(t);
  transfer_release_cred(t);
  transfer_free_buffers(t);
  if (t->waiter != NULL) bearer_nginx_waiter_free(t->waiter);
  t->waiter = NULL;
  free(t->sink_path);
  t->sink_path = NULL;
  if (t->state != BEARER_T_DONE) t->rc = CURLE_ABORTED_BY_CALLBACK;
  t->state = BEARER_T_CLOSED;
  return 0;
}

/* }====================================================== */

/* {====================================================== results */

/* How each libcurl failure reads to a user: kind, code. */
#define TRANSFER_CURL_ERRORS(X)                                          \
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

static void transfer_classify(CURLcode rc, const char **kind, const char **code) {
  switch (rc) {
#define TRANSFER_CASE(e, k, c) case e: *kind = k; *code = c; return;
    TRANSFER_CURL_ERRORS(TRANSFER_CASE)
#undef TRANSFER_CASE
    default:
      *kind = "connection";
      *code = "transport_error";
  }
}

/* Header lines of the last response in head (a bound for its table). */
static int transfer_count_lines(const bearer_buf *head) {
  int n = 0;
  for (const char *p = head->p, *end = head->p + head->n; p < end; n++) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL) break;
    p = nl + 1;
  }
  return n;
}

/* Pushes the lower-cased name s[0..n) (an interned short string). */
static void transfer_push_lower(lua_State *L, const char *s, size_t n) {
  char small[64];
  if (n <= sizeof small) {
    for (size_t k = 0; k < n; k++) small[k] = (char)tolower((unsigned char)s[k]);
    lua_pushlstring(L, small, n);
    return;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t k = 0; k < n; k++) luaL_addchar(&b, (char)tolower((unsigned char)s[k]));
  luaL_pushresult(&b);
}

/* Pushes the response headers table parsed from t->head; only the last
** block counts (a 100 Continue or a proxy's CONNECT answer come first). A
** repeated header's values are joined with ", " as HTTP allows, in one
** pass over a list per name (no concatenation per repeat). */
static void transfer_push_headers(lua_State *L, bearer_transfer *t) {
  /* name -> value, or name -> { values } while repeated; sized once (a
  ** table grown from empty rehashed five times for a dozen headers) */
  int lines = transfer_count_lines(&t->head);
  lua_createtable(L, 0, lines);
  int tbl = lua_gettop(L), repeated = 0, named = 0;
  size_t i = 0;
  while (i < t->head.n) {
    const char *s = t->head.p + i;
    const char *nl = memchr(s, '\n', t->head.n - i);
    size_t len = nl ? (size_t)(nl - s) : t->head.n - i;
    i += len + 1;
    while (len > 0 && (s[len - 1] == '\r' || s[len - 1] == '\n')) len--;
    if (len >= 5 && memcmp(s, "HTTP/", 5) == 0) {   /* a new response: only its headers */
      if (named) {
        lua_createtable(L, 0, lines);
        lua_replace(L, tbl);
      }
      repeated = named = 0;
      continue;
    }
    const char *colon = memchr(s, ':', len);
    if (colon == NULL || colon == s) continue;
    named = 1;
    transfer_push_lower(L, s, (size_t)(colon - s));
    const char *v = colon + 1, *e = s + len;
    while (v < e && (*v == ' ' || *v == '\t')) v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
    lua_pushvalue(L, -1);
    lua_rawget(L, tbl);
    int seen = lua_type(L, -1);
    if (seen == LUA_TNIL) {
      lua_pop(L, 1);
      lua_pushlstring(L, v, (size_t)(e - v));
      lua_rawset(L, tbl);
      continue;
    }
    if (seen == LUA_TSTRING) {   /* second value: start the name's list */
      lua_createtable(L, 4, 0);
      lua_insert(L, -2);
      lua_rawseti(L, -2, 1);
      lua_pushvalue(L, -2);
      lua_pushvalue(L, -2);
      lua_rawset(L, tbl);
      repeated = 1;
    }
    lua_pushlstring(L, v, (size_t)(e - v));
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 2);
  }
  if (!repeated) return;
  lua_pushnil(L);
  while (lua_next(L, tbl) != 0) {
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
      lua_rawset(L, tbl);   /* replacing an existing key's value: next stays valid */
    }
    lua_pop(L, 1);
  }
}

/* Sets r.trace_request / r.trace_response (r on top) when tracing. */
static void transfer_set_trace(lua_State *L, bearer_transfer *t) {
  if (t->trace_out.n > 0) {
    bearer_redact_push(L, t->trace_out.p, t->trace_out.n, t->cred);
    lua_setfield(L, -2, "trace_request");
  }
  if (t->trace_in.n > 0) {
    bearer_redact_push(L, t->trace_in.p, t->trace_in.n, t->cred);
    lua_setfield(L, -2, "trace_response");
  }
}

/* Pushes nil, err for a failed transfer. */
static void transfer_push_failure(lua_State *L, bearer_transfer *t) {
  const char *kind, *code;
  transfer_classify(t->rc, &kind, &code);
  /* libcurl's header parser refusing a line it was handed (a folded first
  ** header line): the response's fault, not the call's */
  if (t->stop == BEARER_STOP_NONE && t->rc == CURLE_BAD_FUNCTION_ARGUMENT && t->head.n > 0)
    t->stop = BEARER_STOP_MALFORMED;
  /* libcurl refuses a single header line past its own limit (100 KiB) as
  ** out of memory, before our callback sees it */
  if (t->stop == BEARER_STOP_NONE && t->rc == CURLE_OUT_OF_MEMORY && t->received == 0)
    t->stop = BEARER_STOP_HEAD_TOO_LARGE;
  switch (t->stop) {
    case BEARER_STOP_TOO_LARGE:
    case BEARER_STOP_HEAD_TOO_LARGE: kind = "too_large"; code = "response_too_large"; break;
    case BEARER_STOP_NO_MEMORY: kind = "connection"; code = "out_of_memory"; break;
    case BEARER_STOP_MALFORMED: kind = "server"; code = "malformed_response"; break;
    case BEARER_STOP_NOT_LOOPBACK: kind = "config"; code = "insecure_transport"; break;
    case BEARER_STOP_NO_CONNECTION: kind = "connection"; code = "worker_connections"; break;
    case BEARER_STOP_NONE:
      if (t->rc == CURLE_OPERATION_TIMEDOUT && t->request_size == 0) code = "connect_timeout";
      /* after the request went out, this is libcurl refusing the answer
      ** (a status past three digits), not the URL's scheme */
      if (t->rc == CURLE_UNSUPPORTED_PROTOCOL && t->request_size > 0) {
        kind = "server";
        code = "malformed_response";
      }
      if (t->rc == CURLE_ABORTED_BY_CALLBACK) code = "aborted";
      break;
  }
  const char *detail = t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->rc);
  if (t->stop == BEARER_STOP_TOO_LARGE)
    lua_pushfstring(L, "response larger than %f bytes; cut off", (lua_Number)t->limit);
  else if (t->stop == BEARER_STOP_HEAD_TOO_LARGE)
    lua_pushfstring(L, "response headers larger than %d bytes, or one line past "
                    "libcurl's 100 KiB; cut off", TRANSFER_HEAD_MAX);
  else if (t->stop == BEARER_STOP_MALFORMED && t->rc == CURLE_WEIRD_SERVER_REPLY)
    lua_pushfstring(L, "malformed status line (status %d)", (int)t->status);
  else if (t->stop == BEARER_STOP_MALFORMED)
    lua_pushliteral(L, "malformed response header (bare CR, NUL or folded line); "
                       "connection dropped");
  else if (t->stop == BEARER_STOP_NOT_LOOPBACK)
    lua_pushliteral(L, "refusing to send credentials over plain http: the host "
                       "resolved to an address that is not loopback");
  else if (t->stop == BEARER_STOP_NO_CONNECTION)
    lua_pushliteral(L, "the nginx worker has no connection free for this call's "
                       "socket (raise worker_connections)");
  else
    bearer_redact_push(L, detail, strlen(detail), t->cred);
  luaL_pushfail(L);
  bearer_error_push(L, kind, code, "%s", lua_tostring(L, -2));
  lua_pushboolean(L, t->request_size > 0);
  lua_setfield(L, -2, "sent");
  lua_pushinteger(L, (lua_Integer)t->rc);
  lua_setfield(L, -2, "curl_code");
  transfer_set_trace(L, t);
}

/* Pushes the response table of a completed transfer. */
static void transfer_push_response(lua_State *L, bearer_transfer *t) {
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, (lua_Integer)t->status);
  lua_setfield(L, -2, "status");
  transfer_push_headers(L, t);
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, t->body.p ? t->body.p : "", t->body.n);
  lua_setfield(L, -2, "body");
  lua_pushnumber(L, t->seconds);
  lua_setfield(L, -2, "time");
  if (t->sink_path != NULL) {
    lua_pushnumber(L, (lua_Number)t->sunk);
    lua_setfield(L, -2, "bytes");
  }
  transfer_set_trace(L, t);
}

/* Pushes the outcome of a done transfer: response, or nil, err; returns
** the count. The credential stays borrowed for redaction until here. */
BEARER_INTERNAL int bearer_transfer_push_result(lua_State *L, bearer_transfer *t) {
  int n;
  /* libcurl reads a status line's number whatever its length (HTTP/2 1000,
  ** HTTP/1.1 25112): HTTP has three digits */
  if (t->rc == CURLE_OK && (t->status < 100 || t->status > 999)) {
    t->rc = CURLE_WEIRD_SERVER_REPLY;
    t->stop = BEARER_STOP_MALFORMED;
  }
  /* the key may have been closed while the transfer ran: then no bytes */
  if (t->key != NULL) t->cred = bearer_key_secret(t->key);
  if (t->sink_errno != 0) {
    luaL_pushfail(L);
    bearer_error_push(L, "config", "write_failed", "cannot write %s: %s",
                      t->sink_path ? t->sink_path : "the sink", strerror(t->sink_errno));
    n = 2;
  } else if (t->rc != CURLE_OK) {
    transfer_push_failure(L, t);
    n = 2;
  } else {
    transfer_push_response(L, t);
    n = 1;
  }
  transfer_release_cred(t);
  transfer_free_buffers(t);
  return n;
}

static bearer_transfer *transfer_check(lua_State *L) {
  bearer_transfer *t = luaL_checkudata(L, 1, BEARER_TRANSFER_MT);
  if (t->state == BEARER_T_CLOSED) luaL_error(L, "attempt to use a closed bearer.Transfer");
  return t;
}

/* t:done() -> whether the transfer has completed (its result is ready) */
static int transfer_done(lua_State *L) {
  lua_pushboolean(L, bearer_engine_done(transfer_check(L)));
  return 1;
}

/* t:result() -> response | nil, err; once, after done(). */
static int transfer_result(lua_State *L) {
  bearer_transfer *t = transfer_check(L);
  if (!bearer_engine_done(t) || t->state != BEARER_T_DONE)
    return luaL_error(L, "bearer.Transfer: result() before the transfer is done");
  if (t->consumed) return luaL_error(L, "bearer.Transfer: result() was already taken");
  t->consumed = 1;
  return bearer_transfer_push_result(L, t);
}

/* t:progress() -> received, expected | nil, sent, to_send | nil (bytes,
** as libcurl last reported them; an unknown total is nil). */
static int transfer_progress(lua_State *L) {
  bearer_transfer *t = transfer_check(L);
  lua_pushinteger(L, (lua_Integer)t->dl_now);
  if (t->dl_total > 0) lua_pushinteger(L, (lua_Integer)t->dl_total);
  else lua_pushnil(L);
  lua_pushinteger(L, (lua_Integer)t->ul_now);
  if (t->ul_total > 0) lua_pushinteger(L, (lua_Integer)t->ul_total);
  else lua_pushnil(L);
  return 4;
}

/* t:token() -> the number that names this transfer to a threaded engine's
** waiting handlers (bearer.ngx sends it as a line on the engine socket). */
static int transfer_token(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)transfer_check(L)->token);
  return 1;
}

/* t:waiter() -> lightuserdata | nil: on an nginx worker's loop, the
** semaphore (lua-nginx-module's) posted when t is done; t owns it, so it
** is waited on only while t is held. */
static int transfer_waiter(lua_State *L) {
  bearer_transfer *t = transfer_check(L);
  if (t->waiter == NULL) lua_pushnil(L);
  else lua_pushlightuserdata(L, t->waiter);
  return 1;
}

static int transfer_tostring(lua_State *L) {
  bearer_transfer *t = luaL_checkudata(L, 1, BEARER_TRANSFER_MT);
  static const char *const names[] = { "building", "running", "done", "closed" };
  lua_pushfstring(L, "bearer.Transfer(%s)", names[t->state]);
  return 1;
}

/* }====================================================== */

static const luaL_Reg transfer_methods[] = {
  {"done", transfer_done},
  {"result", transfer_result},
  {"progress", transfer_progress},
  {"token", transfer_token},
  {"waiter", transfer_waiter},
  {"close", transfer_gc},
  {NULL, NULL}
};

static const luaL_Reg transfer_meta[] = {
  {"__gc", transfer_gc},
  {"__close", transfer_gc},
  {"__tostring", transfer_tostring},
  {NULL, NULL}
};

BEARER_INTERNAL void bearer_transfer_open(lua_State *L) {
  luaL_newmetatable(L, BEARER_TRANSFER_MT);
  luaL_setfuncs(L, transfer_meta, 0);
  luaL_newlib(L, transfer_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
