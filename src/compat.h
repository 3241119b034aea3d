/*
** compat.h: the one place where bearer bridges Lua 5.4 and LuaJIT 2.1.
**
** The core is written against the Lua 5.4 API. LuaJIT speaks the 5.1 ABI
** (plus a few 5.2 additions: luaL_setfuncs, luaL_testudata,
** luaL_setmetatable), so each 5.4 call the core uses and LuaJIT lacks is
** defined here, and nowhere else.
*/
#ifndef BEARER_COMPAT_H
#define BEARER_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 502

#define lua_rawlen(L, i) lua_objlen(L, (i))

static inline int bearer_compat_absindex(lua_State *L, int i) {
  return (i > 0 || i <= LUA_REGISTRYINDEX) ? i : lua_gettop(L) + i + 1;
}
#define lua_absindex(L, i) bearer_compat_absindex(L, (i))

/* 5.1 userdata carry one environment table; bearer only ever uses one
** user value, and it is always a table, so the two map one to one. */
#define lua_newuserdatauv(L, sz, nuv) lua_newuserdata(L, (sz))
#define lua_setiuservalue(L, idx, n) lua_setfenv(L, (idx))
static inline int bearer_compat_getiuservalue(lua_State *L, int idx, int n) {
  (void)n;
  lua_getfenv(L, idx);
  return lua_type(L, -1);
}
#define lua_getiuservalue(L, idx, n) bearer_compat_getiuservalue(L, (idx), (n))

#define luaL_pushfail(L) lua_pushnil(L)

static inline int bearer_compat_isinteger(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TNUMBER) return 0;
  lua_Number n = lua_tonumber(L, idx);
  return n == (lua_Number)(lua_Integer)n;
}
#define lua_isinteger(L, i) bearer_compat_isinteger(L, (i))

#endif /* LUA_VERSION_NUM < 502 */

#endif
