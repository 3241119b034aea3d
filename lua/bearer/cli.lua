--- bearer.cli: the `bearer` command (bin/bearer runs cli.main).
--
--   bearer overten runs --status completed      # JSON lines, one run a line
--   bearer optiverse records --from 2026-11-01 --to 2026-11-30
--
-- Commands, their arguments, options and --help are derived from the
-- declared endpoints (bearer.overten.endpoints, bearer.optiverse.endpoints):
-- method name -> command (`_` -> `-`), path parameters and declared
-- arguments -> positional arguments, fields -> options with their types.
-- Written by hand here: what the API modules write by hand (generate and
-- wait, download and save, rotate, watch, template) and `bearer emulator`.
--
-- Output: JSON on stdout (one document, or JSON lines for lists); progress
-- and errors on stderr, progress only to a terminal unless --progress.
-- Exit status: 0 ok, 1 API or transfer error, 2 usage error. A secret the
-- API returns (bearer.Key fields) is replaced by a note; only a secret the
-- API returns once on creation is printed, and only with --show-secret.
local bearer = require "bearer"
local endpoint = require "bearer.endpoint"
local json = require "bearer.json"

local M = {}

local unpack = table.unpack or unpack   -- luacheck: ignore 143
local OK, API_ERROR, USAGE = 0, 1, 2
M.EXIT = { ok = OK, api = API_ERROR, usage = USAGE }

