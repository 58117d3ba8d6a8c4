-- Scenario (a): `帮助` (help) from 1,000 distinct openids, a unique MsgId per request.
-- Expected reply: the help list, which starts with 你可以发送 ("You can send:").
--   wrk -t1 -c50 -d20s --latency -s bench/wrk/help.lua http://127.0.0.1:PORT/wechat \
--       -- token=T users=1000 prefix=ohelp threads=1 run=123456
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local CONTENT = "帮助"
local st, expect
n_help, n_other, n_non200, n_responses = 0, 0, 0, 0

setup = common.setup

function init(args)
  st = common.thread_state(args, tid)
  expect = common.expectation(st, "你可以发送", CONTENT)
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
    n_help = n_help + 1
  else
    n_other = n_other + 1
    if not sample_other then sample_other = status .. " " .. body:sub(1, 2000) end
  end
end

function done(summary, latency, requests)
  common.done("help", { "help" }, summary, latency, requests)
end
