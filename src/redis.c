/*
** redis.c: hiredis, for the stores bearer shares between hosts (issue 11:
** rate-limit slots, the polling slot, webhook replay marks).
**
** Built only when the Makefile finds hiredis (BEARER_HIREDIS); without it
** core.redis is false and lua/bearer/redis.lua makes a redis:// store a
** `config` error. This file owns the bytes and their parsing, never the
** policy (keys, scripts, fallbacks: bearer.redis). Two ways in:
**   core.redis_connect(host, port, timeout) -> bearer.Redis: a blocking
**     connection for plain Lua, each command bounded by `timeout` seconds
**     (connect included) so a dead server costs at most that;
**   core.redis_format(argv) and core.redis_reader(): hiredis's own command
**     encoder and reply parser, for nginx, whose cosockets do the waiting
**     (lua/bearer/ngx/redis.lua), so nothing blocks a worker.
** A reply reaches Lua as: status/string -> string, integer -> integer,
** nil -> false, array -> table (nested error replies -> false). Calls
** answer `true, value`, or `true, nil, message` for an error reply, or
** `nil, err` (a bearer.Error, kind connection, code store_unavailable).
** No Lua runs while hiredis is on the stack: replies are converted after
** hiredis returns them.
*/
#include <stdlib.h>
#include <sys/time.h>

#include "bearer.h"

#ifdef BEARER_HIREDIS
#include <hiredis/hiredis.h>

#define REDIS_MT "bearer.Redis"
#define REDIS_READER_MT "bearer.RedisReader"
#define REDIS_MAX_ARGS 64

typedef struct redis_conn {
  redisContext *ctx;   /* NULL once closed */
} redis_conn;

typedef struct redis_reader {
  redisReader *r;      /* NULL once collected */
} redis_reader;

static void redis_push_unavailable(lua_State *L, const char *why) {
  bearer_error_push(L, "connection", "store_unavailable", "redis store unavailable: %s", why);
}

/* Arrays nest at most as deep as a script's reply; Lua's stack is checked. */
static void redis_push_value(lua_State *L, const redisReply *rep, int depth) {
  luaL_checkstack(L, 3, "redis reply too deep");
  switch (rep->type) {
  case REDIS_REPLY_STRING:
  case REDIS_REPLY_STATUS:
    lua_pushlstring(L, rep->str, rep->len);
    break;
  case REDIS_REPLY_INTEGER:
    lua_pushinteger(L, (lua_Integer)rep->integer);
    break;
  case REDIS_REPLY_ARRAY:
    if (depth > 8) { lua_pushboolean(L, 0); break; }
    lua_createtable(L, (int)rep->elements, 0);
    for (size_t i = 0; i < rep->elements; i++) {
      redis_push_value(L, rep->element[i], depth + 1);
      lua_rawseti(L, -2, (int)i + 1);
    }
    break;
  default:   /* nil, and error replies inside an array */
    lua_pushboolean(L, 0);
  }
}

/* Pushes the call's answer for the reply (a light userdata at 1). */
static int redis_push_reply_unprotected(lua_State *L) {
  const redisReply *rep = lua_touserdata(L, 1);
  lua_pushboolean(L, 1);
  if (rep->type == REDIS_REPLY_ERROR) {
    lua_pushnil(L);
    lua_pushlstring(L, rep->str, rep->len);
    return 3;
  }
  redis_push_value(L, rep, 0);
  return 2;
}

/* Pushes the call's answer for a whole reply and frees it, also when a
** push raises (out of memory): the reply is hiredis's malloc'd tree, so
** the pushes run under lua_pcall and the error is raised after the free. */
static int redis_push_reply(lua_State *L, redisReply *rep) {
  int top = lua_gettop(L);
  lua_pushcfunction(L, redis_push_reply_unprotected);
  lua_pushlightuserdata(L, rep);
  int status = lua_pcall(L, 1, LUA_MULTRET, 0);
  freeReplyObject(rep);
  if (status != 0) return lua_error(L);   /* 0: LUA_OK, which 5.1 lacks */
  return lua_gettop(L) - top;
}