-- {====================================================== output

-- A JSON string: control characters, `"` and `\` escaped, UTF-8 as is
-- (cjson 2.1.0 would also escape every `/`, which jq users then read).
local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function string_json(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESCAPES[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

-- A number as the API sent it: integers whole, floats in the shortest
-- form that reads back the same (cjson writes 14 digits at most).
local function number_json(x)
  if math.type and math.type(x) == "integer" then return ("%d"):format(x) end
  if x ~= x or x == math.huge or x == -math.huge then return "null" end
  if x == math.floor(x) and math.abs(x) < 2 ^ 53 then return ("%.0f"):format(x) end
  for digits = 14, 17 do
    local s = ("%." .. digits .. "g"):format(x)
    if tonumber(s) == x then return s end
  end
  return ("%.17g"):format(x)
end

-- A whole number from command-line text, or nil.
local function whole(text)
  local n = tonumber(text)
  if not n or n % 1 ~= 0 then return nil end
  return math.tointeger and math.tointeger(n) or n
end

local function is_array(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  if n == 0 then return true end   -- an empty list is the common empty value of both APIs
  for i = 1, n do
    if t[i] == nil then return false end
  end
  return true
end

--- JSON text of `v` (a decoded API document), object keys sorted. A
-- bearer.Key is written through `secret(key, field)`, which returns the
-- text to print in its place.
---@param v any
---@param secret fun(key: userdata, field: string): string
---@param field string|nil the field v is the value of (for secret)
---@return string
function M.encode(v, secret, field)
  local t = type(v)
  if v == nil or v == json.null then return "null" end
  if t == "string" then return string_json(v) end
  if t == "number" then return number_json(v) end
  if t == "boolean" then return tostring(v) end
  if bearer.key.is(v) then return string_json(secret(v, field or "?")) end
  if t ~= "table" then return "null" end
  local parts = {}
  if is_array(v) then
    for i = 1, #v do parts[i] = M.encode(v[i], secret, field) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  local names = {}
  for k in pairs(v) do names[#names + 1] = tostring(k) end
  table.sort(names)
  for _, k in ipairs(names) do
    local x = v[k]
    if x == nil then x = v[tonumber(k)] end
    parts[#parts + 1] = string_json(k) .. ":" .. M.encode(x, secret, k)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- }======================================================

-- {====================================================== declarations

local function kebab(name)
  return (name:gsub("_", "-"):gsub("(%l)(%u)", function(a, b) return a .. "-" .. b:lower() end))
end

-- A camelCase filter's short form: dateFrom -> from, protocolId ->
-- protocol (what the Optiverse notes call them in prose).
local function short_form(name)
  if not name:find("%l%u") then return nil end
  local s = name:gsub("^date(%u)", "%1"):gsub("Id$", "")
  if s == name then return nil end
  return (kebab(s:sub(1, 1):lower() .. s:sub(2)))
end

local VALUE_OF = {
  integer = "INTEGER", number = "NUMBER", list = "A,B,...", uuid = "UUID",
  time = "DATE", url = "URL", enum = "VALUE", boolean = nil,
}

-- The options of a field-spec table, sorted: { flag, field, spec, alias }.
local function options_of(fields, into)
  local names = {}
  for name, spec in pairs(fields or {}) do
    if spec[1] ~= "function" and spec[1] ~= "table" then names[#names + 1] = name end
  end
  table.sort(names)
  for _, name in ipairs(names) do
    into[#into + 1] = { flag = kebab(name), field = name, spec = fields[name],
                        alias = short_form(name) }
  end
  return into
end

local function describe_spec(spec)
  local kind, bits = spec[1], {}
  if spec.label then
    bits[#bits + 1] = spec.label
  elseif spec.values then
    local values = {}
    for v in pairs(spec.values) do values[#values + 1] = v end
    table.sort(values)
    bits[#bits + 1] = table.concat(values, ", ")
  elseif kind == "integer" or kind == "number" or kind == "text" then
    if spec.min and spec.max then
      bits[#bits + 1] = ("%s%s..%s"):format(kind == "text" and "length " or "", spec.min, spec.max)
    elseif spec.min then
      bits[#bits + 1] = (">= %s"):format(spec.min)
    end
  end
  if spec.required or spec.needed then bits[#bits + 1] = "required" end
  return table.concat(bits, "; ")
end

-- A command for declaration `decl` of `api` ("client" or "admin" for
-- Overten's Firebase endpoints).
local function derived(decl, client_kind)
  local positional = endpoint.positional(decl)
  local options = {}
  if decl.opts ~= "none" then
    options_of(decl.fields, options)
    options_of(decl.call, options)
    if decl.idempotency == "optional" then
      options[#options + 1] = { flag = "idempotency-key", field = "idempotency_key",
                                spec = { "string" } }
    end
  end
  local path = decl.path_from and decl.path:gsub("{kind}", "{structured|unstructured}") or decl.path
  return {
    name = kebab(decl.name), method = decl.name, client = client_kind,
    positional = positional, options = options,
    open = decl.opts ~= "none" and not decl.strict,   -- other --name value go to the API
    list = decl.paged ~= nil, creates = decl.method == "POST" and decl.secrets ~= nil,
    summary = decl.method .. " " .. path .. (decl.paged and ", every page" or ""),
    run = function(_, c, args, opts)
      local call = { unpack(args) }
      if decl.opts ~= "none" then call[#call + 1] = opts end
      return c[decl.name](c, unpack(call, 1, #positional + 1))
    end,
  }
end

-- }======================================================

-- {====================================================== the commands

local progress_line -- forward: the stderr progress writer

local GENERATE_OPTIONS = options_of({
  prompt = { "text", min = 1, max = 10000, required = true }, mode = { "string" },
  run_id = { "string" }, init_file = { "string" }, context_files = { "list" },
  file_name = { "string" }, webhook_url = { "url" }, async = { "boolean" },
  idempotency_key = { "string" }, timeout_ms = { "integer", min = 10000, max = 1800000 },
  wait = { "boolean" }, wait_timeout = { "number" }, timeout = { "number" },
}, {})

local function waiting(ctx, opts)
  if opts.wait then
    opts.on_progress = function(t)
      progress_line(ctx, ("%s: %s%s%s"):format(t.task_id or "task", t.status or "?",
        t.progress and (" " .. tostring(t.progress) .. "%") or "",
        t.phase and (" (" .. tostring(t.phase) .. ")") or ""))
    end
  end
  return opts
end

local function download_bar(ctx)
  return function(done, total)
    local width = 30
    if total and total > 0 then
      local filled = math.floor(width * done / total)
      progress_line(ctx, ("[%s%s] %3d%% %d/%d bytes"):format(("#"):rep(filled),
        ("."):rep(width - filled), math.floor(100 * done / total), done, total))
    else
      progress_line(ctx, ("%d bytes"):format(done))
    end
  end
end

local SAVE_OPTIONS = options_of({ output = { "string", required = true }, timeout = { "number" },
                                  max_bytes = { "integer", min = 1 } }, {})

local function saving(ctx, c, method, target, opts)
  local path = opts.output
  opts.output = nil
  opts.on_progress = download_bar(ctx)
  return c[method](c, target, path, opts)
end

-- Overten's hand-written methods (bearer.overten).
local OVERTEN_HAND = {
  { name = "generate", positional = { "format" }, options = GENERATE_OPTIONS, open = true,
    summary = "POST /{excel|word|slides}/generate (--wait: polls the task, progress on stderr)",
    run = function(ctx, c, args, opts) return c:generate(args[1], waiting(ctx, opts)) end },
  { name = "slides-outline", positional = {}, options = GENERATE_OPTIONS, open = true,
    summary = "POST /slides/outline",
    run = function(ctx, c, _, opts) return c:slides_outline(waiting(ctx, opts)) end },
  { name = "create-report", positional = { "project_id" }, options = GENERATE_OPTIONS, open = true,
    summary = "POST /projects/{project_id}/reports",
    run = function(ctx, c, args, opts) return c:create_report(args[1], waiting(ctx, opts)) end },
  { name = "wait", positional = { "task_id" },
    options = options_of({ timeout = { "number" } }, {}),
    summary = "polls GET /tasks/{task_id} until it ends (progress on stderr)",
    run = function(ctx, c, args, opts)
      opts.wait = true
      return c:wait(args[1], waiting(ctx, opts))
    end },
  { name = "download", positional = { "run_id" }, options = SAVE_OPTIONS,
    summary = "GET /runs/{run_id}/download to -o PATH (progress bar on stderr)",
    run = function(ctx, c, args, opts) return saving(ctx, c, "download", args[1], opts) end },
  { name = "save", positional = { "url" }, options = SAVE_OPTIONS,
    summary = "a URL the API gave (e.g. a run's download_url) to -o PATH",
    run = function(ctx, c, args, opts) return saving(ctx, c, "save", args[1], opts) end },
}

-- Overten's hand-written admin method: the new key must reach the user,
-- since the old one is revoked, so it needs --show-secret.
local ROTATE = {
  name = "rotate-key", positional = { "org_id", "old_key_id" }, client = "admin", creates = true,
  options = options_of({ name = { "text", min = 0, max = 80 } }, {}),
  summary = "mints a key, checks it, revokes OLD_KEY_ID (needs --show-secret: the new key "
            .. "is printed once)",
  run = function(ctx, c, args, opts)
    if not ctx.show_secret then
      return nil, nil, "rotate-key revokes the old key: pass --show-secret to get the new one"
    end
    opts.deploy = function() return true end
    return c:rotate_key(args[1], args[2], opts)
  end,
}

local OPTIVERSE_HAND = {
  { name = "template", positional = { "protocol_id" }, summary = "one protocol template",
    run = function(_, c, args) return c:template(args[1]) end },
  { name = "watch", positional = {}, list = true,
    options = options_of({ since = { "time" }, interval = { "number", min = 1 },
                           max_polls = { "integer", min = 1 }, limit = { "integer", min = 1, max = 100 },
                           i_have_a_higher_limit = { "boolean" } }, {}),
    summary = "new records as they appear (polls within the API's limit; Ctrl-C stops)",
    run = function(_, c, _, opts) return c:watch_records(opts) end },
}

-- Groups: a listing `things` with methods `thing`, `verb_thing` and
-- `things_page` becomes `things list|get|verb|page`; the flat names stay
-- accepted. `things` alone (or with options) lists.
local function group(commands)
  local by_method, groups = {}, {}
  for _, cmd in ipairs(commands) do by_method[cmd.method or cmd.name:gsub("-", "_")] = cmd end
  for _, cmd in ipairs(commands) do
    if cmd.list and cmd.method and cmd.method:find("s$") then
      local plural = cmd.method
      local singular = plural:sub(1, -2)
      local g = { name = kebab(plural), sub = { list = cmd }, order = { "list" } }
      for method, other in pairs(by_method) do
        local verb = method == singular and "get" or method == plural .. "_page" and "page"
                     or method:match("^(%l+)_" .. singular .. "$")
        if verb then g.sub[verb] = other; g.order[#g.order + 1] = verb; other.grouped = g end
      end
      table.sort(g.order, function(a, b) return a == "list" or (b ~= "list" and a < b) end)
      if #g.order > 1 then groups[#groups + 1] = g; cmd.grouped = g end
    end
  end
  return groups
end

local function build_api(name, commands, info)
  local api = { name = name, commands = {}, info = info }
  for _, cmd in ipairs(commands) do api.commands[cmd.name] = cmd end
  api.groups = {}
  for _, g in ipairs(group(commands)) do api.groups[g.name] = g end
  api.order = commands
  return api
end

local function overten_api()
  local endpoints = require "bearer.overten.endpoints"
  local commands = {}
  for _, decl in ipairs(endpoints.client) do commands[#commands + 1] = derived(decl, "client") end
  commands[#commands + 1] = derived(endpoints.runs_page, "client")
  for _, cmd in ipairs(OVERTEN_HAND) do cmd.client = "client"; commands[#commands + 1] = cmd end
  for _, decl in ipairs(endpoints.admin) do commands[#commands + 1] = derived(decl, "admin") end
  commands[#commands + 1] = ROTATE
  return build_api("overten", commands, "Overten (documents). Key: OVERTEN_API_KEY or --key-file; "
    .. "admin commands (signup, keys): a Firebase ID token, FIREBASE_ID_TOKEN or --key-file. "
    .. "Base URL: OVERTEN_BASE_URL or --base-url.")
end

local function optiverse_api()
  local endpoints = require "bearer.optiverse.endpoints"
  -- the summaries' path is found by the client (the template's type):
  -- the CLI reads these declarations only, it never builds their path
  local found_by_client = function() end
  local commands = {}
  for _, decl in ipairs{ endpoints.records, endpoints.records_page, endpoints.templates,
                         endpoints.summaries("summaries", "offset", found_by_client),
                         endpoints.summaries("summaries_page", nil, found_by_client) } do
    commands[#commands + 1] = derived(decl, "client")
  end
  for _, cmd in ipairs(OPTIVERSE_HAND) do cmd.client = "client"; commands[#commands + 1] = cmd end
  return build_api("optiverse", commands, "Optiverse (meeting records). Key: OPTIVERSE_API_KEY "
    .. "or --key-file. Base URL: OPTIVERSE_BASE_URL or --base-url.")
end

-- }======================================================

-- {====================================================== arguments

local GLOBAL_HELP = [[
Global options (anywhere on the line):
  --key-file PATH   read the key (or Firebase token) from PATH (mode 0600 or stricter)
  --base-url URL    the API's base URL (e.g. the emulator's)
  --progress        progress on stderr even when it is not a terminal
  --show-secret     print a secret the API returns once on creation
  --max N           stop a list after N items
  -h, --help        this help, at any level
Exit status: 0 ok, 1 API or transfer error, 2 usage error.]]
local GLOBAL_LINE = "Global options: --key-file PATH, --base-url URL, --progress, --show-secret, "
                    .. "--max N (bearer --help)."

local GLOBAL_VALUES = { ["key-file"] = "key_file", ["base-url"] = "base_url", max = "max" }
local GLOBAL_FLAGS = { progress = "progress", ["show-secret"] = "show_secret", help = "help" }

local Usage = {}   -- raised (as a table) for a usage error
local function usage(message) error(setmetatable({ message = message }, Usage), 0) end

-- Splits argv into words and options; `flags(name)` says whether option
-- `name` takes no value. Returns words, options (name -> value or list),
-- and the global settings.
local function parse(argv, is_flag)
  local words, options, global = {}, {}, {}
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--" then
      for j = i + 1, #argv do words[#words + 1] = argv[j] end
      break
    elseif a == "-h" then
      global.help = true
    elseif a == "-o" then
      i = i + 1
      if argv[i] == nil then usage("-o needs a value") end
      options.output = argv[i]
    elseif a:find("^%-%-.") then
      local name, value = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      if GLOBAL_FLAGS[name] then
        if value then usage("--" .. name .. " takes no value") end
        global[GLOBAL_FLAGS[name]] = true
      elseif is_flag(name) then
        if value then usage("--" .. name .. " takes no value") end
        options[name] = true
      else
        if not value then
          i = i + 1
          value = argv[i]
          if value == nil then usage("--" .. name .. " needs a value") end
        end
        if GLOBAL_VALUES[name] then
          global[GLOBAL_VALUES[name]] = value
        elseif options[name] ~= nil then
          local prev = options[name]
          options[name] = type(prev) == "table" and prev or { prev }
          table.insert(options[name], value)
        else
          options[name] = value
        end
      end
    else
      words[#words + 1] = a
    end
    i = i + 1
  end
  return words, options, global
end

-- The option value `raw` (a string, a list of repeats, or true) as the
-- declared type asks.
local function convert(flag, raw, spec)
  local kind = spec[1]
  if kind == "boolean" then return true end
  if kind == "list" then
    local out = {}
    for _, v in ipairs(type(raw) == "table" and raw or { raw }) do
      for item in v:gmatch("[^,]+") do out[#out + 1] = item end
    end
    return json.array(out)
  end
  if type(raw) == "table" then usage("--" .. flag .. " given twice") end
  if kind == "integer" then
    local n = whole(raw)
    if not n then usage("--" .. flag .. " needs a whole number, got '" .. raw .. "'") end
    return n
  elseif kind == "number" then
    local n = tonumber(raw)
    if not n then usage("--" .. flag .. " needs a number, got '" .. raw .. "'") end
    return n
  end
  return raw
end

-- The options table of `cmd` from the parsed options.
local function options_for(cmd, parsed)
  local by_flag = {}
  for _, o in ipairs(cmd.options or {}) do
    by_flag[o.flag] = o
    if o.alias then by_flag[o.alias] = o end
  end
  local opts = {}
  for flag, raw in pairs(parsed) do
    local o = by_flag[flag]
    if o then
      opts[o.field] = convert(flag, raw, o.spec)
    elseif cmd.open then
      if type(raw) == "table" then usage("--" .. flag .. " given twice") end
      opts[(flag:gsub("-", "_"))] = raw
    else
      usage(("unknown option --%s for '%s' (see --help)"):format(flag, cmd.name))
    end
  end
  return opts
end

local function is_flag_of(cmd)
  return function(name)
    for _, o in ipairs(cmd and cmd.options or {}) do
      if (o.flag == name or o.alias == name) and o.spec[1] == "boolean" then return true end
    end
    return false
  end
end

-- }======================================================

-- {====================================================== help

local function command_help(api, cmd, prefix)
  local lines = {}
  local args = {}
  for _, p in ipairs(cmd.positional or {}) do args[#args + 1] = p:upper() end
  lines[1] = ("usage: bearer %s %s%s [OPTIONS]"):format(api.name, prefix or cmd.name,
    #args > 0 and (" " .. table.concat(args, " ")) or "")
  lines[2] = "  " .. cmd.summary .. (cmd.list and "; JSON lines, one item a line" or "")
  if cmd.list then lines[3] = "  (--limit, where there is one, is the page size; --max N stops after N items)" end
  if cmd.options and #cmd.options > 0 then
    lines[#lines + 1] = "Options:"
    for _, o in ipairs(cmd.options) do
      local value = VALUE_OF[o.spec[1]] or (o.spec[1] ~= "boolean" and "TEXT") or nil
      local names = "--" .. o.flag .. (o.alias and (", --" .. o.alias) or "")
      if o.field == "output" then names = "-o, " .. names end
      local left = names .. (value and (" " .. value) or "")
      local note = describe_spec(o.spec)
      lines[#lines + 1] = ("  %-34s %s"):format(left, note)
    end
  end
  if cmd.open then
    lines[#lines + 1] = "  --NAME VALUE                       any other field, sent to the API as text"
  end
  if cmd.client == "admin" then
    lines[#lines + 1] = "Authenticates with a Firebase ID token (FIREBASE_ID_TOKEN or --key-file)."
  end
  return table.concat(lines, "\n")
end

local function group_help(api, g)
  local lines = { ("usage: bearer %s %s SUBCOMMAND [ARGS] [OPTIONS]"):format(api.name, g.name) }
  local flat = {}
  for _, verb in ipairs(g.order) do
    lines[#lines + 1] = ("  %-10s %s"):format(verb, g.sub[verb].summary)
    flat[#flat + 1] = g.sub[verb].name
  end
  lines[#lines + 1] = ("The same as flat commands: %s. `bearer %s %s SUBCOMMAND --help` for one's "
    .. "options; without a subcommand, `%s` is `%s list`:"):format(table.concat(flat, ", "),
    api.name, g.name, g.name, g.name)
  lines[#lines + 1] = command_help(api, g.sub.list, g.name .. " [list]")
  return table.concat(lines, "\n")
end

local function api_help(api)
  local lines = { ("usage: bearer %s COMMAND [ARGS] [OPTIONS]"):format(api.name), "  " .. api.info,
                  "Commands:" }
  local shown = {}
  for _, cmd in ipairs(api.order) do
    local g = cmd.grouped
    if g and not shown[g] then
      shown[g] = true
      lines[#lines + 1] = ("  %-18s %s"):format(g.name .. " ...", table.concat(g.order, "|"))
    elseif not g then
      lines[#lines + 1] = ("  %-18s %s"):format(cmd.name, cmd.summary)
    end
  end
  lines[#lines + 1] = ("`bearer %s COMMAND --help` for a command's arguments and options.")
    :format(api.name)
  return table.concat(lines, "\n")
end

local TOP_HELP = [[
usage: bearer API COMMAND [ARGS] [OPTIONS]
  overten     Overten: documents, runs, files, keys (`bearer overten --help`)
  optiverse   Optiverse: records, templates, summaries (`bearer optiverse --help`)
  emulator    start|stop|status|reset the local API emulator (`bearer emulator --help`)
Output is JSON on stdout (JSON lines for lists); progress and errors go to stderr.]]

local EMULATOR_HELP = [[
usage: bearer emulator start [--port N] | stop [PREFIX] | status [URL] | reset [URL]
  start    starts the emulator (nginx + its Lua module) on 127.0.0.1 and prints the
           `export` lines that point bearer at it with its seeded test keys:
             eval "$(bearer emulator start)"
  stop     stops it by pid (PREFIX: default $BEARER_EMULATOR_PREFIX)
  status   {"ok":true,...} when it answers (URL: default $BEARER_EMULATOR_URL)
  reset    restores its seeded state, clears faults and its request log
Needs nginx and libnginx-mod-http-lua (Debian).]]

-- }======================================================

-- {====================================================== running

--- ctx: { out = fn(text), err = fn(text), env = fn(name), tty = bool }
local function writer(ctx)
  return function(text) ctx.out(text .. "\n") end
end

function progress_line(ctx, text)
  if ctx.progress then ctx.err("\r" .. text .. "\27[K") ; ctx.progress_dirty = true end
end

local function end_progress(ctx)
  if ctx.progress_dirty then ctx.err("\n"); ctx.progress_dirty = false end
end

local function secret_printer(ctx, cmd)
  return function(key, field)
    if ctx.show_secret and cmd.creates then return key:reveal() end
    if cmd.creates then
      return ("(secret %s not shown: --show-secret prints it, once)"):format(field)
    end
    return ("(secret %s not shown)"):format(field)
  end
end

-- Whether `err` (an error object) is the user's own mistake found before
-- any request: a missing key, a value the API would refuse.
local function is_usage(err)
  return type(err) == "table" and err.status == nil
         and (err.kind == "config" or (err.kind == "validation" and err.code == "invalid_argument"))
end

local function fail(ctx, err)
  end_progress(ctx)
  if getmetatable(err) == Usage then
    ctx.err("bearer: " .. err.message .. "\n")
    return USAGE
  end
  if type(err) == "string" then
    -- a caller mistake the API module raised is the command line's;
    -- anything else is a bug in bearer
    local message = err:gsub("^[^:\n]*:%d+: ", "")
    if message:find("^bad argument") or message:find("^bad option") then
      ctx.err("bearer: " .. message .. "\n")
      return USAGE
    end
    ctx.err("bearer: internal error: " .. message .. "\n")
    return API_ERROR
  end
  ctx.err(tostring(err) .. "\n")
  return is_usage(err) and USAGE or API_ERROR
end

-- The credential of `cmd`: the --key-file, else the module's variable.
local function credential(api, cmd, global)
  local scheme = cmd.client == "admin" and "firebase" or api.name
  local key, err
  if global.key_file then
    key, err = bearer.key.from_file(global.key_file, { scheme = scheme })
  elseif cmd.client == "admin" then
    key, err = bearer.key.from_env("FIREBASE_ID_TOKEN", { scheme = "firebase" })
    if not key and err.code == "missing_key" then
      usage("no Firebase ID token: set FIREBASE_ID_TOKEN or pass --key-file")
    end
  end
  if err then error(err, 0) end
  return key
end

local function make_client(api, cmd, global)
  local key = credential(api, cmd, global)
  local module = require("bearer." .. api.name)
  if cmd.client == "admin" then
    return module.admin{ firebase_token = key, base_url = global.base_url }
  end
  return module.client{ api_key = key, base_url = global.base_url }
end

local function emit_list(ctx, cmd, iterator, max)
  local out, secret, n = writer(ctx), secret_printer(ctx, cmd), 0
  for item in iterator do
    out(M.encode(item, secret))
    n = n + 1
    if max and n >= max then break end
  end
  return OK
end

local function values(t)
  local i = 0
  return function() i = i + 1; return t[i] end
end

local function callable(v)
  local mt = type(v) == "table" and getmetatable(v)
  return type(v) == "function" or (mt and mt.__call ~= nil)
end

-- One JSON document, or JSON lines for a list (an iterator, a pager or
-- an array).
local function emit(ctx, cmd, result, max)
  end_progress(ctx)
  if callable(result) then return emit_list(ctx, cmd, result, max) end
  if result == true then result = { ok = true } end
  if type(result) == "table" and is_array(result) then
    return emit_list(ctx, cmd, values(result), max)
  end
  writer(ctx)(M.encode(result, secret_printer(ctx, cmd)))
  return OK
end

-- Finds the command `words` name in `api`: the command, the words left,
-- and the name it was called by.
local function find_command(api, words)
  local first = table.remove(words, 1)
  local g = api.groups[first]
  if g then
    local verb = words[1]
    if verb and g.sub[verb] then
      table.remove(words, 1)
      return g.sub[verb], first .. " " .. verb
    end
    return g.sub.list, first, g
  end
  local cmd = api.commands[first]
  if not cmd then usage(("unknown %s command '%s' (see bearer %s --help)"):format(api.name, first, api.name)) end
  return cmd, first
end

local function run_api(ctx, api, argv)
  -- the command (its first words) decides which options are flags
  local leading = {}
  for _, a in ipairs(argv) do
    if a:sub(1, 1) == "-" or #leading == 2 then break end
    leading[#leading + 1] = a
  end
  if #leading == 0 then
    local help = false
    for _, a in ipairs(argv) do help = help or a == "--help" or a == "-h" end
    if not help then usage("which " .. api.name .. " command? (bearer " .. api.name .. " --help)") end
    ctx.out(api_help(api) .. "\n" .. GLOBAL_LINE .. "\n")
    return OK
  end
  local cmd, called, g = find_command(api, leading)
  local words, parsed, global = parse(argv, is_flag_of(cmd))
  table.remove(words, 1)
  if called:find(" ") then table.remove(words, 1) end
  if global.help then
    ctx.out((g and #words == 0 and group_help(api, g)
             or command_help(api, cmd, called)) .. "\n" .. GLOBAL_LINE .. "\n")
    return OK
  end
  local n = #(cmd.positional or {})
  if #words ~= n then
    usage(("'%s' takes %d argument%s (%s), got %d: see --help"):format(called, n, n == 1 and "" or "s",
      table.concat(cmd.positional or {}, ", "):upper(), #words))
  end
  local opts = options_for(cmd, parsed)
  for _, o in ipairs(cmd.options or {}) do
    if o.field == "output" and opts.output == nil then usage(called .. " needs -o PATH") end
  end
  local max = global.max and whole(global.max)
  if global.max and (not max or max < 1) then usage("--max needs a whole number >= 1") end
  ctx.show_secret = global.show_secret
  ctx.progress = global.progress or ctx.tty
  local c = make_client(api, cmd, global)
  local result, err, why = cmd.run(ctx, c, words, opts)
  if why then usage(why) end
  if result == nil then return fail(ctx, err) end
  local code = emit(ctx, cmd, result, max)
  if c.close then c:close() end
  return code
end

local function run_emulator(ctx, argv)
  local emulator = require "bearer.emulator"
  local words, opts, global = parse(argv, function() return false end)
  local verb = words[1]
  if global.help then
    ctx.out(EMULATOR_HELP .. "\n")
    return OK
  end
  if not verb then usage("emulator start, stop, status or reset? (bearer emulator --help)") end
  for name in pairs(opts) do
    if not (verb == "start" and name == "port") then usage("unknown option --" .. name .. " for emulator " .. verb) end
  end
  if verb == "start" then
    local port = opts.port and whole(opts.port)
    if opts.port and not port then usage("--port needs a whole number") end
    local emu, err = emulator.start{ port = port }
    if not emu then ctx.err(tostring(err) .. "\n"); return API_ERROR end
    local env, names = emu:env(), {}
    for k in pairs(env) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do ctx.out(("export %s='%s'\n"):format(k, env[k])) end
    emu.http:close()
    return OK
  end
  local target = words[2]
  if verb == "stop" then
    target = target or ctx.env("BEARER_EMULATOR_PREFIX")
    if not target then usage("emulator stop needs PREFIX or $BEARER_EMULATOR_PREFIX") end
    local ok, err = emulator.attach("http://127.0.0.1", target):stop()
    if not ok then ctx.err(tostring(err) .. "\n"); return API_ERROR end
    return OK
  end
  if verb == "status" or verb == "reset" then
    target = target or ctx.env("BEARER_EMULATOR_URL")
    if not target then usage("emulator " .. verb .. " needs URL or $BEARER_EMULATOR_URL") end
    local emu = emulator.attach(target)
    local doc, err
    if verb == "status" then doc, err = emu:health() else doc, err = emu:reset() end
    emu:stop()
    if not doc then ctx.err(tostring(err) .. "\n"); return API_ERROR end
    ctx.out(M.encode({ ok = true, url = emu.url }) .. "\n")
    return OK
  end
  usage("unknown emulator command '" .. verb .. "' (start, stop, status, reset)")
end

local APIS = { overten = overten_api, optiverse = optiverse_api }

--- Runs `bearer` with `argv` (a list of strings); returns the exit status.
-- `ctx` (optional) overrides { out = fn, err = fn, env = fn, tty = bool }.
---@param argv string[]
---@param ctx table|nil
---@return integer
function M.main(argv, ctx)
  ctx = ctx or {}
  ctx.out = ctx.out or function(s) io.stdout:write(s) end
  ctx.err = ctx.err or function(s) io.stderr:write(s) end
  ctx.env = ctx.env or os.getenv
  if ctx.tty == nil then
    local r = os.execute("test -t 2")   -- 5.1 and LuaJIT: the status number
    ctx.tty = r == true or r == 0
  end
  local ok, code = pcall(function()
    local first = argv[1]
    if first == nil then usage("which API? (bearer --help)") end
    if first == "-h" or first == "--help" then
      ctx.out(TOP_HELP .. "\n" .. GLOBAL_HELP .. "\n")
      return OK
    end
    local rest = { unpack(argv, 2) }
    if first == "emulator" then return run_emulator(ctx, rest) end
    local make = APIS[first]
    if not make then usage("unknown API '" .. tostring(first) .. "' (overten, optiverse or emulator)") end
    return run_api(ctx, make(), rest)
  end)
  if ok then return code end
  return fail(ctx, code)
end

return M
