--- A user's own code under test (docs/testing.md): how many Word
-- documents completed, and the meetings of one month.
local M = {}

--- Completed Word runs, counted over every page.
function M.completed_word_runs(overten_client)
  local n = 0
  for _ in overten_client:runs{ status = "completed", format = "word" } do n = n + 1 end
  return n
end

--- The titles of the meetings between two dates, or nil, err.
function M.meeting_titles(optiverse_client, from, to)
  local titles = {}
  local ok, err = pcall(function()
    for rec in optiverse_client:records{ dateFrom = from, dateTo = to } do
      titles[#titles + 1] = rec.meetingTitle
    end
  end)
  if not ok then return nil, err end
  return titles
end

return M
