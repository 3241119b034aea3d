/*
** engine.c: bearer.Engine, the transfer engine: one libcurl multi handle
** per Lua state (so one per process, one per nginx worker and one per
** nginx pool thread, each driven by a single thread), running every
** transfer of every client of that state.
**
** It owns the connection cache: connections are kept alive and reused
** across the clients that use the engine, and HTTP/2 streams are
** multiplexed on one connection where a server offers it over TLS. TLS
** sessions are shared through a share handle the engine owns.
**
** step() runs libcurl until something happened or the timeout passed and
** returns; no Lua runs while libcurl is on the stack, and the engine never
** calls Lua at all: the Lua layer (bearer.engine) decides which waiting
** coroutine to resume by asking each transfer whether it is done.
**
** Ownership: the engine keeps a list of its running transfers (C pointers,
** no Lua references: a transfer nobody holds is collected and its __gc
** takes it out). The registry anchors the engine until the state closes;
** then whichever of an engine and its transfers is finalised first
** unlinks the other. A forked child abandons the parent's
** multi handle (its connections are the parent's) and fails the transfers
** the parent had in flight.
*/
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bearer.h"

struct bearer_engine {
  CURLM *multi;
  CURLSH *share;            /* TLS sessions */
  pid_t pid;
  int closed;
  bearer_transfer *running; /* doubly linked through t->next / t->prev */
  size_t n_running;
};

static const char engine_key = 'e';   /* registry[&engine_key]: this state's engine */

/* Fails every transfer still linked, leaving their handles alone (a forked
** child must not touch the parent's; a closing engine has cleaned them). */
static void engine_fail_all(bearer_engine *e, CURLcode rc, int cleanup) {
  while (e->running != NULL) {
    bearer_transfer *t = e->running;
    e->running = t->next;
    t->next = t->prev = NULL;
    t->engine = NULL;
    if (cleanup && t->easy != NULL) {
      curl_multi_remove_handle(e->multi, t->easy);
      curl_easy_cleanup(t->easy);
    }
    t->easy = NULL;
    bearer_transfer_complete(t, rc);
  }
  e->n_running = 0;
}