/* argv from the array at idx: strings (numbers converted), at most
** REDIS_MAX_ARGS; raises on anything else (a bug of bearer.redis). */
static int redis_argv(lua_State *L, int idx, const char **argv, size_t *lens) {
  luaL_checktype(L, idx, LUA_TTABLE);
  int n = (int)lua_rawlen(L, idx);
  if (n < 1 || n > REDIS_MAX_ARGS) luaL_argerror(L, idx, "1 to 64 arguments expected");
  luaL_checkstack(L, n, "redis arguments");
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, idx, i + 1);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
      luaL_argerror(L, idx, "strings expected");
    }
    argv[i] = lua_tolstring(L, -1, &lens[i]);   /* anchored: stays on the stack */
  }
  return n;
}

static struct timeval redis_timeval(lua_State *L, int idx) {
  lua_Number s = luaL_checknumber(L, idx);
  if (!(s > 0 && s < 86400)) luaL_argerror(L, idx, "timeout in seconds expected (0 < t < 86400)");
  struct timeval tv;
  tv.tv_sec = (time_t)s;
  tv.tv_usec = (suseconds_t)((s - (lua_Number)tv.tv_sec) * 1e6);
  return tv;
}

/* core.redis_connect(host, port, timeout) -> bearer.Redis | nil, err */
static int redis_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  if (port < 1 || port > 65535) luaL_argerror(L, 2, "port 1-65535 expected");
  struct timeval tv = redis_timeval(L, 3);
  redis_conn *c = lua_newuserdatauv(L, sizeof *c, 0);
  c->ctx = NULL;
  luaL_setmetatable(L, REDIS_MT);
  redisContext *ctx = redisConnectWithTimeout(host, (int)port, tv);
  if (ctx == NULL) {
    luaL_pushfail(L);
    redis_push_unavailable(L, "out of memory");
    return 2;
  }
  if (ctx->err || redisSetTimeout(ctx, tv) != REDIS_OK) {
    luaL_pushfail(L);
    redis_push_unavailable(L, ctx->err ? ctx->errstr : "cannot set the timeout");
    redisFree(ctx);
    return 2;
  }
  c->ctx = ctx;
  return 1;
}

static redis_conn *redis_check(lua_State *L) {
  return luaL_checkudata(L, 1, REDIS_MT);
}

/* conn:command(argv) -> see the file's comment. A connection that failed
** once is closed: the caller connects again. */
static int redis_command(lua_State *L) {
  redis_conn *c = redis_check(L);
  const char *argv[REDIS_MAX_ARGS];
  size_t lens[REDIS_MAX_ARGS];
  int n = redis_argv(L, 2, argv, lens);
  if (c->ctx == NULL) {
    luaL_pushfail(L);
    redis_push_unavailable(L, "connection closed");
    return 2;
  }
  redisReply *rep = redisCommandArgv(c->ctx, n, argv, lens);
  if (rep == NULL) {
    luaL_pushfail(L);
    redis_push_unavailable(L, c->ctx->err ? c->ctx->errstr : "no reply");
    redisFree(c->ctx);
    c->ctx = NULL;
    return 2;
  }
  return redis_push_reply(L, rep);
}

/* close(), __gc and __close: one idempotent release. A connection closed
** (by the caller or by a failure) answers nil, err: bearer.redis then
** connects again. */
static int redis_close(lua_State *L) {
  redis_conn *c = redis_check(L);
  if (c->ctx) redisFree(c->ctx);
  c->ctx = NULL;
  return 0;
}

static int redis_is_open(lua_State *L) {
  lua_pushboolean(L, redis_check(L)->ctx != NULL);
  return 1;
}

typedef struct redis_bytes { const char *p; size_t n; } redis_bytes;

static int redis_push_bytes(lua_State *L) {
  const redis_bytes *b = lua_touserdata(L, 1);
  lua_pushlstring(L, b->p, b->n);
  return 1;
}

