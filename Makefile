# bearer: builds bearer/core.so for every Lua Debian ships: build/5.4 (the
# specs), build/luajit (nginx), build/5.3 and build/5.1 (the same sources
# through src/compat.h). A build for one Lua does not load in another.
# `make test` and `make demo` are the README's two set-up commands: each
# installs what is missing (Debian packages, as root) before it runs.

LUA51_INC ?= /usr/include/lua5.1
LUA53_INC ?= /usr/include/lua5.3
LUA54_INC ?= /usr/include/lua5.4
LUAJIT_INC ?= /usr/include/luajit-2.1
CC ?= cc
CFLAGS ?= -O2 -g
WARN = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
ALL_CFLAGS = $(CFLAGS) $(WARN) -std=c99 -fPIC -fvisibility=hidden -D_POSIX_C_SOURCE=200809L
LIBS = -lcurl -lcrypto -lpthread

# hiredis is optional (src/redis.c): with its headers the core speaks to
# redis:// stores, without them core.redis is false and such a store is a
# config error. HIREDIS=no builds without it even where it is installed.
HIREDIS ?= $(shell pkg-config --exists hiredis 2>/dev/null && echo yes || echo no)
ifeq ($(HIREDIS),yes)
ALL_CFLAGS += -DBEARER_HIREDIS $(shell pkg-config --cflags hiredis)
LIBS += $(shell pkg-config --libs hiredis)
endif

# nginx's headers (nginx-dev) are optional too (src/engine_nginx.c): with
# them an nginx worker's transfers run on that worker's own event loop,
# without them on an engine thread. They are configured once, into
# build/nginx, with the flags Debian built its nginx with, so the structs
# match the nginx Debian ships (the core checks its module signature at run
# time). NGINX=no builds without them. The targets that install packages
# build in a second make, which sees what `deps` installed.
NGINX_SRC ?= /usr/share/nginx/src
NGINX ?= $(shell test -f $(NGINX_SRC)/conf_flags && echo yes || echo no)
ifeq ($(NGINX),yes)
NGX_CONFIG = build/nginx/objs/ngx_auto_config.h
ALL_CFLAGS += -DBEARER_NGINX $(foreach d,src/core src/event src/event/modules src/os/unix objs,-isystem build/nginx/$(d))
endif

SRC = src/core.c src/key.c src/client.c src/transfer.c src/engine.c src/engine_nginx.c src/crypto.c src/error.c src/redact.c src/json.c src/vault.c src/redis.c
HDR = src/bearer.h src/compat.h

BUSTED ?= busted --lua=lua5.4

.PHONY: all build deps lint test check-memory demo nginx-example nginx-example-stop bench docs types clean \
        check-asan fuzz fuzz-build fuzz-net hardening-deps

all: build
build: build/5.4/bearer/core.so build/luajit/bearer/core.so build/5.3/bearer/core.so build/5.1/bearer/core.so

# build/<lua>/bearer/core.so against that Lua's headers (INC_<lua>).
INC_5.1 = $(LUA51_INC)
INC_5.3 = $(LUA53_INC)
INC_5.4 = $(LUA54_INC)
INC_luajit = $(LUAJIT_INC)
build/%/bearer/core.so: $(SRC) $(HDR) $(NGX_CONFIG)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -I$(INC_$*) -shared -o $@ $(SRC) $(LIBS)

deps:
	@sh .ci/install-deps

build/nginx/objs/ngx_auto_config.h: $(NGINX_SRC)/conf_flags
	@rm -rf build/nginx && mkdir -p build && cp -r $(NGINX_SRC) build/nginx
	@cd build/nginx && bash -c '. ./conf_flags && ./configure "$${NGX_CONF_FLAGS[@]}"' >configure.log 2>&1 \
	  || { echo "bearer: configuring nginx's headers failed (build/nginx/configure.log); NGINX=no builds without them" >&2; exit 1; }