static int engine_setup(bearer_engine *e) {
  e->multi = curl_multi_init();
  e->share = curl_share_init();
  e->pid = getpid();
  if (e->multi == NULL || e->share == NULL) return -1;
  curl_share_setopt(e->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  curl_multi_setopt(e->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  return 0;
}

/* The engine, made fresh in a forked child. */
static bearer_engine *engine_ready(lua_State *L, bearer_engine *e) {
  if (e->closed) luaL_error(L, "attempt to use a closed bearer.Engine");
  if (e->pid != getpid()) {
    engine_fail_all(e, CURLE_ABORTED_BY_CALLBACK, 0);
    e->multi = NULL;   /* the parent's: abandoned, by design one leak per fork */
    e->share = NULL;
    if (engine_setup(e) != 0) luaL_error(L, "out of memory (libcurl multi handle)");
  }
  return e;
}

/* Pushes this state's engine, making it on first use. */
BEARER_INTERNAL bearer_engine *bearer_engine_push(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&engine_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  bearer_engine *e = luaL_testudata(L, -1, BEARER_ENGINE_MT);
  if (e != NULL && !e->closed) return engine_ready(L, e);
  lua_pop(L, 1);
  e = lua_newuserdatauv(L, sizeof(*e), 0);
  memset(e, 0, sizeof(*e));
  e->closed = 1;   /* until set up: __gc then frees halves */
  luaL_setmetatable(L, BEARER_ENGINE_MT);
  if (engine_setup(e) != 0) luaL_error(L, "out of memory (libcurl multi handle)");
  e->closed = 0;
  lua_pushlightuserdata(L, (void *)&engine_key);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return e;
}

/* Starts t (its easy handle set up) on engine e; 0 or -1 (libcurl refused). */
BEARER_INTERNAL int bearer_engine_add(bearer_engine *e, bearer_transfer *t) {
  curl_easy_setopt(t->easy, CURLOPT_SHARE, e->share);
  if (curl_multi_add_handle(e->multi, t->easy) != CURLM_OK) return -1;
  t->engine = e;
  t->next = e->running;
  t->prev = NULL;
  if (e->running != NULL) e->running->prev = t;
  e->running = t;
  e->n_running++;
  t->state = BEARER_T_RUNNING;
  return 0;
}

/* Takes t off its engine (completion, close, __gc); idempotent. */
BEARER_INTERNAL void bearer_engine_detach(bearer_transfer *t) {
  bearer_engine *e = t->engine;
  if (e == NULL) return;
  if (e->pid == getpid() && t->easy != NULL) curl_multi_remove_handle(e->multi, t->easy);
  if (t->prev != NULL) t->prev->next = t->next;
  else e->running = t->next;
  if (t->next != NULL) t->next->prev = t->prev;
  t->next = t->prev = NULL;
  t->engine = NULL;
  e->n_running--;
}

/* Runs libcurl once, then hands each finished transfer its outcome. */
static int engine_perform(bearer_engine *e) {
  int still = 0, done = 0, left;
  curl_multi_perform(e->multi, &still);
  CURLMsg *m;
  while ((m = curl_multi_info_read(e->multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE) continue;
    bearer_transfer *t = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
    CURLcode rc = m->data.result;   /* m is invalid once the handle is removed */
    if (t != NULL) {
      bearer_transfer_complete(t, rc);
      done++;
    }
  }
  return done;
}

/* Waits at most ms for activity and runs what is ready; the number of
** transfers that finished. Never runs Lua. */
BEARER_INTERNAL int bearer_engine_step(bearer_engine *e, int ms) {
  int done = engine_perform(e);
  if (done > 0 || e->n_running == 0) return done;
  long want = -1;
  curl_multi_timeout(e->multi, &want);
  if (want >= 0 && want < ms) ms = (int)want;
  curl_multi_poll(e->multi, NULL, 0, ms < 0 ? 0 : ms, NULL);
  return engine_perform(e);
}

/* Runs the engine until t is done (a call outside any scheduler): other
** transfers of the engine progress meanwhile. */
BEARER_INTERNAL void bearer_engine_finish(bearer_engine *e, bearer_transfer *t) {
  while (t->state == BEARER_T_RUNNING) bearer_engine_step(e, 1000);
}

static bearer_engine *engine_check(lua_State *L) {
  return engine_ready(L, luaL_checkudata(L, 1, BEARER_ENGINE_MT));
}

/* core.engine() -> this Lua state's engine */
static int engine_get(lua_State *L) {
  bearer_engine_push(L);
  return 1;
}

/* e:step([seconds]) -> finished, running: waits at most seconds (default
** 0: no wait) for activity, runs what is ready, and says how many transfers
** finished and how many are still running. */
static int engine_step_lua(lua_State *L) {
  bearer_engine *e = engine_check(L);
  lua_Number s = luaL_optnumber(L, 2, 0);
  luaL_argcheck(L, s >= 0 && s <= 86400, 2, "seconds between 0 and 86400 expected");
  int done = bearer_engine_step(e, (int)(s * 1000.0 + 0.5));
  lua_pushinteger(L, done);
  lua_pushinteger(L, (lua_Integer)e->n_running);
  return 2;
}

/* e:running() -> transfers in flight */
static int engine_running(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)engine_check(L)->n_running);
  return 1;
}

static int engine_gc(lua_State *L) {
  bearer_engine *e = luaL_checkudata(L, 1, BEARER_ENGINE_MT);
  int ours = e->pid == getpid();
  if (e->multi != NULL) engine_fail_all(e, CURLE_ABORTED_BY_CALLBACK, ours);
  if (ours && e->multi != NULL) curl_multi_cleanup(e->multi);
  if (ours && e->share != NULL) curl_share_cleanup(e->share);
  e->multi = NULL;
  e->share = NULL;
  e->closed = 1;
  return 0;
}

static int engine_tostring(lua_State *L) {
  bearer_engine *e = luaL_checkudata(L, 1, BEARER_ENGINE_MT);
  if (e->closed) lua_pushliteral(L, "bearer.Engine(closed)");
  else lua_pushfstring(L, "bearer.Engine(%d running)", (int)e->n_running);
  return 1;
}

static const luaL_Reg engine_methods[] = {
  {"step", engine_step_lua},
  {"running", engine_running},
  {NULL, NULL}
};

static const luaL_Reg engine_meta[] = {
  {"__gc", engine_gc},
  {"__tostring", engine_tostring},
  {NULL, NULL}
};

BEARER_INTERNAL void bearer_engine_open(lua_State *L) {
  luaL_newmetatable(L, BEARER_ENGINE_MT);
  luaL_setfuncs(L, engine_meta, 0);
  luaL_newlib(L, engine_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, engine_get);
  lua_setfield(L, -2, "engine");
}
