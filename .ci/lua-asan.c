/*
** lua-asan.c: a minimal Lua 5.4 interpreter for `make check-asan`.
**
** Built with -fsanitize=address,undefined, so the sanitizer runtimes live in
** this executable and the sanitized bearer/core.so (build/asan/5.4) resolves
** against them. Why not LD_PRELOAD=libasan.so with /usr/bin/lua5.4: the
** preload is inherited by every process the specs start (nginx, sh,
** openssl), and their own exit-time allocations would be reported as leaks
** of ours. Only `lua-asan script [args]` is supported: all busted needs.
*/
#include <stdio.h>
#include <stdlib.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static int asan_traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s script [args]\n", argv[0]);
    return 2;
  }
  lua_State *L = luaL_newstate();
  if (L == NULL) return 1;
  luaL_openlibs(L);
  /* arg as lua.c builds it: arg[0] the script, arg[-1] the interpreter */
  lua_createtable(L, argc - 2, 2);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  lua_pushcfunction(L, asan_traceback);
  int status = luaL_loadfile(L, argv[1]);
  if (status == LUA_OK) {
    for (int i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
    status = lua_pcall(L, argc - 2, 0, 1);
  }
  if (status != LUA_OK) fprintf(stderr, "lua-asan: %s\n", lua_tostring(L, -1));
  lua_close(L);
  return status == LUA_OK ? 0 : 1;
}