# luacheck over every Lua file (.luacheckrc). A directory gives luacheck its
# *.lua files only, so bin/'s scripts (no extension) are named one by one.
LINT_PATHS = $(wildcard lua examples spec bench tools fuzz) $(wildcard bin/*)
lint: deps
	@luacheck --no-color -q $(LINT_PATHS)

test: deps
	@$(MAKE) --no-print-directory build
	@sh .ci/run-specs

check-memory: deps
	@$(MAKE) --no-print-directory build
	@sh .ci/check-memory

demo: deps
	@$(MAKE) --no-print-directory build
	@sh examples/run-demo

# examples/nginx against the emulator, in the foreground until Ctrl-C;
# nginx-example-stop stops one left running (examples/nginx/run start).
nginx-example: deps
	@$(MAKE) --no-print-directory build
	@examples/nginx/run

nginx-example-stop:
	@examples/nginx/run stop

# The rows of issue 9 item 6, each paired with its C + libcurl or proxy_pass
# anchor (bench/run; BENCH_QUICK=1 for a 1-2 minute pass). Never part of
# `make test`: a missed target prints MISS and the command still exits 0.
bench: deps
	@$(MAKE) --no-print-directory build build/bench/anchor
	@sh .ci/install-deps wrk lua-curl || echo "bench: rows that need them are skipped"
	@bench/run

build/bench/anchor: bench/anchor.c
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -o $@ bench/anchor.c -lcurl

# The HTML reference into docs/ref/ (not committed) with LDoc (Debian:
# lua-ldoc, installed here only), from the LuaCATS annotations of
# lua/bearer/ turned into LDoc tags (tools/luacats-to-ldoc.lua).
docs: deps
	@sh .ci/install-deps lua-ldoc
	@rm -rf build/docs-src docs/ref
	@lua5.4 tools/luacats-to-ldoc.lua lua/bearer build/docs-src/bearer
	@ldoc -c docs/config.ld . >/dev/null
	@echo "docs/ref/index.html"

# The editor stubs of the declared endpoints (lua/bearer/types/, committed;
# spec/annotations_spec.lua fails when they are stale).
types: build
	@LUA_PATH="lua/?.lua;lua/?/init.lua;tools/?.lua;;" LUA_CPATH="build/5.4/?.so;;" lua5.4 tools/endpoint-types.lua

clean:
	rm -rf build docs/ref

# {====================================================== hardening checks
# docs/hardening.md, "Fuzzing and sanitizers". Sanitized builds live under
# build/asan and build/fuzz, apart from the builds users load.
SAN_CC ?= clang-14
SAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined
FUZZ_TARGETS = key jwt redact webhook headers error_body json
FUZZ_SECONDS ?= 60
FUZZ_NET_COUNT ?= 100000

# clang 14 with its sanitizer and libFuzzer runtimes, and Python 3.
hardening-deps:
	@sh .ci/install-deps clang-14 libclang-rt-14-dev python3

build/asan/lua-asan: .ci/lua-asan.c
	@mkdir -p $(@D)
	$(SAN_CC) $(SAN_FLAGS) -I$(LUA54_INC) -o $@ $< -llua5.4

# ALL_CFLAGS as the user builds have them (hiredis included); SAN_FLAGS
# come last, so their -O1 wins.
build/asan/5.4/bearer/core.so: $(SRC) $(HDR) $(NGX_CONFIG)
	@mkdir -p $(@D)
	$(SAN_CC) $(ALL_CFLAGS) $(SAN_FLAGS) -I$(LUA54_INC) -shared -o $@ $(SRC) $(LIBS)

check-asan: deps hardening-deps
	@$(MAKE) --no-print-directory build build/asan/lua-asan build/asan/5.4/bearer/core.so
	@sh .ci/check-asan

# One object set instrumented for libFuzzer, linked into one binary per target.
FUZZ_OBJ = $(SRC:src/%.c=build/fuzz/obj/%.o)
.SECONDARY: $(FUZZ_OBJ)

build/fuzz/obj/%.o: src/%.c $(HDR) $(NGX_CONFIG)
	@mkdir -p $(@D)
	$(SAN_CC) $(ALL_CFLAGS) $(SAN_FLAGS) -fsanitize=fuzzer-no-link -I$(LUA54_INC) -c -o $@ $<

build/fuzz/fuzz-%: fuzz/harness.c $(FUZZ_OBJ)
	$(SAN_CC) $(SAN_FLAGS) -fsanitize=fuzzer -D_GNU_SOURCE -I$(LUA54_INC) \
	  -DFUZZ_TARGET='"$*"' -o $@ fuzz/harness.c $(FUZZ_OBJ) -llua5.4 $(LIBS)

fuzz-build: $(FUZZ_TARGETS:%=build/fuzz/fuzz-%)

fuzz: deps hardening-deps
	@$(MAKE) --no-print-directory fuzz-build
	@sh fuzz/run-targets $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-net: deps hardening-deps
	@$(MAKE) --no-print-directory build
	@/usr/bin/python3 fuzz/net/netfuzz.py --count $(FUZZ_NET_COUNT)

# }======================================================
