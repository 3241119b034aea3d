/*
** error.c: the bearer.Error metatable shared by every failure.
**
** An error object is a plain table (so users can read and extend fields,
** and raise it with error()) whose metatable is registry["bearer.Error"].
** C creates them for key and transport failures; the Lua layer creates
** them for API responses through core.error_new, so both share __tostring.
*/
#include <stdarg.h>
#include <string.h>

#include "bearer.h"

static void error_setmeta(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  luaL_getmetatable(L, BEARER_ERROR_MT);
  lua_setmetatable(L, idx);
}

BEARER_INTERNAL void bearer_error_push(lua_State *L, const char *kind,
                                       const char *code, const char *fmt, ...) {
  va_list ap;
  lua_createtable(L, 0, 8);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, code);
  lua_setfield(L, -2, "code");
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_setfield(L, -2, "message");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "retryable");
  error_setmeta(L, -1);
}

/* The fields tostring shows, in order; read onto the stack before the
** buffer starts, because nothing may be pushed while a luaL_Buffer is open
** (it keeps its own box on top of the stack). */
enum { F_KIND = 2, F_STATUS, F_CODE, F_MESSAGE, F_METHOD, F_PATH, F_REQUEST_ID,
       F_ATTEMPTS, F_RETRY_AFTER };
static const char *const error_fields[] = {
  "kind", "status", "code", "message", "method", "path", "request_id",
  "attempts", "retry_after", NULL
};

/* Adds the field at stack index idx when it is a string or number, with
** newlines folded to spaces; lua_tolstring converts in place, no push. */
static int error_add_field(lua_State *L, luaL_Buffer *b, int idx, const char *before) {
  int t = lua_type(L, idx);
  if (t != LUA_TSTRING && t != LUA_TNUMBER) return 0;
  size_t n;
  const char *s = lua_tolstring(L, idx, &n);
  luaL_addstring(b, before);
  for (size_t i = 0; i < n; i++)
    luaL_addchar(b, (s[i] == '\n' || s[i] == '\r') ? ' ' : s[i]);
  return 1;
}

/* One readable line: "bearer: auth error: HTTP 401 invalid_api_key: ... [GET /x; ...]"
** Built only from fields, so it can hold nothing the fields do not. */
static int error_tostring(lua_State *L) {
  luaL_Buffer b;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  for (int i = 0; error_fields[i] != NULL; i++) lua_getfield(L, 1, error_fields[i]);
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "bearer: ");
  if (!error_add_field(L, &b, F_KIND, "")) luaL_addstring(&b, "unknown");
  luaL_addstring(&b, " error:");
  error_add_field(L, &b, F_STATUS, " HTTP ");
  error_add_field(L, &b, F_CODE, " ");
  error_add_field(L, &b, F_MESSAGE, ": ");
  if (!lua_isnil(L, F_METHOD)) {
    error_add_field(L, &b, F_METHOD, " [");
    error_add_field(L, &b, F_PATH, " ");
    error_add_field(L, &b, F_REQUEST_ID, "; request_id=");
    error_add_field(L, &b, F_ATTEMPTS, "; attempts=");
    error_add_field(L, &b, F_RETRY_AFTER, "; retry_after=");
    luaL_addchar(&b, ']');
  }
  luaL_pushresult(&b);
  return 1;
}

/* err .. "text" and "text" .. err: the one line of tostring joined, as
** OpenResty code does with string errors. */
static void error_push_text(lua_State *L, int idx) {
  if (luaL_callmeta(L, idx, "__tostring")) {
    if (lua_type(L, -1) == LUA_TSTRING) return;
    lua_pop(L, 1);
  }
  int t = lua_type(L, idx);
  if (t != LUA_TSTRING && t != LUA_TNUMBER)
    luaL_error(L, "attempt to concatenate a %s value", luaL_typename(L, idx));
  lua_pushvalue(L, idx);
}

static int error_concat(lua_State *L) {
  lua_settop(L, 2);
  error_push_text(L, 1);
  error_push_text(L, 2);
  lua_concat(L, 2);
  return 1;
}

/* core.error_new(t) -> t, now an error object */
static int error_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  error_setmeta(L, 1);
  return 1;
}

/* core.error_is(x) -> boolean */
static int error_is(lua_State *L) {
  int yes = 0;
  if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, BEARER_ERROR_MT);
    yes = lua_rawequal(L, -1, -2);
  }
  lua_pushboolean(L, yes);
  return 1;
}

static const luaL_Reg error_functions[] = {
  {"error_new", error_new},
  {"error_is", error_is},
  {NULL, NULL}
};

BEARER_INTERNAL void bearer_error_open(lua_State *L) {
  luaL_newmetatable(L, BEARER_ERROR_MT);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, error_concat);
  lua_setfield(L, -2, "__concat");
  lua_pop(L, 1);
  luaL_setfuncs(L, error_functions, 0);
}
