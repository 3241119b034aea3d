-- The guides' examples run (issue 10): every ```lua block of README.md and
-- docs/*.md runs as a standalone program against the emulator, with the
-- environment a user of the emulator has (examples/start-emulator.sh), and
-- must exit 0 without printing a secret. A block that cannot run alone
-- starts with `-- skip: <why>`, or follows `<!-- skip: <why> -->`
-- (spec/support/guides.lua).
local emulator = require "support.emulator"
local files = require "support.files"
local guides = require "support.guides"

-- A file's text; a missing file fails the spec.
local function read(path) return assert(files.read(path), path .. " is missing") end

local function guide_files()
  local list = { "README.md" }
  local p = assert(io.popen("ls docs/*.md | sort"))
  for path in p:lines() do list[#list + 1] = path end
  p:close()
  return list
end

-- What must never appear in an example's output.
local SECRETS = { emulator.OVERTEN_KEY, emulator.OPTIVERSE_KEY, "whsec_emu_5f3c9a7e1b2d4f6a8c0e2b4d6f8a0c1e" }

describe("guides #integration", function()
  local emu, env

  setup(function()
    emu = emulator.start()
    env = {
      OVERTEN_API_KEY = emulator.OVERTEN_KEY,
      OVERTEN_BASE_URL = emu:overten_url(),
      OPTIVERSE_API_KEY = emulator.OPTIVERSE_KEY,
      OPTIVERSE_BASE_URL = emu:optiverse_url(),
      BEARER_EMULATOR_URL = emu.url,
      FIREBASE_ID_TOKEN = guides.emulator_token("emu_owner"),
    }
  end)
  teardown(function() if emu then emu:stop() end end)

  it("the block reader and runner see a failing block, a skip and its reason", function()
    local blocks = guides.blocks(table.concat({
      "text", "```lua", "error('boom')", "```", "```sh", "ls", "```",
      "```lua", "-- skip: needs nginx", "x()", "```", "```lua", "-- skip:", "```",
      "<!-- skip: a copy of a spec -->", "```lua", "describe()", "```",
    }, "\n"))
    assert.equal(4, #blocks)
    assert.equal("a copy of a spec", blocks[4].skip)
    assert.equal(3, blocks[1].line)
    local out, ok = guides.run(blocks[1].code, env)
    assert.is_false(ok)
    assert.matches("boom", out)
    assert.equal("needs nginx", blocks[2].skip)
    assert.is_nil(blocks[3].skip)              -- a skip without a reason runs (and fails)
  end)

  it("every guide the index names exists, and the index names every guide", function()
    local index = read("docs/README.md")
    for link in index:gmatch("%]%(([%w_%-]+%.md)%)") do
      if link ~= "cli.md" and link ~= "testing.md" then   -- written with the CLI and the emulator product
        assert.truthy(files.read("docs/" .. link), "docs/README.md links to a missing " .. link)
      end
    end
    for _, path in ipairs(guide_files()) do
      local name = path:match("^docs/(.+)$")
      if name and name ~= "README.md" then
        assert.truthy(index:find("](" .. name .. ")", 1, true), "docs/README.md does not link " .. name)
      end
    end
  end)

  for _, path in ipairs(guide_files()) do
    for _, block in ipairs(guides.blocks(read(path))) do
      local name = ("%s:%d"):format(path, block.line)
      if block.skip then
        pending(name .. " (" .. block.skip .. ")")
      else
        it("runs " .. name, function()
          emu:reset()
          local out, ok = guides.run(block.code, env)
          assert(ok, name .. " failed:\n" .. out)
          for _, secret in ipairs(SECRETS) do
            assert.falsy(out:find(secret, 1, true), name .. " printed a secret")
          end
        end)
      end
    end
  end
end)
