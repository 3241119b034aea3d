-- bearer.overten: preflight, excel analyze, the three text helpers and the
-- six project endpoints, against the emulator.
local overten = require "bearer.overten"
local emulator = require "support.emulator"
local files = require "support.files"

describe("bearer.overten endpoints #integration", function()
  local emu, dir

  setup(function()
    emu = emulator.start()
    dir = files.tmpdir()
  end)
  teardown(function()
    emu:stop()
    files.remove(dir)
  end)
  before_each(function() emu:reset() end)

  local function client(opts)
    opts = opts or {}
    opts.api_key = emulator.OVERTEN_KEY
    opts.base_url = emu:overten_url()
    opts.sleep = function() end
    return overten.client(opts)
  end

  local function write(name, content) return files.write(dir .. "/" .. name, content) end

  -- Records what the module hands to http:request.
  local function record(c)
    local real, calls = c.http, {}
    c.http = setmetatable({
      request = function(_, method, path, opts)
        calls[#calls + 1] = { method = method, path = path, opts = opts }
        return real:request(method, path, opts)
      end,
    }, { __index = function(_, k) return function(_, ...) return real[k](real, ...) end end })
    return calls
  end

  it("preflight returns the verdict without charging", function()
    local c = client()
    local v = assert(c:preflight{ format = "slides", prompt = "Deck with product screenshots" })
    assert.is_false(v.valid)
    assert.same({ "images" }, v.missing)
    assert.same({ "visual_first" }, v.detected_intents)
    v = assert(c:preflight{ format = "word", prompt = "A memo" })
    assert.is_true(v.valid)
    local res, err = c:preflight{ format = "pdf", prompt = "x" }
    assert.is_nil(res)
    assert.equal("invalid_argument", err.code)
    assert.equal(5000, assert(c:verify()).credits_balance)   -- free
  end)

  it("analyzes an uploaded spreadsheet", function()
    local c = client()
    local f = assert(c:upload(write("sales.csv", "month,total\njan,3\n"), { purpose = "reference" }))
    local a = assert(c:excel_analyze{ file_id = f.file_id, prompt = "Which month sold most?" })
    assert.truthy(a.run_id:find("^analyze_"))
    assert.truthy(a.answer:find("sales.csv", 1, true))
    assert.equal(12, a.credits_used)
    local doc = assert(c:upload(write("memo.docx", "PK")))
    local res, err = c:analyze{ file_id = doc.file_id, prompt = "x" }
    assert.is_nil(res)
    assert.equal("invalid_request", err.code)
    res, err = c:analyze{ file_id = f.file_id, prompt = string.rep("x", 5001) }
    assert.is_nil(res)
    assert.equal("invalid_argument", err.code)
  end)

  it("runs the text helpers; billable POSTs carry no idempotency key unless given", function()
    local c = client()
    local calls = record(c)
    assert.equal("To use it.", assert(c:humanize{ text = "In order to utilize it." }).text)
    assert.equal("To use it.", assert(c:humanize("In order to utilize it.")).text)
    assert.truthy(assert(c:rewrite{ text = "hello", prompt = "formal" }).text:find("formal", 1, true))
    assert.truthy(assert(c:new_content{ prompt = "Q3 review intro", file_name = "Q3_review.docx" }).text)
    for _, call in ipairs(calls) do assert.is_nil(call.opts.idempotency_key) end
    assert(c:humanize{ text = "x", idempotency_key = "k1" })
    assert.equal("k1", calls[#calls].opts.idempotency_key)
    local res, err = c:rewrite{ text = "x", prompt = string.rep("p", 2001) }
    assert.is_nil(res)
    assert.equal("invalid_argument", err.code)
    -- a 503 on a billable POST without a key is not retried
    emu:control("DELETE", "/requests")
    emu:fault{ path = "/api/v1/text/humanize", type = "status", status = 503 }
    res, err = c:humanize{ text = "x" }
    assert.is_nil(res)
    assert.equal("server", err.kind)
    assert.is_false(err.retryable)
    assert.equal(1, #emu:requests("/api/v1/text/humanize"))
  end)

  it("creates a project, attaches files, polls the analysis and works the insights", function()
    local c = client()
    local p = assert(c:create_project{ name = "Acme DD", description = "due diligence", tags = { "dd", "acme" } })
    assert.truthy(p.project_id)
    assert.equal("idle", p.analysis_status)
    local f1 = assert(c:attach_file(p.project_id, write("a.xlsx", "PK a"), { role = "primary",
      category = "spreadsheet", tags = { "q3" } }))
    assert.equal("primary", f1.role)
    assert.same({ "q3" }, f1.tags)
    local f2 = assert(c:attach_file(p.project_id, write("b.pdf", "%PDF b")))
    assert.equal("context", f2.role)
    local statuses = {}
    repeat
      local s = assert(c:analysis_status(p.project_id))
      statuses[#statuses + 1] = s.status
    until s.status == "completed"
    assert.same({ "queued", "running", "running", "completed" }, statuses)
    local all = c:insights(p.project_id):all()
    assert.equal(3, #all)
    local high = c:insights(p.project_id, { severity = "high" }):all()
    assert.equal(2, #high)
    local disc = c:insights(p.project_id, { kind = "discrepancy" }):all()
    assert.equal(1, #disc)
    local r = assert(c:resolve_insight(p.project_id, disc[1].insight_id))
    assert.is_true(r.resolved)
    assert.equal(1, #c:insights(p.project_id, { resolved = true }):all())
    assert.equal(2, #c:insights(p.project_id, { resolved = false }):all())
    local task = assert(c:create_report(p.project_id))
    assert.equal("queued", task.status)
    local done = assert(c:wait(task.task_id))
    assert.equal("completed", done.status)
    assert.equal("word", assert(c:run(done.run_id)).format)
    local res, err = c:attach_file(p.project_id, write("c.txt", "x"), { role = "boss" })
    assert.is_nil(res)
    assert.equal(422, err.status)
    res, err = c:analysis_status("prj_nope")
    assert.is_nil(res)
    assert.equal("not_found", err.kind)
    res, err = c:resolve_insight(p.project_id, "ins_nope")
    assert.is_nil(res)
    assert.equal("not_found", err.kind)
  end)
end)
