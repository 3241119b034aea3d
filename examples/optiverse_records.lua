-- optiverse_records.lua: this week's meetings, and what one of them produced.
-- Needs OPTIVERSE_API_KEY; OPTIVERSE_BASE_URL points it elsewhere than
-- https://api.optiverse.ai/external-api (examples/run-demo: the emulator).
-- BEARER_DEMO_NOW (ISO 8601) stands in for "now", so the demo's seeded
-- meetings, which end in November 2026, make a week to show.
local optiverse = require "bearer.optiverse"

local ov = optiverse.client()
local now = os.time()
if os.getenv("BEARER_DEMO_NOW") then
  now = assert(optiverse.parse_time(os.getenv("BEARER_DEMO_NOW")), "BEARER_DEMO_NOW: ISO 8601")
end
local week_ago = optiverse.format_time(now - 7 * 86400)

print("meetings since " .. week_ago .. ":")
local latest
for rec in ov:records{ dateFrom = week_ago } do
  latest = latest or rec
  local people = {}
  for i, a in ipairs(rec.attendees or {}) do people[i] = a.name end
  print(("  %s  %-28s %s"):format(rec.startDate, rec.meetingTitle, table.concat(people, ", ")))
end

if latest then
  -- A structured template's answers for the newest meeting of the week.
  for _, tpl in ipairs(assert(ov:templates())) do
    if tpl.summaryType == "structured" then
      for s in ov:summaries{ protocolId = tpl.protocolId, recordId = latest.recordId } do
        print(("%s of \"%s\":"):format(tpl.title, latest.meetingTitle))
        for _, section in ipairs(s.sections) do
          for _, a in ipairs(section.answers) do
            print(("  %s: %s"):format(section.title, tostring(a.answer)))
          end
        end
      end
      break
    end
  end
end

-- Values the API would refuse are caught before anything is sent.
local page, err = ov:records_page{ limit = 500 }
assert(page == nil and err.kind == "validation")
print("error:      " .. tostring(err))
ov:close()
