rockspec_format = "3.0"
package = "bearer"
version = "scm-1"
source = {
  url = "git+file:///dev/null",   -- built from a checkout: luarocks make
}
description = {
  summary = "Bearer-token API SDK with a C core: keys that cannot leak, retries, typed errors",
  detailed = [[
bearer holds API keys in C memory that is wiped on close, talks HTTP through
libcurl with retries, backoff and Retry-After, and turns every failure into
one kind of error object. Clients for the Overten and Optiverse APIs build
on it.]],
  license = "MIT",
}
-- lua-cjson is the JSON codec (bearer.json). Offline, with Debian's
-- lua-cjson package (which luarocks does not see as a rock), build with
-- `luarocks make --deps-mode=none`: docs/install.md "Installing as a rock".
-- Lua 5.2 is refused at build time by src/compat.h (docs/install.md "Which Lua").
dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson",
}
external_dependencies = {
  -- Debian keeps curl/curl.h in a multiarch folder luarocks does not search;
  -- the compiler finds it there by itself, so only the library is looked up.
  CURL = { library = "curl" },
  OPENSSL = { header = "openssl/evp.h", library = "crypto" },
}
-- src/redis.c builds here without hiredis (luarocks cannot make a library
-- optional): the rock's core says core.redis = false and a redis:// store
-- is a config error; `make build` finds libhiredis-dev with pkg-config.
build = {
  type = "builtin",
  modules = {
    ["bearer.core"] = {
      sources = { "src/core.c", "src/key.c", "src/client.c", "src/transfer.c", "src/engine.c", "src/engine_nginx.c",
                  "src/crypto.c", "src/error.c", "src/redact.c", "src/json.c", "src/vault.c", "src/redis.c" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      libraries = { "curl", "crypto", "pthread" },
      incdirs = { "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)" },
    },
    ["bearer"] = "lua/bearer/init.lua",
    ["bearer.client"] = "lua/bearer/client.lua",
    ["bearer.error"] = "lua/bearer/error.lua",
    ["bearer.host"] = "lua/bearer/host.lua",
    ["bearer.scheduler"] = "lua/bearer/scheduler.lua",
    ["bearer.json"] = "lua/bearer/json.lua",
    ["bearer.key"] = "lua/bearer/key.lua",
    ["bearer.check"] = "lua/bearer/check.lua",
    ["bearer.endpoint"] = "lua/bearer/endpoint.lua",
    ["bearer.pager"] = "lua/bearer/pager.lua",
    ["bearer.task"] = "lua/bearer/task.lua",
    ["bearer.download"] = "lua/bearer/download.lua",
    ["bearer.rotation"] = "lua/bearer/rotation.lua",
    ["bearer.watch"] = "lua/bearer/watch.lua",
    ["bearer.ratelimit"] = "lua/bearer/ratelimit.lua",
    ["bearer.redis"] = "lua/bearer/redis.lua",
    ["bearer.overten"] = "lua/bearer/overten.lua",
    ["bearer.overten.admin"] = "lua/bearer/overten/admin.lua",
    ["bearer.overten.endpoints"] = "lua/bearer/overten/endpoints.lua",
    ["bearer.overten.schemes"] = "lua/bearer/overten/schemes.lua",
    ["bearer.overten.webhook"] = "lua/bearer/overten/webhook.lua",
    ["bearer.optiverse"] = "lua/bearer/optiverse.lua",
    ["bearer.optiverse.endpoints"] = "lua/bearer/optiverse/endpoints.lua",
    ["bearer.optiverse.schemes"] = "lua/bearer/optiverse/schemes.lua",
    -- LuaCATS stubs of the declared endpoints' methods (---@meta: editors
    -- read them from the installed tree; `make types` writes them)
    ["bearer.types.overten"] = "lua/bearer/types/overten.lua",
    ["bearer.types.optiverse"] = "lua/bearer/types/optiverse.lua",
    ["bearer.ngx"] = "lua/bearer/ngx/init.lua",
    ["bearer.ngx.thread"] = "lua/bearer/ngx/thread.lua",
    ["bearer.ngx.engine"] = "lua/bearer/ngx/engine.lua",
    ["bearer.ngx.limiter"] = "lua/bearer/ngx/limiter.lua",
    ["bearer.ngx.webhook"] = "lua/bearer/ngx/webhook.lua",
    ["bearer.ngx.redis"] = "lua/bearer/ngx/redis.lua",
    ["bearer.cli"] = "lua/bearer/cli.lua",
    ["bearer.emulator"] = "lua/bearer/emulator.lua",
  },
  install = {
    -- the `bearer` command; LuaRocks wraps it with this tree's paths
    bin = { bearer = "bin/bearer" },
    -- The emulator's server (bearer.emulator): its launcher, nginx.conf.in
    -- and the modules nginx loads by their bare names (require "router"),
    -- installed as data under bearer/emulator/server/ in the Lua tree, where
    -- bearer.emulator finds them next to itself. Not build.modules: those
    -- names are bearer's own API, and not copy_directories: that lands in
    -- the rock's versioned folder, which no module path points at.
    lua = {
      ["bearer.emulator.server.emulator"] = "spec/emulator/emulator",
      ["bearer.emulator.server.nginx_conf"] = "spec/emulator/nginx.conf.in",
      ["bearer.emulator.server.README"] = "spec/emulator/README.md",
      ["bearer.emulator.server.common"] = "spec/emulator/common.lua",
      ["bearer.emulator.server.control"] = "spec/emulator/control.lua",
      ["bearer.emulator.server.faults"] = "spec/emulator/faults.lua",
      ["bearer.emulator.server.json"] = "spec/emulator/json.lua",
      ["bearer.emulator.server.optiverse"] = "spec/emulator/optiverse.lua",
      ["bearer.emulator.server.overten"] = "spec/emulator/overten.lua",
      ["bearer.emulator.server.overten_admin"] = "spec/emulator/overten_admin.lua",
      ["bearer.emulator.server.overten_assets"] = "spec/emulator/overten_assets.lua",
      ["bearer.emulator.server.overten_gen"] = "spec/emulator/overten_gen.lua",
      ["bearer.emulator.server.overten_state"] = "spec/emulator/overten_state.lua",
      ["bearer.emulator.server.overten_webhooks"] = "spec/emulator/overten_webhooks.lua",
      ["bearer.emulator.server.router"] = "spec/emulator/router.lua",
    },
  },
}
test = {
  type = "busted",
}
