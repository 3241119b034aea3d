-- The `bearer` command (bin/bearer, bearer.cli) as a user runs it: from the
-- checkout without LUA_PATH, against the emulator, its output parsed as
-- JSON (lines), exit codes 0/1/2, and no seeded secret on stdout or stderr.
local cjson = require "cjson"
local cli = require "bearer.cli"
local emulator = require "support.emulator"
local files = require "support.files"
local overten_endpoints = require "bearer.overten.endpoints"

local ROOT = emulator.ROOT:sub(1, 1) == "/" and emulator.ROOT
             or (io.popen("cd " .. emulator.ROOT .. " && pwd"):read("l"))
local BIN = ROOT .. "/bin/bearer"
local PROTOCOL = "b7c4c322-2fd4-474b-8937-b46ff465e0af"   -- seeded structured template
local WEBHOOK_SECRET = "whsec_emu_5f3c9a7e1b2d4f6a8c0e2b4d6f8a0c1e"

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function lines_of(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

-- Every line a JSON object; the decoded list.
local function json_lines(text)
  local docs = {}
  for _, line in ipairs(lines_of(text)) do
    local doc = cjson.decode(line)
    assert.equal("table", type(doc), line)
    docs[#docs + 1] = doc
  end
  return docs
end

describe("the bearer command #integration", function()
  local emu, work, token
  local seen = {}   -- every stdout and stderr, searched for secrets at the end

  -- Runs bin/bearer with `args` (a shell-quoted string) and only the
  -- variables of `env` (plus PATH and HOME), in `work`: stdout, stderr, code.
  local function bearer(args, env)
    local vars = { "PATH=" .. quote(os.getenv("PATH")), "HOME=" .. quote(work) }
    for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. quote(v) end
    local cmd = ("cd %s && env -i %s %s %s >out 2>err; echo $?"):format(
      quote(work), table.concat(vars, " "), quote(BIN), args)
    local p = assert(io.popen(cmd))
    local code = tonumber(p:read("a"):match("(%d+)%s*$"))
    p:close()
    local out, err = files.read(work .. "/out"), files.read(work .. "/err")
    seen[#seen + 1] = out
    seen[#seen + 1] = err
    return out, err, code
  end

  local function overten_env(extra)
    local env = { OVERTEN_API_KEY = emulator.OVERTEN_KEY, OVERTEN_BASE_URL = emu:overten_url() }
    for k, v in pairs(extra or {}) do env[k] = v end
    return env
  end
  local function optiverse_env()
    return { OPTIVERSE_API_KEY = emulator.OPTIVERSE_KEY, OPTIVERSE_BASE_URL = emu:optiverse_url() }
  end

  setup(function()
    emu = emulator.start()
    work = files.tmpdir()
    token = emulator.firebase_token()
  end)
  teardown(function()
    emu:stop()
    files.remove(work)
  end)
  before_each(function() emu:reset() end)

  it("prints --help at every level, exit 0, and derives a command for every declared method", function()
    local out, _, code = bearer("--help")
    assert.equal(0, code)
    assert.truthy(out:find("overten", 1, true) and out:find("emulator", 1, true), out)
    out, _, code = bearer("overten --help")
    assert.equal(0, code)
    assert.truthy(out:find("keys ...", 1, true), out)
    out, _, code = bearer("overten keys --help")
    assert.equal(0, code)
    assert.truthy(out:find("rotate", 1, true) and out:find("revoke", 1, true), out)
    out, _, code = bearer("overten keys list --help")
    assert.equal(0, code)
    assert.truthy(out:find("usage: bearer overten keys list ORG_ID", 1, true), out)
    out, _, code = bearer("optiverse records --help")
    assert.equal(0, code)
    assert.truthy(out:find("--date-from, --from DATE", 1, true), out)
    out, _, code = bearer("emulator --help")
    assert.equal(0, code)
    assert.truthy(out:find("eval", 1, true), out)
    -- every declared method is a command (its flat name), with its
    -- path parameters as arguments
    local decls = {}
    for _, d in ipairs(overten_endpoints.client) do decls[#decls + 1] = d end
    for _, d in ipairs(overten_endpoints.admin) do decls[#decls + 1] = d end
    for _, d in ipairs(decls) do
      local name = d.name:gsub("_", "-")
      out, _, code = bearer("overten " .. name .. " --help")
      assert.equal(0, code, name)
      -- (a listing's --help is its group's, which shows the list's usage)
      local pat = "usage: bearer overten " .. name:gsub("%-", "%%-")
      local usage = out:match(pat .. " %[list%][^\n]*") or out:match(pat .. " [^\n]*")
      assert.truthy(usage, out)
      for param in d.path:gmatch("{([%w_]+)}") do
        assert.truthy(usage:find(param:upper(), 1, true), name .. ": " .. usage)
      end
    end
  end)

  it("optiverse records --from --to: JSON lines, one record a line, within the dates", function()
    local out, err, code = bearer("optiverse records --from 2026-11-01 --to 2026-11-30", optiverse_env())
    assert.equal(0, code, err)
    assert.equal("", err)
    local records = json_lines(out)
    assert.is_true(#records > 0)
    -- the same records the library pages through
    local c = require("bearer.optiverse").client{ api_key = emulator.OPTIVERSE_KEY,
                                                  base_url = emu:optiverse_url() }
    local n = 0
    for _ in c:records{ dateFrom = "2026-11-01", dateTo = "2026-11-30" } do n = n + 1 end
    c:close()
    assert.equal(n, #records)
    for _, r in ipairs(records) do
      assert.truthy(r.startDate >= "2026-11-01" and r.startDate < "2026-12-01", r.startDate)
    end
  end)

  it("optiverse summaries --protocol --record: that record's summaries", function()
    local out, err, code = bearer("optiverse records --max 1", optiverse_env())
    assert.equal(0, code, err)
    local record = json_lines(out)[1].recordId
    out, err, code = bearer(("optiverse summaries --protocol %s --record %s"):format(PROTOCOL, record),
                            optiverse_env())
    assert.equal(0, code, err)
    local summaries = json_lines(out)
    assert.is_true(#summaries > 0)
    for _, s in ipairs(summaries) do
      assert.equal(record, s.recordId)
      assert.equal("table", type(s.sections))
    end
  end)

  it("overten verify: one JSON object, the webhook secret replaced by a note", function()
    local out, err, code = bearer("overten verify", overten_env())
    assert.equal(0, code, err)
    local docs = json_lines(out)
    assert.equal(1, #docs)
    assert.equal("org_test", docs[1].org_id)
    assert.equal(5000, docs[1].credits_balance)
    assert.truthy(out:find('"credits_balance":5000,', 1, true), out)   -- an integer stays one
    assert.truthy(docs[1].webhook_secret:find("not shown", 1, true))
    -- even with --show-secret: verify creates nothing
    out = bearer("overten verify --show-secret", overten_env())
    assert.is_nil(out:find(WEBHOOK_SECRET, 1, true))
  end)

  it("overten runs --status --format: JSON lines of those runs, the filters sent", function()
    local out, err, code = bearer("overten runs --status completed --format word", overten_env())
    assert.equal(0, code, err)
    local runs = json_lines(out)
    assert.is_true(#runs > 0)
    for _, r in ipairs(runs) do
      assert.equal("completed", r.status)
      assert.equal("word", r.format)
    end
    local sent = emu:requests("/api/v1/runs")
    assert.truthy(sent[1].query:find("status=completed", 1, true), sent[1].query)
    out, err, code = bearer("overten runs --status completed --max 3", overten_env())
    assert.equal(0, code, err)
    assert.equal(3, #json_lines(out))
  end)

  it("overten generate word --prompt --wait: the run on stdout", function()
    local out, err, code = bearer('overten generate word --prompt "Q3 board memo" --wait', overten_env())
    assert.equal(0, code, err)
    local docs = json_lines(out)
    assert.equal(1, #docs)
    assert.equal("completed", docs[1].status)
    assert.truthy(docs[1].run_id:find("^run_"))
    assert.equal("", err)   -- no progress: stderr is not a terminal
  end)

  it("overten wait --progress: the task's progress on stderr, the task on stdout", function()
    local out, err, code = bearer('overten generate word --prompt "Q3 board memo" --async', overten_env())
    assert.equal(0, code, err)
    local queued = json_lines(out)[1]
    assert.truthy(queued.task_id)
    emu:control("POST", "/overten/tasks/" .. queued.task_id, { status = "completed" })
    out, err, code = bearer("overten wait " .. queued.task_id .. " --progress", overten_env())
    assert.equal(0, code, err)
    assert.equal("completed", json_lines(out)[1].status)
    assert.truthy(err:find(queued.task_id .. ": completed", 1, true), err)
  end)

  it("overten download RUN_ID -o: the file, a progress bar on stderr with --progress", function()
    local out, err, code = bearer("overten runs --status completed --max 1", overten_env())
    assert.equal(0, code, err)
    local run = json_lines(out)[1].run_id
    out, err, code = bearer("overten download " .. run .. " -o memo.docx --progress", overten_env())
    assert.equal(0, code, err)
    local saved = json_lines(out)[1]
    assert.equal("memo.docx", saved.path)
    assert.equal(saved.bytes, #files.read(work .. "/memo.docx"))
    assert.truthy(err:find("100%", 1, true), err)
    -- without --progress and without a terminal: nothing on stderr
    out, err, code = bearer("overten download " .. run .. " -o memo2.docx", overten_env())
    assert.equal(0, code, err)
    assert.equal("", err)
    assert.equal("memo2.docx", json_lines(out)[1].path)
    -- -o is needed
    out, err, code = bearer("overten download " .. run, overten_env())
    assert.equal(2, code)
    assert.equal("", out)
    assert.truthy(err:find("-o PATH", 1, true), err)
  end)

  it("overten keys list ORG_ID with FIREBASE_ID_TOKEN; a new key's secret only with --show-secret", function()
    local env = overten_env{ FIREBASE_ID_TOKEN = token }
    local out, err, code = bearer("overten keys list org_test", env)
    assert.equal(0, code, err)
    local keys = json_lines(out)
    assert.is_true(#keys > 0)
    for _, k in ipairs(keys) do assert.truthy(k.key_id) end
    out, err, code = bearer("overten keys create org_test --name ci", env)
    assert.equal(0, code, err)
    local made = json_lines(out)[1]
    assert.truthy(made.secret:find("--show-secret", 1, true), made.secret)
    out, err, code = bearer("overten keys create org_test --name ci2 --show-secret", env)
    assert.equal(0, code, err)
    made = json_lines(out)[1]
    assert.truthy(made.secret:find("^sk_live_%w+$"), made.secret)
    -- rotate revokes the old key: without --show-secret the new one would
    -- be lost, so it is a usage error and nothing is sent
    emu:control("DELETE", "/requests")
    out, err, code = bearer("overten keys rotate org_test " .. made.key_id, env)
    assert.equal(2, code)
    assert.equal("", out)
    assert.truthy(err:find("--show-secret", 1, true), err)
    assert.equal(0, emu:count_under("/api/v1/"))
    -- no token: a usage error naming the variable
    out, err, code = bearer("overten keys list org_test", overten_env())
    assert.equal(2, code)
    assert.equal("", out)
    assert.truthy(err:find("FIREBASE_ID_TOKEN", 1, true), err)
  end)

  it("reads the key from --key-file with bearer.key.from_file's rules", function()
    local path = work .. "/key"
    files.write(path, emulator.OVERTEN_KEY .. "\n")
    assert(os.execute("chmod 600 " .. quote(path)))
    local env = { OVERTEN_BASE_URL = emu:overten_url() }
    local out, err, code = bearer("overten verify --key-file " .. quote(path), env)
    assert.equal(0, code, err)
    assert.equal("org_test", json_lines(out)[1].org_id)
    assert(os.execute("chmod 644 " .. quote(path)))
    out, err, code = bearer("overten verify --key-file " .. quote(path), env)
    assert.equal(2, code)
    assert.equal("", out)
    assert.equal(1, #lines_of(err))
  end)

  it("exits 2 on usage errors, before any request", function()
    for _, args in ipairs{ "", "nope", "overten", "overten nope", "overten runs get",
                           "optiverse records --bogus 1", "optiverse records --limit 500",
                           "optiverse records --limit ten", "emulator nope",
                           "overten generate word --prompt" } do
      local out, err, code = bearer(args, overten_env(optiverse_env()))
      assert.equal(2, code, args .. ": " .. err)
      assert.equal("", out, args)
      assert.equal(1, #lines_of(err), args .. ": " .. err)
    end
    assert.same({}, emu:requests())
    local _, err, code = bearer("overten verify", { OVERTEN_BASE_URL = emu:overten_url() })
    assert.equal(2, code)
    assert.truthy(err:find("OVERTEN_API_KEY", 1, true), err)
  end)

  it("exits 1 on API and transfer errors, with one readable line", function()
    local out, err, code = bearer("overten runs get run_nope", overten_env())
    assert.equal(1, code)
    assert.equal("", out)
    assert.equal(1, #lines_of(err))
    assert.truthy(err:find("not_found", 1, true), err)
    emu:fault{ path = "/api/v1/verify", type = "status", status = 401, times = -1 }
    out, err, code = bearer("overten verify", overten_env())
    assert.equal(1, code)
    assert.equal("", out)
    assert.truthy(err:find("auth", 1, true), err)
    emu:fault{ path = "/external-api/*", type = "drop", times = -1 }
    out, err, code = bearer("optiverse templates", optiverse_env())
    assert.equal(1, code)
    assert.equal("", out)
    assert.equal(1, #lines_of(err))
  end)

  it("printed no seeded secret anywhere", function()
    local all = table.concat(seen, "\n")
    assert.is_true(#seen > 20)
    assert.is_nil(all:find(emulator.OVERTEN_KEY, 1, true))
    assert.is_nil(all:find(emulator.OPTIVERSE_KEY, 1, true))
    assert.is_nil(all:find(WEBHOOK_SECRET, 1, true))
    assert.is_nil(all:find(token, 1, true))
  end)
end)

describe("bearer.cli's JSON #unit", function()
  local function secret() return "(hidden)" end

  it("writes integers as integers and floats so they read back the same", function()
    assert.equal('{"a":5000,"b":0.1,"c":1e+300,"d":-3}', cli.encode({ a = 5000, b = 0.1, c = 1e300, d = -3 }, secret))
    assert.equal("[1,2.5,\"x\"]", cli.encode({ 1, 2.5, "x" }, secret))
    assert.equal(0.1 + 0.2, tonumber(cli.encode(0.1 + 0.2, secret)))
    assert.equal("9007199254740993", cli.encode(9007199254740993, secret))
  end)

  it("escapes strings as JSON, slashes as they are", function()
    assert.equal([["a\"b\\c\n\u0001/d"]], cli.encode('a"b\\c\n\1/d', secret))
  end)

  it("prints a bearer.Key through the secret function", function()
    local key = require("bearer").key(emulator.OVERTEN_KEY, { scheme = "overten" })
    assert.equal('{"secret":"(hidden)"}', cli.encode({ secret = key }, secret))
    key:close()
  end)
end)