/* core.redis_format(argv) -> the command in Redis's protocol. hiredis
** mallocs it: copied under lua_pcall, freed before any error is raised. */
static int redis_format(lua_State *L) {
  const char *argv[REDIS_MAX_ARGS];
  size_t lens[REDIS_MAX_ARGS];
  int n = redis_argv(L, 1, argv, lens);
  char *out = NULL;
  int len = redisFormatCommandArgv(&out, n, argv, lens);
  if (len < 0 || out == NULL) return luaL_error(L, "redis_format: out of memory");
  redis_bytes b = { out, (size_t)len };
  lua_pushcfunction(L, redis_push_bytes);
  lua_pushlightuserdata(L, &b);
  int status = lua_pcall(L, 1, 1, 0);
  free(out);
  if (status != 0) return lua_error(L);   /* 0: LUA_OK, which 5.1 lacks */
  return 1;
}

/* core.redis_reader() -> bearer.RedisReader */
static int redis_reader_new(lua_State *L) {
  redis_reader *rd = lua_newuserdatauv(L, sizeof *rd, 0);
  rd->r = NULL;
  luaL_setmetatable(L, REDIS_READER_MT);
  rd->r = redisReaderCreate();
  if (rd->r == NULL) return luaL_error(L, "redis_reader: out of memory");
  return 1;
}

static redis_reader *redis_reader_check(lua_State *L) {
  redis_reader *rd = luaL_checkudata(L, 1, REDIS_READER_MT);
  if (rd->r == NULL) luaL_argerror(L, 1, "reader is closed");
  return rd;
}

/* reader:feed(bytes) */
static int redis_reader_feed(lua_State *L) {
  redis_reader *rd = redis_reader_check(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  if (redisReaderFeed(rd->r, s, n) != REDIS_OK) return luaL_error(L, "redis_reader: out of memory");
  return 0;
}

/* reader:get() -> false (more bytes needed) | the call's answer; a
** protocol error (a hostile or broken server) is nil, err. */
static int redis_reader_get(lua_State *L) {
  redis_reader *rd = redis_reader_check(L);
  void *rep = NULL;
  if (redisReaderGetReply(rd->r, &rep) != REDIS_OK) {
    luaL_pushfail(L);
    redis_push_unavailable(L, rd->r->errstr[0] ? rd->r->errstr : "protocol error");
    return 2;
  }
  if (rep == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  return redis_push_reply(L, rep);
}

static int redis_reader_gc(lua_State *L) {
  redis_reader *rd = luaL_checkudata(L, 1, REDIS_READER_MT);
  if (rd->r) redisReaderFree(rd->r);
  rd->r = NULL;
  return 0;
}

static const luaL_Reg redis_methods[] = {
  {"command", redis_command},
  {"close", redis_close},
  {"is_open", redis_is_open},
  {NULL, NULL}
};

static const luaL_Reg redis_reader_methods[] = {
  {"feed", redis_reader_feed},
  {"get", redis_reader_get},
  {NULL, NULL}
};

static const luaL_Reg redis_functions[] = {
  {"redis_connect", redis_connect},
  {"redis_format", redis_format},
  {"redis_reader", redis_reader_new},
  {NULL, NULL}
};

/* metatable.__index = methods; __gc and __close = the one release */
static void redis_metatable(lua_State *L, const char *name, const luaL_Reg *methods,
                            lua_CFunction release) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, release);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, release);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
}

BEARER_INTERNAL void bearer_redis_open(lua_State *L) {
  redis_metatable(L, REDIS_MT, redis_methods, redis_close);
  redis_metatable(L, REDIS_READER_MT, redis_reader_methods, redis_reader_gc);
  luaL_setfuncs(L, redis_functions, 0);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "redis");
}

#else

/* Without hiredis: core.redis = false, and nothing else. */
BEARER_INTERNAL void bearer_redis_open(lua_State *L) {
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "redis");
}

#endif
