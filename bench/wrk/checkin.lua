-- Issue 6: the quick check-in `打卡 36.5` from many bound users, a unique MsgId per request.
-- Each user sends at most one message per pass through the users (users are taken in turn),
-- so with more users than requests every check-in is the user's first of the day; a second
-- pass replaces the day's report. Expected reply: 健康打卡成功 (the report is recorded).
--   wrk -t1 -c50 -d20s --latency -s bench/wrk/checkin.lua http://127.0.0.1:PORT/wechat \
--       -- token=T users=20000 prefix=ochk threads=1 run=123458 [mode=echo]
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local CONTENT = "打卡 36.5"
local st, expect
n_recorded, n_other, n_non200, n_responses = 0, 0, 0, 0

setup = common.setup

function init(args)
  st = common.thread_state(args, tid)
  expect = common.expectation(st, "健康打卡成功", CONTENT)
end

function request()
  local users = st.users
  local openid = users[st.counter % #users + 1]
  return wrk.format("POST", st.path, st.headers, common.body(st, openid, CONTENT))
end

function response(status, headers, body)
  n_responses = n_responses + 1
  if status ~= 200 then
    n_non200 = n_non200 + 1
    if not sample_other then sample_other = status .. " " .. body:sub(1, 2000) end
  elseif body:find(expect, 1, true) then
    n_recorded = n_recorded + 1
  else
    n_other = n_other + 1
    if not sample_other then sample_other = status .. " " .. body:sub(1, 2000) end
  end
end

function done(summary, latency, requests)
  common.done("checkin", { "recorded" }, summary, latency, requests)
end
