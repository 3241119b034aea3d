/*
** compat.h: the one place where bearer bridges Lua 5.4 and the other Lua
** versions Debian ships: 5.3, 5.1 and LuaJIT 2.1.
**
** The core is written against the Lua 5.4 API. Each 5.4 call the core uses
** and an older API lacks is defined here, and nowhere else:
**   - 5.3 lacks only the 5.4 user-value calls and luaL_pushfail;
**   - LuaJIT speaks the 5.1 ABI plus a few 5.2 additions (luaL_setfuncs,
**     luaL_testudata, luaL_setmetatable, the luaL_newlib macro);
**   - plain Lua 5.1 lacks those 5.2 additions too.
*/
#ifndef BEARER_COMPAT_H
#define BEARER_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

/* 5.2 is left out on purpose (docs/install.md: "Which Lua"): no Debian package
** needs it next to bearer and nothing here is tested on it, so a build for
** it stops here rather than producing a core nobody has run. */
#if LUA_VERSION_NUM == 502 || LUA_VERSION_NUM > 504
#error "bearer: Lua 5.1, 5.3, 5.4 or LuaJIT 2.1 required (Lua 5.2 and versions after 5.4 are not supported)"
#endif

/* The Lua a core was built for, by the name the running Lua gives itself
** (jit.version's first word or _VERSION): core._LUA, and a marker in
** core.so that lua/bearer/init.lua reads when the core fails to load. */
#if LUA_VERSION_NUM < 502 && defined(luaL_newlib)
#define BEARER_LUA_ABI "LuaJIT"
#else
#define BEARER_LUA_ABI LUA_VERSION   /* "Lua 5.x" */
#endif

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

/* LuaJIT's lauxlib.h defines the luaL_newlib macro together with the 5.2
** functions it adds; plain 5.1's has neither, so its absence marks 5.1. */
#if !defined(luaL_newlib)

static inline void bearer_compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);  /* copy the upvalues */
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
#define luaL_setfuncs(L, l, nup) bearer_compat_setfuncs(L, (l), (nup))

static inline void *bearer_compat_testudata(lua_State *L, int ud, const char *tname) {
  void *p = lua_touserdata(L, ud);
  int same;
  if (p == NULL || !lua_getmetatable(L, ud)) return NULL;
  luaL_getmetatable(L, tname);
  same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same ? p : NULL;
}
#define luaL_testudata(L, ud, tname) bearer_compat_testudata(L, (ud), (tname))

static inline void bearer_compat_setmetatable(lua_State *L, const char *tname) {
  luaL_getmetatable(L, tname);
  lua_setmetatable(L, -2);
}
#define luaL_setmetatable(L, tname) bearer_compat_setmetatable(L, (tname))

#define luaL_newlib(L, l) \
  (lua_createtable(L, 0, (int)(sizeof(l) / sizeof((l)[0])) - 1), luaL_setfuncs(L, (l), 0))

#endif /* plain Lua 5.1 */

#endif /* LUA_VERSION_NUM < 502 */

#if LUA_VERSION_NUM == 503

/* A 5.3 userdata has exactly one user value, of any type; bearer uses at
** most one, so the numbered 5.4 calls map to it. */
#define lua_newuserdatauv(L, sz, nuv) lua_newuserdata(L, (sz))
#define lua_setiuservalue(L, idx, n) lua_setuservalue(L, (idx))
#define lua_getiuservalue(L, idx, n) lua_getuservalue(L, (idx))

#define luaL_pushfail(L) lua_pushnil(L)

#endif /* LUA_VERSION_NUM == 503 */

#endif
