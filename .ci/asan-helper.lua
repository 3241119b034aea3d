-- busted --helper for .ci/check-asan: proves the run is sanitized before
-- any spec counts. The core must come from build/asan/5.4 (the sanitized
-- build), not from build/5.4, which .busted also puts on package.cpath.
require "bearer.core"
local maps = assert(io.open("/proc/self/maps")):read("a")
assert(maps:find("/build/asan/5.4/bearer/core.so", 1, true),
       "check-asan: the sanitized core (build/asan/5.4) is not the one loaded")
