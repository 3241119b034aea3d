/*
** core.c: luaopen_bearer_core, the only symbol bearer/core.so exports, and
** the clock and sleep the Lua layer uses by default outside nginx.
*/
#include <errno.h>
#include <time.h>

#include <curl/curl.h>

#include "bearer.h"

/* core.now() -> wall-clock seconds (fractional): for Retry-After dates. */
static int core_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.monotime() -> seconds from an arbitrary origin that never jumps:
** for spacing requests (backoff, rate limits). */
static int core_monotime(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.sleep(seconds): blocks the thread; the nginx layer uses ngx.sleep. */
static int core_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  if (s <= 0) return 0;
  struct timespec ts;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
  return 0;
}

/* core.parse_http_date(s) -> epoch seconds | nil (RFC 7231 dates, as in
** Retry-After; libcurl's parser accepts all three historic forms). */
static int core_parse_http_date(lua_State *L) {
  time_t t = curl_getdate(luaL_checkstring(L, 1), NULL);
  if (t == (time_t)-1) luaL_pushfail(L);
  else lua_pushnumber(L, (lua_Number)t);
  return 1;
}

/* Found in the file by lua/bearer/init.lua when dlopen fails, to tell a core
** built for another Lua from a symbol this Lua lacks; "used": never read
** from C. */
__attribute__((used)) static const char core_built_for[] =
  "bearer-core-built-for=" BEARER_LUA_ABI ";";

static const luaL_Reg core_functions[] = {
  {"now", core_now},
  {"monotime", core_monotime},
  {"sleep", core_sleep},
  {"parse_http_date", core_parse_http_date},
  {NULL, NULL}
};

BEARER_EXPORT int luaopen_bearer_core(lua_State *L) {
  /* Reference-counted by libcurl; once per state that loads us is fine. */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return luaL_error(L, "curl_global_init failed");
  luaL_newlib(L, core_functions);
  lua_pushliteral(L, BEARER_VERSION);
  lua_setfield(L, -2, "_VERSION");
  lua_pushliteral(L, BEARER_LUA_ABI);
  lua_setfield(L, -2, "_LUA");
  bearer_error_open(L);
  bearer_key_open(L);
  bearer_client_open(L);
  bearer_crypto_open(L);
  bearer_redact_open(L);
  bearer_vault_open(L);
  return 1;
}
